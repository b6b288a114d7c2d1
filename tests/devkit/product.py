"""The product in pods, on a cluster backend: what the e2e scenarios deploy and where.

A backend is a cluster that runs pods plus a way to get our images onto its nodes:

* ``node`` (the default): the local node (devkit.node) on its own control plane; images
  are docker-archive tarballs (devkit.images) imported into its containerd.
* ``kind``: a kind cluster (needs a Docker engine); the same tarballs through
  ``kind load image-archive``.
* ``kubeconfig``: an existing cluster, ``JM_E2E_KUBECONFIG``; nothing is loaded, so its
  nodes must already have the ``localhost/jm/...`` images (pull policy is Never).

Choose with ``JM_E2E_BACKEND``. The scenarios themselves only use the backend's kubeconfig,
plus its audit log where it has one (the local control plane).

The steps that bring the product up, shared by the e2e fixtures and the demo (devkit.demo):

    install_operator(kubeconfig, api, images, replicas) -> its Ready pods   # helm install
    deploy_shop(api, images)                       # manifests/dev, every Deployment Available
    apply_example_cr(api, images, overrides) -> CR # once ExportersAvailable is True
    wait_targets_up(prometheus, cr, api) -> targets  # every target of the CR up
    port_forward(api, namespace, selector, port)   # 127.0.0.1 -> a Ready pod
    load_generator(url, requests, duration) -> stats  # the app's own, bounded
"""

from __future__ import annotations

import contextlib
import copy
import json
import os
import socket
import subprocess
import threading
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from kubernetes import client
from kubernetes.client.rest import ApiException
from kubernetes.stream import portforward
from websocket import WebSocketException

from devkit.crs import GROUP, PLURAL, VERSION, wait_condition
from devkit.exporter_report import exporter_report, exporters_in
from devkit.kubetools import load_yaml_documents, wait_for, wait_gone
from devkit.manifests import CHART, EXAMPLE_CR, MANIFESTS, REPO
from devkit.operator_process import apply_objects
from devkit.prometheus import PrometheusAPI
from devkit.shopapp import APP_DIR, PYTHON
from devkit.toolchain import binary

BACKENDS = ("node", "kind", "kubeconfig")
# The dev stack's files in the order they apply (the namespace and Secrets first).
DEV_MANIFESTS = ("namespace.yaml", "postgres.yaml", "redis.yaml", "app.yaml")
NGINX_TEMPLATE = REPO / "app" / "deploy" / "nginx.conf.template"
RELEASE = OPERATOR_NAMESPACE = "jewelry-monitoring"
INSTANCE = f"app.kubernetes.io/instance={RELEASE}"
SHOP = "jewelry-shop"
# The repositories manifests/dev names (upstream images, for kind) -> our images.
DEV_IMAGES = ("jewelry-shop", "postgres", "redis", "nginx")
SHOP_DEPLOYMENTS = ["postgres", "redis", "jewelry-shop", "jewelry-shop-worker", "nginx"]
# Images the product in pods does not run: the chart's node exporter stays off (with the
# host's network it would listen beyond loopback).
UNDEPLOYED_IMAGES = ("node-exporter",)
# The shop's front door: nginx's pods and port (what a browser opens).
SHOP_FRONT = ("app.kubernetes.io/name=nginx", 8080)
# Start-ups include migrations and demo data, on a shared and busy machine.
POD_TIMEOUT = 600
# Our image of each exporter of the CR (devkit.images short names).
EXPORTER_IMAGES = {
    "postgres": "postgres-exporter",
    "redis": "redis-exporter",
    "nginx": "nginx-prometheus-exporter",
    "celery": "celery-exporter",
}


def backend_name() -> str:
    name = os.environ.get("JM_E2E_BACKEND", "node")
    if name not in BACKENDS:
        raise ValueError(f"JM_E2E_BACKEND={name!r}: choose one of {', '.join(BACKENDS)}")
    return name


@dataclass(frozen=True)
class Backend:
    """Where the scenarios run: a kubeconfig, how an image tarball gets onto the nodes
    (None: the nodes must have it already), and the API server's audit log if we have it."""

    name: str
    kubeconfig: Path
    audit_log: Path | None = None
    load: Callable[[Path], None] | None = None

    def load_images(self, archives: list[Path]) -> None:
        load = self.load
        if load is None:
            return
        for archive in archives:
            load(archive)


def retag_images(objects: list[dict[str, Any]], images: Mapping[str, str]) -> list[dict[str, Any]]:
    """``objects`` with every container image whose repository is a key of ``images``
    replaced by its value, pulled never (the image is on the node). The files stay as
    users apply them (upstream images on kind); only what the e2e applies changes."""
    rewritten = copy.deepcopy(objects)
    for obj in rewritten:
        template = obj.get("spec", {}).get("template", {}).get("spec")
        if not template:
            continue
        for container in template.get("initContainers", []) + template["containers"]:
            repository = container["image"].rsplit(":", 1)[0]
            if repository in images:
                container["image"] = images[repository]
                container["imagePullPolicy"] = "Never"
    return rewritten


def dev_shop_objects() -> list[dict[str, Any]]:
    """manifests/dev plus the nginx template ConfigMap the Tiltfile makes, as Tilt deploys."""
    objects: list[dict[str, Any]] = []
    for name in DEV_MANIFESTS:
        objects += load_yaml_documents((MANIFESTS / "dev" / name).read_text())
    objects.append(
        {
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": {"name": "nginx-templates", "namespace": "jewelry-shop"},
            "data": {"default.conf.template": NGINX_TEMPLATE.read_text()},
        }
    )
    return objects


LOOPBACK = "127.0.0.1"


def _ready_pod(core: client.CoreV1Api, namespace: str, selector: str) -> str:
    for pod in core.list_namespaced_pod(namespace, label_selector=selector).items:
        conditions = pod.status.conditions or []
        if any(c.type == "Ready" and c.status == "True" for c in conditions):
            return str(pod.metadata.name)
    raise LookupError(f"no Ready pod matches {selector} in {namespace}")


def _pipe(source: Any, sink: Any) -> None:
    """Copy until ``source`` ends, then end ``sink``'s writing side."""
    with contextlib.suppress(OSError):
        while data := source.recv(65536):
            sink.sendall(data)
    with contextlib.suppress(OSError):
        sink.shutdown(socket.SHUT_WR)


@contextlib.contextmanager
def port_forward(api: client.ApiClient, namespace: str, selector: str, port: int) -> Iterator[str]:
    """``kubectl port-forward`` to a Ready pod of ``selector``: yields ``http://127.0.0.1:N``.

    Each connection to the local port goes through the API server's pod port-forward (so it
    works on every backend, whatever reaches pod IPs), to the Ready pod of the moment, so
    a replaced pod is followed. Listens on loopback only; stops on exit.
    """
    core = client.CoreV1Api(api)
    listener = socket.create_server((LOOPBACK, 0))
    connections: list[socket.socket] = []

    def forward(local: socket.socket) -> None:
        with local:
            try:
                pod = _ready_pod(core, namespace, selector)
                tunnel = portforward(
                    core.connect_get_namespaced_pod_portforward, pod, namespace, ports=str(port)
                )
            except (LookupError, ApiException, OSError, WebSocketException):
                return  # the local client sees its connection closed
            remote = tunnel.socket(port)
            remote.setblocking(True)
            try:
                back = threading.Thread(target=_pipe, args=(remote, local), daemon=True)
                back.start()
                _pipe(local, remote)
                back.join(timeout=600)
            finally:
                remote.close()

    def accept() -> None:
        with contextlib.suppress(OSError):  # the listener closed: stop
            while True:
                local, _ = listener.accept()
                connections.append(local)
                threading.Thread(target=forward, args=(local,), daemon=True).start()

    acceptor = threading.Thread(target=accept, daemon=True)
    acceptor.start()
    try:
        yield f"http://{LOOPBACK}:{listener.getsockname()[1]}"
    finally:
        listener.close()
        for connection in connections:
            with contextlib.suppress(OSError):
                connection.shutdown(socket.SHUT_RDWR)
        acceptor.join(timeout=10)


def delete_namespace(core: client.CoreV1Api, name: str, timeout: float = 600) -> None:
    """Delete and wait until it is gone (its pods stopped), so the node stops clean."""
    try:
        core.delete_namespace(name)
    except ApiException as error:
        if error.status != 404:
            raise
    wait_gone(lambda: core.read_namespace(name), f"namespace {name}", timeout, interval=2)


class ProductError(RuntimeError):
    """A step of the bring-up failed; the message says which and why."""


def helm(kubeconfig: Path, *args: str) -> str:
    command = [str(binary("helm")), *args, "--kubeconfig", str(kubeconfig)]
    result = subprocess.run(command, capture_output=True, text=True, timeout=600)
    if result.returncode:
        raise ProductError(f"{' '.join(command)}:\n{result.stdout}{result.stderr}")
    return result.stdout


def helm_set(values: Mapping[str, str]) -> list[str]:
    """``--set key=value`` for each value (helm's --set syntax: ``{a,b}`` is a list)."""
    return [argument for key, value in values.items() for argument in ("--set", f"{key}={value}")]


def is_ready(pod: client.V1Pod) -> bool:
    return any(c.type == "Ready" and c.status == "True" for c in pod.status.conditions or [])


def pods_of(core: client.CoreV1Api, namespace: str, selector: str) -> list[client.V1Pod]:
    return list(core.list_namespaced_pod(namespace, label_selector=selector).items)


def all_available(apps: client.AppsV1Api, namespace: str, names: list[str]) -> bool:
    """Each Deployment has all its replicas updated and available."""
    for name in names:
        deployment = apps.read_namespaced_deployment(name, namespace)
        wanted, status = deployment.spec.replicas, deployment.status
        if (status.available_replicas or 0) != wanted or (status.updated_replicas or 0) != wanted:
            return False
    return True


def selector_of(deployment: client.V1Deployment) -> str:
    labels = deployment.spec.selector.match_labels
    return ",".join(f"{key}={value}" for key, value in sorted(labels.items()))


def install_operator(
    kubeconfig: Path,
    api: client.ApiClient,
    images: Mapping[str, str],
    replicas: int,
    values: Mapping[str, str] | None = None,
) -> list[client.V1Pod]:
    """``helm install`` of the chart with our operator image (exporter images from our
    registry allowed) and ``values`` (``--set``); its pods once all Running and Ready."""
    repository, tag = images["jewelry-monitoring-operator"].rsplit(":", 1)
    registry = repository.rsplit("/", 1)[0]
    helm(
        kubeconfig,
        "install",
        RELEASE,
        str(CHART),
        "--namespace",
        OPERATOR_NAMESPACE,
        "--create-namespace",
        *helm_set(
            {
                "image.repository": repository,
                "image.tag": tag,
                "image.pullPolicy": "Never",
                "replicas": str(replicas),
                "exporterImageAllowlist": f"{{{registry}/}}",
                **(values or {}),
            }
        ),
    )
    core = client.CoreV1Api(api)

    def running_and_ready() -> list[client.V1Pod] | None:
        pods = pods_of(core, OPERATOR_NAMESPACE, INSTANCE)
        ready = [p for p in pods if p.status.phase == "Running" and is_ready(p)]
        return ready if len(ready) == len(pods) == replicas else None

    return wait_for(running_and_ready, timeout=POD_TIMEOUT, interval=2, what="operator Ready")


def uninstall_operator(kubeconfig: Path, api: client.ApiClient) -> None:
    """``helm uninstall`` if the release is there, then its namespace gone."""
    if RELEASE in helm(kubeconfig, "list", "-q", "-n", OPERATOR_NAMESPACE).split():
        helm(kubeconfig, "uninstall", RELEASE, "-n", OPERATOR_NAMESPACE, "--wait")
    delete_namespace(client.CoreV1Api(api), OPERATOR_NAMESPACE)


def deploy_shop(api: client.ApiClient, images: Mapping[str, str]) -> None:
    """manifests/dev with our images, until every Deployment is Available."""
    apply_objects(api, retag_images(dev_shop_objects(), {n: images[n] for n in DEV_IMAGES}))
    apps = client.AppsV1Api(api)
    wait_for(
        lambda: all_available(apps, SHOP, SHOP_DEPLOYMENTS),
        timeout=POD_TIMEOUT,
        interval=2,
        what=f"the shop's Deployments {SHOP_DEPLOYMENTS} Available",
    )


def example_cr(
    images: Mapping[str, str], alert_overrides: Mapping[str, Any] | None = None
) -> dict[str, Any]:
    """manifests/example-jewelrymonitoring.yaml with our exporter images (the Secrets it
    needs come with manifests/dev), plus ``alerts.overrides``."""
    example: dict[str, Any] = load_yaml_documents(EXAMPLE_CR.read_text())[0]
    for exporter, short_name in EXPORTER_IMAGES.items():
        example["spec"]["exporters"][exporter]["image"] = images[short_name]
    if alert_overrides:
        alerts = example["spec"].setdefault("alerts", {})
        alerts.setdefault("overrides", {}).update(alert_overrides)
    return example


def apply_example_cr(api: client.ApiClient, example: dict[str, Any]) -> dict[str, Any]:
    """Create ``example``; the resource once its exporters are available."""
    meta = example["metadata"]
    client.CustomObjectsApi(api).create_namespaced_custom_object(
        GROUP, VERSION, meta["namespace"], PLURAL, example
    )
    return wait_condition(
        api, meta["namespace"], meta["name"], "ExportersAvailable", "True", timeout=POD_TIMEOUT
    )


def scrape_pools(cr: dict[str, Any]) -> set[str]:
    """prometheus-operator's scrape pool (job_name) of each ServiceMonitor the CR made."""
    namespace = cr["metadata"]["namespace"]
    monitors = [c["name"] for c in cr["status"]["children"] if c["kind"] == "ServiceMonitor"]
    return {f"serviceMonitor/{namespace}/{name}/0" for name in monitors}


def wait_targets_up(
    prometheus: PrometheusAPI,
    cr: dict[str, Any],
    api: client.ApiClient,
    timeout: float = POD_TIMEOUT,
) -> list[dict[str, Any]]:
    """The targets of every ServiceMonitor of ``cr``, once all of them are up. On timeout,
    the error reports on the exporters of the pools not up (devkit.exporter_report)."""
    pools = scrape_pools(cr)

    def all_up() -> list[dict[str, Any]] | None:
        targets = [t for t in prometheus.targets() if t["scrapePool"] in pools]
        seen = {t["scrapePool"] for t in targets}
        return targets if seen == pools and all(t["health"] == "up" for t in targets) else None

    try:
        return wait_for(all_up, timeout=timeout, interval=2, what=f"targets of {sorted(pools)} up")
    except TimeoutError as error:
        up = {t["scrapePool"] for t in prometheus.targets() if t["health"] == "up"}
        report = exporter_report(api, prometheus, cr, exporters_in(cr, pools - up))
        raise TimeoutError(f"{error}\n{report}") from error


def load_generator(url: str, requests: int, duration: float) -> dict[str, Any]:
    """One bounded run of the app's load generator (every view, every method) against
    ``url``, which must be loopback (it refuses anything else); its JSON stats."""
    command = [PYTHON, "-m", "jewelry_shop.loadgen", url, "--requests", str(requests)]
    result = subprocess.run(
        [*command, "--duration", str(duration)],
        cwd=APP_DIR,
        capture_output=True,
        text=True,
        timeout=duration + 60,
    )
    if result.returncode or not result.stdout:
        raise ProductError(f"{' '.join(command)} exited {result.returncode}: {result.stderr}")
    stats: dict[str, Any] = json.loads(result.stdout)
    return stats
