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
# Which of our components an object belongs to: the app's metrics, or an exporter.
COMPONENT_LABEL = "app.kubernetes.io/component"


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


def scrape_pools(objects: list[Obj], component: str | None = None) -> list[str]:
    """The scrape pool (job_name) prometheus-operator gives each endpoint of our
    ServiceMonitors (of one ``component`` only, when given):
    ``serviceMonitor/<namespace>/<name>/<endpoint index>``."""
    return sorted(
        f"serviceMonitor/{obj['metadata']['namespace']}/{obj['metadata']['name']}/{index}"
        for obj in objects
        if obj["kind"] == "ServiceMonitor"
        and component in (None, obj["metadata"].get("labels", {}).get(COMPONENT_LABEL))
        for index in range(len(obj["spec"].get("endpoints") or []))
    )


def _selects(selector: Obj, labels: dict[str, str]) -> bool:
    return all(labels.get(k) == v for k, v in (selector.get("matchLabels") or {}).items())


@dataclass(frozen=True)
class Endpoint:
    """One address and port of one of our Services, as its EndpointSlices list it, in the
    scrape pool of the ServiceMonitor endpoint that scrapes that port."""

    pool: str
    service: str
    port_name: str
    address: str  # "ip:port"; just "ip" when the pod has no such port
    has_port: bool


def _host_port(ip: str, port: int | None) -> str:
    host = f"[{ip}]" if ":" in ip else ip
    return host if port is None else f"{host}:{port}"


def our_endpoints(objects: list[Obj], slices: list[Obj]) -> list[Endpoint]:
    """Every endpoint of our Services that one of our ServiceMonitors scrapes, from the
    Services' EndpointSlices (ready or not: Prometheus discovers both)."""
    services = [o for o in objects if o["kind"] == "Service"]
    found: set[Endpoint] = set()
    for monitor in (o for o in objects if o["kind"] == "ServiceMonitor"):
        meta = monitor["metadata"]
        for service in services:
            if not _selects(monitor["spec"]["selector"], service["metadata"].get("labels", {})):
                continue
            name = service["metadata"]["name"]
            for index, endpoint in enumerate(monitor["spec"].get("endpoints") or []):
                pool = f"serviceMonitor/{meta['namespace']}/{meta['name']}/{index}"
                port_name = str(endpoint.get("port", ""))
                for endpoint_slice in slices:
                    labels = endpoint_slice.get("metadata", {}).get("labels", {})
                    if labels.get(SERVICE_NAME_LABEL) != name:
                        continue
                    numbers = [
                        p.get("port")
                        for p in endpoint_slice.get("ports") or []
                        if p.get("name") == port_name
                    ]
                    port = numbers[0] if numbers else None
                    for item in endpoint_slice.get("endpoints") or []:
                        for ip in (item.get("addresses") or [])[:1]:
                            address = _host_port(ip, port)
                            found.add(Endpoint(pool, name, port_name, address, bool(numbers)))
    return sorted(found, key=lambda e: (e.pool, e.address))


# What a scrape error means, by a part of Prometheus' lastError (first match wins).
# The app's /metrics refuses an address its allowlist does not name.
_APP_403 = (
    "HTTP status 403",
    "refused (403): the app's PROMETHEUS_METRICS_ALLOWED_IPS does not allow Prometheus' address",
)
_ERRORS = (
    ("HTTP status 403", "refused (403): the endpoint does not allow Prometheus' address"),
    ("HTTP status 401", "refused (401): it wants credentials (app.basicAuth or bearerTokenSecret)"),
    ("context deadline exceeded", "timed out: no answer within the scrape timeout"),
    ("connection refused", "connection refused: nothing listens on the port"),
    ("no route to host", "no route to the address"),
)
# How to let Prometheus through the app's allowlist.
APP_403_FIX = (
    "add the Prometheus pods' network to PROMETHEUS_METRICS_ALLOWED_IPS in the Django pods' "
    "environment"
)


def scrape_error(last_error: str, is_app: bool = False) -> str:
    """Prometheus' last scrape error with what it means in front, when we know."""
    for part, meaning in (_APP_403, *_ERRORS) if is_app else _ERRORS:
        if part in last_error:
            return f"{meaning} ({last_error})"
    return last_error


UP, FAILING, DROPPED, NOT_DISCOVERED, NOT_SCRAPED_YET = (
    "up",
    "failing",
    "dropped",
    "not discovered",
    "not scraped yet",
)
# Where an endpoint can stand, the worst first: how states are listed and counted.
STATES = (FAILING, NOT_DISCOVERED, DROPPED, NOT_SCRAPED_YET, UP)


@dataclass(frozen=True)
class EndpointState:
    """Where one endpoint stands in Prometheus, and why (empty when it is up). ``lagging``:
    it may only be not there *yet* (not discovered by a Prometheus whose configuration or
    discovery lags, or not scraped for the first time), not surely wrong."""

    pool: str
    address: str
    state: str
    why: str = ""
    lagging: bool = False

    @property
    def line(self) -> str:
        return f"{self.address} ({self.pool}): {self.state}" + (f": {self.why}" if self.why else "")


def _address(target: Obj) -> str:
    labels = target.get("discoveredLabels") or {}
    return str(labels.get("__address__", ""))


def _dropped_why(endpoint: Endpoint, target: Obj) -> str:
    labels = target.get("discoveredLabels") or {}
    port_name = labels.get(
        "__meta_kubernetes_endpointslice_port_name",
        labels.get("__meta_kubernetes_endpoint_port_name"),
    )
    if port_name is not None and port_name != endpoint.port_name:
        return f"its port is named {port_name!r}, the ServiceMonitor scrapes {endpoint.port_name!r}"
    return (
        "a relabeling drops it (app.relabelings, or the ServiceMonitor's own): compare its "
        "discovered labels with them in Prometheus' Targets page (Show dropped)"
    )


def endpoint_states(
    endpoints: list[Endpoint],
    pools: list[str],
    answers: dict[str, Obj],
    not_loaded: str = "",
    app_pools: frozenset[str] = frozenset(),
) -> list[EndpointState]:
    """Where each endpoint stands: up; failing, with the scrape error; dropped by relabeling;
    not discovered; or not scraped yet. ``answers`` holds Prometheus' targets (active and
    dropped) of each pool; ``not_loaded`` says why Prometheus may not load our
    ServiceMonitors at all (SelectedByPrometheus' message when it is not True);
    ``app_pools`` are the app's (``scrape_pools(objects, APP_COMPONENT)``), whose refusals
    mean its allowlist.

    Active targets of our pools that no endpoint explains (a static configuration, a stale
    slice) count as they are."""
    states = []
    seen: set[tuple[str, str]] = set()
    for endpoint in endpoints:
        answer = answers.get(endpoint.pool) or {}
        active = [
            t
            for t in answer.get("activeTargets") or []
            if _address(t) == endpoint.address
            and t.get("scrapePool", endpoint.pool) == endpoint.pool
        ]
        dropped = [
            t
            for t in answer.get("droppedTargets") or []
            if _address(t) == endpoint.address
            and t.get("scrapePool", endpoint.pool) == endpoint.pool
            and (t.get("discoveredLabels") or {}).get(
                "__meta_kubernetes_service_name", endpoint.service
            )
            == endpoint.service
        ]
        known = (answer.get("activeTargets") or []) + (answer.get("droppedTargets") or [])
        if known and not _discovers(answer):
            continue  # not from Kubernetes (a static configuration): its targets count as are
        seen.add((endpoint.pool, endpoint.address))
        if active:
            states.append(_active_state(endpoint.pool, active[0], endpoint.pool in app_pools))
        elif not endpoint.has_port:
            states.append(
                EndpointState(
                    endpoint.pool,
                    endpoint.address,
                    NOT_DISCOVERED,
                    f"Service {endpoint.service} has no port {endpoint.port_name!r} on this pod: "
                    "the pod has no container port the Service's targetPort names",
                )
            )
        elif dropped:
            states.append(
                EndpointState(
                    endpoint.pool, endpoint.address, DROPPED, _dropped_why(endpoint, dropped[0])
                )
            )
        elif not known:
            why = not_loaded or (
                "Prometheus has no target at all in this scrape pool: its configuration does "
                "not have our ServiceMonitor (yet)"
            )
            states.append(
                EndpointState(
                    endpoint.pool, endpoint.address, NOT_DISCOVERED, why, lagging=not not_loaded
                )
            )
        else:
            states.append(
                EndpointState(
                    endpoint.pool,
                    endpoint.address,
                    NOT_DISCOVERED,
                    "Prometheus does not discover this endpoint (yet): its service discovery "
                    "lags, or it does not watch this namespace",
                    lagging=True,
                )
            )
    for pool in pools:
        for target in (answers.get(pool) or {}).get("activeTargets") or []:
            address = _address(target) or str(target.get("scrapeUrl", ""))
            if target.get("scrapePool", pool) == pool and (pool, address) not in seen:
                seen.add((pool, address))
                states.append(_active_state(pool, target, pool in app_pools))
    return sorted(states, key=_worst_first)


def _worst_first(state: EndpointState) -> tuple[int, str, str]:
    return STATES.index(state.state), state.pool, state.address


def _discovers(answer: Obj) -> bool:
    """Whether a pool's targets come from Kubernetes' service discovery (else endpoints
    cannot be told among them)."""
    return any(
        key.startswith("__meta_kubernetes_")
        for target in (answer.get("activeTargets") or []) + (answer.get("droppedTargets") or [])
        for key in target.get("discoveredLabels") or {}
    )


def _active_state(pool: str, target: Obj, is_app: bool) -> EndpointState:
    address = _address(target) or str(target.get("scrapeUrl", ""))
    health = target.get("health", "unknown")
    if health == "up":
        return EndpointState(pool, address, UP)
    if health == "down":
        why = scrape_error(str(target.get("lastError", "")), is_app)
        return EndpointState(pool, address, FAILING, why)
    return EndpointState(pool, address, NOT_SCRAPED_YET, lagging=True)


def scraped_jobs(answers: dict[str, Obj]) -> set[str]:
    """The jobs of which at least one target was scraped successfully, from the targets of
    our scrape pools."""
    return {
        str(target.get("labels", {}).get("job", ""))
        for answer in answers.values()
        for target in answer.get("activeTargets") or []
        if target.get("health") == "up"
    }


def targets_healthy(url: str, pools: list[str], states: list[EndpointState]) -> Verdict:
    """TargetsHealthy from where each endpoint stands: True only when every one is up."""
    if not pools:
        return Verdict("Unknown", "NoServiceMonitors", "this resource has no ServiceMonitor")
    if not states:
        return Verdict(
            "False",
            "NoTargets",
            f"our Services have no endpoints and Prometheus at {url} no target in "
            f"{', '.join(pools)}: see AppTargetsFound and ExportersAvailable",
        )
    counts = tally(states)
    problems = sorted((s for s in states if s.state not in (UP, NOT_SCRAPED_YET)), key=_worst_first)
    summary = ", ".join(f"{count} {state}" for state, count in counts.items() if count)
    if problems:
        listed = "; ".join(s.line for s in problems[:LISTED_TARGETS])
        more = (
            f"; and {len(problems) - LISTED_TARGETS} more (jewelry-monitoring doctor lists all)"
            if len(problems) > LISTED_TARGETS
            else ""
        )
        reason = {
            FAILING: "TargetsDown",
            NOT_DISCOVERED: "TargetsNotDiscovered",
            DROPPED: "TargetsDropped",
        }[problems[0].state]
        return Verdict("False", reason, f"{summary} of {len(states)}: {listed}{more}")
    if counts[NOT_SCRAPED_YET]:
        return Verdict("Unknown", "NotScrapedYet", f"{summary} of {len(states)}")
    noun = "target" if len(states) == 1 else "targets"
    return Verdict("True", "TargetsUp", f"{len(states)} {noun} up, none down")


def tally(states: list[EndpointState]) -> dict[str, int]:
    """How many endpoints stand where, in a fixed order."""
    return {state: sum(1 for s in states if s.state == state) for state in STATES}
