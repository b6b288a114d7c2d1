"""A new user's Django project, made from scratch in a temp dir, whose virtualenv installs
only app/jewelry-monitoring-django (with Django, django-prometheus and prometheus-client at
the shop's pins, from a wheelhouse in the tool cache that PyPI fills on the first run), gets
a protected, correct /metrics and a `manage.py check` that names each setup mistake with its
fix.

The steps are the ones the package README gives a user:

1. ``pip install app/jewelry-monitoring-django``
2. ``INSTALLED_APPS += ["jewelry_monitoring_django.apps.DjangoPrometheusConfig",
   "jewelry_monitoring_django"]``
3. ``PrometheusBeforeMiddleware`` first, ``jewelry_monitoring_django...PrometheusAfterMiddleware``
   last; django-prometheus's DB engine, jewelry_monitoring_django's cache backend (counting
   writes as well as reads)
4. ``path("", include("jewelry_monitoring_django.urls"))``
5. optional: ``PROMETHEUS_METRICS_ALLOWED_IPS``, ``PROMETHEUS_METRICS_BEARER_TOKEN_FILE``
6. the probes' views marked ``jewelry_monitoring_django.middleware.uncounted``
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import re
import subprocess
import sys
import time
import tomllib
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from devkit import prometheus as prom
from devkit.port_thief import PortThief
from devkit.services import LOOPBACK
from devkit.toolchain import cache_dir

REPO = Path(__file__).resolve().parents[2]
PACKAGE = REPO / "app" / "jewelry-monitoring-django"
# The shop's pins of the package's dependencies: the versions the shop image runs.
PINNED = ("django", "django-prometheus", "prometheus-client")
TOKEN = "new-user-token"

SETTINGS = """\
from pathlib import Path

BASE_DIR = Path(__file__).resolve().parent.parent
SECRET_KEY = "a-new-users-test-key-that-is-long-enough-for-django-to-accept-it-0123456789"
DEBUG = False
ALLOWED_HOSTS = ["127.0.0.1", "localhost"]
INSTALLED_APPS = [
    "django.contrib.contenttypes",
    "django.contrib.auth",
    "jewelry_monitoring_django.apps.DjangoPrometheusConfig",
    "jewelry_monitoring_django",
]
MIDDLEWARE = [
    "django_prometheus.middleware.PrometheusBeforeMiddleware",
    "django.middleware.security.SecurityMiddleware",
    "django.middleware.common.CommonMiddleware",
    "jewelry_monitoring_django.middleware.PrometheusAfterMiddleware",
]
ROOT_URLCONF = "mysite.urls"
DATABASES = {
    "default": {
        "ENGINE": "django_prometheus.db.backends.sqlite3",
        "NAME": BASE_DIR / "db.sqlite3",
    }
}
CACHES = {"default": {"BACKEND": "jewelry_monitoring_django.cache.LocMemCache"}}
USE_TZ = True
PROMETHEUS_EXPORT_MIGRATIONS = True
PROMETHEUS_METRICS_BEARER_TOKEN_FILE = str(BASE_DIR / "metrics-token")
"""

URLS = """\
from django.core.cache import cache
from django.http import HttpResponse
from django.urls import include, path
from jewelry_monitoring_django.middleware import uncounted


def hello(request):
    return HttpResponse("hello")


@uncounted  # the kubelet's probes are not app traffic
def healthz(request):
    return HttpResponse("ok")


def remember(request):
    cache.set("greeting", "hello")
    cache.set_many({"a": 1, "b": 2})
    cache.delete("greeting")
    return HttpResponse(cache.get("a"))


urlpatterns = [
    path("hello/", hello, name="hello"),
    path("remember/", remember, name="remember"),
    path("healthz", healthz, name="healthz"),
    path("", include("jewelry_monitoring_django.urls")),
]
"""

# Everything the checks look for, wrong at once (a settings module a user might write).
MISCONFIGURED = """\
from mysite.settings import *  # noqa: F403

INSTALLED_APPS = ["django.contrib.contenttypes", "jewelry_monitoring_django"]
MIDDLEWARE = [
    "django.middleware.common.CommonMiddleware",
    "django_prometheus.middleware.PrometheusBeforeMiddleware",
]
DATABASES = {"default": {"ENGINE": "django.db.backends.sqlite3", "NAME": ":memory:"}}
CACHES = {
    "default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"},
    "reads": {"BACKEND": "django_prometheus.cache.backends.locmem.LocMemCache"},
}
PROMETHEUS_METRICS_ALLOWED_IPS = "10.0.0.0/8"
PROMETHEUS_METRICS_TRUSTED_PROXIES = ["10.0.0.300"]
PROMETHEUS_METRICS_BASIC_AUTH_USERNAME = "prometheus"
ROOT_URLCONF = "mysite.unprotected_urls"
"""

UNPROTECTED_URLS = """\
from django.urls import include, path

urlpatterns = [path("", include("django_prometheus.urls"))]
"""

CLUSTER_ONLY = """\
from mysite.settings import *  # noqa: F403

PROMETHEUS_METRICS_ALLOWED_IPS = ["10.0.0.0/8", "fd00::/8"]
"""


def _run(*args: str | Path, cwd: Path, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(a) for a in args], cwd=cwd, env=env, capture_output=True, text=True, timeout=600
    )


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Path, dict[str, str]]]:
    root = tmp_path_factory.mktemp("new-user")
    env = {k: v for k, v in os.environ.items() if k.startswith(("PIP_", "LANG", "LC_"))}
    env.update(PATH=os.environ["PATH"], HOME=os.environ.get("HOME", str(root)))
    env["DJANGO_SETTINGS_MODULE"] = "mysite.settings"
    base_python = getattr(sys, "_base_executable", sys.executable)
    started = time.monotonic()
    # No pip of its own (ensurepip is slow): this venv's pip installs into it with --python.
    subprocess.run(
        [base_python, "-m", "venv", "--without-pip", str(root / "venv")], check=True, timeout=300
    )
    # Built from a copy: pip's in-tree build would leave build/ and *.egg-info in the repo.
    package = root / "jewelry-monitoring-django"
    subprocess.run(["cp", "-r", str(PACKAGE), str(package)], check=True)
    shop = tomllib.loads((REPO / "app" / "pyproject.toml").read_text())
    requirements = shop["project"]["dependencies"]
    constraints = root / "constraints.txt"
    constraints.write_text(
        "".join(f"{line}\n" for line in requirements if line.lower().split("==")[0] in PINNED)
    )
    assert len(constraints.read_text().splitlines()) == len(PINNED)
    # Offline from a wheelhouse in the tool cache; PyPI fills it on the first run.
    wheelhouse = cache_dir() / "wheels" / "django-integration"
    offline = ["--no-index", "--find-links", str(wheelhouse)]
    install = [*_pip(site_of(root)), "install", "-q", "--no-compile", "-c", constraints, package]
    installed = _run(*install, *offline, cwd=root, env=env)
    if installed.returncode != 0:
        build_requirement = "setuptools>=77"  # the package's [build-system]
        fetched = _run(
            sys.executable,
            "-m",
            "pip",
            "download",
            "-q",
            "-d",
            wheelhouse,
            "-c",
            constraints,
            *PINNED,
            build_requirement,
            cwd=root,
            env=env,
        )
        assert fetched.returncode == 0, fetched.stderr[-3000:]
        installed = _run(*install, *offline, cwd=root, env=env)
    assert installed.returncode == 0, installed.stderr[-3000:]
    print(f"venv + pip install: {time.monotonic() - started:.1f} s")
    site = site_of(root)
    (site / "mysite").mkdir(parents=True)
    (site / "mysite" / "__init__.py").write_text("")
    (site / "mysite" / "settings.py").write_text(SETTINGS)
    (site / "mysite" / "urls.py").write_text(URLS)
    (site / "mysite" / "misconfigured.py").write_text(MISCONFIGURED)
    (site / "mysite" / "unprotected_urls.py").write_text(UNPROTECTED_URLS)
    (site / "mysite" / "cluster_only.py").write_text(CLUSTER_ONLY)
    (site / "metrics-token").write_text(TOKEN + "\n")
    (site / "manage.py").write_text(
        "import sys\nfrom django.core.management import execute_from_command_line\n"
        "execute_from_command_line(sys.argv)\n"
    )
    migrated = _run(_python(site), "manage.py", "migrate", "--noinput", cwd=site, env=env)
    assert migrated.returncode == 0, migrated.stderr[-3000:]
    yield site, env


def site_of(root: Path) -> Path:
    return root / "mysite"


def _python(site: Path) -> Path:
    return site.parent / "venv" / "bin" / "python"


def _pip(site: Path) -> list[str | Path]:
    """The test runner's pip, acting on the new project's virtualenv."""
    return [sys.executable, "-m", "pip", "--python", _python(site)]


def test_only_the_package_and_its_dependencies_are_installed(project) -> None:  # type: ignore[no-untyped-def]
    site, env = project
    listed = _run(*_pip(site), "list", "--format", "json", cwd=site, env=env)
    names = {d["name"].lower().replace("_", "-") for d in json.loads(listed.stdout)}
    assert names - {"pip", "setuptools"} == {
        "jewelry-monitoring-django",
        "django",
        "django-prometheus",
        "prometheus-client",
        "asgiref",
        "sqlparse",
    }


def test_manage_check_is_clean_when_set_up_as_documented(project) -> None:  # type: ignore[no-untyped-def]
    site, env = project
    # No database query while the apps initialize (PROMETHEUS_EXPORT_MIGRATIONS is on).
    res = _run(
        _python(site), "-W", "error::RuntimeWarning", "manage.py", "check", cwd=site, env=env
    )
    assert res.returncode == 0, res.stderr
    assert "System check identified no issues" in res.stdout


def test_manage_check_names_each_mistake_with_its_fix(project) -> None:  # type: ignore[no-untyped-def]
    site, env = project
    misconfigured = {**env, "DJANGO_SETTINGS_MODULE": "mysite.misconfigured"}
    res = _run(_python(site), "manage.py", "check", cwd=site, env=misconfigured)
    assert res.returncode == 1, res.stdout + res.stderr
    out = res.stderr
    found = sorted(set(re.findall(r"jewelry_monitoring_django\.([EW]\d{3})", out)))
    assert found == [
        "E001",
        "E002",
        "E003",
        "E007",
        "E008",
        "E010",
        "W004",
        "W005",
        "W009",
        "W011",
    ], out
    for fix in (
        'Add "jewelry_monitoring_django.apps.DjangoPrometheusConfig" to INSTALLED_APPS',
        'Make "django_prometheus.middleware.PrometheusBeforeMiddleware" the first entry',
        'Make "jewelry_monitoring_django.middleware.PrometheusAfterMiddleware"',
        'Set its ENGINE to "django_prometheus.db.backends.sqlite3"',
        'Set its BACKEND to "jewelry_monitoring_django.cache.LocMemCache"',
        "Write PROMETHEUS_METRICS_ALLOWED_IPS as a list of CIDRs",
        "Set PROMETHEUS_METRICS_BASIC_AUTH_PASSWORD or PROMETHEUS_METRICS_BASIC_AUTH_PASSWORD_FILE",
        'Replace include("django_prometheus.urls")',
        'Add path("", include("jewelry_monitoring_django.urls"))',
    ):
        assert fix in out, (fix, out)
    assert out.count(".E007") == 2  # the string allow-list and the bad proxy CIDR
    # Both caches get the same fix: the plain one (W005) and django-prometheus's (W011).
    assert out.count('Set its BACKEND to "jewelry_monitoring_django.cache.LocMemCache"') == 2


def _get(url: str, headers: dict[str, str] | None = None) -> tuple[int, str]:
    req = urllib.request.Request(url, headers=headers or {})
    try:
        with urllib.request.urlopen(req, timeout=10) as resp:
            return resp.status, resp.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()


@contextlib.contextmanager
def runserver(site: Path, env: dict[str, str]) -> Iterator[str]:
    """``manage.py runserver`` on a free loopback port (a fresh one when another process took
    it first: devkit.ports), ready when the user's view answers; yields its URL."""
    with prom.process(
        "runserver",
        lambda port: [
            str(_python(site)),
            str(site / "manage.py"),
            "runserver",
            "--noreload",
            f"{LOOPBACK}:{port}",
        ],
        ready_path="/hello/",
        env=env,
        startup_timeout=60,
    ) as server:
        yield f"http://{LOOPBACK}:{server.port}"


def test_metrics_protected_and_correct(project) -> None:  # type: ignore[no-untyped-def]
    site, env = project
    auth = {"Authorization": f"Bearer {TOKEN}"}
    with runserver(site, env) as url:
        for _ in range(3):
            assert _get(url + "/hello/")[0] == 200
            assert _get(url + "/healthz")[0] == 200
        status, body = _get(url + "/metrics")
        assert status == 401 and "django_" not in body
        assert _get(url + "/metrics", {"Authorization": "Bearer wrong"})[0] == 401
        status, body = _get(url + "/metrics", auth)
        assert status == 200
        assert 'django_http_requests_total_by_view_transport_method_total{method="GET",' in body
        # The cache dashboard's series, written and deleted by a view of the user's.
        assert _get(url + "/remember/")[0] == 200
        status, body = _get(url + "/metrics", auth)
        assert status == 200
        locmem = '{backend="locmem"}'
        for sample in ("set_total", "delete_total", "get_total"):
            assert f"django_cache_{sample}{locmem}" in body, sample
        assert f"django_cache_set_total{locmem} 3.0" in body
        assert f"django_cache_delete_total{locmem} 1.0" in body
        hello = [
            line
            for line in body.splitlines()
            if line.startswith("django_http_responses_total_by_status_view_method_total{")
            and 'view="hello"' in line
        ]
        assert hello and float(hello[0].rsplit(" ", 1)[1]) >= 3, hello
        assert 'view="healthz"' not in body  # marked uncounted, as the README says
        # computed at scrape time, one series (django-prometheus's start-time copy dropped)
        migrations = [line for line in body.splitlines() if line.startswith("django_migrations_")]
        assert 'django_migrations_unapplied_total{connection="default"} 0.0' in migrations
        assert len(migrations) == 2, migrations
        # Through a proxy (an Ingress) even with the token: refused.
        proxied = {**auth, "X-Forwarded-For": "198.51.100.7"}
        status, body = _get(url + "/metrics", proxied)
        assert status == 403 and "django_" not in body
    with runserver(site, {**env, "DJANGO_SETTINGS_MODULE": "mysite.cluster_only"}) as url:
        status, body = _get(url + "/metrics", auth)  # loopback is not in this allow-list
        assert status == 403 and "django_" not in body


def test_runserver_starts_again_on_a_fresh_port(  # type: ignore[no-untyped-def]
    project, port_thief: PortThief, caplog: pytest.LogCaptureFixture
) -> None:
    """Another process binds the port chosen for runserver first (issue 17 item 15)."""
    site, env = project
    caplog.set_level(logging.WARNING, logger="devkit.ports")
    port_thief.steal(1)
    with runserver(site, env) as url:
        assert urllib.parse.urlsplit(url).port not in port_thief.stolen
        assert _get(url + "/hello/") == (200, "hello")
    assert any(record.name == "devkit.ports" for record in caplog.records), caplog.text
