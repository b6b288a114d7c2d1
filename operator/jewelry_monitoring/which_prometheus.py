"""Which Prometheus the operator (and doctor) asks about one resource, and whether it may.

A URL taken from a resource as it stands would let anyone who may write a JewelryMonitoring
make the operator fetch whatever its network reaches (a cloud metadata address included)
and read the answer back from the status. So the operator asks only:

* a prometheus-operator ``Prometheus`` resource that exists (named by the resource in
  ``spec.prometheus.prometheusRef``, or by the chart in ``prometheus.ref``), through the
  governing Service prometheus-operator makes for it: ``prometheus-operated`` in its
  namespace, port 9090 (``web``), under its ``routePrefix``;
* or a URL the cluster admin listed in the chart (``prometheus.url``,
  ``prometheus.allowedUrls``).

Anything else is refused with a condition that names the chart value to change. Pure.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from jewelry_monitoring.config import ResourceDefaults
from jewelry_monitoring.spec import PrometheusSpec

Obj = dict[str, Any]
GOVERNING_SERVICE = "prometheus-operated"
# prometheus-operator's Prometheus pods listen on 9090 (the ``web`` port of its Services).
PROMETHEUS_PORT = 9090
Key = tuple[str, str]


@dataclass(frozen=True)
class Asked:
    """What to ask (``url``), which Prometheus resource that is when it is one, or why
    nothing is asked (``reason`` and ``message`` of an Unknown condition)."""

    url: str = ""
    resource: Key | None = None
    reason: str = ""
    message: str = ""


def service_url(prometheus: Obj, prometheuses: list[Obj]) -> str:
    """The base URL of a Prometheus resource's HTTP API inside the cluster.

    ``prometheus-operated`` selects the pods of every Prometheus in its namespace: with
    more than one there, the first replica's own name under it (a StatefulSet pod's DNS
    name) is the one that surely is this Prometheus."""
    meta = prometheus["metadata"]
    namespace, name = meta["namespace"], meta["name"]
    prefix = str((prometheus.get("spec") or {}).get("routePrefix") or "").strip("/")
    shared = sum(1 for p in prometheuses if p["metadata"]["namespace"] == namespace) > 1
    host = f"{GOVERNING_SERVICE}.{namespace}.svc"
    if shared:
        host = f"prometheus-{name}-0.{host}"
    return f"http://{host}:{PROMETHEUS_PORT}" + (f"/{prefix}" if prefix else "")


def _resource(key: Key, prometheuses: list[Obj], named_by: str) -> Asked:
    found = [p for p in prometheuses if (p["metadata"]["namespace"], p["metadata"]["name"]) == key]
    if not found:
        return Asked(
            resource=key,
            reason="PrometheusNotFound",
            message=f"{named_by} names Prometheus {key[0]}/{key[1]}, which does not exist",
        )
    return Asked(url=service_url(found[0], prometheuses), resource=key)


# Asked.reason when nothing names a Prometheus: the one case in which Ready may say True
# without one (monitored.unverified); any other reason is a Prometheus that should have been
# asked and could not be.
NO_PROMETHEUS = "NoPrometheusToAsk"


def choose(
    spec: PrometheusSpec | None, defaults: ResourceDefaults, prometheuses: list[Obj]
) -> Asked:
    """The Prometheus to ask about a resource whose (defaults applied) spec.prometheus is
    ``spec``, among the Prometheus resources of the cluster."""
    if spec is None:
        return Asked(
            reason=NO_PROMETHEUS,
            message="no Prometheus to ask: set the chart's prometheus.ref (<namespace>/<name> "
            "of a Prometheus resource) or prometheus.url for every resource, or "
            "spec.prometheus.prometheusRef for this one, to have the operator check that the "
            "targets are scraped and the rules loaded",
        )
    if spec.url:
        if defaults.url_allowed(spec.url):
            return Asked(url=spec.url)
        return Asked(
            reason="PrometheusNotAllowed",
            message=f"spec.prometheus.url {spec.url} is not a Prometheus URL the chart "
            "allows (prometheus.url, prometheus.allowedUrls), and the operator fetches no "
            "other: name a Prometheus resource in spec.prometheus.prometheusRef instead, or "
            "have the cluster admin add the URL to prometheus.allowedUrls",
        )
    if spec.prometheus_ref is not None:
        key = (spec.prometheus_ref.namespace, spec.prometheus_ref.name)
        return _resource(key, prometheuses, "spec.prometheus.prometheusRef")
    if defaults.prometheus_url:
        return Asked(url=defaults.prometheus_url)
    if defaults.prometheus_ref:
        namespace, _, name = defaults.prometheus_ref.partition("/")
        return _resource((namespace, name), prometheuses, "the chart's prometheus.ref")
    return choose(None, defaults, prometheuses)
