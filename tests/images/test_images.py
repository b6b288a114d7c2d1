"""Every image we deploy, built here by devkit.images and checked the way the node uses it.

The node imports each docker-archive tarball with ``ctr image import``, so these tests read
the tarballs themselves: their one tag, their config (non-root user, entrypoint, port), and
their filesystem (the layers unpacked in order into a temp dir), whose programs then run as
host processes on loopback, chrooted into that filesystem as the image's user. Images build
once per input change (stamps), so a warm run only checks.
"""

from __future__ import annotations

import contextlib
import json
import os
import platform
import re
import shutil
import signal
import subprocess
import tarfile
import tempfile
import threading
import time
import tomllib
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
import yaml

from devkit import images as img
from devkit.prometheus import CELERY_EXPORTER_MAIN, Process, process
from devkit.services import LOOPBACK, redis_service
from jewelry_monitoring.builders.exporters import EXPORTERS, NON_ROOT_UID, ExporterKind
from jewelry_monitoring.spec import JewelryMonitoringSpec

VALUES = img.REPO / "charts" / "jewelry-monitoring" / "values.yaml"
CHROOT = shutil.which("chroot") or "/usr/sbin/chroot"


@pytest.fixture(scope="session")
def built() -> dict[str, img.BuiltImage]:
    return img.build_images(progress=lambda line: print(line, flush=True))


@pytest.fixture(scope="session")
def rootfs(built: dict[str, img.BuiltImage]) -> Iterator[Callable[[str], Path]]:
    """The unpacked filesystem of an image (by short name), unpacked once per session and
    deleted at its end (hundreds of MB each: not left to pytest's kept temp dirs)."""
    workdir = Path(tempfile.mkdtemp(prefix="jm-rootfs-"))
    unpacked: dict[str, Path] = {}

    def get(short_name: str) -> Path:
        if short_name not in unpacked:
            dest = workdir / short_name
            dest.mkdir()
            img.unpack_rootfs(built[short_name].archive, dest)
            unpacked[short_name] = dest
        return unpacked[short_name]

    try:
        yield get
    finally:
        shutil.rmtree(workdir)


def _cr_exporter(short_name: str) -> ExporterKind:
    """The operator's table row of the CR exporter this image is for."""
    return EXPORTERS[next(e for e, image in EXPORTER_IMAGES.items() if image == short_name)]


def _config(built: dict[str, img.BuiltImage], short_name: str) -> dict[str, Any]:
    return img.archive_config(built[short_name].archive)


def _image_env(config: dict[str, Any]) -> dict[str, str]:
    return dict(entry.split("=", 1) for entry in config.get("Env") or [])


def _in_rootfs(root: Path, config: dict[str, Any], argv: list[str]) -> list[str]:
    """argv run chrooted into ``root`` as the image's user (the image's entrypoint first)."""
    return [
        CHROOT,
        f"--userspec={config['User']}",
        str(root),
        *(config.get("Entrypoint") or []),
        *argv,
    ]


# --------------------------------------------------------------------------- what is built

EXPORTER_IMAGES = {
    "postgres": "postgres-exporter",
    "redis": "redis-exporter",
    "nginx": "nginx-prometheus-exporter",
    "celery": "celery-exporter",
}
# The node exporter is the chart's (values nodeExporter.*), not a CR exporter.
NODE_EXPORTER_IMAGE = "node-exporter"
ALL_EXPORTER_IMAGES = sorted([*EXPORTER_IMAGES.values(), NODE_EXPORTER_IMAGE])
POSTGRES_DSN = "postgresql://nobody@127.0.0.1:1/none?sslmode=disable"  # dead loopback port


def test_every_image_is_one_tagged_docker_archive(built: dict[str, img.BuiltImage]) -> None:
    services = {service.short_name for service in img.DEBIAN_SERVICES}
    expected = {
        "jewelry-monitoring-operator",
        "jewelry-shop",
        *ALL_EXPORTER_IMAGES,
        *services,
        *img.MONITORING_PROGRAMS,
    }
    assert set(built) == expected
    for short_name, image in built.items():
        assert re.fullmatch(rf"localhost/jm/{re.escape(short_name)}:[\w.-]+", image.name)
        assert img.archive_tags(image.archive) == [image.name]
        # An independent reader (containers/image, as in buildah and podman) agrees, and the
        # platform is the node's: ctr's import skips images of other platforms.
        inspected = subprocess.run(
            ["skopeo", "inspect", "--config", f"docker-archive:{image.archive}"],
            capture_output=True,
            text=True,
            check=True,
        )
        image_json = json.loads(inspected.stdout)
        assert image_json["config"] == img.archive_config(image.archive)
        node_arch = {"x86_64": "amd64", "aarch64": "arm64"}[platform.machine()]
        assert (image_json["os"], image_json["architecture"]) == ("linux", node_arch)


def test_exporter_images_have_the_versions_the_cr_pins(built: dict[str, img.BuiltImage]) -> None:
    """Same version as the CR's default upstream image, except nginx (recorded, see below)."""
    defaults = JewelryMonitoringSpec.model_validate({"app": {"podSelector": {"a": "b"}}})
    for exporter, short_name in EXPORTER_IMAGES.items():
        upstream_tag = getattr(defaults.exporters, exporter).image.rpartition(":")[2]
        ours = built[short_name].name.rpartition(":")[2]
        if exporter == "nginx":
            # The Go proxy refuses github.com/nginx/nginx-prometheus-exporter: Debian's build.
            doc = (img.REPO / "app" / "METRICS.md").read_text()
            assert ours in doc and upstream_tag in doc, "record the nginx version difference"
        else:
            assert ours == upstream_tag, exporter
    node_tag = yaml.safe_load(VALUES.read_text())["nodeExporter"]["image"]["tag"]
    assert built[NODE_EXPORTER_IMAGE].name.rpartition(":")[2] == node_tag


def test_the_charts_operator_image_is_ours(built: dict[str, img.BuiltImage]) -> None:
    """The chart's default image (a registry's) is the one built here, under our local
    registry name, at the chart's appVersion."""
    values = yaml.safe_load(VALUES.read_text())
    chart = yaml.safe_load((VALUES.parent / "Chart.yaml").read_text())
    operator = built["jewelry-monitoring-operator"].name
    image_name = values["image"]["repository"].rpartition("/")[2]
    assert operator == f"localhost/jm/{image_name}:{chart['appVersion']}"


@dataclass(frozen=True)
class ExpectedConfig:
    user: str
    entrypoint: list[str] | None
    cmd: list[str] | None
    port: int


def _expected_configs() -> dict[str, ExpectedConfig]:
    values = yaml.safe_load(VALUES.read_text())
    security = values["podSecurityContext"]
    app_user = f"{security['runAsUser']}:{security['runAsGroup']}"
    nobody = f"{NON_ROOT_UID}:{NON_ROOT_UID}"
    exporters = {
        "postgres-exporter": ["/bin/postgres_exporter"],
        "redis-exporter": ["/bin/redis_exporter"],
        "node-exporter": ["/bin/node_exporter"],
        "nginx-prometheus-exporter": ["/bin/nginx-prometheus-exporter"],
        "celery-exporter": ["python", "-c", CELERY_EXPORTER_MAIN],
    }
    ports = {image: EXPORTERS[exporter].port for exporter, image in EXPORTER_IMAGES.items()}
    ports[NODE_EXPORTER_IMAGE] = values["nodeExporter"]["port"]
    return {
        "jewelry-monitoring-operator": ExpectedConfig(
            app_user, ["jewelry-monitoring"], ["run"], values["livenessPort"]
        ),
        "jewelry-shop": ExpectedConfig(
            app_user, None, ["gunicorn", "-c", "gunicorn.conf.py"], 8000
        ),
        **{
            image: ExpectedConfig(nobody, entrypoint, None, ports[image])
            for image, entrypoint in exporters.items()
        },
    }


@pytest.mark.parametrize("short_name", sorted(_expected_configs()))
def test_config_runs_non_root_with_entrypoint_and_port(
    built: dict[str, img.BuiltImage], short_name: str
) -> None:
    expected = _expected_configs()[short_name]
    config = _config(built, short_name)
    uid = config["User"].split(":")[0]
    assert uid.isdigit() and int(uid) != 0, "numeric non-root user (runAsNonRoot needs it)"
    assert config["User"] == expected.user
    assert config.get("Entrypoint") == expected.entrypoint
    assert config.get("Cmd") == expected.cmd
    assert set(config.get("ExposedPorts") or {}) == {f"{expected.port}/tcp"}


@pytest.mark.parametrize("short_name", ["jewelry-monitoring-operator", "jewelry-shop"])
def test_the_build_time_ca_bundle_is_not_in_our_layers(
    built: dict[str, img.BuiltImage], short_name: str
) -> None:
    """The host CA bundle is bind-mounted for pip during the build, never written: no layer
    above the base holds it (the base's own comes from Debian's ca-certificates)."""
    bundle = img.HOST_CA_BUNDLE.lstrip("/")
    with tarfile.open(built[short_name].archive) as tar:
        manifest = img.archive_manifest(tar)
        above_base = manifest["Layers"][1:]
        assert above_base, "expected the base layer plus our own"
        for layer in above_base:
            member = tar.extractfile(layer)
            assert member is not None
            with tarfile.open(fileobj=member) as layer_tar:
                names = {n.removeprefix("./") for n in layer_tar.getnames()}
            assert bundle not in names, layer


# --------------------------------------------------------------------------- they run


@contextlib.contextmanager
def stub_status_server() -> Iterator[str]:
    """A loopback page in nginx's stub_status format, for the nginx exporter to read."""

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            body = (
                b"Active connections: 1 \nserver accepts handled requests\n 3 3 7 \n"
                b"Reading: 0 Writing: 1 Waiting: 0 \n"
            )
            self.send_response(200)
            self.send_header("Content-Type", "text/plain")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer((LOOPBACK, 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://{LOOPBACK}:{server.server_address[1]}/stub_status"
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


@contextlib.contextmanager
def exporter_dependencies(short_name: str) -> Iterator[tuple[list[str], dict[str, str], str]]:
    """(extra args, extra env, a metric the answer must hold) for each exporter image."""
    if short_name == "postgres-exporter":
        yield (
            [],
            {"DATA_SOURCE_NAME": POSTGRES_DSN},
            r'postgres_exporter_build_info\{[^}]*version="0\.17\.1"',
        )
    elif short_name == "redis-exporter":
        yield (
            ["--redis.addr", "redis://127.0.0.1:1"],
            {},
            r'redis_exporter_build_info\{[^}]*version="v1\.74\.0"',
        )
    elif short_name == "node-exporter":
        yield [], {}, r'node_exporter_build_info\{[^}]*version="1\.9\.1"'
    elif short_name == "nginx-prometheus-exporter":
        with stub_status_server() as url:
            yield [f"--nginx.scrape-uri={url}"], {}, r"nginx_connections_accepted 3\b"
    elif short_name == "celery-exporter":
        with redis_service() as redis:
            env = {"CE_BROKER_URL": f"redis://{redis.host}:{redis.port}/0"}
            yield [], env, r"# TYPE celery_worker_up gauge"
    else:
        raise AssertionError(short_name)


@contextlib.contextmanager
def exporter_from_image(
    built: dict[str, img.BuiltImage],
    rootfs: Callable[[str], Path],
    short_name: str,
    wrapper: tuple[str, ...] = (),
) -> Iterator[tuple[Process, str]]:
    """The exporter of an image running, ready, with what it needs; (its process, a metric
    its answer must hold). ``wrapper`` goes in front of its command."""
    config = _config(built, short_name)
    root = rootfs(short_name)
    # Ready when the operator's probe path answers, as the pod's probes expect.
    # (the chart's node exporter probes "/").
    probe_path = "/" if short_name == NODE_EXPORTER_IMAGE else _cr_exporter(short_name).probe_path

    def argv(port: int, extra: list[str]) -> list[str]:
        if short_name == "celery-exporter":
            listen = ["--host", LOOPBACK, "--port", str(port)]
        else:
            listen = [f"--web.listen-address={LOOPBACK}:{port}"]
        if short_name == "node-exporter":
            # It reads the host's /proc and /sys (the pod mounts them): the image's static
            # binary runs unchrooted, pointed at the host's, as the operator points it at
            # /host/proc and /host/sys.
            binary = root / config["Entrypoint"][0].lstrip("/")
            host = ["--path.procfs=/proc", "--path.sysfs=/sys", "--path.rootfs=/"]
            return [*wrapper, str(binary), *listen, *host, *extra]
        return [*wrapper, *_in_rootfs(root, config, [*listen, *extra])]

    with (
        exporter_dependencies(short_name) as (extra, env, expected),
        process(
            short_name,
            lambda port: argv(port, extra),
            env={**_image_env(config), **env},
            ready_path=probe_path,
        ) as running,
    ):
        yield running, expected


@pytest.mark.parametrize("short_name", ALL_EXPORTER_IMAGES)
def test_exporter_from_its_image_answers_metrics(
    built: dict[str, img.BuiltImage], rootfs: Callable[[str], Path], short_name: str
) -> None:
    with exporter_from_image(built, rootfs, short_name) as (running, expected):
        text = _get(f"http://{LOOPBACK}:{running.port}/metrics")
    assert re.search(expected, text), text[:3000]


@pytest.mark.parametrize("short_name", ALL_EXPORTER_IMAGES)
def test_exporter_from_its_image_exits_on_sigterm_as_pid_1(
    built: dict[str, img.BuiltImage], rootfs: Callable[[str], Path], short_name: str
) -> None:
    """In a pod the entrypoint is PID 1, which the kernel spares every signal it installed
    no handler for: an exporter that ignores SIGTERM there holds its pod's deletion for the
    whole grace period (30 s), then is killed. Here it is PID 1 of a new PID namespace."""
    pid_namespace = ("unshare", "--pid", "--fork", "--kill-child")
    with exporter_from_image(built, rootfs, short_name, pid_namespace) as (running, _):
        unshare = running.pid
        (pid_1,) = Path(f"/proc/{unshare}/task/{unshare}/children").read_text().split()
        os.kill(int(pid_1), signal.SIGTERM)
        # Far below the grace period; PID 1 ignoring SIGTERM never exits by itself.
        deadline = time.monotonic() + 15
        while Path(f"/proc/{pid_1}").exists() and time.monotonic() < deadline:
            time.sleep(0.1)
        assert not Path(f"/proc/{pid_1}").exists(), f"{short_name} ignored SIGTERM as PID 1"


def _get(url: str) -> str:
    with urllib.request.urlopen(url, timeout=30) as response:
        return str(response.read().decode())


def _heartbeat(broker_url: str, hostname: str) -> None:
    """One worker-heartbeat event on ``broker_url``, as a Celery worker ``hostname`` sends."""
    from celery import Celery

    app = Celery(broker=broker_url, set_as_current=False)
    try:
        with app.connection_for_write() as connection:
            dispatcher = app.events.Dispatcher(connection, hostname=f"celery@{hostname}")
            dispatcher.send("worker-heartbeat", freq=2.0, active=0, processed=0)
    finally:
        app.close()


def test_the_celery_exporter_as_the_operator_runs_it_outlives_a_broker_outage(
    built: dict[str, img.BuiltImage], rootfs: Callable[[str], Path]
) -> None:
    """A broker restart or failover closes the exporter's connections. With the arguments
    the operator gives its container, the process stays (a restart would reset every
    counter, and a broker away for longer crash-loops it), keeps the series it had, and
    counts the events sent after it subscribed again."""
    config, root = _config(built, "celery-exporter"), rootfs("celery-exporter")
    spec = JewelryMonitoringSpec.model_validate(
        {
            "app": {"podSelector": {"a": "b"}},
            "exporters": {"celery": {"enabled": True, "brokerUrl": {"name": "b", "key": "url"}}},
        }
    )
    args = EXPORTERS["celery"].args(spec.exporters.celery)
    with redis_service() as redis:
        broker = f"redis://{redis.host}:{redis.port}/0"

        def argv(port: int) -> list[str]:
            return _in_rootfs(root, config, ["--host", LOOPBACK, "--port", str(port), *args])

        env = {**_image_env(config), "CE_BROKER_URL": broker}
        with process("celery-exporter", argv, env=env, ready_path="/health") as exporter:

            def counts(hostname: str) -> str:
                """/metrics once it holds ``hostname``'s gauge; the heartbeat sent again
                (events sent before the exporter subscribed are gone)."""
                deadline = time.monotonic() + 60
                while True:
                    assert exporter.running, (
                        f"the exporter exited (args {args}):\n{exporter.log_tail(60)}"
                    )
                    _heartbeat(broker, hostname)
                    with contextlib.suppress(OSError):  # a 500 right after the outage
                        text = _get(f"http://{LOOPBACK}:{exporter.port}/metrics")
                        if f'celery_worker_up{{hostname="{hostname}"}} 1.0' in text:
                            return text
                    assert time.monotonic() < deadline, f"no heartbeat of {hostname} counted"
                    time.sleep(1)

            counts("before-outage")
            for kind in ("pubsub", "normal"):  # every connection, as a failover closes them
                redis.command("CLIENT", "KILL", "TYPE", kind)
            after = counts("after-outage")
    assert 'celery_worker_up{hostname="before-outage"}' in after, "the exporter lost its series"


def test_operator_image_runs_its_cli(
    built: dict[str, img.BuiltImage], rootfs: Callable[[str], Path]
) -> None:
    config = _config(built, "jewelry-monitoring-operator")
    root = rootfs("jewelry-monitoring-operator")
    env = _image_env(config)
    helped = subprocess.run(
        _in_rootfs(root, config, ["--help"]), env=env, capture_output=True, text=True, timeout=120
    )
    assert helped.returncode == 0, helped.stderr
    assert "crd" in helped.stdout
    crd = subprocess.run(
        _in_rootfs(root, config, ["crd"]), env=env, capture_output=True, text=True, timeout=120
    )
    assert crd.returncode == 0, crd.stderr
    documents = [d for d in yaml.safe_load_all(crd.stdout) if d]
    assert [d["kind"] for d in documents] == ["CustomResourceDefinition"]
    assert documents[0]["spec"]["names"]["kind"] == "JewelryMonitoring"


# Prints the image's installed distributions and, for each console script, whether it loads.
INSTALLED_SCRIPT = """
import importlib.metadata as metadata, json
scripts = {}
for entry in metadata.entry_points(group="console_scripts"):
    try:
        entry.load()
        scripts[entry.name] = "ok"
    except Exception as error:
        scripts[entry.name] = repr(error)
names = sorted(d.metadata["Name"].lower() for d in metadata.distributions())
print(json.dumps({"distributions": names, "scripts": scripts}))
"""


def test_operator_image_holds_only_the_operator_distribution(
    built: dict[str, img.BuiltImage], rootfs: Callable[[str], Path]
) -> None:
    """operator/pyproject.toml's closure: no Django, no Celery, no developer tooling, and
    every console script in it loads (jm-dev once could not: devkit was not there). The
    wheel carries the LICENSE."""
    config = _config(built, "jewelry-monitoring-operator")
    root = rootfs("jewelry-monitoring-operator")
    listed = subprocess.run(
        _in_rootfs(root, {**config, "Entrypoint": []}, ["python", "-c", INSTALLED_SCRIPT]),
        env=_image_env(config),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert listed.returncode == 0, listed.stderr
    found = json.loads(listed.stdout)
    assert "jewelry-monitoring" in found["distributions"]
    unwanted = {"django", "celery", "gunicorn", "psycopg", "jewelry-shop", "jewelry-monitoring-dev"}
    assert not unwanted & set(found["distributions"]), found["distributions"]
    assert found["scripts"].get("jewelry-monitoring") == "ok"
    assert "jm-dev" not in found["scripts"]
    assert set(found["scripts"].values()) == {"ok"}, found["scripts"]
    licences = list(
        (root / "opt" / "venv" / "lib").glob(
            "python3*/site-packages/jewelry_monitoring-*.dist-info/licenses/LICENSE"
        )
    )
    assert len(licences) == 1 and "Apache License" in licences[0].read_text()
    assert config["Labels"]["org.opencontainers.image.licenses"] == "Apache-2.0"


def test_shop_image_gunicorn_loads_the_django_app(
    built: dict[str, img.BuiltImage], rootfs: Callable[[str], Path]
) -> None:
    """gunicorn --check-config loads the WSGI app (django.setup included) and exits."""
    config = _config(built, "jewelry-shop")
    root = rootfs("jewelry-shop")
    env = {**_image_env(config), "SECRET_KEY": "image-test", "DATABASE_URL": POSTGRES_DSN}
    workdir = config["WorkingDir"]
    checked = subprocess.run(
        [
            CHROOT,
            f"--userspec={config['User']}",
            str(root),
            "/opt/venv/bin/python",
            "-c",
            f"import os, sys; os.chdir({workdir!r}); sys.path.insert(0, {workdir!r}); "
            # gunicorn's on_starting hook makes it in a real start; --check-config skips hooks.
            "os.makedirs(os.environ['PROMETHEUS_MULTIPROC_DIR']); "
            "from gunicorn.app.wsgiapp import run; "
            "sys.argv = ['gunicorn', '--check-config', '-c', 'gunicorn.conf.py', "
            "'jewelry_shop.wsgi:application']; run()",
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert checked.returncode == 0, checked.stdout + checked.stderr


def test_shop_image_celery_loads_its_redis_transport(
    built: dict[str, img.BuiltImage], rootfs: Callable[[str], Path]
) -> None:
    """The worker's broker transport imports (kombu's Redis transport needs ``packaging``,
    which kombu does not declare: the worker crashed at start in pods without it)."""
    config = _config(built, "jewelry-shop")
    checked = subprocess.run(
        _in_rootfs(
            rootfs("jewelry-shop"),
            config,
            ["/opt/venv/bin/python", "-c", "import kombu.transport.redis"],
        ),
        env=_image_env(config),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert checked.returncode == 0, checked.stdout + checked.stderr


def test_shop_image_has_the_django_integration_installed_by_pip(
    built: dict[str, img.BuiltImage], rootfs: Callable[[str], Path]
) -> None:
    """The shop uses jewelry-monitoring-django as any user would: an installed distribution
    in the virtualenv, not source copied next to the app."""
    config = _config(built, "jewelry-shop")
    root = rootfs("jewelry-shop")
    probe = (
        "import importlib.metadata as m, jewelry_monitoring_django as j; "
        "print(m.version('jewelry-monitoring-django'), j.__file__)"
    )
    checked = subprocess.run(
        _in_rootfs(root, config, ["/opt/venv/bin/python", "-c", probe]),
        env=_image_env(config),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert checked.returncode == 0, checked.stdout + checked.stderr
    version, location = checked.stdout.split()
    package = tomllib.loads(
        (img.REPO / "app" / "jewelry-monitoring-django" / "pyproject.toml").read_text()
    )
    assert version == package["project"]["version"]
    assert location.startswith("/opt/venv/lib/"), location
    assert not (root / "app" / "jewelry-monitoring-django").exists()


def test_a_second_build_is_a_no_op(built: dict[str, img.BuiltImage]) -> None:
    again = img.build_images(progress=lambda line: None)
    assert {name: image.built for name, image in again.items()} == dict.fromkeys(built, False)
    assert {n: i.archive for n, i in again.items()} == {n: i.archive for n, i in built.items()}


# The monitoring stack's images: what each program reports about itself from its image.
MONITORING_VERSIONS = {
    "prometheus-operator": "prometheus-operator, version 0.85.0",
    "prometheus-config-reloader": "prometheus-config-reloader, version 0.85.0",
    "prometheus": "prometheus, version 3.",
    "alertmanager": "alertmanager, version 0.25.0",
}


@pytest.mark.parametrize("short_name", sorted(MONITORING_VERSIONS))
def test_monitoring_image_runs_its_program_as_nobody(
    built: dict[str, img.BuiltImage], rootfs: Callable[[str], Path], short_name: str
) -> None:
    """Each runs from its own filesystem (its libraries and data copied in, nothing of the
    host's), tagged with the version it reports; prometheus-operator's pod specs start the
    binaries where the upstream images have them."""
    config = _config(built, short_name)
    assert config["User"] == f"{NON_ROOT_UID}:{NON_ROOT_UID}"
    program = img.MONITORING_PROGRAMS[short_name]
    assert config["Entrypoint"] == [program.entrypoint]
    assert set(config["ExposedPorts"]) == {f"{program.port}/tcp"}
    result = subprocess.run(
        _in_rootfs(rootfs(short_name), config, ["--version"]),
        capture_output=True,
        text=True,
        timeout=60,
    )
    said = result.stdout + result.stderr
    assert result.returncode == 0, said
    assert MONITORING_VERSIONS[short_name] in said, said
    version = built[short_name].name.rpartition(":")[2]
    assert f"version {version.removeprefix('v')}" in said, (version, said)
