"""What the operator creates for each exporter: one description table, one builder.

Every enabled exporter becomes a Deployment, a Service with a port named ``metrics``, and a
ServiceMonitor that scrapes that port by name. ``EXPORTERS`` below is the whole difference
between exporters: image defaults live in the spec, everything else (port, how the
connection settings reach the process, probes) lives here. None of them needs host access:
the node exporter, which does, is the chart's (templates/node-exporter.yaml), not a CR's.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from jewelry_monitoring.builders.common import (
    Obj,
    Owner,
    metadata,
    monitor_metadata,
    selector_labels,
)
from jewelry_monitoring.spec import (
    CeleryExporterSpec,
    ExporterSpec,
    NginxExporterSpec,
    PostgresExporterSpec,
    RedisExporterSpec,
    SecretKeyRef,
)

METRICS_PORT_NAME = "metrics"
# The exporters' images all run as "nobody"; we say so explicitly and refuse root.
NON_ROOT_UID = 65534

DEFAULT_RESOURCES = {
    "requests": {"cpu": "10m", "memory": "32Mi"},
    "limits": {"cpu": "200m", "memory": "128Mi"},
}


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


def _nginx_args(spec: ExporterSpec) -> list[str]:
    assert isinstance(spec, NginxExporterSpec)
    return [f"--nginx.scrape-uri={spec.scrape_uri}"]


def _no_env(_: ExporterSpec) -> list[Obj]:
    return []


def _no_args(_: ExporterSpec) -> list[str]:
    return []


@dataclass(frozen=True)
class ExporterKind:
    """How one exporter runs: everything that differs between exporters."""

    port: int
    probe_path: str
    env: Callable[[ExporterSpec], list[Obj]] = _no_env
    args: Callable[[ExporterSpec], list[str]] = _no_args


EXPORTERS: dict[str, ExporterKind] = {
    # postgres_exporter: DSN from DATA_SOURCE_NAME; "/" is its landing page, cheap to probe
    # (/metrics would query the database on every probe).
    "postgres": ExporterKind(port=9187, probe_path="/", env=_postgres_env),
    # redis_exporter: REDIS_ADDR / REDIS_PASSWORD; has a dedicated /health.
    "redis": ExporterKind(port=9121, probe_path="/health", env=_redis_env),
    # nginx-prometheus-exporter 1.x: reads stub_status from --nginx.scrape-uri.
    "nginx": ExporterKind(port=9113, probe_path="/", args=_nginx_args),
    # celery-exporter: broker URL from CE_BROKER_URL; /health answers without the broker.
    "celery": ExporterKind(port=9808, probe_path="/health", env=_celery_env),
}


def component(exporter: str) -> str:
    """The component name of an exporter: also its job label and Service name suffix."""
    return f"{exporter}-exporter"


def _container(name: str, spec: ExporterSpec, kind: ExporterKind) -> Obj:
    probe = {
        "httpGet": {"path": kind.probe_path, "port": METRICS_PORT_NAME},
        "periodSeconds": 10,
        "timeoutSeconds": 5,
    }
    resources = spec.resources.model_dump() if spec.resources else DEFAULT_RESOURCES
    return {
        "name": name,
        "image": spec.image,
        "args": [*kind.args(spec), *spec.extra_args],
        "env": kind.env(spec),
        "ports": [{"name": METRICS_PORT_NAME, "containerPort": kind.port, "protocol": "TCP"}],
        "livenessProbe": {**probe, "failureThreshold": 6},
        "readinessProbe": {**probe, "failureThreshold": 3},
        "resources": resources,
        "securityContext": {
            "allowPrivilegeEscalation": False,
            "readOnlyRootFilesystem": True,
            "runAsNonRoot": True,
            "capabilities": {"drop": ["ALL"]},
        },
    }


def _workload(owner: Owner, exporter: str, spec: ExporterSpec, kind: ExporterKind) -> Obj:
    part = component(exporter)
    pod_spec: Obj = {
        "automountServiceAccountToken": False,
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
    part = component(exporter)
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": metadata(owner, part),
        "spec": {
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
        },
    }


def exporter_objects(owner: Owner) -> list[Obj]:
    """Workload, Service and ServiceMonitor of every enabled exporter."""
    objects: list[Obj] = []
    for exporter, spec in owner.spec.exporters.enabled().items():
        kind = EXPORTERS[exporter]
        objects += [
            _workload(owner, exporter, spec, kind),
            _service(owner, exporter, kind),
            _service_monitor(owner, exporter, spec),
        ]
    return objects
