"""The product in pods (issue 8 part 2) on the e2e backend (devkit.product; the local node
unless ``JM_E2E_BACKEND`` says otherwise): the chart's operator, the dev shop, the example
CR's exporters, and their lifecycle. The scenarios build on each other in file order; each
fixture also stands alone. Every image is ours (devkit.images), on the nodes, never pulled.
"""

from __future__ import annotations

import contextlib
import json
import subprocess
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import pytest
import yaml
from kubernetes import client
from kubernetes.client.rest import ApiException

from devkit.crs import GROUP, PLURAL, VERSION, wait_condition
from devkit.kubetools import wait_for
from devkit.manifests import CHART, EXAMPLE_CR
from devkit.operator_process import apply_objects
from devkit.product import EXPORTER_IMAGES, Backend, dev_shop_objects, retag_images
from devkit.toolchain import binary

from .conftest import Stopwatch

pytestmark = [pytest.mark.cluster, pytest.mark.timeout(1800)]

RELEASE = OPERATOR_NAMESPACE = "jewelry-monitoring"
INSTANCE = f"app.kubernetes.io/instance={RELEASE}"
REPLICAS = 2  # leader election: one replica writes, one stands by
LEASE = f"{RELEASE}-leader"
LIVENESS_PORT = 8080
# The chart's liveness probe: initialDelaySeconds + periodSeconds * failureThreshold (3).
LIVENESS_FAILURE_WINDOW = 10 + 20 * 3
# Who made a request with a pod's bound service account token (audit event user.extra).
POD_NAME_KEY = "authentication.kubernetes.io/pod-name"
SHOP = "jewelry-shop"
# The repositories manifests/dev names (upstream images, for kind) -> our images.
DEV_IMAGES = ("jewelry-shop", "postgres", "redis", "nginx")
SHOP_DEPLOYMENTS = ["postgres", "redis", "jewelry-shop", "jewelry-shop-worker", "nginx"]
# Start-ups include migrations and demo data, on a shared and busy machine.
POD_TIMEOUT = 600


def _helm(backend: Backend, *args: str) -> str:
    command = [str(binary("helm")), *args, "--kubeconfig", str(backend.kubeconfig)]
    result = subprocess.run(command, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, f"{' '.join(command)}:\n{result.stdout}{result.stderr}"
    return result.stdout


def _ready(pod: client.V1Pod) -> bool:
    return any(c.type == "Ready" and c.status == "True" for c in pod.status.conditions or [])


def _pods(core: client.CoreV1Api, namespace: str, selector: str) -> list[client.V1Pod]:
    return list(core.list_namespaced_pod(namespace, label_selector=selector).items)


def _all_available(apps: client.AppsV1Api, namespace: str, names: list[str]) -> bool:
    """Each Deployment has all its replicas updated and available."""
    for name in names:
        deployment = apps.read_namespaced_deployment(name, namespace)
        wanted, status = deployment.spec.replicas, deployment.status
        if (status.available_replicas or 0) != wanted or (status.updated_replicas or 0) != wanted:
            return False
    return True


def _selector(deployment: client.V1Deployment) -> str:
    labels = deployment.spec.selector.match_labels
    return ",".join(f"{key}={value}" for key, value in sorted(labels.items()))


def _delete_namespace(core: client.CoreV1Api, name: str) -> None:
    """Delete and wait until it is gone (its pods stopped), so the node stops clean."""
    try:
        core.delete_namespace(name)
    except ApiException as error:
        if error.status != 404:
            raise

    def gone() -> bool:
        try:
            core.read_namespace(name)
        except ApiException as error:
            return error.status == 404
        return False

    wait_for(gone, timeout=POD_TIMEOUT, interval=2, what=f"namespace {name} deleted")


# -- the operator ------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def operator_pods(
    e2e_backend: Backend,
    e2e_api: client.ApiClient,
    e2e_images: dict[str, str],
    stopwatch: Stopwatch,
) -> Iterator[list[client.V1Pod]]:
    """``helm install`` of the chart with our operator image; its pods once Running and
    Ready. Uninstalled at the end unless a test did it."""
    repository, tag = e2e_images["jewelry-monitoring-operator"].rsplit(":", 1)
    registry = repository.rsplit("/", 1)[0]
    core = client.CoreV1Api(e2e_api)
    started = time.monotonic()
    _helm(
        e2e_backend,
        "install",
        RELEASE,
        str(CHART),
        "--namespace",
        OPERATOR_NAMESPACE,
        "--create-namespace",
        "--set",
        f"image.repository={repository}",
        "--set",
        f"image.tag={tag}",
        "--set",
        "image.pullPolicy=Never",
        "--set",
        f"replicas={REPLICAS}",
        "--set",
        f"exporterImageAllowlist={{{registry}/}}",
    )
    try:

        def running_and_ready() -> list[client.V1Pod] | None:
            pods = _pods(core, OPERATOR_NAMESPACE, INSTANCE)
            ready = [p for p in pods if p.status.phase == "Running" and _ready(p)]
            return ready if len(ready) == len(pods) == REPLICAS else None

        pods = wait_for(running_and_ready, timeout=POD_TIMEOUT, interval=2, what="operator Ready")
        stopwatch.step(f"helm install -> {REPLICAS} operator pods Running and Ready", started)
        yield pods
    finally:
        if RELEASE in _helm(e2e_backend, "list", "-q", "-n", OPERATOR_NAMESPACE).split():
            _helm(e2e_backend, "uninstall", RELEASE, "-n", OPERATOR_NAMESPACE, "--wait")
        _delete_namespace(core, OPERATOR_NAMESPACE)


def test_operator_pods_are_live_and_one_leads(
    e2e_api: client.ApiClient, operator_pods: list[client.V1Pod]
) -> None:
    core = client.CoreV1Api(e2e_api)
    for pod in operator_pods:
        # The liveness endpoint the kubelet probes, through the API server's pod proxy. The
        # chart has no readiness probe, so a Ready pod may not listen yet: wait for it.
        def healthz(name: str = pod.metadata.name) -> bool:
            try:
                core.connect_get_namespaced_pod_proxy_with_path(
                    f"{name}:{LIVENESS_PORT}", OPERATOR_NAMESPACE, "healthz"
                )
            except ApiException as error:
                if error.status != 503:  # 503: nothing listens yet
                    raise
                return False
            return True

        wait_for(healthz, timeout=120, interval=1, what=f"{pod.metadata.name} /healthz")
    # Leader election: the release's Lease is held by one of the two pods, and renewed.
    coordination = client.CoordinationV1Api(e2e_api)
    pod_names = {pod.metadata.name for pod in operator_pods}

    def held() -> client.V1Lease | None:
        try:
            lease = coordination.read_namespaced_lease(LEASE, OPERATOR_NAMESPACE)
        except ApiException as error:
            if error.status != 404:
                raise
            return None
        return lease if lease.spec.holder_identity in pod_names else None

    first = wait_for(held, timeout=120, interval=1, what="one operator pod holding the Lease")
    renewed = wait_for(
        lambda: (lease := held()) and lease.spec.renew_time > first.spec.renew_time and lease,
        timeout=120,
        interval=1,
        what="the Lease renewed",
    )
    assert renewed.spec.holder_identity == first.spec.holder_identity


def test_operator_acts_as_the_charts_service_account(
    e2e_backend: Backend, e2e_api: client.ApiClient, operator_pods: list[client.V1Pod]
) -> None:
    account = operator_pods[0].spec.service_account_name
    assert account == RELEASE  # the chart's own, not "default"
    bindings = client.RbacAuthorizationV1Api(e2e_api).list_cluster_role_binding(
        label_selector=INSTANCE
    )
    subjects = [s for b in bindings.items for s in b.subjects or []]
    assert any(s.kind == "ServiceAccount" and s.name == account for s in subjects), subjects
    if e2e_backend.audit_log is None:
        pytest.skip(f"the {e2e_backend.name} backend gives no access to its API audit log")
    user = f"system:serviceaccount:{OPERATOR_NAMESPACE}:{account}"
    pod_names = {pod.metadata.name for pod in operator_pods}

    def requests_of_both_pods() -> list[dict[str, Any]] | None:
        events = [json.loads(line) for line in e2e_backend.audit_log.read_text().splitlines()]
        mine = [e for e in events if e["user"]["username"] == user]
        seen = {(e["user"].get("extra") or {}).get(POD_NAME_KEY, [""])[0] for e in mine}
        return mine if seen >= pod_names else None

    requests = wait_for(requests_of_both_pods, timeout=120, interval=2, what="both pods audited")
    # Bound tokens of the operator's own pods, used directly: no impersonation anywhere.
    for event in requests:
        assert "impersonatedUser" not in event, event
        assert event["user"]["extra"][POD_NAME_KEY][0] in pod_names, event
    verbs = {(e["verb"], e["objectRef"].get("resource")) for e in requests if "objectRef" in e}
    assert ("watch", "jewelrymonitorings") in verbs, sorted(verbs)


# -- the shop ----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def shop(
    e2e_api: client.ApiClient, e2e_images: dict[str, str], stopwatch: Stopwatch
) -> Iterator[str]:
    """manifests/dev with our images, every Deployment Available; its namespace."""
    ours = {name: e2e_images[name] for name in DEV_IMAGES}
    started = time.monotonic()
    apply_objects(e2e_api, retag_images(dev_shop_objects(), ours))
    apps, core = client.AppsV1Api(e2e_api), client.CoreV1Api(e2e_api)
    try:
        wait_for(
            lambda: _all_available(apps, SHOP, SHOP_DEPLOYMENTS),
            timeout=POD_TIMEOUT,
            interval=2,
            what=f"the shop's Deployments {SHOP_DEPLOYMENTS} Available",
        )
        stopwatch.step("manifests/dev applied -> every shop Deployment Available", started)
        yield SHOP
    finally:
        _delete_namespace(core, SHOP)


def _fetch_in_shop_pod(
    core: client.CoreV1Api, namespace: str, image: str, name: str, url: str
) -> str:
    """The body a pod of the shop's image got from GET ``url`` (cluster DNS, in-cluster)."""
    fetch = (
        f"import urllib.request; print(urllib.request.urlopen({url!r}, timeout=30).read().decode())"
    )
    restricted = client.V1SecurityContext(
        allow_privilege_escalation=False,
        capabilities=client.V1Capabilities(drop=["ALL"]),
        run_as_non_root=True,
        seccomp_profile=client.V1SeccompProfile(type="RuntimeDefault"),
    )
    container = client.V1Container(
        name="fetch",
        image=image,
        image_pull_policy="Never",
        command=["python", "-c", fetch],
        security_context=restricted,
    )
    pod = client.V1Pod(
        metadata=client.V1ObjectMeta(name=name),
        spec=client.V1PodSpec(restart_policy="Never", containers=[container]),
    )
    core.create_namespaced_pod(namespace, pod)

    def finished() -> str | None:
        phase = core.read_namespaced_pod(name, namespace).status.phase
        return phase if phase in ("Succeeded", "Failed") else None

    phase = wait_for(finished, timeout=POD_TIMEOUT, interval=1, what=f"pod {name} finished")
    # Raw bytes: the client would turn a JSON log into the repr of a dict.
    response = core.read_namespaced_pod_log(name, namespace, _preload_content=False)
    log: str = response.data.decode()
    assert phase == "Succeeded", log
    return log


def test_the_shop_serves_its_catalogue_through_nginx_with_stub_status(
    e2e_api: client.ApiClient, e2e_images: dict[str, str], shop: str
) -> None:
    core = client.CoreV1Api(e2e_api)
    # Through nginx's Service to gunicorn, Django, and the demo data in PostgreSQL.
    products = json.loads(
        _fetch_in_shop_pod(
            core,
            shop,
            e2e_images["jewelry-shop"],
            "fetch-products",
            "http://nginx:8080/api/products/",
        )
    )
    assert products, products
    # stub_status on its own port, for the nginx exporter (the API server's Service proxy).
    status = core.connect_get_namespaced_service_proxy_with_path(
        "nginx:status", shop, "stub_status"
    )
    assert status.startswith("Active connections:"), status
    # The Celery worker is connected to its broker (Redis, with the Secret's password).
    (worker,) = _pods(core, shop, "app.kubernetes.io/name=jewelry-shop-worker")
    log = core.read_namespaced_pod_log(worker.metadata.name, shop)
    assert "Connected to redis://" in log, log[-2000:]


# -- the exporters -----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def example_cr(
    e2e_api: client.ApiClient,
    e2e_images: dict[str, str],
    operator_pods: list[client.V1Pod],
    shop: str,
    stopwatch: Stopwatch,
) -> Iterator[dict[str, Any]]:
    """manifests/example-jewelrymonitoring.yaml with our exporter images (the Secrets it
    needs come with manifests/dev), once ExportersAvailable is True; deleted at the end."""
    example = yaml.safe_load(EXAMPLE_CR.read_text())
    for exporter, short_name in EXPORTER_IMAGES.items():
        example["spec"]["exporters"][exporter]["image"] = e2e_images[short_name]
    custom = client.CustomObjectsApi(e2e_api)
    name = example["metadata"]["name"]
    started = time.monotonic()
    custom.create_namespaced_custom_object(GROUP, VERSION, shop, PLURAL, example)
    try:
        cr = wait_condition(e2e_api, shop, name, "ExportersAvailable", "True", timeout=POD_TIMEOUT)
        stopwatch.step("example CR applied -> ExportersAvailable True", started)
        yield cr
    finally:
        try:
            custom.delete_namespaced_custom_object(GROUP, VERSION, shop, PLURAL, name)
        except ApiException as error:
            if error.status != 404:
                raise


def _exporter_deployments(
    e2e_api: client.ApiClient, cr: dict[str, Any]
) -> list[client.V1Deployment]:
    names = [c["name"] for c in cr["status"]["children"] if c["kind"] == "Deployment"]
    apps = client.AppsV1Api(e2e_api)
    return [apps.read_namespaced_deployment(name, SHOP) for name in names]


def test_every_exporter_pod_is_ready_through_its_own_probe(
    e2e_api: client.ApiClient, e2e_images: dict[str, str], example_cr: dict[str, Any]
) -> None:
    core = client.CoreV1Api(e2e_api)
    deployments = _exporter_deployments(e2e_api, example_cr)
    assert len(deployments) == len(EXPORTER_IMAGES), [d.metadata.name for d in deployments]
    images = set()
    for deployment in deployments:
        (pod,) = _pods(core, SHOP, _selector(deployment))
        (container,) = pod.spec.containers
        assert container.readiness_probe is not None, deployment.metadata.name
        assert pod.status.phase == "Running" and _ready(pod), pod.status
        assert pod.spec.security_context.run_as_non_root is True
        assert container.security_context.read_only_root_filesystem is True
        images.add(container.image)
        # Each answers with its own metrics: the real binary, configured by the operator.
        metrics = core.connect_get_namespaced_pod_proxy_with_path(
            f"{pod.metadata.name}:{container.ports[0].container_port}", SHOP, "metrics"
        )
        assert "# TYPE" in metrics, deployment.metadata.name
    assert images == {e2e_images[short_name] for short_name in EXPORTER_IMAGES.values()}


# -- lifecycle ---------------------------------------------------------------------------------


def test_a_deleted_exporter_pod_is_replaced(
    e2e_api: client.ApiClient, example_cr: dict[str, Any], stopwatch: Stopwatch
) -> None:
    core = client.CoreV1Api(e2e_api)
    deployment = _exporter_deployments(e2e_api, example_cr)[0]
    selector = _selector(deployment)
    (victim,) = _pods(core, SHOP, selector)
    started = time.monotonic()
    core.delete_namespaced_pod(victim.metadata.name, SHOP)

    def replaced() -> bool:
        pods = _pods(core, SHOP, selector)
        return len(pods) == 1 and pods[0].metadata.uid != victim.metadata.uid and _ready(pods[0])

    wait_for(replaced, timeout=POD_TIMEOUT, interval=1, what="a Ready replacement exporter pod")
    stopwatch.step("exporter pod deleted -> replacement Ready", started)
    wait_condition(e2e_api, SHOP, example_cr["metadata"]["name"], "ExportersAvailable", "True")


def test_deleting_the_cr_collects_its_exporter_pods(
    e2e_api: client.ApiClient, example_cr: dict[str, Any], stopwatch: Stopwatch
) -> None:
    core = client.CoreV1Api(e2e_api)
    selectors = [_selector(d) for d in _exporter_deployments(e2e_api, example_cr)]
    started = time.monotonic()
    client.CustomObjectsApi(e2e_api).delete_namespaced_custom_object(
        GROUP, VERSION, SHOP, PLURAL, example_cr["metadata"]["name"]
    )
    wait_for(
        lambda: not any(_pods(core, SHOP, selector) for selector in selectors),
        timeout=POD_TIMEOUT,
        interval=1,
        what="the exporter pods collected",
    )
    stopwatch.step("CR deleted -> its exporter pods gone", started)
    assert (
        not client.AppsV1Api(e2e_api)
        .list_namespaced_deployment(
            SHOP, label_selector="app.kubernetes.io/managed-by=jewelry-monitoring"
        )
        .items
    )


def test_helm_uninstall_leaves_no_operator_objects(
    e2e_backend: Backend,
    e2e_api: client.ApiClient,
    operator_pods: list[client.V1Pod],
    stopwatch: Stopwatch,
) -> None:
    core = client.CoreV1Api(e2e_api)
    # Liveness kept passing all along: no probe failure, no restart, for its whole window.
    oldest = min(pod.status.start_time for pod in operator_pods)
    wait = LIVENESS_FAILURE_WINDOW - (datetime.now(UTC) - oldest).total_seconds()
    time.sleep(max(0.0, wait))
    for pod in _pods(core, OPERATOR_NAMESPACE, INSTANCE):
        assert pod.status.container_statuses[0].restart_count == 0, pod.status
        events = core.list_namespaced_event(
            OPERATOR_NAMESPACE, field_selector=f"involvedObject.name={pod.metadata.name}"
        ).items
        assert not [e.message for e in events if e.reason == "Unhealthy"]

    started = time.monotonic()
    _helm(e2e_backend, "uninstall", RELEASE, "-n", OPERATOR_NAMESPACE, "--wait")
    rbac, apps = client.RbacAuthorizationV1Api(e2e_api), client.AppsV1Api(e2e_api)
    listings = {
        "Deployment": lambda: apps.list_deployment_for_all_namespaces(label_selector=INSTANCE),
        "ReplicaSet": lambda: apps.list_replica_set_for_all_namespaces(label_selector=INSTANCE),
        "Pod": lambda: core.list_pod_for_all_namespaces(label_selector=INSTANCE),
        "ServiceAccount": lambda: core.list_service_account_for_all_namespaces(
            label_selector=INSTANCE
        ),
        "ConfigMap": lambda: core.list_config_map_for_all_namespaces(label_selector=INSTANCE),
        "Role": lambda: rbac.list_role_for_all_namespaces(label_selector=INSTANCE),
        "RoleBinding": lambda: rbac.list_role_binding_for_all_namespaces(label_selector=INSTANCE),
        "ClusterRole": lambda: rbac.list_cluster_role(label_selector=INSTANCE),
        "ClusterRoleBinding": lambda: rbac.list_cluster_role_binding(label_selector=INSTANCE),
    }

    def remaining() -> dict[str, list[str]]:
        left = {
            kind: [item.metadata.name for item in listing().items]
            for kind, listing in listings.items()
        }
        return {kind: names for kind, names in left.items() if names}

    wait_for(lambda: not remaining(), timeout=POD_TIMEOUT, interval=2, what="no release objects")
    stopwatch.step("helm uninstall -> no operator objects", started)
    assert not remaining()


@pytest.mark.xfail(
    strict=True,
    reason="measured: after helm uninstall the leader's Lease stays, still held by the deleted "
    "leader pod. Helm deletes the Deployment and, right after, the chart's RBAC; the pods get "
    "SIGTERM only later (garbage collection), when the leader may no longer update its Lease.",
)
def test_helm_uninstall_leaves_no_held_lease(
    e2e_api: client.ApiClient, operator_pods: list[client.V1Pod]
) -> None:
    """The Lease is the operator's, not the chart's: on its graceful stop the leader should
    release it (or it should go with the release)."""
    core = client.CoreV1Api(e2e_api)
    wait_for(
        lambda: not _pods(core, OPERATOR_NAMESPACE, INSTANCE),
        timeout=POD_TIMEOUT,
        interval=2,
        what="the operator pods gone",
    )
    with contextlib.suppress(ApiException):  # 404: no Lease at all
        lease = client.CoordinationV1Api(e2e_api).read_namespaced_lease(LEASE, OPERATOR_NAMESPACE)
        assert not lease.spec.holder_identity, lease.spec
