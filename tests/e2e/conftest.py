"""The e2e backend (devkit.product): one cluster per session, our images loaded on it, and
the product on it (the chart's operator, the dev shop, the example CR), brought up once per
session and shared by the scenario modules. Modules run in file order: test_monitoring
reads the product while it runs; test_product ends with its lifecycle (the CR deleted, the
chart uninstalled)."""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, Literal

import pytest
from kubernetes import client
from kubernetes.client.rest import ApiException

from devkit.crs import GROUP, PLURAL, VERSION
from devkit.dockerd import DockerEngine, why_no_engine
from devkit.images import build_images
from devkit.kindcluster import KindCluster, new_kind_cluster
from devkit.kindnode import node_image
from devkit.kubetools import api_client, apply_crds
from devkit.product import (
    RELEASE,
    SHOP,
    UNDEPLOYED_IMAGES,
    Backend,
    apply_example_cr,
    backend_name,
    delete_namespace,
    deploy_shop,
    install_operator,
    uninstall_operator,
)
from devkit.product import example_cr as product_example_cr
from devkit.prometheus_stack import NAMESPACE, delete_stack, deploy_stack
from devkit.toolchain import prometheus_operator_crds

# tests/conftest.py's ``figures`` fixture: (section, what, value), printed after the run.
Figures = Callable[[str, str, str], None]


class Stopwatch:
    """Records how long each named step of the scenarios took (printed after the run), and
    when named events happened (for a step that ends in another fixture or test than the one
    it began in)."""

    def __init__(self, figures: Figures) -> None:
        self.figures = figures
        self.marks: dict[str, float] = {}

    def step(self, name: str, started: float) -> None:
        seconds = time.monotonic() - started
        self.figures(f"e2e times ({backend_name()} backend)", name, f"{seconds:7.1f} s")

    def mark(self, event: str) -> float:
        self.marks[event] = time.monotonic()
        return self.marks[event]


@pytest.fixture(scope="session")
def stopwatch(figures: Figures) -> Stopwatch:
    return Stopwatch(figures)


@pytest.fixture(scope="session")
def e2e_backend(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Backend]:
    """The cluster of ``JM_E2E_BACKEND``: the session's local node (shared with the node
    tests), a kind cluster of its own, or the cluster of ``JM_E2E_KUBECONFIG``."""
    name = backend_name()
    if name == "node":
        node = request.getfixturevalue("node")
        yield Backend(name, node.plane.kubeconfig, node.plane.audit_log, load=node.load_image)
    elif name == "kind":
        cluster = request.getfixturevalue("kind_cluster")
        yield Backend(name, cluster.kubeconfig, cluster.audit_log, load=cluster.load_image_archive)
    else:
        kubeconfig = os.environ.get("JM_E2E_KUBECONFIG")
        if not kubeconfig:
            pytest.fail("JM_E2E_BACKEND=kubeconfig needs JM_E2E_KUBECONFIG (a kubeconfig file)")
        yield Backend(name, Path(kubeconfig))


def _kind_scope(fixture_name: str, config: pytest.Config) -> Literal["session", "module"]:
    """The kind backend's cluster lives for the session; test_kind's own one (on the node
    backend) for its module only: the local node cannot start while a kind cluster runs."""
    return "session" if backend_name() == "kind" else "module"


@pytest.fixture(scope=_kind_scope)
def docker_engine(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DockerEngine]:
    """Our dockerd (devkit.dockerd); skipped with the reason where none can run."""
    reason = why_no_engine()
    if reason:
        pytest.skip(f"kind needs a Docker engine: {reason}")
    engine = DockerEngine(tmp_path_factory.mktemp("dockerd")).start()
    try:
        yield engine
    finally:
        engine.stop()


@pytest.fixture(scope=_kind_scope)
def kind_cluster(
    docker_engine: DockerEngine, tmp_path_factory: pytest.TempPathFactory, stopwatch: Stopwatch
) -> Iterator[KindCluster]:
    """A kind cluster from the node image made here (devkit.kindnode, devkit.kindcluster)."""
    started = time.monotonic()
    image = node_image(docker_engine, progress=lambda line: print(line, flush=True))
    stopwatch.step("kind node image built or loaded", started)
    started = time.monotonic()
    with new_kind_cluster(docker_engine, tmp_path_factory.mktemp("kind"), image) as cluster:
        stopwatch.step("kind create cluster (one node Ready)", started)
        yield cluster


@pytest.fixture(scope="session")
def e2e_images(e2e_backend: Backend, stopwatch: Stopwatch) -> dict[str, str]:
    """Every image we deploy, built (or found up to date) and on the backend's nodes:
    short name -> ``localhost/jm/<name>:<version>``."""
    started = time.monotonic()
    built = build_images(progress=lambda line: print(line, flush=True))
    built = {name: image for name, image in built.items() if name not in UNDEPLOYED_IMAGES}
    stopwatch.step("images built or found up to date", started)
    started = time.monotonic()
    e2e_backend.load_images([image.archive for image in built.values()])
    stopwatch.step(f"{len(built)} images loaded onto the nodes", started)
    return {short_name: image.name for short_name, image in built.items()}


@pytest.fixture(scope="session")
def e2e_api(e2e_backend: Backend) -> client.ApiClient:
    """Cluster-admin client of the backend, with prometheus-operator's CRDs installed (the
    operator writes ServiceMonitors and PrometheusRules)."""
    api = api_client(e2e_backend.kubeconfig)
    apply_crds(api, prometheus_operator_crds(), timeout=120)
    return api


# -- the product, shared by the scenario modules (one bring-up per session) ----------------

REPLICAS = 2  # leader election: one replica writes, one stands by
LEASE = f"{RELEASE}-leader"
LIVENESS_PORT = 8080
# The chart's liveness probe: initialDelaySeconds + periodSeconds * failureThreshold (3).
LIVENESS_FAILURE_WINDOW = 10 + 20 * 3
# HighErrorRate holds `for: 5m` before it fires. test_monitoring switches the 5xx endpoint on
# and waits for the alert in Alertmanager: the CR's own override (alerts.overrides) shortens
# that hold to 30 s; its expression and threshold stay the catalogue's.
ALERT_OVERRIDES = {"HighErrorRate": {"for": "30s"}}
CR_APPLIED = "example CR applied"
RELEASE_LABEL = {"release": "kube-prometheus-stack"}  # the example CR's monitorLabels


@pytest.fixture(scope="session")
def operator_pods(
    e2e_backend: Backend,
    e2e_api: client.ApiClient,
    e2e_images: dict[str, str],
    stopwatch: Stopwatch,
) -> Iterator[list[client.V1Pod]]:
    """``helm install`` of the chart with our operator image; its pods once Running and
    Ready. Uninstalled at the end unless a test did it."""
    started = time.monotonic()
    try:
        pods = install_operator(e2e_backend.kubeconfig, e2e_api, e2e_images, REPLICAS)
        stopwatch.step(f"helm install -> {REPLICAS} operator pods Running and Ready", started)
        yield pods
    finally:
        uninstall_operator(e2e_backend.kubeconfig, e2e_api)


@pytest.fixture(scope="session")
def shop(
    e2e_api: client.ApiClient, e2e_images: dict[str, str], stopwatch: Stopwatch
) -> Iterator[str]:
    """manifests/dev with our images, every Deployment Available; its namespace."""
    started = time.monotonic()
    try:
        deploy_shop(e2e_api, e2e_images)
        stopwatch.step("manifests/dev applied -> every shop Deployment Available", started)
        yield SHOP
    finally:
        delete_namespace(client.CoreV1Api(e2e_api), SHOP)


@pytest.fixture(scope="session")
def example_cr(
    e2e_api: client.ApiClient,
    e2e_images: dict[str, str],
    operator_pods: list[client.V1Pod],
    shop: str,
    stopwatch: Stopwatch,
) -> Iterator[dict[str, Any]]:
    """The example CR with our exporter images and ALERT_OVERRIDES, once ExportersAvailable
    is True; deleted at the end."""
    example = product_example_cr(e2e_images, ALERT_OVERRIDES)
    started = stopwatch.mark(CR_APPLIED)
    try:
        cr = apply_example_cr(e2e_api, example)
        stopwatch.step("example CR applied -> ExportersAvailable True", started)
        yield cr
    finally:
        try:
            client.CustomObjectsApi(e2e_api).delete_namespaced_custom_object(
                GROUP, VERSION, shop, PLURAL, example["metadata"]["name"]
            )
        except ApiException as error:
            if error.status != 404:
                raise


@pytest.fixture(scope="session")
def monitoring_stack(
    e2e_api: client.ApiClient, e2e_images: dict[str, str], stopwatch: Stopwatch
) -> Iterator[str]:
    """prometheus-operator, Prometheus and Alertmanager Running and Ready (devkit
    .prometheus_stack); removed at the end. test_monitoring asks for it before the example
    CR, so that the time from the CR applied to its targets up is the product's, not the
    stack's start-up."""
    started = time.monotonic()
    try:
        deploy_stack(e2e_api, e2e_images, RELEASE_LABEL)
        stopwatch.step("monitoring stack applied -> its 3 pods Ready", started)
        yield NAMESPACE
    finally:
        delete_stack(e2e_api)
