"""Every kind of launcher starts again on fresh ports when its port is taken between the
choice and the bind (issue 17: a fresh machine's first run lost a session fixture, and 29
tests, to ``etcd exited during start: listen tcp 127.0.0.1:62094: bind: address already in
use``). ``port_thief`` (devkit.port_thief) binds the next chosen ports right after the
chooser found them free; each launcher must still start, on other ports, and say why.

The node's processes (kubelet, kube-proxy, kube-scheduler, the API relay) are proved in
tests/node/test_node_lifecycle.py, under the host's one node; CoreDNS binds only the node
IP's port 53, which no chooser picks.
"""

from __future__ import annotations

import contextlib
import logging
import urllib.request
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client

from devkit import prometheus as prom
from devkit.cluster import ControlPlane
from devkit.kubetools import api_client
from devkit.operator_process import install_rbac, start_operator
from devkit.port_thief import PortThief
from devkit.ports import START_ATTEMPTS, lost_bind, refusing_port
from devkit.prometheus_operator import prometheus_operator
from devkit.registry import registry_server
from devkit.scrape_targets import metrics_target
from devkit.services import nginx_service, postgres_service, redis_service
from devkit.shopapp import gunicorn_server, http_status, shop_env

RETRIED = "lost a port to another process; starting it on fresh ports"


def _retried(caplog: pytest.LogCaptureFixture, what: str) -> bool:
    return any(
        record.name == "devkit.ports" and record.getMessage() == f"{what} {RETRIED}"
        for record in caplog.records
    )


@pytest.mark.cluster
def test_each_control_plane_process_starts_again_on_fresh_ports(
    tmp_path: Path, port_thief: PortThief
) -> None:
    port_thief.steal(4)
    plane = ControlPlane.create(tmp_path)
    first = [plane.etcd_port, plane.etcd_peer_port, plane.apiserver_port]
    first.append(plane.controller_manager_port)
    assert sorted(first) == sorted(port_thief.stolen)
    plane.start()
    try:
        now = {plane.etcd_port, plane.etcd_peer_port, plane.apiserver_port}
        now.add(plane.controller_manager_port)
        assert not now & set(port_thief.stolen)
        for name in ("etcd", "kube-apiserver", "kube-controller-manager"):
            assert lost_bind(plane.log_tail(name, lines=10_000)), f"{name} never lost its port"
        assert client.CoreV1Api(api_client(plane.kubeconfig)).list_namespace().items
    finally:
        plane.stop()


def _postgres() -> contextlib.AbstractContextManager[Any]:
    return postgres_service()


def _site(port: int, status_port: int) -> str:
    return (
        f"server {{ listen 127.0.0.1:{port}; location / {{ return 200 'shop'; }} }}\n"
        f"server {{ listen 127.0.0.1:{status_port}; location / {{ stub_status; }} }}"
    )


SERVICES: dict[str, tuple[Callable[[], contextlib.AbstractContextManager[Any]], int, str]] = {
    "postgres": (_postgres, 1, "postgres"),
    "redis": (redis_service, 1, "redis-server"),
    "nginx": (lambda: nginx_service(_site), 2, "nginx"),
}


@pytest.mark.services
@pytest.mark.parametrize("kind", sorted(SERVICES))
def test_a_service_starts_again_on_a_fresh_port(
    kind: str, port_thief: PortThief, caplog: pytest.LogCaptureFixture
) -> None:
    launcher, ports, what = SERVICES[kind]
    caplog.set_level(logging.WARNING, logger="devkit.ports")
    port_thief.steal(ports)
    with launcher() as service:
        assert service.port not in port_thief.stolen
        assert _retried(caplog, what), caplog.text
        if kind == "postgres":
            service.createdb("after_the_theft")
        elif kind == "redis":
            assert service.command("PING") == b"+PONG"
        else:
            assert http_status(service.url) == 200
            assert service.status_port not in port_thief.stolen
            assert http_status(f"http://127.0.0.1:{service.status_port}/") == 200


@contextlib.contextmanager
def _prometheus(_: contextlib.ExitStack) -> Iterator[prom.Process]:
    with prom.prometheus_server({"global": {"scrape_interval": "15s"}}) as server:
        yield server.process


@contextlib.contextmanager
def _registry(_: contextlib.ExitStack) -> Iterator[prom.Process]:
    with registry_server() as registry:
        yield registry.process


def _postgres_exporter(
    needs: contextlib.ExitStack,
) -> contextlib.AbstractContextManager[prom.Process]:
    # A database that is down: the exporter serves /metrics (pg_up 0) all the same.
    port = needs.enter_context(refusing_port())
    return prom.postgres_exporter(f"postgresql://nobody@127.0.0.1:{port}/none?sslmode=disable")


def _nginx_exporter(needs: contextlib.ExitStack) -> contextlib.AbstractContextManager[prom.Process]:
    # Debian's 0.11 exits at start when stub_status does not answer: a real nginx.
    nginx = needs.enter_context(nginx_service(_site))
    return prom.nginx_exporter(f"http://127.0.0.1:{nginx.status_port}/")


# Each launcher, given what it needs, started into ``needs`` before the theft (so that the
# thief takes the launcher's own port).
Launcher = Callable[[contextlib.ExitStack], contextlib.AbstractContextManager[prom.Process]]
PROCESSES: dict[str, Launcher] = {
    "prometheus": _prometheus,
    "alertmanager": lambda needs: prom.alertmanager_server(
        needs.enter_context(prom.webhook_receiver()).url
    ),
    "node-exporter": lambda _: prom.node_exporter(),
    "postgres-exporter": _postgres_exporter,
    "redis-exporter": lambda needs: prom.redis_exporter(needs.enter_context(redis_service()).url),
    "nginx-exporter": _nginx_exporter,
    "celery-exporter": lambda needs: prom.celery_exporter(needs.enter_context(redis_service()).url),
    "metrics-target": lambda _: metrics_target(),
    "registry": _registry,
}


@pytest.mark.services
@pytest.mark.parametrize("what", sorted(PROCESSES))
def test_a_monitoring_process_or_the_registry_starts_again_on_a_fresh_port(
    what: str, port_thief: PortThief, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="devkit.ports")
    with contextlib.ExitStack() as needs:
        launcher = PROCESSES[what](needs)
        port_thief.steal(1)
        running = needs.enter_context(launcher)
        assert running.port not in port_thief.stolen
        assert _retried(caplog, what), caplog.text
        # A restart (an exporter taken down and back) keeps the port its scrapers know.
        port = running.port
        running.stop()
        running.start()
        assert running.port == port
        assert http_status(f"http://127.0.0.1:{port}{running.ready_path}") == 200


@pytest.mark.services
def test_a_launcher_that_loses_its_port_at_every_start_gives_up_and_says_why(
    port_thief: PortThief,
) -> None:
    port_thief.steal(START_ATTEMPTS)
    lost = f"node-exporter lost its port to another process at each of its {START_ATTEMPTS} starts"
    with pytest.raises(RuntimeError, match=lost), prom.node_exporter():
        pass
    assert len(port_thief.stolen) == START_ATTEMPTS


@pytest.mark.cluster
def test_prometheus_operator_starts_again_on_a_fresh_port(
    control_plane: ControlPlane,
    prometheus_operator_crd_names: list[str],
    port_thief: PortThief,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.WARNING, logger="devkit.ports")
    port_thief.steal(1)
    with prometheus_operator(control_plane) as running:
        assert running.port not in port_thief.stolen
        assert _retried(caplog, "prometheus-operator"), caplog.text


@pytest.mark.services
def test_the_shop_starts_again_on_a_fresh_port(
    tmp_path: Path, port_thief: PortThief, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="devkit.ports")
    port_thief.steal(1)
    env = shop_env(f"sqlite:///{tmp_path / 'shop.sqlite3'}")
    with gunicorn_server(env, workers=1) as shop:
        assert shop.port not in port_thief.stolen
        assert _retried(caplog, "gunicorn"), caplog.text
        assert http_status(shop.url + "/healthz") == 200


@pytest.mark.cluster
def test_the_operator_starts_again_on_fresh_ports(
    control_plane: ControlPlane,
    admin_api: client.ApiClient,
    jewelry_crd: list[str],
    prometheus_operator_crd_names: list[str],
    tmp_path: Path,
    port_thief: PortThief,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Its liveness and metrics ports both taken: it starts on two others."""
    namespace = f"t-ports-{uuid.uuid4().hex[:8]}"
    kubeconfig = install_rbac(control_plane, admin_api, "jm-ports", namespace)
    user = f"system:serviceaccount:{namespace}:jm-ports-jewelry-monitoring"
    caplog.set_level(logging.WARNING, logger="devkit.ports")
    port_thief.steal(2)
    # Watching only its own namespace: the session's operator keeps every other.
    running = start_operator(
        kubeconfig, tmp_path / "operator.log", user, ("--namespace", namespace)
    )
    try:
        assert not {running.liveness_port, running.metrics_port} & set(port_thief.stolen)
        assert _retried(caplog, "operator"), caplog.text
        assert "jewelry_monitoring_" in running.metrics()
        with urllib.request.urlopen(
            f"http://127.0.0.1:{running.liveness_port}/healthz", timeout=5
        ) as reply:
            assert reply.status == 200
    finally:
        running.stop()
        client.CoreV1Api(admin_api).delete_namespace(namespace)
