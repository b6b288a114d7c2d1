"""What the operator creates for the Django app: a metrics Service and its ServiceMonitor.

Why a Service + ServiceMonitor and not a PodMonitor: the Service gives the scrape target a
stable, discoverable name (``kubectl get endpoints``), the ServiceMonitor refers to its port by
name so the pods' port can change without touching monitoring, and it is what
kube-prometheus-stack users already select on. The Service is headless: it exists only to
publish endpoints, so it needs no cluster IP.
"""

from __future__ import annotations

from jewelry_monitoring.builders.common import (
    APP_COMPONENT,
    Obj,
    Owner,
    metadata,
    monitor_metadata,
    scrape_limit_fields,
)
from jewelry_monitoring.spec import AppSpec, SecretKeyRef

METRICS_PORT_NAME = "metrics"
# The Service port when the pods' port is given by name (a Service port must be a number).
DEFAULT_SERVICE_PORT = 8000


def _secret(ref: SecretKeyRef) -> Obj:
    return {"name": ref.name, "key": ref.key}


def _endpoint(app: AppSpec) -> Obj:
    endpoint: Obj = {
        "port": METRICS_PORT_NAME,
        "path": app.path,
        "interval": app.interval,
        "scrapeTimeout": app.scrape_timeout,
        "scheme": app.scheme,
        "relabelings": app.relabelings,
        "metricRelabelings": app.metric_relabelings,
    }
    if app.basic_auth:
        endpoint["basicAuth"] = {
            "username": _secret(app.basic_auth.username),
            "password": _secret(app.basic_auth.password),
        }
    if app.bearer_token_secret:
        endpoint["authorization"] = {
            "type": "Bearer",
            "credentials": _secret(app.bearer_token_secret),
        }
    if app.tls:
        tls: Obj = {"insecureSkipVerify": app.tls.insecure_skip_verify}
        if app.tls.server_name:
            tls["serverName"] = app.tls.server_name
        if app.tls.ca:
            tls["ca"] = {"secret": _secret(app.tls.ca)}
        endpoint["tlsConfig"] = tls
    return endpoint


def app_objects(owner: Owner) -> list[Obj]:
    """The metrics Service selecting the Django pods and the ServiceMonitor scraping it."""
    app = owner.spec.app
    if not app.enabled:
        return []
    service_meta = metadata(owner, APP_COMPONENT)
    service_port = app.port if isinstance(app.port, int) else DEFAULT_SERVICE_PORT
    service = {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": service_meta,
        "spec": {
            "clusterIP": "None",
            "selector": dict(app.pod_selector),
            "ports": [
                {
                    "name": METRICS_PORT_NAME,
                    "port": service_port,
                    "targetPort": app.port,
                    "protocol": "TCP",
                }
            ],
        },
    }
    service_monitor = {
        "apiVersion": "monitoring.coreos.com/v1",
        "kind": "ServiceMonitor",
        "metadata": monitor_metadata(owner, APP_COMPONENT),
        "spec": {
            # Select our own Service by its name-scoped labels, never the user's pod labels:
            # two JewelryMonitorings in a namespace must not scrape each other's targets.
            "selector": {
                "matchLabels": {
                    k: service_meta["labels"][k]
                    for k in ("app.kubernetes.io/name", "app.kubernetes.io/instance")
                }
            },
            "namespaceSelector": {"matchNames": [owner.namespace]},
            "endpoints": [_endpoint(app)],
            **scrape_limit_fields(app.scrape_limits),
        },
    }
    return [service, service_monitor]
