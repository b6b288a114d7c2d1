"""The node's Kubernetes processes beside containerd: their configuration, command lines,
readiness, and how their pods are stopped.

kubelet registers the node; kube-proxy programs Services in iptables mode; kube-scheduler
binds pods; CoreDNS (built with no forward plugin) answers ``cluster.local`` on the node IP;
a relay on the node IP (devkit.relay) is the endpoint of the ``kubernetes`` Service, through
which pods reach the API server (which listens on loopback only). NodePorts open on the node
IP only, and CoreDNS has no upstream.
"""

from __future__ import annotations

import contextlib
import logging
import random
import socket
import struct
import sys
from collections.abc import Callable
from typing import TYPE_CHECKING

from kubernetes import client
from kubernetes.client.rest import ApiException

from devkit.cluster import _http_ok, _https_ok
from devkit.kubetools import api_client, wait_for
from devkit.node.network import NODE_IP, POD_CIDR
from devkit.toolchain import binary

if TYPE_CHECKING:
    from devkit.node.node import Node

log = logging.getLogger(__name__)

NODE_NAME = "jm-node"
API_RELAY_SLICE = "kubernetes-node-relay"
# The Node fields that hold each process's ports (containerd's are a socket file and port 0;
# CoreDNS has only the node IP's port 53).
COMPONENT_PORTS = {
    "kube-scheduler": ("scheduler_port",),
    "kubelet": ("kubelet_port",),
    "kube-proxy": ("proxy_healthz_port", "proxy_metrics_port"),
    "api-relay": ("api_relay_port",),
}


def kubelet_config(node: Node) -> dict[str, object]:
    return {
        "apiVersion": "kubelet.config.k8s.io/v1beta1",
        "kind": "KubeletConfiguration",
        "failCgroupV1": False,  # this host has cgroup v1 (hybrid)
        "cgroupDriver": "cgroupfs",
        "containerRuntimeEndpoint": f"unix://{node.containerd_socket}",
        "staticPodPath": str(node.workdir / "manifests"),
        "podLogsDir": str(node.workdir / "pod-logs"),
        "clusterDomain": "cluster.local",
        "clusterDNS": [NODE_IP],
        "resolvConf": "",
        "address": NODE_IP,
        "port": node.kubelet_port,
        "readOnlyPort": 0,
        # No healthz server: nothing reads it, and kubelet does not exit when its port is
        # taken (it retries every 5 s), so a lost port would go unnoticed.
        "healthzPort": 0,
        "authentication": {
            "anonymous": {"enabled": False},
            "webhook": {"enabled": True},
            "x509": {"clientCAFile": str(node.plane.ca_cert)},
        },
        "authorization": {"mode": "Webhook"},
        "failSwapOn": False,
        "enforceNodeAllocatable": [],
        "evictionHard": {},
        # True (the default): the node reports ephemeral-storage capacity, so pods that
        # request it (our exporters and operator do) can be scheduled.
        "localStorageCapacityIsolation": True,
        "makeIPTablesUtilChains": False,
        "serializeImagePulls": False,
        "imageGCHighThresholdPercent": 100,
        "imageGCLowThresholdPercent": 99,
        "nodeStatusUpdateFrequency": "5s",
        "syncFrequency": "10s",
    }


def corefile(node: Node) -> str:
    return f"""cluster.local:53 {{
    bind {NODE_IP}
    errors
    cache 5
    kubernetes cluster.local {{
        kubeconfig {node.plane.kubeconfig}
    }}
}}
"""


def commands(node: Node) -> dict[str, list[str]]:
    """Each process's command line, by name, in start order."""
    kubeconfig = str(node.plane.kubeconfig)
    return {
        "kube-scheduler": [
            str(binary("kube-scheduler")),
            f"--kubeconfig={kubeconfig}",
            f"--authentication-kubeconfig={kubeconfig}",
            f"--authorization-kubeconfig={kubeconfig}",
            "--bind-address=127.0.0.1",
            f"--secure-port={node.scheduler_port}",
            "--leader-elect=false",
            "--v=0",
        ],
        "kubelet": [
            str(binary("kubelet")),
            f"--config={node.workdir / 'kubelet.yaml'}",
            f"--kubeconfig={kubeconfig}",
            f"--root-dir={node.short_dir / 'kubelet'}",
            f"--hostname-override={NODE_NAME}",
            f"--node-ip={NODE_IP}",
            "--v=0",
        ],
        "kube-proxy": [
            str(binary("kube-proxy")),
            f"--kubeconfig={kubeconfig}",
            f"--hostname-override={NODE_NAME}",
            "--proxy-mode=iptables",
            f"--cluster-cidr={POD_CIDR}",
            f"--nodeport-addresses={NODE_IP}/32",
            f"--healthz-bind-address=127.0.0.1:{node.proxy_healthz_port}",
            f"--metrics-bind-address=127.0.0.1:{node.proxy_metrics_port}",
            # Exit when a port is taken (it would retry in the background), so the start
            # chooses fresh ports instead (devkit.ports).
            "--bind-address-hard-fail",
            # Leave the host's conntrack settings alone.
            "--conntrack-max-per-core=0",
            "--conntrack-tcp-timeout-established=0",
            "--conntrack-tcp-timeout-close-wait=0",
            "--v=0",
        ],
        "coredns": [str(binary("coredns")), "-conf", str(node.workdir / "Corefile")],
        "api-relay": [
            sys.executable,
            "-m",
            "devkit.relay",
            NODE_IP,
            str(node.api_relay_port),
            "127.0.0.1",
            str(node.plane.apiserver_port),
            f"--owner={node.workdir}",
        ],
    }


def readiness(node: Node) -> dict[str, Callable[[], bool]]:
    """What each process's readiness is, in the order to wait for them."""
    return {
        "kubelet": lambda: ready_and_schedulable(node),
        # Through the relay to the API server (whatever else listens there answers no TLS).
        "api-relay": lambda: _https_ok(f"https://{NODE_IP}:{node.api_relay_port}/healthz"),
        "coredns": cluster_dns_answers,
        "kube-scheduler": lambda: _https_ok(f"https://127.0.0.1:{node.scheduler_port}/healthz"),
        "kube-proxy": lambda: _http_ok(f"http://127.0.0.1:{node.proxy_healthz_port}/livez"),
    }


def ready_and_schedulable(node: Node) -> bool:
    """Ready, then untainted: no node lifecycle controller removes the not-ready taint."""
    core = client.CoreV1Api(api_client(node.plane.kubeconfig))
    try:
        registered = core.read_node(NODE_NAME)
    except ApiException:
        return False
    ready = any(
        condition.type == "Ready" and condition.status == "True"
        for condition in (registered.status.conditions or [])
    )
    if not ready:
        return False
    taints = registered.spec.taints or []
    if any(taint.key == "node.kubernetes.io/not-ready" for taint in taints):
        kept = [taint for taint in taints if taint.key != "node.kubernetes.io/not-ready"]
        core.patch_node(NODE_NAME, {"spec": {"taints": kept or None}})
        return False
    return True


def cluster_dns_answers(name: str = "kubernetes.default.svc.cluster.local") -> bool:
    """Whether CoreDNS on the node IP answers an A query for ``name`` (its kubernetes plugin
    has synced). Asked in DNS itself: CoreDNS's ``ready`` plugin would need a port of its
    own, and keeps running silently without its endpoint when another process took it."""
    query_id = random.randrange(1 << 16)
    labels = b"".join(bytes([len(label)]) + label.encode() for label in name.split("."))
    # Header: id, flags (recursion desired), one question; the question: name, A, IN.
    query = struct.pack("!HHHHHH", query_id, 0x0100, 1, 0, 0, 0) + labels + b"\0"
    query += struct.pack("!HH", 1, 1)
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as resolver:
        resolver.settimeout(1)
        try:
            resolver.sendto(query, (NODE_IP, 53))
            reply = resolver.recv(512)
        except OSError:
            return False
    if len(reply) < 8:
        return False
    reply_id, flags, _, answers = struct.unpack("!HHHH", reply[:8])
    return bool(reply_id == query_id and flags & 0x000F == 0 and answers > 0)


def point_kubernetes_service_at_relay(node: Node) -> None:
    """Give the ``kubernetes`` Service an endpoint pods can reach: the relay.

    The API server cannot publish its own (127.0.0.1 is no valid endpoint). This slice
    has a name and manager of its own, so no controller of the plane touches it.
    """
    discovery = client.DiscoveryV1Api(api_client(node.plane.kubeconfig))
    slice_ = client.V1EndpointSlice(
        metadata=client.V1ObjectMeta(
            name=API_RELAY_SLICE,
            labels={
                "kubernetes.io/service-name": "kubernetes",
                "endpointslice.kubernetes.io/managed-by": "jewelry-monitoring.devkit.node",
            },
        ),
        address_type="IPv4",
        endpoints=[
            client.V1Endpoint(
                addresses=[NODE_IP], conditions=client.V1EndpointConditions(ready=True)
            )
        ],
        ports=[client.DiscoveryV1EndpointPort(name="https", port=node.api_relay_port)],
    )
    with contextlib.suppress(ApiException):
        discovery.delete_namespaced_endpoint_slice(API_RELAY_SLICE, "default")
    discovery.create_namespaced_endpoint_slice("default", slice_)


def stop_pods_through_kubelet(node: Node) -> None:
    """Let kubelet stop the node's pods: sandboxes torn down through CNI, volumes unmounted
    (the caller stopped the scheduler first, so controllers' replacements stay Pending)."""
    core = client.CoreV1Api(api_client(node.plane.kubeconfig))
    selector = f"spec.nodeName={NODE_NAME}"
    try:
        with contextlib.suppress(ApiException):
            client.DiscoveryV1Api(core.api_client).delete_namespaced_endpoint_slice(
                API_RELAY_SLICE, "default"
            )
        for pod in core.list_pod_for_all_namespaces(field_selector=selector).items:
            with contextlib.suppress(ApiException):
                core.delete_namespaced_pod(
                    pod.metadata.name, pod.metadata.namespace, grace_period_seconds=1
                )
        wait_for(
            lambda: not core.list_pod_for_all_namespaces(field_selector=selector).items,
            timeout=60,
            what="kubelet to stop the node's pods",
        )
    except (ApiException, TimeoutError, OSError) as error:
        log.warning("node: pods not stopped through kubelet (%s); killing them", error)
