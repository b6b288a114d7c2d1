"""Things to scrape and things that make endpoints, for tests of the operator's conditions and
of ``jewelry-monitoring doctor`` on the local control plane (which has no node).

* ``metrics_target()``: a real prometheus_client HTTP server in a process of its own, to be
  scraped and then stopped (a target that goes down);
* ``fake_endpoints(...)``: pods the EndpointSlice controller of the plane's
  kube-controller-manager puts into a Service's slices. Without a node nothing runs them, so
  a Node *object* is registered (no kubelet behind it) and the pods are bound to it with an
  IP set through their status, as a kubelet would report it;
* ``prometheus_for(...)``: a real local Prometheus scraping a CR's objects as read from the
  cluster, each Service's endpoints replaced by local addresses;
* ``request_recorder()``: an HTTP server that only counts what it is asked, where a URL
  nobody should fetch points (in a cluster: a cloud metadata address).
"""

from __future__ import annotations

import contextlib
import sys
import threading
import uuid
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from kubernetes import client
from kubernetes.client.rest import ApiException

from devkit import prometheus as prom

OWNER_LABEL = "monitoring.jewelry.io/owner"


def metrics_target(
    gauges: Mapping[str, float] | None = None,
) -> contextlib.AbstractContextManager[prom.Process]:
    """A /metrics endpoint (prometheus_client's own server) on a free loopback port, with
    ``gauges`` by name at their values (an exporter's ``pg_up 0``, say)."""
    setting = "".join(
        f"p.Gauge({name!r}, {name!r}).set({value!r}); " for name, value in (gauges or {}).items()
    )
    return prom.process(
        "metrics-target",
        lambda port: [
            sys.executable,
            "-c",
            f"import time, prometheus_client as p; {setting}"
            f"p.start_http_server({port}, addr='127.0.0.1'); time.sleep(3600)",
        ],
    )


class FakeEndpoints:
    """Pods bound to a Node object with an IP: endpoints for the Services selecting them."""

    def __init__(self, api: client.ApiClient, namespace: str) -> None:
        self.core = client.CoreV1Api(api)
        self.namespace = namespace
        self.node = f"no-kubelet-{uuid.uuid4().hex[:6]}"
        self.pods: list[str] = []

    def add_pod(
        self, labels: Mapping[str, str], ip: str, port: int = 8000, port_name: str = "http"
    ) -> str:
        name = f"pod-{uuid.uuid4().hex[:6]}"
        pod = client.V1Pod(
            metadata=client.V1ObjectMeta(name=name, labels=dict(labels)),
            spec=client.V1PodSpec(
                node_name=self.node,
                containers=[
                    client.V1Container(
                        name="app",
                        image="localhost/never-pulled:0",
                        ports=[client.V1ContainerPort(container_port=port, name=port_name)],
                    )
                ],
            ),
        )
        self.core.create_namespaced_pod(self.namespace, pod)
        self.pods.append(name)
        self.core.patch_namespaced_pod_status(
            name,
            self.namespace,
            {"status": {"phase": "Running", "podIP": ip, "podIPs": [{"ip": ip}]}},
        )
        return name

    def run_pods(self, selector: str, ip_prefix: str = "10.244.9.", first: int = 10) -> list[str]:
        """Do what a scheduler and kubelet would for the pods ``selector`` picks (a
        controller's pods): bind each to the Node, then report it Running and Ready, with
        the IPs ``ip_prefix`` + ``first``, ``first`` + 1..."""
        pods = self.core.list_namespaced_pod(self.namespace, label_selector=selector).items
        for index, pod in enumerate(pods):
            name = pod.metadata.name
            if not pod.spec.node_name:
                binding = client.V1Binding(
                    metadata=client.V1ObjectMeta(name=name),
                    target=client.V1ObjectReference(api_version="v1", kind="Node", name=self.node),
                )
                # The client cannot read the Status this answers with: do not parse it.
                self.core.create_namespaced_pod_binding(
                    name, self.namespace, binding, _preload_content=False
                )
            ip = f"{ip_prefix}{first + index}"
            ready = {"type": "Ready", "status": "True", "lastTransitionTime": None}
            self.core.patch_namespaced_pod_status(
                name,
                self.namespace,
                {
                    "status": {
                        "phase": "Running",
                        "podIP": ip,
                        "podIPs": [{"ip": ip}],
                        "conditions": [ready],
                    }
                },
            )
            self.pods.append(name)
        return [pod.metadata.name for pod in pods]

    def remove_pod(self, name: str) -> None:
        """Force-delete: no kubelet will ever confirm a graceful deletion."""
        with contextlib.suppress(ApiException):
            self.core.delete_namespaced_pod(name, self.namespace, grace_period_seconds=0)
        self.pods.remove(name)


@contextlib.contextmanager
def fake_endpoints(api: client.ApiClient, namespace: str) -> Iterator[FakeEndpoints]:
    endpoints = FakeEndpoints(api, namespace)
    endpoints.core.create_node(client.V1Node(metadata=client.V1ObjectMeta(name=endpoints.node)))
    try:
        yield endpoints
    finally:
        for name in list(endpoints.pods):
            endpoints.remove_pod(name)
        with contextlib.suppress(ApiException):
            endpoints.core.delete_node(endpoints.node)


def cr_objects(api: client.ApiClient, namespace: str, owner: str) -> list[dict[str, Any]]:
    """The CR's Services and ServiceMonitors as they are in the cluster."""
    selector = f"{OWNER_LABEL}={owner}"
    services = client.CoreV1Api(api).list_namespaced_service(namespace, label_selector=selector)
    objects = [
        {"kind": "Service", **api.sanitize_for_serialization(item)} for item in services.items
    ]
    monitors = client.CustomObjectsApi(api).list_namespaced_custom_object(
        "monitoring.coreos.com", "v1", namespace, "servicemonitors", label_selector=selector
    )
    return objects + [{**item, "kind": "ServiceMonitor"} for item in monitors["items"]]


def prometheus_for(
    api: client.ApiClient,
    namespace: str,
    owner: str,
    targets: Mapping[str, Sequence[str]],
    rule_groups: dict[str, Any] | None = None,
) -> contextlib.AbstractContextManager[prom.Prometheus]:
    """A real Prometheus with prometheus-operator's jobs for the CR's ServiceMonitors."""
    config = prom.prometheus_config(cr_objects(api, namespace, owner), targets, rule_files=[])
    return prom.prometheus_server(config, rule_groups)


@dataclass
class RequestRecorder:
    """The paths asked of a loopback HTTP server (each answered 200, empty)."""

    url: str
    requests: list[str] = field(default_factory=list)


@contextlib.contextmanager
def request_recorder(path: str = "/latest/meta-data") -> Iterator[RequestRecorder]:
    """A recorder on a free loopback port; ``url`` ends in ``path``."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), BaseHTTPRequestHandler)
    recorder = RequestRecorder(f"http://127.0.0.1:{server.server_address[1]}{path}")

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            recorder.requests.append(self.path)
            self.send_response(200)
            self.end_headers()

        def log_message(self, format: str, *args: object) -> None:
            pass

    server.RequestHandlerClass = Handler
    with serving(server):
        yield recorder


@contextlib.contextmanager
def serving(server: ThreadingHTTPServer) -> Iterator[ThreadingHTTPServer]:
    """``server`` answering from a thread of its own until exit (then closed)."""
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.2})
    thread.daemon = True
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)
