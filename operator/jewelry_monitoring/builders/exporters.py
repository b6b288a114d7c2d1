"""What the operator creates for each exporter: one description table, one builder.

Every enabled exporter becomes a Deployment, a Service with a port named ``metrics``, a
ServiceMonitor that scrapes that port by name and (unless ``networkPolicy.enabled`` is false)
a NetworkPolicy. ``EXPORTERS`` below is the whole difference between exporters: image
defaults live in the spec, everything else (port, how the connection settings reach the
process, probes, where it connects) lives here. None of them needs host access:
the node exporter, which does, is the chart's (templates/node-exporter.yaml), not a CR's.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Callable
from dataclasses import dataclass

from jewelry_monitoring.builders.common import (
    PREFIX,
    Obj,
    Owner,
    metadata,
    monitor_metadata,
    scrape_limit_fields,
    selector_labels,
)
from jewelry_monitoring.config import PLAIN_EXPORTER_PODS, ExporterPods
from jewelry_monitoring.spec import (
    CeleryExporterSpec,
    ExporterSpec,
    NginxExporterSpec,
    PeerSelector,
    PostgresExporterSpec,
    RedisExporterSpec,
    SecretKeyRef,
    exporter_target,
)

METRICS_PORT_NAME = "metrics"
# The exporters' images all run as "nobody"; we say so explicitly and refuse root.
NON_ROOT_UID = 65534

DEFAULT_RESOURCES = {
    "requests": {"cpu": "10m", "memory": "32Mi"},
    "limits": {"cpu": "200m", "memory": "128Mi"},
}
# The root filesystem is read-only: what an exporter writes locally is its log, which the
# kubelet rotates (10Mi x 5 by default) and counts as the pod's ephemeral storage. Added to
# whatever resources the user gives unless they set ephemeral-storage themselves.
EPHEMERAL_STORAGE = "ephemeral-storage"
DEFAULT_EPHEMERAL_STORAGE = {"requests": "16Mi", "limits": "64Mi"}

# Readiness asks the exporter's page over HTTP and takes it out of its Service after 3 failed
# probes (<= 45 s); liveness asks only that it still accepts connections (a probe that
# differs from readiness: kube-score flags identical ones), and restarts it only after 6
# failures 20 s apart (>= 100 s) with a longer timeout: a slow scrape under load makes it
# unready for a while, never restarted.
READINESS_PROBE = {"periodSeconds": 10, "timeoutSeconds": 5, "failureThreshold": 3}
LIVENESS_PROBE = {"periodSeconds": 20, "timeoutSeconds": 10, "failureThreshold": 6}
# Why each egress rule of an exporter's NetworkPolicy allows what it allows, for people.
EGRESS_ANNOTATION = f"{PREFIX}/egress"
# Every namespace, spelled so that it survives desired.without_empty (``{}`` means the same).
ALL_NAMESPACES = {
    "matchExpressions": [{"key": "kubernetes.io/metadata.name", "operator": "Exists"}]
}
NAMESPACE_NAME_LABEL = "kubernetes.io/metadata.name"


def _secret_env(name: str, ref: SecretKeyRef | None) -> list[Obj]:
    """An env var read from a Secret key: the value never passes through the operator."""
    if ref is None:
        return []
    return [{"name": name, "valueFrom": {"secretKeyRef": {"name": ref.name, "key": ref.key}}}]


def _postgres_env(spec: ExporterSpec) -> list[Obj]:
    assert isinstance(spec, PostgresExporterSpec)
    return _secret_env("DATA_SOURCE_NAME", spec.data_source)


def _redis_env(spec: ExporterSpec) -> list[Obj]:
    assert isinstance(spec, RedisExporterSpec)
    return [
        {"name": "REDIS_ADDR", "value": spec.address},
        *_secret_env("REDIS_PASSWORD", spec.password),
    ]


def _celery_env(spec: ExporterSpec) -> list[Obj]:
    assert isinstance(spec, CeleryExporterSpec)
    return _secret_env("CE_BROKER_URL", spec.broker_url)


# celery-exporter ends its process on any broker error unless --retry-interval is set (its
# default, 0, re-raises): a broker restart or failover (ElastiCache, Amazon MQ) then resets
# every counter, and a broker away for longer crash-loops the pod into back-off. With a
# retry it keeps its counters, subscribes again to the task events, and counts on.
CELERY_BROKER_RETRY_SECONDS = 5


def _celery_args(spec: ExporterSpec) -> list[str]:
    assert isinstance(spec, CeleryExporterSpec)
    return [f"--retry-interval={CELERY_BROKER_RETRY_SECONDS}"]


def _nginx_args(spec: ExporterSpec) -> list[str]:
    assert isinstance(spec, NginxExporterSpec)
    return [f"--nginx.scrape-uri={spec.scrape_uri}"]


def _no_env(_: ExporterSpec) -> list[Obj]:
    return []


def _no_args(_: ExporterSpec) -> list[str]:
    return []


@dataclass(frozen=True)
class Target:
    """Where an exporter connects, as far as its settings tell: host None when they are in a
    Secret the operator never reads, and then every port such a target usually listens on."""

    host: str | None
    ports: tuple[int, ...]


def _from_settings(spec: ExporterSpec) -> Target:
    """The target its settings name (validated before: see spec.exporter_target)."""
    found = exporter_target(spec)
    assert isinstance(found, tuple), found
    host, port = found
    return Target(host, (port,))


def _in_secret(*ports: int) -> Callable[[ExporterSpec], Target]:
    return lambda _: Target(None, ports)


@dataclass(frozen=True)
class ExporterKind:
    """How one exporter runs: everything that differs between exporters."""

    port: int
    probe_path: str
    target: Callable[[ExporterSpec], Target]
    # The exporter's own gauge of whether it reaches its target (1) or not (0), if it has one.
    up_metric: str | None
    env: Callable[[ExporterSpec], list[Obj]] = _no_env
    args: Callable[[ExporterSpec], list[str]] = _no_args


EXPORTERS: dict[str, ExporterKind] = {
    # postgres_exporter: DSN from DATA_SOURCE_NAME; "/" is its landing page, cheap to probe
    # (/metrics would query the database on every probe). The DSN is in a Secret: egress
    # to PostgreSQL's port anywhere (RDS, another namespace) unless networkTarget says where.
    "postgres": ExporterKind(9187, "/", _in_secret(5432), "pg_up", env=_postgres_env),
    # redis_exporter: REDIS_ADDR / REDIS_PASSWORD; has a dedicated /health.
    "redis": ExporterKind(9121, "/health", _from_settings, "redis_up", env=_redis_env),
    # nginx-prometheus-exporter 1.x: reads stub_status from --nginx.scrape-uri.
    "nginx": ExporterKind(9113, "/", _from_settings, "nginx_up", args=_nginx_args),
    # celery-exporter: broker URL from CE_BROKER_URL (a Secret: Redis or ElastiCache on 6379,
    # RabbitMQ or Amazon MQ on 5672, or 5671 with TLS); /health answers without the broker.
    # It has no gauge of the broker connection: a broker it cannot reach shows as no worker.
    "celery": ExporterKind(
        9808, "/health", _in_secret(6379, 5672, 5671), None, env=_celery_env, args=_celery_args
    ),
}


def component(exporter: str) -> str:
    """The component name of an exporter: also its job label and Service name suffix."""
    return f"{exporter}-exporter"


def _resources(spec: ExporterSpec) -> Obj:
    """The user's resources (or ours), with ephemeral storage unless the user set it."""
    chosen = spec.resources.model_dump() if spec.resources else DEFAULT_RESOURCES
    resources = {kind: dict(chosen.get(kind, {})) for kind in ("requests", "limits")}
    if not any(EPHEMERAL_STORAGE in amounts for amounts in resources.values()):
        for kind, amount in DEFAULT_EPHEMERAL_STORAGE.items():
            resources[kind][EPHEMERAL_STORAGE] = amount
    return resources


def _container(name: str, spec: ExporterSpec, kind: ExporterKind) -> Obj:
    readiness = {"httpGet": {"path": kind.probe_path, "port": METRICS_PORT_NAME}}
    liveness = {"tcpSocket": {"port": METRICS_PORT_NAME}}
    return {
        "name": name,
        "image": spec.image,
        "args": [*kind.args(spec), *spec.extra_args],
        "env": kind.env(spec),
        "ports": [{"name": METRICS_PORT_NAME, "containerPort": kind.port, "protocol": "TCP"}],
        "livenessProbe": {**liveness, **LIVENESS_PROBE},
        "readinessProbe": {**readiness, **READINESS_PROBE},
        "resources": _resources(spec),
        "securityContext": {
            "allowPrivilegeEscalation": False,
            "readOnlyRootFilesystem": True,
            "runAsNonRoot": True,
            "capabilities": {"drop": ["ALL"]},
        },
    }


def _workload(
    owner: Owner, exporter: str, spec: ExporterSpec, kind: ExporterKind, pods: ExporterPods
) -> Obj:
    part = component(exporter)
    pod_spec: Obj = {
        "automountServiceAccountToken": False,
        "imagePullSecrets": [{"name": name} for name in pods.image_pull_secrets],
        "priorityClassName": pods.priority_class_name or None,
        "securityContext": {
            "runAsNonRoot": True,
            "runAsUser": NON_ROOT_UID,
            "runAsGroup": NON_ROOT_UID,
            "seccompProfile": {"type": "RuntimeDefault"},
        },
        "containers": [_container(part, spec, kind)],
        "nodeSelector": spec.node_selector,
        "tolerations": spec.tolerations,
    }
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": metadata(owner, part),
        "spec": {
            "replicas": 1,
            "selector": {"matchLabels": selector_labels(owner, part)},
            "template": {
                "metadata": {"labels": metadata(owner, part)["labels"]},
                "spec": pod_spec,
            },
        },
    }


def _service(owner: Owner, exporter: str, kind: ExporterKind) -> Obj:
    """Headless: Prometheus scrapes the pods the Service's endpoints list and never its
    address, so an exporter takes none from the cluster's Service range (1,000 resources
    would take 4,000, more than a /20 holds) and adds nothing to kube-proxy's rules."""
    part = component(exporter)
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": metadata(owner, part),
        "spec": {
            "clusterIP": "None",
            "selector": selector_labels(owner, part),
            "ports": [
                {
                    "name": METRICS_PORT_NAME,
                    "port": kind.port,
                    "targetPort": METRICS_PORT_NAME,
                    "protocol": "TCP",
                }
            ],
        },
    }


def _service_monitor(owner: Owner, exporter: str, spec: ExporterSpec) -> Obj:
    part = component(exporter)
    return {
        "apiVersion": "monitoring.coreos.com/v1",
        "kind": "ServiceMonitor",
        "metadata": monitor_metadata(owner, part),
        "spec": {
            "selector": {"matchLabels": selector_labels(owner, part)},
            "namespaceSelector": {"matchNames": [owner.namespace]},
            "endpoints": [
                {
                    "port": METRICS_PORT_NAME,
                    "path": "/metrics",
                    "interval": spec.interval,
                    "scrapeTimeout": spec.scrape_timeout,
                }
            ],
            **scrape_limit_fields(spec.scrape_limits),
        },
    }


def _peer(selector: PeerSelector) -> Obj:
    """The pods ``selector`` picks. A namespaceSelector unset or ``{}`` selects every
    namespace, as in Kubernetes; neither may become "this namespace" (no selector)."""
    namespaces = selector.namespace_selector
    return {
        "podSelector": {"matchLabels": selector.pod_selector},
        "namespaceSelector": {"matchLabels": namespaces} if namespaces else ALL_NAMESPACES,
    }


def _in_namespace(namespace: str, pods: dict[str, str]) -> Obj:
    """Pods of one namespace with these labels; every pod of it if ``pods`` is empty."""
    peer: Obj = {"namespaceSelector": {"matchLabels": {NAMESPACE_NAME_LABEL: namespace}}}
    if pods:
        peer["podSelector"] = {"matchLabels": pods}
    return peer


def _cluster_service(host: str, namespace: str) -> str | None:
    """The namespace of a Service a host name resolves to in the cluster, or None.

    Only unambiguous spellings count: ``name`` (this namespace), ``name.ns.svc`` and
    ``name.ns.svc.cluster.local``. ``name.ns`` might just as well be a public domain.
    """
    labels = host.rstrip(".").split(".")
    if len(labels) == 1:
        return namespace
    if labels[2:] in (["svc"], ["svc", "cluster", "local"]):
        return labels[1]
    return None


def _egress_target(owner: Owner, exporter: str, spec: ExporterSpec) -> tuple[Obj, str]:
    """The egress rule to an exporter's target, and why it allows what it does."""
    derived = EXPORTERS[exporter].target(spec)
    chosen = spec.network_target
    ports = (chosen.ports if chosen and chosen.ports else None) or list(derived.ports)
    rule_ports = [{"protocol": "TCP", "port": port} for port in ports]
    where = f"exporters.{exporter}.networkTarget"
    if chosen and chosen.cidrs:
        peers = [{"ipBlock": {"cidr": cidr}} for cidr in chosen.cidrs]
        return {"to": peers, "ports": rule_ports}, f"{chosen.cidrs} as {where} says"
    if chosen and (chosen.pod_selector or chosen.namespace):
        pods_in = chosen.namespace or owner.namespace
        peer = _in_namespace(pods_in, chosen.pod_selector)
        return {"to": [peer], "ports": rule_ports}, f"pods in {pods_in} as {where} says"
    if derived.host is None:
        # Never "this namespace" by guesswork: a managed database or a broker elsewhere would
        # be cut off silently, and its exporter would report the target down.
        return {"ports": rule_ports}, (
            f"any address on {ports}: the target is in a Secret the operator does not read; "
            f"set {where} (cidrs, or podSelector and namespace; ports) to narrow"
        )
    try:
        address = ipaddress.ip_address(derived.host)
    except ValueError:
        namespace = _cluster_service(derived.host, owner.namespace)
    else:
        cidr = f"{address}/{address.max_prefixlen}"
        return {"to": [{"ipBlock": {"cidr": cidr}}], "ports": rule_ports}, f"{cidr}, the target"
    if namespace is not None:
        return {"to": [_in_namespace(namespace, {})], "ports": rule_ports}, (
            f"any pod of namespace {namespace}: {derived.host} is a Service there, whose pods "
            f"the operator does not look up; set {where}.podSelector to narrow"
        )
    return {"ports": rule_ports}, (
        f"any address: {derived.host} is not a cluster Service and a NetworkPolicy cannot "
        f"name hosts; set {where}.cidrs to narrow"
    )


def _network_policy(owner: Owner, exporter: str, kind: ExporterKind) -> Obj:
    """Ingress only from Prometheus to the metrics port; egress only to the target and DNS:
    the exporter holds credentials, so it may reach nothing else."""
    part = component(exporter)
    settings = owner.spec.network_policy
    target, why = _egress_target(owner, exporter, owner.spec.exporters.enabled()[exporter])
    dns_ports = [{"protocol": protocol, "port": 53} for protocol in ("UDP", "TCP")]
    return {
        "apiVersion": "networking.k8s.io/v1",
        "kind": "NetworkPolicy",
        "metadata": metadata(owner, part, annotations={EGRESS_ANNOTATION: why}),
        "spec": {
            "podSelector": {"matchLabels": selector_labels(owner, part)},
            "policyTypes": ["Ingress", "Egress"],
            "ingress": [
                {
                    "from": [_peer(settings.prometheus)],
                    "ports": [{"protocol": "TCP", "port": kind.port}],
                }
            ],
            "egress": [{"to": [_peer(settings.dns)], "ports": dns_ports}, target],
        },
    }


def exporter_objects(owner: Owner, pods: ExporterPods = PLAIN_EXPORTER_PODS) -> list[Obj]:
    """Workload, Service, ServiceMonitor and NetworkPolicy of every enabled exporter."""
    objects: list[Obj] = []
    for exporter, spec in owner.spec.exporters.enabled().items():
        kind = EXPORTERS[exporter]
        objects += [
            _workload(owner, exporter, spec, kind, pods),
            _service(owner, exporter, kind),
            _service_monitor(owner, exporter, spec),
        ]
        if owner.spec.network_policy.enabled:
            objects.append(_network_policy(owner, exporter, kind))
    return objects
