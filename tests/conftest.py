"""Fixtures shared by every test that needs the local Kubernetes control plane; how
pytest-xdist (tests/check runs the suite on several workers) groups the tests; the figures
tests measured, printed after the run."""

from __future__ import annotations

import os
import sys
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import settings
from hypothesis.configuration import set_hypothesis_home_dir
from kubernetes import client

from devkit import ports
from devkit.cluster import KUBE_RELEASES, ControlPlane
from devkit.kubetools import api_client, apply_crds, service_account_kubeconfig
from devkit.manifests import chart_crd_files
from devkit.node import Node, probe_image_archive, why_no_node
from devkit.operator_process import OperatorProcess, install_rbac, start_operator
from devkit.port_thief import PortThief
from devkit.toolchain import prometheus_operator_crds

# Property tests: the same examples on every run (CI stays reproducible and bounded, no
# example database); HYPOTHESIS_PROFILE=explore draws new random examples each run.
settings.register_profile("jm", derandomize=True, deadline=None, database=None)
settings.register_profile("explore", deadline=None, database=None)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "jm"))
# Its caches (constants of the code under test) go to the virtualenv, not to .hypothesis/ in
# the repository; set before any test module is collected, which is when it first writes.
set_hypothesis_home_dir(Path(sys.prefix) / "hypothesis")

OPERATOR_NAMESPACE = "jm-system"
RELEASE = "jm"

# -- pytest-xdist ----------------------------------------------------------------------------
# One kubelet node runs per host (devkit.node): every test that starts it, or uses the
# session's, runs on one worker, in file order (the demo's stop test before the session's
# node starts; test_monitoring before test_product ends the product's lifecycle). Any other
# module's tests run on one worker (its module fixtures are made once); session fixtures (a
# control plane, the operator, services) once per worker that needs them. The Docker
# engine's tests (tests/docker, devkit.dockerd) join that worker, first: an engine's bridges,
# rules and mounts on the host would show in the node tests' before/after comparisons.
HOST_NODE_GROUP = "host-node"
HOST_NODE_DIRECTORIES = ("tests/docker/", "tests/e2e/", "tests/node/")


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """The node's tests first: the longest group (HOST_NODE_GROUP) starts at once."""
    items.sort(key=lambda item: not item.nodeid.startswith(HOST_NODE_DIRECTORIES))


@pytest.hookimpl(optionalhook=True)
def pytest_xdist_make_scheduler(config: pytest.Config, log: Any) -> Any:
    """pytest-xdist's scope scheduling, a scope per module except the node's one scope.
    (Its ``xdist_group`` marks do not reach the scheduler under pytest 9: the id it sends
    is not the one it renamed.) Scopes go out in collection order (``--no-loadscope-reorder``
    in tests/check)."""
    from xdist.scheduler import LoadScopeScheduling

    class HostNodeScheduling(LoadScopeScheduling):
        def _split_scope(self, nodeid: str) -> str:
            if nodeid.startswith(HOST_NODE_DIRECTORIES):
                return HOST_NODE_GROUP
            return nodeid.split("::", 1)[0]

    return HostNodeScheduling(config, log)


# -- figures ---------------------------------------------------------------------------------
# Section -> what the tests measured (the node's pod start-up, the e2e's step times), printed
# after the run. A worker of pytest-xdist hands its figures to the controller, which prints.
FIGURES: dict[str, dict[str, str]] = {}

Figures = Callable[[str, str, str], None]


@pytest.fixture(scope="session")
def figures() -> Figures:
    """``figures(section, what, value)``: one line of ``section`` after the run (the last
    value of ``what`` counts)."""

    def record(section: str, what: str, value: str) -> None:
        FIGURES.setdefault(section, {})[what] = value

    return record


def pytest_sessionfinish(session: pytest.Session) -> None:
    worker_output = getattr(session.config, "workeroutput", None)
    if worker_output is not None:
        worker_output["figures"] = FIGURES


@pytest.hookimpl(optionalhook=True)
def pytest_testnodedown(node: Any, error: object) -> None:
    """pytest-xdist: a worker ended; keep its figures for the summary."""
    for section, lines in getattr(node, "workeroutput", {}).get("figures", {}).items():
        FIGURES.setdefault(section, {}).update(lines)


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    for section, lines in FIGURES.items():
        terminalreporter.section(section)
        for what, value in lines.items():
            terminalreporter.write_line(f"{value}  {what}")


@pytest.fixture
def port_thief(monkeypatch: pytest.MonkeyPatch) -> Iterator[PortThief]:
    """``port_thief.steal(n)``: the next n ports the devkit chooses are taken right after."""
    thief = PortThief()
    monkeypatch.setattr(ports, "_bindable", thief.watching(ports._bindable))
    try:
        yield thief
    finally:
        thief.release()


# -- the control plane, at each Kubernetes release the chart claims -------------------------
# The cluster tests of these directories run against every release of KUBE_RELEASES (the
# newest and the oldest minor of Chart.yaml's kubeVersion); the others against the newest.
EVERY_RELEASE_DIRECTORIES = ("tests/operator/", "tests/controlplane/")


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    uses_plane = {"control_plane", "own_plane"} & set(metafunc.fixturenames)
    if uses_plane and metafunc.definition.nodeid.startswith(EVERY_RELEASE_DIRECTORIES):
        metafunc.parametrize("kube_release", KUBE_RELEASES, indirect=True, scope="session")


@pytest.fixture(scope="session")
def kube_release(request: pytest.FixtureRequest) -> str:
    """The Kubernetes release (KUBE_RELEASES) of the test's control plane."""
    return str(getattr(request, "param", "newest"))


@pytest.fixture(scope="session")
def control_plane(
    kube_release: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[ControlPlane]:
    """One real etcd + kube-apiserver + kube-controller-manager for the whole session (one
    per release the session's tests run against)."""
    directory = tmp_path_factory.mktemp(f"control-plane-{kube_release}")
    plane = ControlPlane.create(directory, release=kube_release).start()
    try:
        yield plane
    finally:
        plane.stop()


@pytest.fixture
def own_plane(kube_release: str, tmp_path: Path) -> Iterator[tuple[ControlPlane, client.ApiClient]]:
    """A control plane of the test's own, with a cluster-admin client: for tests that
    disturb it (faults, leader elections, missing CRDs)."""
    plane = ControlPlane.create(tmp_path, release=kube_release).start()
    try:
        yield plane, api_client(plane.kubeconfig)
    finally:
        plane.stop()


@pytest.fixture(scope="session")
def admin_api(control_plane: ControlPlane) -> client.ApiClient:
    """Cluster-admin client, for arranging fixtures and asserting on results."""
    return api_client(control_plane.kubeconfig)


@pytest.fixture(scope="session")
def prometheus_operator_crd_names(admin_api: client.ApiClient) -> list[str]:
    """prometheus-operator's real CRDs (from its pinned Go module), installed once."""
    return apply_crds(admin_api, prometheus_operator_crds())


@pytest.fixture(scope="session")
def jewelry_crd(admin_api: client.ApiClient) -> list[str]:
    """Our CRD exactly as the chart ships it."""
    return apply_crds(admin_api, chart_crd_files())


@pytest.fixture(scope="session")
def operator(
    control_plane: ControlPlane,
    admin_api: client.ApiClient,
    jewelry_crd: list[str],
    prometheus_operator_crd_names: list[str],
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[OperatorProcess]:
    """The operator, cluster-wide, authenticated as the chart's ServiceAccount."""
    kubeconfig = install_rbac(control_plane, admin_api, RELEASE, OPERATOR_NAMESPACE)
    user = f"system:serviceaccount:{OPERATOR_NAMESPACE}:{RELEASE}-jewelry-monitoring"
    log = tmp_path_factory.mktemp("operator") / "operator.log"
    handle = start_operator(kubeconfig, log, user)
    yield handle
    handle.stop()


def _fresh_namespace(api: client.ApiClient) -> Iterator[str]:
    name = f"t-{uuid.uuid4().hex[:10]}"
    core = client.CoreV1Api(api)
    core.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name=name)))
    try:
        yield name
    finally:
        core.delete_namespace(name)


@pytest.fixture
def namespace(admin_api: client.ApiClient) -> Iterator[str]:
    """A fresh namespace per test, deleted afterwards."""
    yield from _fresh_namespace(admin_api)


@pytest.fixture
def other_namespace(admin_api: client.ApiClient) -> Iterator[str]:
    """A second fresh namespace, for a test that compares two."""
    yield from _fresh_namespace(admin_api)


@pytest.fixture(scope="session")
def node(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Node]:
    """A Ready node (devkit.node) with the probe image loaded, on a control plane of its own.

    Its own plane, so the other tests' pods stay Pending as they expect. One node runs per
    host: a host that cannot run it fails these tests with the reason.
    """
    reason = why_no_node()
    if reason:
        pytest.fail(f"this test needs a node on this host: {reason}")
    plane = ControlPlane.create(tmp_path_factory.mktemp("node-plane")).start()
    try:
        started = Node.for_plane(plane).start()
        try:
            started.load_image(probe_image_archive(tmp_path_factory.mktemp("images")))
            yield started
        finally:
            started.stop()
    finally:
        plane.stop()


@pytest.fixture(scope="session")
def node_api(node: Node) -> client.ApiClient:
    """Cluster-admin client of the node's control plane."""
    return api_client(node.plane.kubeconfig)


@pytest.fixture
def node_namespace(node_api: client.ApiClient) -> Iterator[str]:
    """A fresh namespace on the node's control plane, deleted afterwards."""
    yield from _fresh_namespace(node_api)


ServiceAccountKubeconfig = Callable[[str, str], Path]


@pytest.fixture
def service_account_kubeconfig_factory(
    control_plane: ControlPlane, admin_api: client.ApiClient, tmp_path: Path
) -> ServiceAccountKubeconfig:
    """Create ServiceAccount ``namespace/name`` and return a kubeconfig that acts as it."""

    def make(namespace: str, name: str) -> Path:
        core = client.CoreV1Api(admin_api)
        account = client.V1ServiceAccount(metadata=client.V1ObjectMeta(name=name))
        core.create_namespaced_service_account(namespace, account)
        return service_account_kubeconfig(
            admin_api,
            control_plane.server,
            control_plane.ca_cert,
            namespace,
            name,
            tmp_path / f"{namespace}-{name}.kubeconfig",
        )

    return make
