"""Is there anything to scrape, and is it scraped? Pure judgements of what the API and
Prometheus report, shared by the operator's conditions and ``jewelry-monitoring doctor``.

prometheus-operator reports whether it *configured* a Prometheus; nobody reports whether our
targets are *scraped*. Two facts answer that: the app Service has endpoints (the pod selector
matches running pods), and Prometheus' active targets of our scrape pools are up.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

Obj = dict[str, Any]
# Down targets named in a condition message; the rest are counted. Keeps the message short
# and stable (a condition message is at most 32 KiB).
LISTED_TARGETS = 5
# The label the EndpointSlice controller puts on a Service's slices: how the app Service's
# endpoints are found.
SERVICE_NAME_LABEL = "kubernetes.io/service-name"


@dataclass(frozen=True)
class Verdict:
    """A condition's status, reason and message."""

    status: str
    reason: str
    message: str


def selector_text(labels: dict[str, str]) -> str:
    """A label map as a label selector string (``a=b,c=d``), as kubectl takes it."""
    return ",".join(f"{key}={value}" for key, value in sorted(labels.items()))


def endpoint_addresses(slices: list[Obj]) -> set[str]:
    """The distinct pod addresses in a Service's EndpointSlices (ready or not: Prometheus
    scrapes every endpoint prometheus-operator discovers)."""
    return {
        address
        for endpoint_slice in slices
        for endpoint in endpoint_slice.get("endpoints") or []
        for address in (endpoint.get("addresses") or [])[:1]
    }


def app_targets_found(
    service: str, namespace: str, pod_selector: dict[str, str], slices: list[Obj]
) -> Verdict:
    """AppTargetsFound: whether the app's metrics Service has any endpoint."""
    count = len(endpoint_addresses(slices))
    selector = selector_text(pod_selector)
    if not count:
        return Verdict(
            "False",
            "NoEndpoints",
            f"Service {service} has no endpoints: no running pod in namespace {namespace} "
            f"matches app.podSelector {selector}",
        )
    noun = "endpoint" if count == 1 else "endpoints"
    return Verdict("True", "EndpointsFound", f"{count} {noun} match app.podSelector {selector}")


def scrape_pools(objects: list[Obj]) -> list[str]:
    """The scrape pool (job_name) prometheus-operator gives each endpoint of our
    ServiceMonitors: ``serviceMonitor/<namespace>/<name>/<endpoint index>``."""
    return sorted(
        f"serviceMonitor/{obj['metadata']['namespace']}/{obj['metadata']['name']}/{index}"
        for obj in objects
        if obj["kind"] == "ServiceMonitor"
        for index in range(len(obj["spec"].get("endpoints") or []))
    )


@dataclass(frozen=True)
class Target:
    """One active target as Prometheus reports it."""

    pool: str
    url: str
    health: str  # "up", "down" or "unknown" (not scraped yet)
    last_error: str

    @classmethod
    def from_api(cls, target: Obj) -> Target:
        return cls(
            pool=str(target.get("scrapePool", "")),
            url=str(target.get("scrapeUrl", "")),
            health=str(target.get("health", "unknown")),
            last_error=str(target.get("lastError", "")),
        )


def our_targets(pools: list[str], active_targets: list[Obj]) -> list[Target]:
    """The active targets of ``pools``, sorted (a Prometheus that ignores the scrapePool
    filter returns every target: they are filtered here)."""
    wanted = set(pools)
    return sorted(
        (Target.from_api(t) for t in active_targets if t.get("scrapePool") in wanted),
        key=lambda t: (t.pool, t.url),
    )


def targets_healthy(url: str, pools: list[str], targets: list[Target]) -> Verdict:
    """TargetsHealthy from the active targets of our pools."""
    if not pools:
        return Verdict("Unknown", "NoServiceMonitors", "this resource has no ServiceMonitor")
    down = [t for t in targets if t.health == "down"]
    if down:
        listed = "; ".join(f"{t.url} ({t.pool}): {t.last_error}" for t in down[:LISTED_TARGETS])
        more = f"; and {len(down) - LISTED_TARGETS} more" if len(down) > LISTED_TARGETS else ""
        return Verdict(
            "False", "TargetsDown", f"{len(down)} of {len(targets)} targets down: {listed}{more}"
        )
    empty = [pool for pool in pools if not any(t.pool == pool for t in targets)]
    if empty:
        return Verdict(
            "False",
            "NoTargets",
            f"Prometheus at {url} has no active target in {', '.join(empty)}: see "
            "SelectedByPrometheus and AppTargetsFound",
        )
    if any(t.health != "up" for t in targets):
        return Verdict("Unknown", "NotScrapedYet", "some targets were not scraped yet")
    noun = "target" if len(targets) == 1 else "targets"
    return Verdict("True", "TargetsUp", f"{len(targets)} {noun} up, none down")
