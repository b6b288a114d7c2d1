"""What an e2e failure message says about the exporters whose series are missing.

A query without data says only that nothing answered. Whether the exporter restarted (and
why it last ended), what it logged, and whether Prometheus scrapes it tell its cause apart:
a process that exits on a broker error, a scrape that times out, a pod never Ready. The logs
of a CI run's cluster are gone once the run ends, so the failure message itself carries them:

    exporters_in(cr, texts) -> names   # the CR's exporters whose job a query names
    exporter_report(api, prometheus, cr, names) -> text   # pods, logs, up, scrapes, targets
    workload_report(api, namespace, deployments) -> text  # pods and logs of what they watch

The Celery exporter's series come from worker events and broadcast replies on the broker, so
its report adds what a fresh listener hears there, run inside its pod (CELERY_PROBE): events
heard, ping replies and, on Redis, the broker's clients. That tells a silent worker from an
exporter whose own subscription went deaf.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from kubernetes import client
from kubernetes.client.rest import ApiException
from kubernetes.stream import stream
from urllib3.exceptions import HTTPError

from devkit.prometheus import PrometheusAPI
from jewelry_monitoring.builders.common import child_name
from jewelry_monitoring.builders.exporters import component

LOG_LINES = 40
# How far back the scrape history looks (the e2e's product runs for minutes, not hours).
UP_WINDOW = "15m"


def exporter_job(cr: dict[str, Any], exporter: str) -> str:
    """The job label (= Service and Deployment name) of an exporter of ``cr``."""
    return child_name(cr["metadata"]["name"], component(exporter))


def exporters_in(cr: dict[str, Any], texts: Iterable[str]) -> list[str]:
    """The exporters of ``cr`` whose job one of ``texts`` (queries) names."""
    joined = "\n".join(texts)
    return [name for name in sorted(cr["spec"]["exporters"]) if exporter_job(cr, name) in joined]


def _container_lines(status: client.V1ContainerStatus) -> list[str]:
    lines = [f"container {status.name}: ready {status.ready}, restarts {status.restart_count}"]
    for when, state in (("now", status.state), ("last", status.last_state)):
        for phase in ("waiting", "running", "terminated"):
            detail = getattr(state, phase, None) if state else None
            if detail is None:
                continue
            words = [f"{when} {phase}"]
            for field in ("reason", "exit_code", "started_at", "finished_at", "message"):
                value = getattr(detail, field, None)
                if value is not None:
                    words.append(f"{field}={value}")
            lines.append("  " + " ".join(words))
    return lines


def _log_tail(core: client.CoreV1Api, pod: client.V1Pod, previous: bool) -> list[str]:
    which = "previous container's log" if previous else "log"
    try:
        text = core.read_namespaced_pod_log(
            pod.metadata.name, pod.metadata.namespace, tail_lines=LOG_LINES, previous=previous
        )
    except (ApiException, HTTPError) as error:
        return [f"{which}: unreadable ({error})"]
    if not text:
        return [f"{which}: empty"]
    return [f"{which} (last {LOG_LINES} lines):", *(f"  | {line}" for line in text.splitlines())]


def _deployment_pods(core: client.CoreV1Api, namespace: str, name: str) -> list[client.V1Pod]:
    """The pods of Deployment ``name``; raises ApiException/HTTPError as the client does,
    LookupError when none matches."""
    deployment = client.AppsV1Api(core.api_client).read_namespaced_deployment(name, namespace)
    labels = deployment.spec.selector.match_labels
    selector = ",".join(f"{key}={value}" for key, value in sorted(labels.items()))
    pods = core.list_namespaced_pod(namespace, label_selector=selector).items
    if not pods:
        raise LookupError(f"no pod matches Deployment {name}'s selector {selector}")
    return list(pods)


def _pod_lines(core: client.CoreV1Api, namespace: str, job: str) -> list[str]:
    try:
        pods = _deployment_pods(core, namespace, job)
    except LookupError as error:
        return [str(error)]
    except (ApiException, HTTPError) as error:
        return [f"its pods: unreadable ({error})"]
    lines = []
    for pod in pods:
        lines.append(f"pod {pod.metadata.name}: phase {pod.status.phase}")
        statuses = pod.status.container_statuses or []
        for status in statuses:
            lines += ["  " + line for line in _container_lines(status)]
        lines += ["  " + line for line in _log_tail(core, pod, previous=False)]
        if any(status.restart_count for status in statuses):
            lines += ["  " + line for line in _log_tail(core, pod, previous=True)]
    return lines


def _scrape_lines(prometheus: PrometheusAPI, job: str) -> list[str]:
    lines = []
    for expr in (
        f'up{{job="{job}"}}',
        f'min_over_time(up{{job="{job}"}}[{UP_WINDOW}])',
        f'count_over_time(up{{job="{job}"}}[{UP_WINDOW}])',
        # The Celery exporter's scrape waits for two worker inspections (>= 2 s).
        f'max_over_time(scrape_duration_seconds{{job="{job}"}}[{UP_WINDOW}])',
    ):
        try:
            found = [(s["metric"].get("instance"), s["value"][1]) for s in prometheus.query(expr)]
        except (OSError, ValueError, AssertionError) as error:
            found = [("unreadable", str(error))]
        lines.append(f"{expr}: {found or 'no series'}")
    try:
        targets = [t for t in prometheus.targets() if t["labels"].get("job") == job]
    except (OSError, ValueError, AssertionError) as error:
        return [*lines, f"targets: unreadable ({error})"]
    if not targets:
        lines.append("no active target of this job")
    for target in targets:
        lines.append(
            f"target {target['scrapeUrl']}: health {target['health']}, last scrape "
            f"{target['lastScrape']} took {target['lastScrapeDuration']:.2f}s, "
            f"error {target['lastError']!r}"
        )
    return lines


# Run with the exporter's own Python in its pod, where CE_BROKER_URL holds the broker (from
# its Secret; never printed). Listens as the exporter does, with a deadline, then asks for
# ping replies; on Redis it lists the clients (pub/sub patterns, last command, idle seconds).
CELERY_PROBE = """
import collections, os, socket, time
from celery import Celery
url = os.environ["CE_BROKER_URL"]
app = Celery(broker=url)
heard = collections.Counter()
def note(event):
    heard[event["type"] + " from " + str(event.get("hostname"))] += 1
with app.connection() as connection:
    receiver = app.events.Receiver(connection, handlers={"*": note})
    deadline = time.monotonic() + 6
    try:
        for _ in receiver.consume(limit=None, timeout=6, safety_interval=1):
            if time.monotonic() > deadline:
                break
    except socket.timeout:
        pass
print("a new listener heard in 6 s:", dict(heard) or "nothing")
print("ping replies:", app.control.inspect(timeout=2).ping() or "none")
if url.startswith(("redis:", "rediss:")):
    import redis
    broker = redis.Redis.from_url(url)
    print("pattern subscriptions (PUBSUB NUMPAT):", broker.pubsub_numpat())
    for each in broker.client_list():
        print("client", " ".join(f"{k}={each.get(k)}" for k in
              ("id", "addr", "age", "idle", "db", "sub", "psub", "cmd")))
"""
PROBE_TIMEOUT = 60


def _celery_probe_lines(core: client.CoreV1Api, namespace: str, job: str) -> list[str]:
    try:
        pod = next(
            pod for pod in _deployment_pods(core, namespace, job) if pod.status.phase == "Running"
        )
        output = stream(
            core.connect_get_namespaced_pod_exec,
            pod.metadata.name,
            namespace,
            container=pod.spec.containers[0].name,
            command=["python", "-c", CELERY_PROBE],
            stdout=True,
            stderr=True,
            stdin=False,
            tty=False,
            _request_timeout=PROBE_TIMEOUT,
        )
    except (ApiException, HTTPError, LookupError, StopIteration, OSError) as error:
        return [f"broker probe in its pod: not run ({error!r})"]
    return ["broker probe in its pod:", *(f"  | {line}" for line in output.splitlines())]


def workload_report(api: client.ApiClient, namespace: str, deployments: list[str]) -> str:
    """The pods, restarts and log tails of ``deployments``: what a silent exporter watches
    (e.g. the Celery workers whose events it counts)."""
    core = client.CoreV1Api(api)
    return "\n".join(
        f"deployment {name}:\n"
        + "\n".join(f"  {line}" for line in _pod_lines(core, namespace, name))
        for name in deployments
    )


def exporter_report(
    api: client.ApiClient, prometheus: PrometheusAPI, cr: dict[str, Any], exporters: list[str]
) -> str:
    """For each of ``exporters`` of ``cr``: its scrape history and targets in Prometheus,
    its pods' restarts and last termination, and the tail of their logs (the previous
    container's too after a restart); for Celery, what a new listener hears on the broker
    (CELERY_PROBE). Never raises for what it cannot read: it says so."""
    core = client.CoreV1Api(api)
    namespace = cr["metadata"]["namespace"]
    sections = []
    for exporter in exporters:
        job = exporter_job(cr, exporter)
        lines = _scrape_lines(prometheus, job) + _pod_lines(core, namespace, job)
        if exporter == "celery":
            lines += _celery_probe_lines(core, namespace, job)
        sections.append(
            f"{exporter} exporter (job {job}):\n" + "\n".join(f"  {line}" for line in lines)
        )
    return "\n".join(sections)
