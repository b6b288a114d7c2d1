"""`jm-dev demo`: the product end to end, on the embedded local control plane.

Where this host can run the local node (devkit.node), the product runs in pods as the e2e
suite runs it (devkit.product, devkit.prometheus_stack): our images built (or found up to
date) and loaded, prometheus-operator with a kube-prometheus-stack style Prometheus and
Alertmanager, the chart's operator (helm install, its defaults naming the stack's Prometheus
and the Alertmanager's labels), the dev shop, the example JewelryMonitoring with its
exporters and a routing of its alerts to the demo's own webhook receiver (on the node's
address, for the Alertmanager pod): every condition of its status is known. Then the
load generator's traffic, and the demo prints the CR's status, the Prometheus URL on
127.0.0.1 with the CR's targets up, the shop's URL, a line of live figures (request rate,
p95 latency, cache hit ratio, each named with its window) and a fire drill of the routing
(jewelry-monitoring fire-drill) that the webhook receives.

Where it cannot (the reason is printed), the objects only: etcd + kube-apiserver +
kube-controller-manager, our CRD and prometheus-operator's, the chart's RBAC, the operator
as a process under it, a kube-prometheus-stack style Prometheus and the example
JewelryMonitoring, then what the operator made of it.

On a cluster the user names (`--context`, see devkit.cli) it only installs the CRDs that are
missing and the example's namespaces. It never replaces a CRD the cluster has: that one may be
newer than ours and owned by a Helm release such as kube-prometheus-stack.
"""

from __future__ import annotations

import contextlib
import math
import shutil
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import yaml
from kubernetes import client
from kubernetes.client.rest import ApiException

from devkit.cluster import ControlPlane
from devkit.crs import (
    GROUP,
    PLURAL,
    VERSION,
    CustomApi,
    condition,
    create_referenced_secrets,
    wait_condition,
)
from devkit.images import build_images
from devkit.kubetools import (
    api_client,
    install_missing_crds,
    load_yaml_documents,
    operator_kube,
    wait_for,
)
from devkit.manifests import chart_crd_files
from devkit.node import Node, why_no_node
from devkit.node.network import NODE_IP
from devkit.operator_process import REPO, OperatorProcess, install_rbac, start_operator
from devkit.product import (
    SHOP_FRONT,
    UNDEPLOYED_IMAGES,
    apply_example_cr,
    deploy_shop,
    example_cr,
    install_operator,
    load_generator,
    port_forward,
    wait_targets_up,
)
from devkit.prometheus import PrometheusAPI, WebhookReceiver, webhook_receiver
from devkit.prometheus_operator import MONITORING, kube_prometheus_stack_prometheus
from devkit.prometheus_stack import (
    ALERTMANAGER_PODS,
    ALERTMANAGER_PORT,
    PROMETHEUS_PODS,
    PROMETHEUS_PORT,
    deploy_stack,
)
from devkit.prometheus_stack import NAMESPACE as MONITORING_NAMESPACE
from devkit.stopping import shielded
from devkit.toolchain import prometheus_operator_crds
from jewelry_monitoring import firedrill
from jewelry_monitoring.builders.rules import CACHE_HIT_RATIO, LATENCY_QUANTILES, REQUESTS_RATE
from jewelry_monitoring.drillplan import DRILL_ALERT

EXAMPLE = REPO / "manifests" / "example-jewelrymonitoring.yaml"
DEMO_SECRET_VALUE = "demo-only-not-a-secret"


def _example() -> list[dict[str, Any]]:
    return load_yaml_documents(EXAMPLE.read_text())


def _ensure_namespace(api: client.ApiClient, name: str) -> None:
    try:
        client.CoreV1Api(api).create_namespace(
            client.V1Namespace(metadata=client.V1ObjectMeta(name=name))
        )
    except ApiException as error:
        if error.status != 409:
            raise


def _show(api: client.ApiClient, cr: dict[str, Any], seconds: float) -> None:
    meta = cr["metadata"]
    print(f"\nJewelryMonitoring {meta['namespace']}/{meta['name']} Ready after {seconds:.2f}s")
    for item in cr["status"]["conditions"]:
        print(
            f"  {item['type']:<22} {item['status']:<8} {item['reason']:<30} {item['message'][:90]}"
        )
    print(f"\n{len(cr['status']['children'])} children:")
    for child in cr["status"]["children"]:
        print(f"  {child['kind']:<18} {child['name']}")


def _install_crds(api: client.ApiClient, ours: bool = True) -> None:
    """prometheus-operator's CRDs and (unless ``helm install`` brings it, ``ours=False``)
    ours, where missing; existing ones stay as they are."""
    files = [*(chart_crd_files() if ours else []), *prometheus_operator_crds()]
    created, kept = install_missing_crds(api, files)
    print(f"installed {len(created)} missing CRDs: {', '.join(created) or 'none'}")
    for name, provenance in kept.items():
        print(f"  kept the cluster's own CRD {name} ({provenance}): not replaced")


def _example_namespaces(api: client.ApiClient) -> tuple[dict[str, Any], str]:
    """The example JewelryMonitoring, after creating its namespace and `monitoring`."""
    example = next(d for d in _example() if d["kind"] == "JewelryMonitoring")
    namespace = example["metadata"].get("namespace", "jewelry-shop")
    for name in (namespace, "monitoring"):
        _ensure_namespace(api, name)
    return example, namespace


def prepare_named_cluster(context: str, api: client.ApiClient) -> int:
    """On a cluster the user named: only what is missing for `helm install`, then stop."""
    print(f"using context {context} at {api.configuration.host}")
    _install_crds(api)
    _example_namespaces(api)
    print("an existing cluster: run the operator there with `helm install`; stopping")
    return 0


def run_demo(keep: bool = False) -> int:
    """The product on a fresh embedded control plane (in pods when a node can run here),
    removed at the end."""
    reason = why_no_node()
    if reason is None:
        return run_pods_demo(keep)
    print(f"showing the operator's objects only: no pods on this host ({reason})")
    return run_objects_demo(keep)


@contextlib.contextmanager
def _embedded_plane(what: str) -> Iterator[ControlPlane]:
    """A fresh control plane in a temporary work dir, stopped and removed on exit whatever
    ends the demo (a stop signal included, devkit.stopping)."""
    workdir = Path(tempfile.mkdtemp(prefix="jm-demo-"))
    plane = ControlPlane.create(workdir)
    try:
        print(f"starting the embedded local control plane{what}", flush=True)
        yield plane.start()
    finally:
        with shielded():
            plane.stop()
            shutil.rmtree(workdir, ignore_errors=True)


def run_objects_demo(keep: bool = False) -> int:
    """The operator as a process on a fresh embedded control plane, its objects shown."""
    operator: OperatorProcess | None = None
    with _embedded_plane("") as plane:
        try:
            operator = _objects_demo(plane)
            if keep:
                print(f"\nleft running: export KUBECONFIG={plane.kubeconfig}")
                print(f"operator log: {plane.workdir / 'operator.log'}; stop with Ctrl-C")
                while operator.alive():
                    time.sleep(1)
        finally:
            with shielded():
                if operator is not None:
                    operator.stop()
    return 0


def _objects_demo(plane: ControlPlane) -> OperatorProcess:
    """The operator started under the chart's RBAC, and what it made of the example."""
    api = api_client(plane.kubeconfig)
    _install_crds(api)
    example, namespace = _example_namespaces(api)
    kubeconfig = install_rbac(plane, api, "jm", "jewelry-monitoring")
    user = "system:serviceaccount:jewelry-monitoring:jm-jewelry-monitoring"
    operator = start_operator(
        kubeconfig, plane.workdir / "operator.log", user, env={"JM_LOG_LEVEL": "INFO"}
    )
    print(f"operator running under the chart's RBAC as {user}")

    release = example["spec"].get("monitorLabels", {})
    CustomApi(api).create_namespaced_custom_object(
        *MONITORING, "monitoring", "prometheuses", kube_prometheus_stack_prometheus(release)
    )
    create_referenced_secrets(
        api, namespace, example["spec"], lambda _name, _key: DEMO_SECRET_VALUE
    )
    started = time.monotonic()
    CustomApi(api).create_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, example)
    cr = wait_condition(api, namespace, example["metadata"]["name"], "Ready", "True", timeout=60)
    cr = wait_condition(
        api, namespace, example["metadata"]["name"], "SelectedByPrometheus", "True", timeout=30
    )
    _show(api, cr, time.monotonic() - started)
    print("\nfirst lines of the PrometheusRule:")
    rule = CustomApi(api).get_namespaced_custom_object(
        "monitoring.coreos.com",
        "v1",
        namespace,
        "prometheusrules",
        f"{example['metadata']['name']}-rules",
    )
    print("\n".join(yaml.safe_dump(rule["spec"], sort_keys=False).splitlines()[:15]))
    assert condition(cr, "Degraded")["status"] == "False"
    return operator


# -- the product in pods ---------------------------------------------------------------------

# Traffic per load generator run: bounded, on loopback only (its own rule).
DEMO_REQUESTS, DEMO_SECONDS = 300, 30
# Enough for the load generator to visit every view once (see _warm_up).
WARM_UP_REQUESTS = 40
# The window of the app's recording rules, which the figures line reads.
FIGURES_WINDOW = "5m"
assert REQUESTS_RATE.endswith(f":rate{FIGURES_WINDOW}"), REQUESTS_RATE
# The demo's webhook receiver, and the Secret its URL is in (a routing refers to Secrets).
ALERT_RECEIVER, ALERT_HOOK_SECRET = "demo-hook", "jewelry-shop-alert-hook"


def chart_values(stack_prometheus: dict[str, Any], release: dict[str, str]) -> dict[str, str]:
    """The chart's defaults for every resource, as a cluster admin sets them once: the
    Prometheus the operator asks (the stack's, by reference), and the labels the stack's
    Alertmanager selects AlertmanagerConfigs by."""
    meta = stack_prometheus["metadata"]
    return {
        "prometheus.ref": f"{meta['namespace']}/{meta['name']}",
        **{f"defaults.alertmanagerConfigLabels.{key}": value for key, value in release.items()},
    }


def complete_example(example: dict[str, Any], hook_secret: str) -> dict[str, Any]:
    """The example, with what makes every condition of its status known besides the chart's
    defaults: a check every 10 s of the Prometheus the chart names (TargetsHealthy, rules,
    alerts, budgets), and a routing of its alerts to the demo's webhook receiver
    (SelectedByAlertmanager), quick to notify so that the fire drill is short."""
    spec = example["spec"]
    spec["prometheus"] = {"checkInterval": "10s"}
    spec["routing"] = {
        "receivers": [
            {"name": ALERT_RECEIVER, "webhook": {"url": {"name": hook_secret, "key": "url"}}}
        ],
        "receiver": ALERT_RECEIVER,
        "groupWait": "5s",
        "groupInterval": "10s",
    }
    return example


def _figure_queries(namespace: str) -> dict[str, str]:
    """The figures line, from the CR's recording rules (named by the operator's builder)."""
    selector = f'{{namespace="{namespace}"}}'
    return {
        "requests/s": f"sum({REQUESTS_RATE}{selector})",
        "p95 latency (s)": f"max({LATENCY_QUANTILES[0.95]}{selector})",
        # A window without cache gets is 0/0 (NaN): not a figure; `>= 0` drops it.
        "cache hit ratio": f"avg({CACHE_HIT_RATIO}{selector} >= 0)",
    }


def _load_images(node: Node) -> dict[str, str]:
    """Build what changed (progress printed: a first build takes minutes), load the rest."""
    print("building images (only what changed; the first time takes several minutes)")
    built = build_images(progress=lambda line: print(f"  {line}", flush=True))
    wanted = {name: image for name, image in built.items() if name not in UNDEPLOYED_IMAGES}
    started = time.monotonic()
    for number, image in enumerate(wanted.values(), 1):
        size = image.archive.stat().st_size / 1e6
        print(f"  loading {number}/{len(wanted)} {image.name} ({size:.0f} MB)", flush=True)
        node.load_image(image.archive)
    print(f"{len(wanted)} images on the node in {time.monotonic() - started:.0f}s")
    return {name: image.name for name, image in wanted.items()}


def _figures(prometheus: PrometheusAPI, namespace: str) -> dict[str, float | None] | None:
    """The figures, or None while the request rate or p95 has no value yet. The cache hit
    ratio may stay empty (no cache reads counted in 5 minutes): shown as n/a."""
    values = {label: prometheus.value(q) for label, q in _figure_queries(namespace).items()}
    if values["requests/s"] is None or values["p95 latency (s)"] is None:
        return None
    return values


def _app_scraped_at(prometheus: PrometheusAPI, namespace: str) -> float | None:
    """When Prometheus last scraped the app's request counters (Unix time), if ever."""
    selector = f'{{namespace="{namespace}"}}'
    return prometheus.value(f"max(timestamp(django_http_requests_total_by_method_total{selector}))")


def figures_after(
    prometheus: PrometheusAPI, namespace: str, since: float
) -> dict[str, float | None] | None:
    """The figures once they include the traffic that ended at ``since`` (Unix time): the
    app scraped after it, the recording rules evaluated after that scrape, and the traffic
    in the request rate (a rate of 0 after it is no figure of it: the app's counters were
    first scraped with the traffic already in them, and no p95 of it is NaN)."""
    scraped = _app_scraped_at(prometheus, namespace)
    recorded = prometheus.value(f'min(timestamp({REQUESTS_RATE}{{namespace="{namespace}"}}))')
    if scraped is None or recorded is None or scraped < since or recorded < scraped:
        return None
    values = _figures(prometheus, namespace)
    if values is None or not (values["requests/s"] or 0) > 0:
        return None
    return None if math.isnan(values["p95 latency (s)"] or 0) else values


def _warm_up(prometheus: PrometheusAPI, namespace: str, shop_url: str) -> None:
    """A few requests to every view, then a scrape of them: the app's request counters
    exist only after its first counted request (the kubelet's probes are not app traffic),
    and the increments before a counter's first scrape are in no ``rate()``."""
    load_generator(shop_url, WARM_UP_REQUESTS, DEMO_SECONDS)
    ended = time.time()
    wait_for(
        lambda: (_app_scraped_at(prometheus, namespace) or 0) >= ended,
        timeout=120,
        interval=2,
        what="a scrape of the app's request counters after the warm-up",
    )


def figures_line(values: dict[str, float | None]) -> str:
    """The live figures, each over the recording rules' window: a rate over 5 minutes is
    not the load generator's own rate (300 requests in 30 s are 10/s, and 1/s over 5m)."""
    ratio = values["cache hit ratio"]
    return (
        f"live, over the last {FIGURES_WINDOW} (the CR's recording rules): "
        f"{values['requests/s'] or 0:.2f} requests/s, p95 latency "
        f"{(values['p95 latency (s)'] or 0) * 1000:.0f} ms, cache hit ratio "
        + ("n/a (no cache reads in the window)" if ratio is None else f"{ratio:.0%}")
    )


def traffic_line(stats: dict[str, Any]) -> str:
    """What the load generator did, at its own rate."""
    seconds = float(stats["elapsed_seconds"])
    rate = stats["requests"] / seconds if seconds else 0.0
    return (
        f"  {stats['requests']} requests in {seconds:.1f}s ({rate:.1f}/s), "
        f"by status {stats['by_status']}"
    )


def _show_targets(targets: list[dict[str, Any]]) -> None:
    for target in sorted(targets, key=lambda t: t["labels"]["job"]):
        job, interval = target["labels"]["job"], target["scrapeInterval"]
        print(f"  {target['health']:<4} {job:<34} every {interval:<4} {target['scrapeUrl']}")


def run_pods_demo(keep: bool = False) -> int:
    """The product in pods on a fresh control plane and node, removed at the end."""
    node: Node | None = None
    with _embedded_plane(" and a node (pods run here)") as plane:
        try:
            node = Node.for_plane(plane).start()
            _pods_demo(plane, node, keep)
        finally:
            with shielded():
                if node is not None:
                    print("stopping the pods and the node", flush=True)
                    node.stop()
    return 0


def _pods_demo(plane: ControlPlane, node: Node, keep: bool) -> None:
    # The Alertmanager pod reaches the host at the node's address.
    with webhook_receiver(host=NODE_IP) as hook:
        _pods_demo_with_hook(plane, node, keep, hook)


def _pods_demo_with_hook(
    plane: ControlPlane, node: Node, keep: bool, hook: WebhookReceiver
) -> None:
    images = _load_images(node)
    api = api_client(plane.kubeconfig)
    # Ours is a template of the chart: Helm refuses to adopt a CRD it did not create.
    _install_crds(api, ours=False)
    example = complete_example(example_cr(images), ALERT_HOOK_SECRET)
    release = example["spec"].get("monitorLabels", {})
    values = chart_values(kube_prometheus_stack_prometheus(release), release)
    steps: list[tuple[str, Callable[[], object]]] = [
        (
            "prometheus-operator, Prometheus and Alertmanager (kube-prometheus-stack style)",
            lambda: deploy_stack(api, images, release),
        ),
        (
            "the operator: helm install of the chart",
            lambda: install_operator(plane.kubeconfig, api, images, replicas=1, values=values),
        ),
        (
            "the shop: manifests/dev (Django, PostgreSQL, Redis, Celery, nginx)",
            lambda: deploy_shop(api, images),
        ),
    ]
    for what, step in steps:
        started = time.monotonic()
        print(f"{what} ...", flush=True)
        step()
        print(f"  ready in {time.monotonic() - started:.0f}s")
    started = time.monotonic()
    print(
        "the example JewelryMonitoring, with our exporter images, the Prometheus to check "
        f"and a routing to the demo's webhook receiver ({hook.url}) ...",
        flush=True,
    )
    namespace = example["metadata"]["namespace"]
    _create_secret(api, namespace, ALERT_HOOK_SECRET, {"url": f"{hook.url}/{ALERT_RECEIVER}"})
    cr = apply_example_cr(api, example)
    name = cr["metadata"]["name"]
    with (
        port_forward(api, MONITORING_NAMESPACE, PROMETHEUS_PODS, PROMETHEUS_PORT) as prom_url,
        port_forward(api, namespace, *SHOP_FRONT) as shop_url,
    ):
        prometheus = PrometheusAPI(prom_url)
        targets = wait_targets_up(prometheus, cr, api)
        for kind in ("Ready", "SelectedByAlertmanager", "TargetsHealthy"):
            cr = wait_condition(api, namespace, name, kind, "True", timeout=180)
        _show(api, cr, time.monotonic() - started)
        print(f"\nPrometheus: {prom_url}  ({len(targets)} targets of the CR up)")
        _show_targets(targets)
        print(f"shop: {shop_url}/")
        print(f"\ntraffic: the app's load generator, {DEMO_SECONDS}s ...", flush=True)
        _warm_up(prometheus, namespace, shop_url)
        stats = load_generator(shop_url, DEMO_REQUESTS, DEMO_SECONDS)
        print(traffic_line(stats))
        ended = time.time()
        values = wait_for(
            lambda: figures_after(prometheus, namespace, ended),
            timeout=120,
            interval=2,
            what="the recording rules evaluated on a scrape after the traffic",
        )
        print(figures_line(values))
        _fire_drill(api, cr, hook)
        if keep:
            print(f"\nleft running: export KUBECONFIG={plane.kubeconfig}")
            print("traffic continues; figures every run; stop with Ctrl-C")
            while True:
                load_generator(shop_url, DEMO_REQUESTS, DEMO_SECONDS)
                values = _figures(prometheus, namespace) or values
                print(figures_line(values), flush=True)


def _create_secret(api: client.ApiClient, namespace: str, name: str, data: dict[str, str]) -> None:
    client.CoreV1Api(api).create_namespaced_secret(
        namespace,
        client.V1Secret(metadata=client.V1ObjectMeta(name=name), string_data=data),
    )


def _fire_drill(api: client.ApiClient, cr: dict[str, Any], hook: WebhookReceiver) -> None:
    """`jewelry-monitoring fire-drill --yes` of the example's routing, through the stack's
    Alertmanager (port-forwarded), once it has loaded the routing; what the webhook got."""
    kube = operator_kube(api)
    print("\nfire drill of the routing (jewelry-monitoring fire-drill --yes) ...", flush=True)
    with port_forward(api, MONITORING_NAMESPACE, ALERTMANAGER_PODS, ALERTMANAGER_PORT) as url:

        def planned() -> firedrill.Report | None:
            """The plan (nothing sent) once the Alertmanager has loaded the routing."""
            try:
                return firedrill.drill(kube, cr, url, send=False, timeout=180)
            except (firedrill.DrillError, firedrill.AlertmanagerError):
                return None

        wait_for(planned, timeout=180, interval=2, what="the Alertmanager loading the routing")
        report = firedrill.drill(kube, cr, url, send=True, timeout=180)
    print(report.header())
    print(firedrill.human(report.outcomes), end="")

    def notified() -> list[str] | None:
        """What the webhook got of the drill, once the resolved notification is in."""
        drilled = [a for a in hook.alerts(DRILL_ALERT) if "fire_drill" in a["labels"]]
        states = sorted({alert["status"] for alert in drilled})
        return states if "resolved" in states else None

    with contextlib.suppress(TimeoutError):
        wait_for(notified, timeout=60, interval=1, what="the drill's resolved notification")
    states = sorted({a["status"] for a in hook.alerts(DRILL_ALERT)})
    print(f"  the demo's webhook received the drill's alert: {', '.join(states) or 'nothing'}")
