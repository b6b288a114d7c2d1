"""The product in pods (issue 8 part 2) on the e2e backend (devkit.product; the local node
unless ``JM_E2E_BACKEND`` says otherwise): the chart's operator, the dev shop, the example
CR's exporters, and their lifecycle. The scenarios build on each other in file order; each
fixture also stands alone. Every image is ours (devkit.images), on the nodes, never pulled.
"""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime
from typing import Any

import pytest
from kubernetes import client
from kubernetes.client.rest import ApiException

from devkit.crs import GROUP, PLURAL, VERSION, wait_condition
from devkit.kubetools import wait_for
from devkit.product import (
    EXPORTER_IMAGES,
    INSTANCE,
    OPERATOR_NAMESPACE,
    POD_TIMEOUT,
    RELEASE,
    SHOP,
    Backend,
    ProductError,
    helm,
    is_ready,
    pods_of,
    selector_of,
)
from devkit.replicas import POD_NAME_KEY

from .conftest import (
    LEASE,
    LIVENESS_FAILURE_WINDOW,
    LIVENESS_PORT,
    REPLICAS,
    Stopwatch,
)

pytestmark = [pytest.mark.cluster, pytest.mark.timeout(1800)]

# -- the operator ------------------------------------------------------------------------------


def test_operator_pods_are_live_and_one_leads(
    e2e_api: client.ApiClient, operator_pods: list[client.V1Pod]
) -> None:
    core = client.CoreV1Api(e2e_api)
    for pod in operator_pods:
        # The liveness endpoint the kubelet probes, through the API server's pod proxy. Ready
        # means the readiness probe (/readyz, another port) answered: wait for this one too.
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
    # The log is the session's: on the kind backend test_kind installed and removed a release
    # of the same service account earlier. Only requests since these pods exist are theirs.
    since = min(pod.metadata.creation_timestamp for pod in operator_pods)

    def requests_of_both_pods() -> list[dict[str, Any]] | None:
        events = [json.loads(line) for line in e2e_backend.audit_log.read_text().splitlines()]
        mine = [
            e
            for e in events
            if e["user"]["username"] == user
            and datetime.fromisoformat(e["requestReceivedTimestamp"]) >= since
        ]
        seen = {(e["user"].get("extra") or {}).get(POD_NAME_KEY, [""])[0] for e in mine}
        return mine if seen >= pod_names else None

    requests = wait_for(requests_of_both_pods, timeout=120, interval=2, what="both pods audited")
    # Bound tokens of the operator's own pods, used directly: no impersonation anywhere.
    for event in requests:
        assert "impersonatedUser" not in event, event
        assert event["user"]["extra"][POD_NAME_KEY][0] in pod_names, event
    verbs = {(e["verb"], e["objectRef"].get("resource")) for e in requests if "objectRef" in e}
    assert ("watch", "jewelrymonitorings") in verbs, sorted(verbs)


def test_helm_test_passes_only_while_the_operator_answers(
    e2e_backend: Backend,
    e2e_api: client.ApiClient,
    operator_pods: list[client.V1Pod],
    stopwatch: Stopwatch,
) -> None:
    """The chart's `helm test` hook: a pod of the release asks the operator's metrics Service
    for /readyz and the API server for our API group. With the operator scaled to nothing it
    fails (its pod is kept, with the reason in its log); scaled back, it passes and leaves no
    pod behind (deleted on success)."""
    apps, core = client.AppsV1Api(e2e_api), client.CoreV1Api(e2e_api)
    (operator,) = apps.list_namespaced_deployment(
        OPERATOR_NAMESPACE, label_selector=f"{INSTANCE},app.kubernetes.io/component=operator"
    ).items
    deployment, selector = operator.metadata.name, selector_of(operator)
    test = ("test", RELEASE, "-n", OPERATOR_NAMESPACE, "--timeout", "5m")

    def scale(replicas: int) -> None:
        apps.patch_namespaced_deployment_scale(
            deployment, OPERATOR_NAMESPACE, {"spec": {"replicas": replicas}}
        )

        def settled() -> bool:
            pods = pods_of(core, OPERATOR_NAMESPACE, selector)
            ready = [p for p in pods if p.status.phase == "Running" and is_ready(p)]
            return len(pods) == len(ready) == replicas

        wait_for(settled, timeout=POD_TIMEOUT, interval=1, what=f"{replicas} operator pods")

    scale(0)
    try:
        with pytest.raises(ProductError) as failed:
            helm(e2e_backend.kubeconfig, *test)
        assert "Phase:          Failed" in str(failed.value), failed.value
        (test_pod,) = pods_of(
            core, OPERATOR_NAMESPACE, f"{INSTANCE},app.kubernetes.io/component=test"
        )
        log = core.read_namespaced_pod_log(test_pod.metadata.name, OPERATOR_NAMESPACE)
        # No endpoint behind the Service: refused or timed out, as the CNI handles it.
        assert "urlopen error" in log and "operator:" not in log, log
    finally:
        scale(REPLICAS)
    started = time.monotonic()
    passed = helm(e2e_backend.kubeconfig, *test)
    stopwatch.step("helm test -> Succeeded", started)
    assert "Phase:          Succeeded" in passed, passed
    assert not pods_of(core, OPERATOR_NAMESPACE, f"{INSTANCE},app.kubernetes.io/component=test")


# -- the shop ----------------------------------------------------------------------------------


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
    (worker,) = pods_of(core, shop, "app.kubernetes.io/name=jewelry-shop-worker")
    log = core.read_namespaced_pod_log(worker.metadata.name, shop)
    assert "Connected to redis://" in log, log[-2000:]


# -- the exporters -----------------------------------------------------------------------------


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
        (pod,) = pods_of(core, SHOP, selector_of(deployment))
        (container,) = pod.spec.containers
        assert container.readiness_probe is not None, deployment.metadata.name
        assert pod.status.phase == "Running" and is_ready(pod), pod.status
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
    selector = selector_of(deployment)
    (victim,) = pods_of(core, SHOP, selector)
    started = time.monotonic()
    core.delete_namespaced_pod(victim.metadata.name, SHOP)

    def replaced() -> bool:
        pods = pods_of(core, SHOP, selector)
        return len(pods) == 1 and pods[0].metadata.uid != victim.metadata.uid and is_ready(pods[0])

    wait_for(replaced, timeout=POD_TIMEOUT, interval=1, what="a Ready replacement exporter pod")
    stopwatch.step("exporter pod deleted -> replacement Ready", started)
    wait_condition(e2e_api, SHOP, example_cr["metadata"]["name"], "ExportersAvailable", "True")


def test_deleting_the_cr_collects_its_exporter_pods(
    e2e_api: client.ApiClient, example_cr: dict[str, Any], stopwatch: Stopwatch
) -> None:
    core = client.CoreV1Api(e2e_api)
    selectors = [selector_of(d) for d in _exporter_deployments(e2e_api, example_cr)]
    started = time.monotonic()
    client.CustomObjectsApi(e2e_api).delete_namespaced_custom_object(
        GROUP, VERSION, SHOP, PLURAL, example_cr["metadata"]["name"]
    )
    wait_for(
        lambda: not any(pods_of(core, SHOP, selector) for selector in selectors),
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
    # Liveness kept passing all along: no probe failure, no restart, for its whole window, on
    # the pods running now (the helm test scenario replaced the first ones). Readiness may
    # fail at first: a replica is not ready until its watches have listed.
    operator = f"{INSTANCE},app.kubernetes.io/component=operator"
    youngest = max(pod.status.start_time for pod in pods_of(core, OPERATOR_NAMESPACE, operator))
    wait = LIVENESS_FAILURE_WINDOW - (datetime.now(UTC) - youngest).total_seconds()
    time.sleep(max(0.0, wait))
    for pod in pods_of(core, OPERATOR_NAMESPACE, operator):
        assert pod.status.container_statuses[0].restart_count == 0, pod.status
        events = core.list_namespaced_event(
            OPERATOR_NAMESPACE, field_selector=f"involvedObject.name={pod.metadata.name}"
        ).items
        unhealthy = [e.message for e in events if e.reason == "Unhealthy"]
        assert not [m for m in unhealthy if m.startswith("Liveness probe")], unhealthy

    started = time.monotonic()
    helm(e2e_backend.kubeconfig, "uninstall", RELEASE, "-n", OPERATOR_NAMESPACE, "--wait")
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
        "Lease": lambda: client.CoordinationV1Api(e2e_api).list_lease_for_all_namespaces(
            label_selector=INSTANCE
        ),
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


def test_helm_uninstall_leaves_no_lease(
    e2e_api: client.ApiClient, operator_pods: list[client.V1Pod]
) -> None:
    """The release owns the leader's Lease (templates/lease.yaml), so `helm uninstall` deletes
    it; and no replica, still running while garbage collection stops the pods, recreated it
    (their RBAC went first). Before, the Lease stayed, held by a deleted pod."""
    core = client.CoreV1Api(e2e_api)
    wait_for(
        lambda: not pods_of(core, OPERATOR_NAMESPACE, INSTANCE),
        timeout=POD_TIMEOUT,
        interval=2,
        what="the operator pods gone",
    )
    with pytest.raises(ApiException) as missing:
        lease = client.CoordinationV1Api(e2e_api).read_namespaced_lease(LEASE, OPERATOR_NAMESPACE)
        pytest.fail(f"the Lease outlived the release: {lease.spec}")
    assert missing.value.status == 404, missing.value
