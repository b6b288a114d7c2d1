"""The first hour on a kube-prometheus-stack cluster, as a new user walks it (issue 18's "Done
when"), recorded as a transcript: every command as typed and its real output.

The cluster has kube-prometheus-stack installed as release ``kps``: here prometheus-operator
v0.85 in pods (the session's monitoring stack, devkit.prometheus_stack) and a Prometheus
resource named and selecting as kps's does (``kps-kube-prometheus-prometheus``, ``release:
kps``). The user then

1. builds both images (the operator's, and their own app's) and pushes them to their
   registry (a real one on loopback, devkit.registry, the only one the node may pull from);
2. ``helm install``s the chart with ``release: kps`` set once (``defaults.monitorLabels``)
   and ``prometheus.ref`` naming that Prometheus;
3. instruments a fresh Django 5 project under gunicorn with 4 workers with the package
   (devkit.new_project: settings, urls, the gunicorn hooks, the README's Kubernetes snippet)
   and deploys it;
4. applies a JewelryMonitoring that sets nothing the chart defaults (just the pod selector);
5. reads ``kubectl get jm`` and runs ``jewelry-monitoring doctor`` from outside (through a
   port-forward to Prometheus) and from inside the operator's pod.

It asserts what that user checks: ``manage.py check`` finds nothing, the app's logs hold no
error or warning a user would report (``DEFECTS``), READY turns True only once the targets
are up (a watch sees every status written), every target is up, and doctor finds no
problem. It needs the node backend (the registry is on the host's loopback) and runs last in
tests/e2e, after test_product uninstalled the session's release: the user's own install
takes its place.
The transcript goes to ``$JM_FIRST_HOUR_TRANSCRIPT`` (else the test's temp dir), named in
the run's figures.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import secrets
import shutil
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from kubernetes import client, watch
from kubernetes.client.rest import ApiException

from devkit.crs import GROUP, PLURAL, VERSION, condition
from devkit.images import HOST_CA_BUNDLE, Builder, build_images
from devkit.kubetools import wait_for, wait_gone
from devkit.manifests import REPO
from devkit.new_project import NAMESPACE as APP_NAMESPACE
from devkit.new_project import (
    PROJECT,
    SECRET,
    SECRET_KEY,
    STARTPROJECT,
    WORKERS,
    app_objects,
    instrument,
)
from devkit.product import (
    OPERATOR_NAMESPACE,
    POD_TIMEOUT,
    RELEASE,
    delete_namespace,
    helm,
    is_ready,
    pods_of,
)
from devkit.prometheus_operator import MONITORING
from devkit.prometheus_stack import NAMESPACE as MONITORING_NAMESPACE
from devkit.prometheus_stack import PROMETHEUS_PORT, apply_stack, prometheus
from devkit.registry import Registry, registry_server
from devkit.services import free_port
from devkit.toolchain import binary
from devkit.transcript import Transcript

from .conftest import Stopwatch

pytestmark = [pytest.mark.cluster, pytest.mark.timeout(2400)]

KPS = {"release": "kps"}
KPS_PROMETHEUS = "kps-kube-prometheus-prometheus"
KPS_PODS = f"operator.prometheus.io/name={KPS_PROMETHEUS}"
OPERATOR_IMAGE = "jewelry-monitoring-operator"
DOCTOR = Path(sys.executable).parent / "jewelry-monitoring"
APP_TAG = "1.0.0"
# The resource the user applies: the pod selector, nothing the chart defaults.
RESOURCE = {
    "apiVersion": f"{GROUP}/{VERSION}",
    "kind": "JewelryMonitoring",
    "metadata": {"name": PROJECT, "namespace": APP_NAMESPACE},
    "spec": {"app": {"podSelector": {"app": PROJECT}}},
}
# In the app's pod logs, what a user would report as a bug: gunicorn >= 25.1's control server
# under a read-only root (without the README's control_socket_disable), and Django 5.2's
# warning about a query while apps initialize (django-prometheus's own AppConfig).
DEFECTS = (
    "Control server error",
    "RuntimeWarning: Accessing the database during app initialization",
)
# From the resource applied to Ready: the first scrape, then the operator's next check (the
# chart's default check interval is 1m), on a loaded machine.
READY_TIMEOUT = 600.0


@contextlib.contextmanager
def _image_storage() -> Iterator[Builder]:
    """devkit.images' builder, its lock held: buildah's storage is shared with every build."""
    builder = Builder(progress=print)
    with open(builder.workdir / ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        yield builder


def _kps_prometheus(images: dict[str, str]) -> dict[str, Any]:
    """The Prometheus kube-prometheus-stack makes as release kps: its name, ``release: kps``."""
    resource = prometheus(images, KPS)
    resource["metadata"]["name"] = KPS_PROMETHEUS
    return resource


class ReadinessHistory:
    """Every version of one resource from before its creation on (a watch from the
    namespace's resourceVersion then): (Ready, its reason, TargetsHealthy) of each."""

    def __init__(self, api: client.ApiClient, namespace: str, name: str) -> None:
        custom = client.CustomObjectsApi(api)
        since = custom.list_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL)
        self.seen: list[tuple[str, str, str]] = []
        self._watch = watch.Watch()
        self._stream = self._watch.stream(
            custom.list_namespaced_custom_object,
            GROUP,
            VERSION,
            namespace,
            PLURAL,
            field_selector=f"metadata.name={name}",
            resource_version=since["metadata"]["resourceVersion"],
            timeout_seconds=int(READY_TIMEOUT) + 120,
        )
        self._thread = threading.Thread(target=self._follow, daemon=True)
        self._thread.start()

    def _follow(self) -> None:
        with contextlib.suppress(Exception):  # the stream ends with stop() or its timeout
            for event in self._stream:
                cr = event["object"]
                ready = condition(cr, "Ready")
                if ready:
                    targets = condition(cr, "TargetsHealthy").get("status", "")
                    self.seen.append((ready["status"], ready["reason"], targets))

    def stop(self) -> None:
        self._watch.stop()
        self._thread.join(timeout=30)


def _get_cr(api: client.ApiClient) -> dict[str, Any]:
    cr: dict[str, Any] = client.CustomObjectsApi(api).get_namespaced_custom_object(
        GROUP, VERSION, APP_NAMESPACE, PLURAL, PROJECT
    )
    return cr


def _clean_up(api: client.ApiClient, kubeconfig: Path) -> None:
    """What the hour made: the app's namespace (its resource with it), the release, the kps
    Prometheus (its pods stopped)."""
    core = client.CoreV1Api(api)
    delete_namespace(core, APP_NAMESPACE)
    if RELEASE in helm(kubeconfig, "list", "-q", "-n", OPERATOR_NAMESPACE).split():
        helm(kubeconfig, "uninstall", RELEASE, "-n", OPERATOR_NAMESPACE, "--wait")
    delete_namespace(core, OPERATOR_NAMESPACE)
    with contextlib.suppress(ApiException):
        client.CustomObjectsApi(api).delete_namespaced_custom_object(
            *MONITORING, MONITORING_NAMESPACE, "prometheuses", KPS_PROMETHEUS
        )
    wait_for(
        lambda: not pods_of(core, MONITORING_NAMESPACE, KPS_PODS),
        timeout=POD_TIMEOUT,
        interval=2,
        what=f"the pods of {KPS_PROMETHEUS} gone",
    )


def _no_crd_but_the_users(api: client.ApiClient) -> None:
    """A user's first install finds no JewelryMonitoring CRD. Earlier tests of the session
    apply ours with kubectl (no Helm ownership), and helm refuses to take over an object it
    does not own ('invalid ownership metadata'); so a CRD no release owns goes first (with
    whatever resources of earlier tests it still served: the walk-through runs last)."""
    extensions = client.ApiextensionsV1Api(api)
    name = f"{PLURAL}.{GROUP}"
    try:
        crd = extensions.read_custom_resource_definition(name)
    except ApiException as error:
        if error.status == 404:
            return
        raise
    if (crd.metadata.labels or {}).get("app.kubernetes.io/managed-by") == "Helm":
        return
    extensions.delete_custom_resource_definition(name)
    wait_gone(
        lambda: extensions.read_custom_resource_definition(name),
        f"CRD {name}",
        POD_TIMEOUT,
        interval=1,
    )


def test_the_first_hour_on_a_kube_prometheus_stack_cluster(
    request: pytest.FixtureRequest,
    e2e_api: client.ApiClient,
    e2e_images: dict[str, str],
    monitoring_stack: str,
    stopwatch: Stopwatch,
    figures: Any,
    tmp_path_factory: pytest.TempPathFactory,
) -> None:
    backend = request.getfixturevalue("e2e_backend")
    if backend.name != "node":
        pytest.skip("the first hour pushes to a registry on the host's loopback: node backend")
    node = request.getfixturevalue("node")
    api, kubeconfig = e2e_api, backend.kubeconfig
    work = tmp_path_factory.mktemp("first-hour")
    path = Path(os.environ.get("JM_FIRST_HOUR_TRANSCRIPT") or work / "first-hour.txt")
    figures("first hour on a kps cluster", "transcript", str(path))
    kubectl, helm_binary = binary("kubectl"), binary("helm")
    hour = Transcript(path, {"KUBECONFIG": str(kubeconfig), "BUILDAH_ISOLATION": "chroot"})
    core = client.CoreV1Api(api)
    # The session's release (test_product uninstalls it at its end): the user installs theirs.
    if RELEASE in helm(kubeconfig, "list", "-q", "-n", OPERATOR_NAMESPACE).split():
        helm(kubeconfig, "uninstall", RELEASE, "-n", OPERATOR_NAMESPACE, "--wait")
    _no_crd_but_the_users(api)
    started = time.monotonic()
    with contextlib.ExitStack() as stack:
        registry: Registry = stack.enter_context(registry_server())
        node.allow_registry(registry.host)
        stack.callback(node.forget_registry, registry.host)
        stack.callback(_clean_up, api, kubeconfig)

        # -- kube-prometheus-stack as release kps ------------------------------------------
        apply_stack(api, [_kps_prometheus(e2e_images)])
        wait_for(
            lambda: [p for p in pods_of(core, MONITORING_NAMESPACE, KPS_PODS) if is_ready(p)],
            timeout=POD_TIMEOUT,
            interval=2,
            what=f"a Ready pod of {KPS_PROMETHEUS}",
        )
        hour.note(
            "The cluster runs kube-prometheus-stack as release kps. Which label does its "
            "Prometheus select?\n(kube-prometheus-stack-prometheus beside it belongs to the "
            "e2e suite's other scenarios.)"
        )
        hour.run(
            [
                kubectl,
                "get",
                "prometheus",
                "-A",
                "-o",
                "custom-columns=NAMESPACE:.metadata.namespace,NAME:.metadata.name,"
                "SELECTS:.spec.serviceMonitorSelector.matchLabels",
            ]
        )

        # -- 1. both images, built and pushed to the user's registry -----------------------
        hour.note(f"1. Build both images and push them to my registry ({registry.host}).")
        operator_image = build_images(progress=print)[OPERATOR_IMAGE]
        operator_tag = operator_image.name.rsplit(":", 1)[1]
        hour.note(
            f"operator/Dockerfile was built with buildah by the e2e session (devkit.images: "
            f"{operator_image.name}, {operator_image.archive.stat().st_size / 1e6:.0f} MB); "
            "pushed from its archive:"
        )
        operator_reference = registry.reference(OPERATOR_IMAGE, operator_tag)
        hour.run(
            [
                "skopeo",
                "copy",
                "--dest-tls-verify=false",
                f"docker-archive:{operator_image.archive}",
                f"docker://{operator_reference}",
            ],
            f"skopeo copy --dest-tls-verify=false docker-archive:{operator_image.archive.name} "
            f"docker://{operator_reference}",
        )
        context = work / "app"
        context.mkdir()
        hour.run(STARTPROJECT, cwd=context)
        pristine = context / f"{PROJECT}.orig"
        shutil.copytree(context / PROJECT, pristine)
        instrument(context)
        hour.note(
            "Instrument it as the READMEs say (settings, urls, gunicorn.conf.py with 4 workers "
            "and the hooks), and write its Dockerfile:"
        )
        hour.run(["diff", "-ruN", pristine.name, PROJECT], cwd=context, check=False)
        shutil.rmtree(pristine)  # not part of the image's context
        hour.run(["cat", "Dockerfile"], cwd=context)
        app_reference = registry.reference(PROJECT, APP_TAG)
        with _image_storage() as builder:
            base = builder.recipes["python-base"].name
            build = [
                "bud",
                "--pull=never",
                "--network=host",
                "--layers=false",
                "-v",
                f"{HOST_CA_BUNDLE}:{HOST_CA_BUNDLE}:ro",
                f"--build-arg=BASE_IMAGE={base}",
                "-t",
                app_reference,
                ".",
            ]
            hour.run(builder.buildah.command(*build), f"buildah {' '.join(build)}", cwd=context)
            push = ["push", "--tls-verify=false", app_reference, f"docker://{app_reference}"]
            try:
                hour.run(builder.buildah.command(*push), f"buildah {' '.join(push)}")
            finally:
                builder.buildah.run("rmi", app_reference)
        assert registry.tags(OPERATOR_IMAGE) == [operator_tag]
        assert registry.tags(PROJECT) == [APP_TAG]
        stopwatch.step("first hour: both images built and pushed", started)

        # -- 2. helm install, release: kps set once ----------------------------------------
        hour.note("2. Install the chart: kps' release label and its Prometheus, set once.")
        repository = operator_reference.rsplit(":", 1)[0]
        hour.run(
            [
                helm_binary,
                "install",
                RELEASE,
                "charts/jewelry-monitoring",
                "-n",
                OPERATOR_NAMESPACE,
                "--create-namespace",
                "--set",
                f"image.repository={repository}",
                "--set",
                f"image.tag={operator_tag}",
                "--set",
                "defaults.monitorLabels.release=kps",
                "--set",
                f"prometheus.ref={MONITORING_NAMESPACE}/{KPS_PROMETHEUS}",
            ],
            cwd=REPO,
        )
        deployment = f"deployment/{RELEASE}"
        hour.run(
            [kubectl, "-n", OPERATOR_NAMESPACE, "rollout", "status", deployment, "--timeout=10m"]
        )
        step = time.monotonic()

        # -- 3. the app, 4 gunicorn workers ------------------------------------------------
        hour.note(
            f"3. Deploy {PROJECT}: one pod, {WORKERS} gunicorn workers, the package README's "
            "Kubernetes snippet (PROMETHEUS_MULTIPROC_DIR on an emptyDir, read-only root)."
        )
        manifest = work / f"{PROJECT}.yaml"
        manifest.write_text(yaml.safe_dump_all(app_objects(app_reference), sort_keys=False))
        hour.run([kubectl, "create", "namespace", APP_NAMESPACE])
        hour.run(
            [
                kubectl,
                "-n",
                APP_NAMESPACE,
                "create",
                "secret",
                "generic",
                SECRET,
                f"--from-literal={SECRET_KEY}={secrets.token_urlsafe(48)}",
            ],
            f"kubectl -n {APP_NAMESPACE} create secret generic {SECRET} "
            f"--from-literal={SECRET_KEY}=$(openssl rand -base64 48)",
        )
        hour.run([kubectl, "apply", "-f", manifest.name], cwd=work)
        hour.run(
            [
                kubectl,
                "-n",
                APP_NAMESPACE,
                "rollout",
                "status",
                f"deployment/{PROJECT}",
                "--timeout=10m",
            ]
        )
        checked = hour.run(
            [
                kubectl,
                "-n",
                APP_NAMESPACE,
                "exec",
                f"deploy/{PROJECT}",
                "--",
                "python",
                "manage.py",
                "check",
            ]
        )
        # What the user would take for a defect: any finding of the check, gunicorn's control
        # server failing under the read-only root, a query while Django initializes its apps.
        assert checked.stdout == "System check identified no issues (0 silenced).\n", (
            checked.stdout + checked.stderr
        )
        assert not checked.stderr, checked.stderr
        logs = hour.run([kubectl, "-n", APP_NAMESPACE, "logs", f"deploy/{PROJECT}"])
        assert logs.stdout.count("Booting worker with pid") == WORKERS, logs.stdout
        for defect in DEFECTS:
            assert defect not in logs.stdout + logs.stderr, logs.stdout + logs.stderr
        stopwatch.step("first hour: operator and app running", step)

        # -- 4. the resource, nothing the chart defaults -----------------------------------
        hour.note("4. Monitor it: the pod selector, nothing the chart already sets.")
        resource = work / f"{PROJECT}-monitoring.yaml"
        resource.write_text(yaml.safe_dump(RESOURCE, sort_keys=False))
        hour.run(["cat", resource.name], cwd=work)
        history = ReadinessHistory(api, APP_NAMESPACE, PROJECT)
        step = time.monotonic()
        try:
            hour.run([kubectl, "apply", "-f", resource.name], cwd=work)
            wait_for(lambda: history.seen, timeout=120, interval=0.5, what="a first status")
            hour.run([kubectl, "-n", APP_NAMESPACE, "get", "jm"])
            wait_for(
                lambda: any(seen[0] == "True" for seen in history.seen),
                timeout=READY_TIMEOUT,
                interval=2,
                what=f"{PROJECT} Ready",
            )
        finally:
            history.stop()
        stopwatch.step("first hour: resource applied -> Ready", step)
        hour.note(f"A few minutes later ({time.monotonic() - step:.0f} s after the apply):")
        hour.run([kubectl, "-n", APP_NAMESPACE, "get", "jm"])
        hour.run([kubectl, "get", "jm", "-A", "-o", "wide"])
        # Ready only once something is scraped: it waited, and never said True before.
        first, last = history.seen[0], history.seen[-1]
        assert first[:2] == ("False", "WaitingForFirstScrape"), history.seen
        assert last == ("True", "Monitored", "True"), history.seen
        assert all(seen[2] == "True" for seen in history.seen if seen[0] == "True")
        status = _get_cr(api)["status"]
        assert status["targets"]["up"] == status["targets"]["endpoints"] == 1, status
        assert condition(_get_cr(api), "SelectedByPrometheus")["status"] == "True"

        # -- 5. doctor, from outside and from inside the operator's pod --------------------
        hour.note(
            "5. doctor from my machine: Prometheus' in-cluster address does not resolve here, "
            "so through a port-forward."
        )
        local = free_port()
        forward = hour.background(
            [
                kubectl,
                "-n",
                MONITORING_NAMESPACE,
                "port-forward",
                f"pod/prometheus-{KPS_PROMETHEUS}-0",
                f"{local}:{PROMETHEUS_PORT}",
            ],
            f"kubectl -n {MONITORING_NAMESPACE} port-forward "
            f"pod/prometheus-{KPS_PROMETHEUS}-0 {local}:{PROMETHEUS_PORT}",
            until="Forwarding from",
        )
        try:
            outside = hour.run(
                [
                    DOCTOR,
                    "doctor",
                    PROJECT,
                    "-n",
                    APP_NAMESPACE,
                    "--prometheus-url",
                    f"http://127.0.0.1:{local}",
                ],
                check=False,
            )
        finally:
            forward.terminate()
            forward.wait(timeout=30)
        hour.note("doctor from inside the operator's pod (its service account, in-cluster):")
        inside = hour.run(
            [
                kubectl,
                "-n",
                OPERATOR_NAMESPACE,
                "exec",
                deployment,
                "--",
                "jewelry-monitoring",
                "doctor",
                PROJECT,
                "-n",
                APP_NAMESPACE,
            ],
            check=False,
        )
        stopwatch.step("first hour: all of it", started)
        print(f"\n{hour.text}")
        for result in (outside, inside):
            assert result.returncode == 0 and result.stdout.endswith("all good\n"), (
                result.stdout + result.stderr
            )
