"""The operator asks a real Prometheus whether monitoring works, and says so per resource.

A control plane of this module's own runs the real prometheus-operator (v0.85) for a
kube-prometheus-stack style Prometheus resource that selects ``release: kps`` in every
namespace but those labelled ``unmonitored``, and a real Prometheus 3 runs what it
generates (reloaded as it changes; its Kubernetes discovery reads the plane). Our operator
runs with the chart's defaults set once, as a kps user sets them: ``release: kps`` and that
Prometheus' URL. No kubelet node: pods are objects bound to a Node object, their IPs
addresses of this host (devkit.pod_addresses), and what listens there stands in for the app
and the exporters (devkit.fake_metrics). Prometheus discovers those pods from the plane's
EndpointSlices, scrapes them and evaluates our rules.

Each resource is one case, healthy or broken on purpose, and its status must say what is
wrong and what to change: the README's example (healthy, every exporter), a /metrics that
refuses (403), nothing listening, a scrape that times out, an endpoint dropped by a
relabeling, a pod without the named port, a namespace outside the Prometheus' namespace
selector, a missing release label, a rule that fails to evaluate, an alert whose input
series never exist, a spent error budget, an exporter down beside a scraped app, and a URL
the chart does not allow. Ready means monitored: False while nothing of a resource is
scraped (or its rules are not loaded), saying why and what to change; a partial failure
keeps it True and sets Degraded.
"""

from __future__ import annotations

import contextlib
import json
import re
import shlex
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client, watch

from devkit.cluster import ControlPlane
from devkit.crs import (
    GROUP,
    PLURAL,
    VERSION,
    CustomApi,
    condition,
    cr_body,
    create_referenced_secrets,
    get_cr,
)
from devkit.demo import EXAMPLE
from devkit.fake_metrics import fake_metrics
from devkit.kubetools import api_client, apply_crds, load_yaml_documents, operator_kube
from devkit.manifests import chart_crd_files
from devkit.operator_process import (
    OperatorProcess,
    audit_position,
    audit_writes,
    install_rbac,
    start_operator,
)
from devkit.pod_addresses import local_pod_addresses
from devkit.prometheus import Prometheus
from devkit.prometheus_operator import (
    MONITORING,
    kube_prometheus_stack_prometheus,
    prometheus_of,
    prometheus_operator,
)
from devkit.scrape_targets import FakeEndpoints, RequestRecorder, fake_endpoints, request_recorder
from devkit.toolchain import built_binary, prometheus_operator_crds
from jewelry_monitoring import doctor

pytestmark = pytest.mark.cluster

RELEASE = {"release": "kps"}
SHOP, OUTSIDE = "jewelry-shop", "outside"
APP_PORT = 8000
EXPORTER_PORTS = {"postgres": 9187, "redis": 9121, "nginx": 9113, "celery": 9808}
CHECK_INTERVAL = 10.0
# Long enough for prometheus-operator to generate, Prometheus to reload, scrape and evaluate,
# and the operator to check again, on a loaded 2-core machine.
SETTLE = 180.0
INSTANCE = "app.kubernetes.io/instance"
README = Path(__file__).resolve().parents[2] / "README.md"


@dataclass(frozen=True)
class Pod:
    """One app pod: what its /metrics does ("none": nothing listens)."""

    mode: str = "ok"
    errors: float = 0.0
    without: tuple[str, ...] = ()
    labels: tuple[tuple[str, str], ...] = ()
    port_name: str = "http"


@dataclass(frozen=True)
class Case:
    name: str
    spec: dict[str, Any] = field(default_factory=dict)
    pods: tuple[Pod, ...] = (Pod(),)
    namespace: str = SHOP
    # (condition, status, reason, a part of its message) the status must come to.
    expect: tuple[tuple[str, str, str, str], ...] = ()


def _app(name: str, **extra: Any) -> dict[str, Any]:
    return {
        "podSelector": {"app": name},
        "port": "http",
        "interval": "1s",
        "scrapeTimeout": "1s",
        **extra,
    }


CHECKS = {"prometheus": {"checkInterval": "10s"}}
EXPORTER_DOWN = {
    "enabled": True,
    "address": "redis://shop-redis:6379",
    "interval": "2s",
    "scrapeTimeout": "2s",
}
CASES = (
    Case(
        "refused-403",
        {"app": _app("refused-403")},
        (Pod(mode="forbidden"),),
        expect=(
            (
                "TargetsHealthy",
                "False",
                "TargetsDown",
                "failing: refused (403): the app's PROMETHEUS_METRICS_ALLOWED_IPS does not "
                "allow Prometheus' address",
            ),
            # Nothing of it is scraped: not Ready, with what to change.
            ("Ready", "False", "TargetsDown", "add the Prometheus pods' network to PROMETHEUS_"),
            ("Degraded", "True", "TargetsDown", "refused (403)"),
        ),
    ),
    Case(
        "nothing-listens",
        {"app": _app("nothing-listens")},
        (Pod(mode="none"),),
        expect=(
            ("TargetsHealthy", "False", "TargetsDown", "connection refused: nothing listens"),
            ("Ready", "False", "TargetsDown", "no target of the app is scraped"),
        ),
    ),
    Case(
        "times-out",
        {"app": _app("times-out")},
        (Pod(mode="hang"),),
        expect=(
            ("TargetsHealthy", "False", "TargetsDown", "timed out: no answer within"),
            ("Ready", "False", "TargetsDown", "timed out: no answer within"),
        ),
    ),
    Case(
        "relabelled-away",
        {
            "app": _app(
                "relabelled-away",
                relabelings=[
                    {
                        "sourceLabels": ["__meta_kubernetes_pod_label_scrape"],
                        "regex": "no",
                        "action": "drop",
                    }
                ],
            )
        },
        (Pod(labels=(("scrape", "no"),)),),
        expect=(
            ("TargetsHealthy", "False", "TargetsDropped", "dropped: a relabeling drops it"),
            ("Ready", "False", "TargetsDropped", "a relabeling drops it (app.relabelings"),
        ),
    ),
    Case(
        "no-named-port",
        {"app": _app("no-named-port")},
        (Pod(port_name="web"),),
        expect=(
            (
                "TargetsHealthy",
                "False",
                "TargetsNotDiscovered",
                "has no port 'metrics' on this pod",
            ),
            ("Ready", "False", "TargetsNotDiscovered", "has no port 'metrics' on this pod"),
        ),
    ),
    Case(
        "unwatched-namespace",
        {"app": _app("unwatched-namespace")},
        namespace=OUTSIDE,
        expect=(
            (
                "Ready",
                "False",
                "NotSelectedByPrometheus",
                f"namespace {OUTSIDE} is outside its serviceMonitorNamespaceSelector",
            ),
            ("TargetsHealthy", "False", "TargetsNotDiscovered", "serviceMonitorNamespaceSelector"),
        ),
    ),
    Case(
        "wrong-release",
        {"app": _app("wrong-release"), "monitorLabels": {"release": "kube-prometheus-stack"}},
        expect=(
            (
                "Ready",
                "False",
                "NotSelectedByPrometheus",
                "add release=kps to spec.monitorLabels",
            ),
            ("RulesLoaded", "False", "RulesNotLoaded", "rule groups are not loaded"),
        ),
    ),
    Case(
        "rule-fails",
        {
            "app": _app("rule-fails"),
            "extraRuleGroups": [
                {
                    "name": "many-to-many",
                    "rules": [
                        {
                            "record": "shop:up:matched",
                            "expr": f'up{{namespace="{SHOP}"}} + on () up{{namespace="{SHOP}"}}',
                        }
                    ],
                }
            ],
        },
        expect=(
            (
                "RulesLoaded",
                "False",
                "RuleEvaluationFailing",
                "many-to-many/shop:up:matched: found duplicate series",
            ),
            # One rule of many fails, the rest evaluate and the app is scraped: degraded.
            ("Ready", "True", "Monitored", "scrapes 1 of 1 targets"),
            ("Degraded", "True", "RuleEvaluationFailing", "many-to-many/shop:up:matched"),
        ),
    ),
    Case(
        "no-migration-metrics",
        {"app": _app("no-migration-metrics")},
        (Pod(without=("django_migrations_",)),),
        expect=(
            (
                "AlertsCanFire",
                "False",
                "InputsMissing",
                "DjangoUnappliedMigrations (no django_migrations_unapplied_total from job "
                "no-migration-metrics-app-metrics: set PROMETHEUS_EXPORT_MIGRATIONS = True",
            ),
            ("Ready", "True", "Monitored", ""),
        ),
    ),
    Case(
        "budget-spent",
        {"app": _app("budget-spent"), "slos": {"availability": {"objective": 99.9}}},
        (Pod(errors=0.5),),
        expect=(
            # Half the requests fail (the SLI is 50 % give or take rate()'s extrapolation).
            ("ErrorBudgetLeft", "False", "BudgetSpent", "against 99.9%, the error budget is spent"),
            ("Ready", "True", "Monitored", ""),
        ),
    ),
    Case(
        "exporter-down",
        {"app": _app("exporter-down"), "exporters": {"redis": EXPORTER_DOWN}},
        expect=(
            # The app is scraped, the Redis exporter's pod answers nothing: partial.
            ("Ready", "True", "Monitored", "scrapes 1 of 2 targets"),
            ("Degraded", "True", "TargetsDown", "connection refused: nothing listens"),
        ),
    ),
    Case(
        "url-not-allowed",
        {"app": _app("url-not-allowed")},  # the URL (the recorder's) is set by the fixture
        expect=(
            (
                "TargetsHealthy",
                "Unknown",
                "PrometheusNotAllowed",
                "is not a Prometheus URL the chart allows",
            ),
            # The Prometheus it names cannot be asked: whether it is monitored is unknown.
            ("Ready", "Unknown", "PrometheusNotAllowed", "add the URL to prometheus.allowedUrls"),
        ),
    ),
)
# The exporter of "exporter-down": its pod runs, nothing listens on its metrics port.
DOWN_EXPORTER = "redis"
HEALTHY = "jewelry-shop"  # the README's example
HEALTHY_EXPECT = (
    ("Ready", "True", "Monitored", "scrapes 5 of 5 targets"),
    ("Degraded", "False", "AsExpected", ""),
    ("SelectedByPrometheus", "True", "Selected", ""),
    ("TargetsHealthy", "True", "TargetsUp", "5 targets up, none down"),
    ("RulesLoaded", "True", "Evaluating", "loaded, evaluating without errors"),
    ("AlertsCanFire", "True", "InputsPresent", "have the series they need"),
    ("ErrorBudgetLeft", "True", "WithinBudget", "availability: 100% of the error budget left"),
    ("ExportersAvailable", "True", "Available", ""),
)


def _healthy_example() -> dict[str, Any]:
    """The README's example resource as a kps user applies it once the chart sets
    ``release: kps`` for everyone: without its own monitorLabels. Scraped every second."""
    example = next(
        d for d in load_yaml_documents(EXAMPLE.read_text()) if d["kind"] == "JewelryMonitoring"
    )
    spec = example["spec"]
    del spec["monitorLabels"]
    # Its pods here: the stand-in's labels; scraped every second.
    spec["app"].update(podSelector={"app": HEALTHY}, interval="1s", scrapeTimeout="1s")
    for exporter in spec["exporters"].values():
        exporter.update(interval="2s", scrapeTimeout="2s")
    spec.update(CHECKS)
    return example


@dataclass
class World:
    plane: ControlPlane
    api: client.ApiClient
    prometheus: Prometheus
    operator: OperatorProcess
    recorder: RequestRecorder
    names: dict[str, str]  # resource -> its namespace
    # For a test's own resource: the shop's pods, addresses left, what stops at the end.
    shop_pods: FakeEndpoints
    addresses: Iterator[str]
    stack: contextlib.ExitStack


def _prometheus_resource() -> dict[str, Any]:
    version = subprocess.run(
        [str(built_binary("prometheus")), "--version"], capture_output=True, text=True, timeout=30
    ).stdout
    found = re.search(r"version (\d+\.\d+\.\d+)", version)
    assert found, version
    resource = kube_prometheus_stack_prometheus(RELEASE, version=f"v{found.group(1)}")
    resource["metadata"]["name"] = "kps-kube-prometheus-prometheus"
    resource["spec"].update(
        serviceMonitorNamespaceSelector={
            "matchExpressions": [{"key": "unmonitored", "operator": "DoesNotExist"}]
        },
        scrapeInterval="2s",
        evaluationInterval="2s",
    )
    return resource


def _start_pods(
    stack: contextlib.ExitStack, pods: FakeEndpoints, case: Case, addresses: Iterator[str]
) -> None:
    for pod in case.pods:
        address = next(addresses)
        pods.add_pod({"app": case.name, **dict(pod.labels)}, address, APP_PORT, pod.port_name)
        if pod.mode != "none":
            stack.enter_context(
                fake_metrics(address, APP_PORT, "django", pod.mode, pod.errors, pod.without)
            )


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    with contextlib.ExitStack() as stack:
        plane = ControlPlane.create(tmp_path_factory.mktemp("asks-plane")).start()
        stack.callback(plane.stop)
        api = api_client(plane.kubeconfig)
        apply_crds(api, prometheus_operator_crds())
        apply_crds(api, chart_crd_files())
        addresses = iter(stack.enter_context(local_pod_addresses(len(CASES) + 10)))
        core, custom = client.CoreV1Api(api), CustomApi(api)
        for namespace, labels in ((SHOP, {}), (OUTSIDE, {"unmonitored": "true"})):
            meta = client.V1ObjectMeta(name=namespace, labels=labels)
            core.create_namespace(client.V1Namespace(metadata=meta))
        resource = _prometheus_resource()
        namespace, name = resource["metadata"]["namespace"], resource["metadata"]["name"]
        core.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name=namespace)))
        custom.create_namespaced_custom_object(*MONITORING, namespace, "prometheuses", resource)
        stack.enter_context(prometheus_operator(plane))
        prometheus = stack.enter_context(prometheus_of(plane, api, namespace, name))
        recorder = stack.enter_context(request_recorder())

        kubeconfig = install_rbac(plane, api, "jm", "jm-system")
        log = tmp_path_factory.mktemp("asks-operator") / "operator.log"
        user = "system:serviceaccount:jm-system:jm-jewelry-monitoring"
        chart_defaults = {
            "JM_DEFAULT_MONITOR_LABELS": json.dumps(RELEASE),
            "JM_PROMETHEUS_URL": prometheus.url,
        }
        operator = start_operator(kubeconfig, log, user, env=chart_defaults)
        stack.callback(operator.stop)

        shop_pods = stack.enter_context(fake_endpoints(api, SHOP))
        outside_pods = stack.enter_context(fake_endpoints(api, OUTSIDE))
        example = _healthy_example()
        create_referenced_secrets(api, SHOP, example["spec"], lambda name, key: f"{name}:{key}")
        custom.create_namespaced_custom_object(GROUP, VERSION, SHOP, PLURAL, example)
        _start_pods(stack, shop_pods, Case(HEALTHY), addresses)
        for case in CASES:
            spec = {**CHECKS, **case.spec}
            if case.name == "url-not-allowed":
                spec = {**spec, "prometheus": {**CHECKS["prometheus"], "url": recorder.url}}
            body = cr_body(case.name, spec)
            custom.create_namespaced_custom_object(GROUP, VERSION, case.namespace, PLURAL, body)
            pods = outside_pods if case.namespace == OUTSIDE else shop_pods
            _start_pods(stack, pods, case, addresses)
        # The exporters' pods, as a kubelet would run them; their /metrics stand-ins (none
        # for the one of exporter-down: nothing listens there).
        exporter_pods = {(HEALTHY, exporter): next(addresses) for exporter in EXPORTER_PORTS}
        exporter_pods["exporter-down", DOWN_EXPORTER] = next(addresses)
        for (instance, exporter), address in exporter_pods.items():
            if instance == HEALTHY:
                stack.enter_context(fake_metrics(address, EXPORTER_PORTS[exporter], exporter))
        deadline = time.monotonic() + 120
        while True:
            running = set()
            for (instance, exporter), address in exporter_pods.items():
                first = int(address.rsplit(".", 1)[1])
                prefix = address.rsplit(".", 1)[0] + "."
                selector = f"app.kubernetes.io/name={exporter}-exporter,{INSTANCE}={instance}"
                if shop_pods.run_pods(selector, prefix, first):
                    running.add((instance, exporter))
            if running == set(exporter_pods):
                break
            assert time.monotonic() < deadline, f"exporter pods never made: {running}"
            time.sleep(1)
        yield World(
            plane,
            api,
            prometheus,
            operator,
            recorder,
            {HEALTHY: SHOP, **{case.name: case.namespace for case in CASES}},
            shop_pods,
            addresses,
            stack,
        )


def _wait_for(world: World, name: str, expect: tuple[tuple[str, str, str, str], ...]) -> Any:
    """The resource once every expected condition holds (or the last one seen, failing)."""
    namespace = world.names[name]
    deadline = time.monotonic() + SETTLE
    while True:
        cr = get_cr(world.api, namespace, name)
        missing = [
            (kind, status, reason, part, condition(cr, kind))
            for kind, status, reason, part in expect
            if not (
                condition(cr, kind).get("status") == status
                and condition(cr, kind).get("reason") == reason
                and part in condition(cr, kind).get("message", "")
            )
        ]
        if not missing:
            return cr
        assert world.operator.alive(), world.operator.logs()[-4000:]
        assert time.monotonic() < deadline, json.dumps(missing, indent=1)
        time.sleep(2)


def test_the_readme_example_is_ready_and_monitored(world: World) -> None:
    cr = _wait_for(world, HEALTHY, HEALTHY_EXPECT)
    status = cr["status"]
    assert status["budget"] == "100%"
    assert status["targets"] == {
        "endpoints": 5,
        "up": 5,
        "failing": 0,
        "dropped": 0,
        "notDiscovered": 0,
        "notScrapedYet": 0,
        "problems": [],
    }
    assert status["alertsThatCannotFire"] == []
    by_name = {slo["name"]: slo for slo in status["slos"]}
    assert by_name["availability"]["objective"] == 99.9
    assert by_name["availability"]["budgetRemaining"] == 100.0
    assert by_name["latency"]["sli"] == 100.0
    assert set(by_name["availability"]["burnRates"]) == {"5m", "30m", "1h", "2h", "6h", "1d", "3d"}


@pytest.mark.parametrize("case", CASES, ids=[case.name for case in CASES])
def test_each_broken_case_says_what_is_wrong(world: World, case: Case) -> None:
    cr = _wait_for(world, case.name, case.expect)
    targets = cr["status"].get("targets") or {}
    if targets.get("problems"):
        assert len(targets["problems"]) <= 5


def _readiness_history(
    world: World, name: str, body: dict[str, Any]
) -> list[tuple[str, str, str, str]]:
    """Create ``body`` in the shop and follow every version of it (a watch from before its
    creation, so no status write is missed) until Ready is True: (Ready's status, reason,
    message, TargetsHealthy's status) of each version that has a Ready."""
    custom = CustomApi(world.api)
    since = custom.list_namespaced_custom_object(GROUP, VERSION, SHOP, PLURAL)["metadata"]
    custom.create_namespaced_custom_object(GROUP, VERSION, SHOP, PLURAL, body)
    history: list[tuple[str, str, str, str]] = []
    stream = watch.Watch().stream(
        custom.list_namespaced_custom_object,
        GROUP,
        VERSION,
        SHOP,
        PLURAL,
        field_selector=f"metadata.name={name}",
        resource_version=since["resourceVersion"],
        timeout_seconds=int(SETTLE),
    )
    for event in stream:
        ready = condition(event["object"], "Ready")
        if ready:
            targets = condition(event["object"], "TargetsHealthy").get("status", "")
            history.append((ready["status"], ready["reason"], ready.get("message", ""), targets))
            if ready["status"] == "True":
                break
    return history


def test_a_new_resource_is_ready_only_once_it_is_scraped(world: World) -> None:
    """Right after creation Prometheus has not scraped anything of it yet: Ready says so
    (False/WaitingForFirstScrape, not True because its objects are applied), and turns True
    with the first check that finds a target up."""
    name = "newcomer"
    _start_pods(world.stack, world.shop_pods, Case(name), world.addresses)
    world.names[name] = SHOP  # the later tests count it among those asking Prometheus
    history = _readiness_history(world, name, cr_body(name, {**CHECKS, "app": _app(name)}))
    print("\n" + "\n".join(" ".join(seen) for seen in history))
    assert history, "no status with a Ready condition"
    first, last = history[0], history[-1]
    assert first[:2] == ("False", "WaitingForFirstScrape"), history
    assert "waiting for the first scrape" in first[2], history
    assert last[:2] == ("True", "Monitored") and last[3] == "True", history
    assert all(seen[3] == "True" for seen in history if seen[0] == "True"), history


def test_a_url_the_chart_does_not_allow_is_never_fetched(world: World) -> None:
    """Issue 17 item 14: the operator, and doctor, fetch nothing the chart does not allow."""
    [case] = [case for case in CASES if case.name == "url-not-allowed"]
    _wait_for(world, case.name, case.expect)
    checks = doctor.Doctor(operator_kube(world.api), SHOP).run("url-not-allowed")
    [refused] = [c for c in checks if c.name == "url-not-allowed: targets"]
    assert refused.status == doctor.FAIL
    assert "is not a Prometheus URL the chart allows" in refused.detail
    assert world.recorder.requests == []


def _kubectl(world: World, *args: str) -> str:
    result = subprocess.run(
        ["kubectl", "--kubeconfig", str(world.plane.kubeconfig), *args],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    return result.stdout


def test_kubectl_get_jm_shows_what_works_and_the_readme_shows_it_truly(world: World) -> None:
    for case in CASES:
        _wait_for(world, case.name, case.expect)
    _wait_for(world, HEALTHY, HEALTHY_EXPECT)
    table = _kubectl(world, "get", "jm", "-A")
    print(f"\n$ kubectl get jm -A\n{table}")
    print(f"$ kubectl get jm -A -o wide\n{_kubectl(world, 'get', 'jm', '-A', '-o', 'wide')}")
    rows = {line.split()[1]: line.split() for line in table.splitlines()[1:]}
    assert table.split()[:8] == [
        "NAMESPACE",
        "NAME",
        "READY",
        "REASON",
        "SELECTED",
        "TARGETS",
        "BUDGET",
        "AGE",
    ]
    assert rows[HEALTHY][2:7] == ["True", "Monitored", "True", "True", "100%"]
    assert rows["wrong-release"][2:6] == ["False", "NotSelectedByPrometheus", "False", "False"]
    # Selected, but nothing of it is scraped: not Ready, and REASON says why.
    assert rows["refused-403"][2:6] == ["False", "TargetsDown", "True", "False"]
    assert rows["relabelled-away"][2:6] == ["False", "TargetsDropped", "True", "False"]
    assert rows["no-named-port"][2:6] == ["False", "TargetsNotDiscovered", "True", "False"]
    assert rows["exporter-down"][2:6] == ["True", "Monitored", "True", "False"]
    assert rows["url-not-allowed"][2:6] == ["Unknown", "PrometheusNotAllowed", "True", "Unknown"]
    # The README's sample is this row (kubectl -n jewelry-shop get jm: no NAMESPACE column).
    sample = re.search(
        r"kubectl -n jewelry-shop get jm\n#\s+(NAME\s+READY[^\n]*)\n#\s+(jewelry-shop[^\n]*)\n",
        README.read_text(),
    )
    assert sample, "README: no sample output after `kubectl -n jewelry-shop get jm`"
    header, row = sample.group(1).split(), sample.group(2).split()
    own = _kubectl(world, "-n", SHOP, "get", "jm", HEALTHY)
    print(f"$ kubectl -n {SHOP} get jm\n{own}")
    assert header == own.splitlines()[0].split()
    assert row[:-1] == own.splitlines()[1].split()[:-1]  # all but AGE
    # And the command the install starts with finds kps' release label as shown.
    found = re.search(
        r"\n(kubectl get prometheus -A [^\n]+)\n#\s+(NAMESPACE[^\n]*)\n#\s+(monitoring[^\n]*)\n",
        README.read_text(),
    )
    assert found, "README: no `kubectl get prometheus -A ...` with its output"
    command = shlex.split(found.group(1))
    lines = _kubectl(world, *command[1:]).splitlines()
    assert [line.split() for line in lines] == [found.group(2).split(), found.group(3).split()]


def test_doctor_lists_every_problem_of_every_case(world: World) -> None:
    for name, namespace in world.names.items():
        checks = doctor.Doctor(operator_kube(world.api), namespace, world.prometheus.url).run(name)
        print(f"\n$ jewelry-monitoring doctor {name} -n {namespace} --prometheus-url ...")
        print(doctor.human(checks), end="")
    checks = doctor.Doctor(operator_kube(world.api), SHOP, world.prometheus.url).run(HEALTHY)
    failed = [c for c in checks if c.status == doctor.FAIL]
    # The operator runs beside the plane here, not as a Deployment doctor could find.
    assert [c.name for c in failed] == ["operator"], failed
    names = {c.name: c for c in checks}
    assert sum(1 for name in names if name.startswith(f"{HEALTHY}: target ")) == 5
    assert names[f"{HEALTHY}: rule groups"].status == doctor.OK
    assert names[f"{HEALTHY}: alerts"].status == doctor.OK
    assert names[f"{HEALTHY}: error budget"].status == doctor.OK
    broken = doctor.Doctor(operator_kube(world.api), SHOP, world.prometheus.url).run(
        "no-migration-metrics"
    )
    alert = {c.name: c for c in broken}["no-migration-metrics: alert DjangoUnappliedMigrations"]
    assert alert.status == doctor.FAIL and "PROMETHEUS_EXPORT_MIGRATIONS" in alert.detail


def _requests_made(operator: OperatorProcess) -> float:
    found = re.search(
        r"^jewelry_monitoring_prometheus_requests_total (\S+)$", operator.metrics(), re.M
    )
    assert found, "the operator does not count its Prometheus requests"
    return float(found.group(1))


def test_checks_only_read_and_ask_prometheus_a_bounded_number_of_questions(world: World) -> None:
    """Nothing changes: no write at all, and per resource and check interval at most one
    request per scrape pool plus three (rules, series, SLOs)."""
    for case in CASES:
        _wait_for(world, case.name, case.expect)
    _wait_for(world, HEALTHY, HEALTHY_EXPECT)
    time.sleep(2 * CHECK_INTERVAL)  # the last status writes of the settling land first
    start = audit_position(world.plane.audit_log)
    before, started = _requests_made(world.operator), time.monotonic()
    time.sleep(3 * CHECK_INTERVAL)
    made, elapsed = _requests_made(world.operator) - before, time.monotonic() - started
    asking = len(world.names) - 1  # the one with a URL the chart does not allow asks nothing
    per_check = made / asking / (elapsed / CHECK_INTERVAL)
    load = Path("/proc/loadavg").read_text().split()[:3]
    print(
        f"\nPrometheus requests: {made:.0f} in {elapsed:.0f}s for {asking} resources checked "
        f"every {CHECK_INTERVAL:.0f}s: {per_check:.2f} per resource per check "
        f"(load average {' '.join(load)})"
    )
    # The example has 5 pools (app and 4 exporters) and SLOs: 5 + 3; the others 1 + 2 or 3.
    assert per_check <= 8
    writes = [
        w
        for w in audit_writes(world.plane.audit_log, world.operator.user, start)
        if "jewelrymonitorings" in w or "events" in w
    ]
    assert writes == []
