"""Proof that the local node is real: pods run, serve, get probed, restart, are collected,
and stay on this host."""

from __future__ import annotations

import ipaddress
import json
import statistics
import subprocess
import threading
import time
import urllib.request
from collections.abc import Callable

import pytest
from kubernetes import client, watch
from kubernetes.client.rest import ApiException

from devkit.cluster import SERVICE_CIDR
from devkit.kubetools import api_client, wait_for
from devkit.node import BRIDGE, DEAD_REGISTRY, NFT_TABLE, POD_CIDR, PROBE_IMAGE, Node

pytestmark = pytest.mark.cluster

PORT = 8080


def probe_container(*args: str, **fields: object) -> client.V1Container:
    """The probe image (an HTTP server/client): never pulled, loaded into the node."""
    return client.V1Container(
        name="probe",
        image=PROBE_IMAGE,
        image_pull_policy="Never",
        args=list(args),
        **fields,
    )


def http_probe(path: str, **fields: object) -> client.V1Probe:
    return client.V1Probe(
        http_get=client.V1HTTPGetAction(path=path, port=PORT), period_seconds=1, **fields
    )


def server_pod(name: str, message: str = "hello", **spec: object) -> client.V1Pod:
    container = probe_container(
        "serve", "-message", message, readiness_probe=http_probe("/healthz"), **spec
    )
    return client.V1Pod(
        metadata=client.V1ObjectMeta(name=name, labels={"app": name}),
        spec=client.V1PodSpec(containers=[container], termination_grace_period_seconds=2),
    )


def pod_phase(core: client.CoreV1Api, namespace: str, name: str, phase: str) -> client.V1Pod:
    def reached() -> client.V1Pod | None:
        pod = core.read_namespaced_pod(name, namespace)
        if pod.status.phase == "Failed" and phase != "Failed":
            raise AssertionError(f"pod {name} failed: {pod.status}")
        return pod if pod.status.phase == phase else None

    return wait_for(reached, timeout=90, what=f"pod {name} {phase}")


def pod_ready(core: client.CoreV1Api, namespace: str, name: str) -> client.V1Pod:
    def ready() -> client.V1Pod | None:
        pod = core.read_namespaced_pod(name, namespace)
        conditions = pod.status.conditions or []
        return pod if any(c.type == "Ready" and c.status == "True" for c in conditions) else None

    return wait_for(ready, timeout=90, what=f"pod {name} Ready")


def fetch_in_pod(core: client.CoreV1Api, namespace: str, name: str, url: str) -> str:
    """What a pod named ``name`` got from GET ``url`` (its termination message)."""
    core.create_namespaced_pod(
        namespace,
        client.V1Pod(
            metadata=client.V1ObjectMeta(name=name),
            spec=client.V1PodSpec(
                restart_policy="Never", containers=[probe_container("fetch", url)]
            ),
        ),
    )
    fetched = pod_phase(core, namespace, name, "Succeeded")
    return str(fetched.status.container_statuses[0].state.terminated.message)


def events_of(core: client.CoreV1Api, namespace: str, name: str) -> list[client.CoreV1Event]:
    selector = f"involvedObject.name={name}"
    return list(core.list_namespaced_event(namespace, field_selector=selector).items)


def test_deployment_serves_http_through_a_cluster_ip_by_dns_name(
    node_api: client.ApiClient, node_namespace: str
) -> None:
    core, apps = client.CoreV1Api(node_api), client.AppsV1Api(node_api)
    template = server_pod("web", message="hello")
    apps.create_namespaced_deployment(
        node_namespace,
        client.V1Deployment(
            metadata=client.V1ObjectMeta(name="web"),
            spec=client.V1DeploymentSpec(
                replicas=2,
                selector=client.V1LabelSelector(match_labels={"app": "web"}),
                template=client.V1PodTemplateSpec(metadata=template.metadata, spec=template.spec),
            ),
        ),
    )
    core.create_namespaced_service(
        node_namespace,
        client.V1Service(
            metadata=client.V1ObjectMeta(name="web"),
            spec=client.V1ServiceSpec(
                selector={"app": "web"},
                ports=[client.V1ServicePort(port=80, target_port=PORT)],
            ),
        ),
    )
    wait_for(
        lambda: (
            (apps.read_namespaced_deployment("web", node_namespace).status.available_replicas or 0)
            == 2
        ),
        timeout=90,
        what="both web replicas available",
    )

    answer = fetch_in_pod(
        core, node_namespace, "client", f"http://web.{node_namespace}.svc.cluster.local/"
    )
    assert answer.startswith("hello from web-"), answer
    # The pod log travels kubelet -> API server: the node serves its API to the plane too.
    assert "hello from web-" in core.read_namespaced_pod_log("client", node_namespace)


def test_failing_liveness_probe_restarts_the_container(
    node_api: client.ApiClient, node_namespace: str
) -> None:
    core = client.CoreV1Api(node_api)
    core.create_namespaced_pod(
        node_namespace,
        server_pod("sick", liveness_probe=http_probe("/unhealthy", failure_threshold=1)),
    )

    def restarted() -> bool:
        statuses = core.read_namespaced_pod("sick", node_namespace).status.container_statuses or []
        return bool(statuses) and statuses[0].restart_count >= 1

    wait_for(restarted, timeout=90, what="a restart after the failed liveness probe")
    messages = [event.message or "" for event in events_of(core, node_namespace, "sick")]
    assert any("Liveness probe failed" in message for message in messages), messages


def test_restricted_pod_runs_and_serves(node_api: client.ApiClient, node_namespace: str) -> None:
    core = client.CoreV1Api(node_api)
    core.patch_namespace(
        node_namespace,
        {"metadata": {"labels": {"pod-security.kubernetes.io/enforce": "restricted"}}},
    )
    with pytest.raises(ApiException) as refused:  # the standard is really enforced here
        core.create_namespaced_pod(node_namespace, server_pod("lax"))
    assert refused.value.status == 403 and "restricted" in refused.value.body

    restricted = server_pod(
        "strict",
        message="restricted",
        security_context=client.V1SecurityContext(
            run_as_non_root=True,
            run_as_user=65532,
            read_only_root_filesystem=True,
            allow_privilege_escalation=False,
            capabilities=client.V1Capabilities(drop=["ALL"]),
            seccomp_profile=client.V1SeccompProfile(type="RuntimeDefault"),
        ),
    )
    core.create_namespaced_pod(node_namespace, restricted)
    pod = pod_ready(core, node_namespace, "strict")

    with urllib.request.urlopen(f"http://{pod.status.pod_ip}:{PORT}/", timeout=5) as response:
        assert response.read().decode().startswith("restricted from strict")


def test_deleting_a_deployments_owner_removes_its_pods(
    node_api: client.ApiClient, node_namespace: str
) -> None:
    core, apps = client.CoreV1Api(node_api), client.AppsV1Api(node_api)
    owner = core.create_namespaced_config_map(
        node_namespace, client.V1ConfigMap(metadata=client.V1ObjectMeta(name="owner"))
    )
    template = server_pod("owned")
    apps.create_namespaced_deployment(
        node_namespace,
        client.V1Deployment(
            metadata=client.V1ObjectMeta(
                name="owned",
                owner_references=[
                    client.V1OwnerReference(
                        api_version="v1", kind="ConfigMap", name="owner", uid=owner.metadata.uid
                    )
                ],
            ),
            spec=client.V1DeploymentSpec(
                replicas=2,
                selector=client.V1LabelSelector(match_labels={"app": "owned"}),
                template=client.V1PodTemplateSpec(metadata=template.metadata, spec=template.spec),
            ),
        ),
    )

    def running_pods() -> list[str]:
        pods = core.list_namespaced_pod(node_namespace, label_selector="app=owned").items
        return [pod.metadata.name for pod in pods if pod.status.phase == "Running"]

    assert len(wait_for(lambda: len(running_pods()) == 2 and running_pods(), timeout=90)) == 2

    core.delete_namespaced_config_map("owner", node_namespace)

    # A bound pod leaves the API only once its kubelet has stopped its containers.
    wait_for(
        lambda: not core.list_namespaced_pod(node_namespace, label_selector="app=owned").items,
        timeout=90,
        what="garbage collection down to the pods",
    )
    with pytest.raises(ApiException) as gone:
        apps.read_namespaced_deployment("owned", node_namespace)
    assert gone.value.status == 404


def percentiles(latencies: list[float]) -> str:
    ordered = sorted(latencies)
    p95 = ordered[round(0.95 * (len(ordered) - 1))]
    return f"p50 {statistics.median(ordered):.2f} s, p95 {p95:.2f} s, max {ordered[-1]:.2f} s"


def test_pod_create_to_running_latency_for_twenty_pods(
    node: Node,
    node_api: client.ApiClient,
    node_namespace: str,
    figures: Callable[[str, str, str], None],
) -> None:
    """Timing is reported, not asserted (shared machine); every pod must reach Running.

    Twenty pods one at a time (the latency a user sees), then twenty created back to back
    (the node's throughput).
    """
    count = 20
    core = client.CoreV1Api(node_api)

    def bench_pod(name: str) -> client.V1Pod:
        pod = server_pod(name)
        pod.metadata.labels = {"app": "bench"}
        return pod

    one_at_a_time = []
    for index in range(count):
        started = time.monotonic()
        core.create_namespaced_pod(node_namespace, bench_pod(f"one-{index:02d}"))
        wait_for(
            lambda name=f"one-{index:02d}": (
                core.read_namespaced_pod(name, node_namespace).status.phase == "Running"
            ),
            timeout=90,
            interval=0.05,
            what="a pod Running",
        )
        one_at_a_time.append(time.monotonic() - started)
    core.delete_collection_namespaced_pod(node_namespace, label_selector="app=bench")
    wait_for(  # the burst below should not share the node with their teardown
        lambda: not core.list_namespaced_pod(node_namespace, label_selector="app=bench").items,
        timeout=90,
        what="the one-at-a-time pods gone",
    )

    created: dict[str, float] = {}
    running: dict[str, float] = {}
    watching = threading.Event()

    def watch_running() -> None:
        watcher = watch.Watch()
        own_core = client.CoreV1Api(api_client(node.plane.kubeconfig))
        watching.set()
        for event in watcher.stream(
            own_core.list_namespaced_pod,
            node_namespace,
            label_selector="burst=yes",
            timeout_seconds=180,
        ):
            pod = event["object"]
            if pod.status.phase == "Running":
                running.setdefault(pod.metadata.name, time.monotonic())
            if len(running) == count:
                watcher.stop()

    watcher_thread = threading.Thread(target=watch_running, daemon=True)
    watcher_thread.start()
    watching.wait(10)
    time.sleep(0.5)  # let the watch connect before the first pod can run
    for index in range(count):
        pod = bench_pod(f"burst-{index:02d}")
        pod.metadata.labels["burst"] = "yes"
        core.create_namespaced_pod(node_namespace, pod)
        created[pod.metadata.name] = time.monotonic()
    watcher_thread.join(timeout=180)

    assert sorted(running) == sorted(created)
    back_to_back = [running[name] - created[name] for name in created]
    for how, latencies in (("one at a time", one_at_a_time), ("back to back", back_to_back)):
        figures("node", f"pod create -> Running, {count} pods {how}", percentiles(latencies))


def route_device(address: str) -> str:
    route = json.loads(
        subprocess.run(
            ["ip", "-json", "route", "get", address], capture_output=True, text=True, check=True
        ).stdout
    )
    return str(route[0]["dev"])


def test_pod_and_service_addresses_never_route_to_the_default_interface(
    node_api: client.ApiClient, node_namespace: str
) -> None:
    """By inspection only: no packet is sent to any outside address to check this."""
    core = client.CoreV1Api(node_api)
    core.create_namespaced_pod(node_namespace, server_pod("routed"))
    service = core.create_namespaced_service(
        node_namespace,
        client.V1Service(
            metadata=client.V1ObjectMeta(name="routed"),
            spec=client.V1ServiceSpec(
                selector={"app": "routed"}, ports=[client.V1ServicePort(port=80, target_port=PORT)]
            ),
        ),
    )
    pod = pod_phase(core, node_namespace, "routed", "Running")
    defaults = json.loads(
        subprocess.run(
            ["ip", "-json", "route", "show", "default"], capture_output=True, text=True, check=True
        ).stdout
    )
    default_devices = {route["dev"] for route in defaults}
    pods, services = ipaddress.ip_network(POD_CIDR), ipaddress.ip_network(SERVICE_CIDR)
    addresses = [
        pod.status.pod_ip,
        service.spec.cluster_ip,
        str(pods[2]),  # pods[1] is the node IP itself: local
        str(pods[-2]),
        str(services[1]),
        str(services[-2]),
    ]
    devices = {address: route_device(address) for address in addresses}
    assert devices == dict.fromkeys(addresses, BRIDGE), devices
    assert not default_devices & set(devices.values())

    # Forwarding: only bridge to bridge; a pod's packet to anywhere else is dropped here.
    table = subprocess.run(
        ["nft", "list", "table", "inet", NFT_TABLE], capture_output=True, text=True, check=True
    ).stdout
    assert f'iifname "{BRIDGE}" oifname != "{BRIDGE}" drop' in table
    assert "hook forward" in table


def test_an_image_pull_goes_to_the_dead_loopback_registry_only(
    node_api: client.ApiClient, node_namespace: str
) -> None:
    """A registry host that is itself a loopback address, so even a wrong configuration
    could not send anything off the machine; the error must name the dead endpoint."""
    core = client.CoreV1Api(node_api)
    pod = client.V1Pod(
        metadata=client.V1ObjectMeta(name="pull"),
        spec=client.V1PodSpec(
            containers=[
                client.V1Container(
                    name="c", image="127.0.0.2:5/jm/never:1", image_pull_policy="Always"
                )
            ]
        ),
    )
    core.create_namespaced_pod(node_namespace, pod)
    dead_endpoint = DEAD_REGISTRY.removeprefix("http://")

    def pull_failure() -> list[str]:
        messages = [event.message or "" for event in events_of(core, node_namespace, "pull")]
        return [message for message in messages if "Failed to pull" in message]

    failures = wait_for(pull_failure, timeout=60, what="the pull to fail")
    assert any(dead_endpoint in message for message in failures), failures


def test_a_pod_reaches_the_api_server_through_the_kubernetes_service(
    node_api: client.ApiClient, node_namespace: str
) -> None:
    """What an operator in a pod needs: in-cluster config dials kubernetes.default.svc."""
    core = client.CoreV1Api(node_api)
    # kubernetes.default.svc is a name the API server's serving certificate holds.
    answer = fetch_in_pod(
        core, node_namespace, "api-client", "https://kubernetes.default.svc/version"
    )
    version = json.loads(answer)
    assert version["gitVersion"] == client.VersionApi(node_api).get_code().git_version
