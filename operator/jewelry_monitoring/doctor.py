"""`jewelry-monitoring doctor`: why don't I see my metrics? Every check says what it found,
and every failed one says how to fix it (the exact label, the exact command).

Reads only, with the user's kubeconfig, and a Prometheus HTTP API: the ``--prometheus-url``
the user gives, else the one the operator would ask for the resource, under the same rule
(``which_prometheus``: a Prometheus resource, or a URL the chart allows, read from the
operator Deployment's environment), so that a resource cannot point doctor elsewhere either.
It reuses what the operator decides with: the selection rules (``selection``), the target,
rule and budget judgements (``targets``, ``rule_health``, ``budgets``), the builders' names;
where the operator's status lists the first few problems, doctor lists them all.
"""

from __future__ import annotations

import datetime
import json
import shlex
from dataclasses import asdict, dataclass
from typing import Any

from jewelry_monitoring import cardinality
from jewelry_monitoring.budgets import error_budget_left, slo_statuses
from jewelry_monitoring.builders.common import (
    APP_COMPONENT,
    OWNER_LABEL,
    Owner,
    child_name,
    instance_label,
    owner_selector,
)
from jewelry_monitoring.builders.desired import MONITORING_KINDS
from jewelry_monitoring.builders.exporters import EGRESS_ANNOTATION, EXPORTERS, component
from jewelry_monitoring.config import ConfigError, ResourceDefaults, resource_defaults
from jewelry_monitoring.kube import Kube, KubeError
from jewelry_monitoring.observe import ask, questions
from jewelry_monitoring.promapi import PrometheusAPI, PrometheusError
from jewelry_monitoring.rule_health import (
    alert_needs,
    cannot_fire,
    present,
    rule_groups_of,
    rules_loaded,
)
from jewelry_monitoring.selection import PROMETHEUS, evaluate
from jewelry_monitoring.spec import API_GROUP, EXPORTER_NAMES, KIND, PLURAL, JewelryMonitoringSpec
from jewelry_monitoring.targets import (
    APP_403_FIX,
    FAILING,
    NOT_SCRAPED_YET,
    SERVICE_NAME_LABEL,
    UP,
    EndpointState,
    app_targets_found,
    endpoint_states,
    our_endpoints,
    scrape_pools,
    scraped_jobs,
    selector_text,
)
from jewelry_monitoring.which_prometheus import choose

Obj = dict[str, Any]
OUR_CRD = f"{PLURAL}.{API_GROUP}"
PROMETHEUS_OPERATOR_CRDS = (*MONITORING_KINDS.values(), PROMETHEUS.crd)
PROMETHEUS_OPERATOR_VERSION = "operator.prometheus.io/version"
# The chart's operator Deployment and pods, whatever the release and nameOverride.
OPERATOR_SELECTOR = (
    "app.kubernetes.io/component=operator,app.kubernetes.io/part-of=jewelry-monitoring"
)
OK, FAIL, SKIP = "ok", "fail", "skip"


@dataclass(frozen=True)
class Check:
    """One finding: ``status`` ok, fail or skip (could not be checked; not a failure)."""

    name: str
    status: str
    detail: str
    fix: str = ""


def _crd_versions(crd: Obj) -> str:
    versions = [v["name"] for v in crd["spec"].get("versions", []) if v.get("served")]
    release = crd["metadata"].get("annotations", {}).get(PROMETHEUS_OPERATOR_VERSION)
    return ", ".join(versions) + (f" (prometheus-operator {release})" if release else "")


class Doctor:
    def __init__(self, kube: Kube, namespace: str, prometheus_url: str | None = None) -> None:
        self.kube = kube
        self.namespace = namespace
        self.prometheus_url = prometheus_url
        self._prometheus_resources: list[Obj] | None = None
        # What the chart set for every resource, from the operator Deployment's environment.
        self.defaults = ResourceDefaults()

    def run(self, name: str | None = None) -> list[Check]:
        checks = self.crds()
        checks += self.operator()
        if not any(c.status == FAIL and c.name == f"CRD {OUR_CRD}" for c in checks):
            crs = (
                [cr for cr in [self.kube.get(KIND, self.namespace, name)] if cr]
                if name
                else self.kube.list(KIND, self.namespace)
            )
            if not crs:
                checks.append(
                    Check(
                        "JewelryMonitoring",
                        FAIL,
                        f"no JewelryMonitoring {name or ''} in namespace {self.namespace}".replace(
                            "  ", " "
                        ),
                        "kubectl apply -n "
                        f"{self.namespace} -f manifests/example-jewelrymonitoring.yaml "
                        "(edit app.podSelector first)",
                    )
                )
            for cr in crs:
                checks += self.resource(cr)
        return checks

    # -- cluster -------------------------------------------------------------------------

    def crds(self) -> list[Check]:
        missing_ours = (
            "not installed",
            "jewelry-monitoring crd | kubectl apply --server-side -f -",
        )
        missing_theirs = (
            "not installed: prometheus-operator is missing, nothing will be scraped",
            "install kube-prometheus-stack or prometheus-operator (its CRDs: kubectl "
            "apply --server-side -f https://github.com/prometheus-operator/"
            "prometheus-operator/releases/download/v0.85.0/stripped-down-crds.yaml)",
        )
        checks = []
        for name, (detail, fix) in [
            (OUR_CRD, missing_ours),
            *((name, missing_theirs) for name in PROMETHEUS_OPERATOR_CRDS),
        ]:
            crd = self.kube.get("CustomResourceDefinition", None, name)
            checks.append(
                Check(f"CRD {name}", OK, _crd_versions(crd))
                if crd
                else Check(f"CRD {name}", FAIL, detail, fix)
            )
        return checks

    def operator(self) -> list[Check]:
        deployments = self.kube.list("Deployment", None, OPERATOR_SELECTOR)
        if not deployments:
            return [
                Check(
                    "operator",
                    FAIL,
                    f"no operator Deployment ({OPERATOR_SELECTOR}) in any namespace",
                    "helm install jewelry-monitoring charts/jewelry-monitoring "
                    "--namespace jewelry-monitoring --create-namespace",
                )
            ]
        checks = []
        for deployment in deployments:
            checks += self._chart_defaults(deployment)
            meta = deployment["metadata"]
            where = f"{meta['namespace']}/{meta['name']}"
            version = meta.get("labels", {}).get("app.kubernetes.io/version", "unknown")
            want = deployment["spec"].get("replicas", 1)
            have = deployment.get("status", {}).get("availableReplicas", 0)
            status = OK if have else FAIL
            fix = (
                ""
                if have
                else f"kubectl -n {meta['namespace']} describe deployment {meta['name']}; "
                f"kubectl -n {meta['namespace']} logs deployment/{meta['name']}"
            )
            checks.append(
                Check(
                    f"operator {where}",
                    status,
                    f"version {version}, {have}/{want} replicas available",
                    fix,
                )
            )
            checks.append(self._leader(meta["namespace"], _lease_name(deployment), want))
        return checks

    def _chart_defaults(self, deployment: Obj) -> list[Check]:
        """The chart's defaults for every resource (monitorLabels, the Prometheus to ask and
        the URLs allowed), as the operator reads them from its environment."""
        containers = deployment["spec"].get("template", {}).get("spec", {}).get("containers")
        env = {
            item["name"]: str(item.get("value", ""))
            for container in containers or []
            for item in container.get("env") or []
            if "value" in item
        }
        try:
            self.defaults = resource_defaults(env)
        except ConfigError as error:
            where = f"{deployment['metadata']['namespace']}/{deployment['metadata']['name']}"
            return [Check(f"operator {where} settings", FAIL, str(error), "check the chart values")]
        return []

    def _leader(self, namespace: str, lease_name: str, replicas: int) -> Check:
        lease = self.kube.get("Lease", namespace, lease_name) if lease_name else None
        if lease is None:
            detail = "one replica, no leader election" if replicas <= 1 else "no Lease yet"
            return Check("operator leader", OK if replicas <= 1 else FAIL, detail)
        spec = lease.get("spec", {})
        holder = spec.get("holderIdentity") or ""
        renewed = spec.get("renewTime", "")
        age = _age_seconds(renewed)
        fresh = bool(holder) and age is not None and age <= spec.get("leaseDurationSeconds", 15)
        detail = f"Lease {namespace}/{lease_name} held by {holder or 'nobody'}, renewed {renewed}"
        return Check(
            "operator leader",
            OK if fresh else FAIL,
            detail,
            "" if fresh else f"kubectl -n {namespace} get pods -l {OPERATOR_SELECTOR}",
        )

    # -- one JewelryMonitoring -----------------------------------------------------------

    def resource(self, cr: Obj) -> list[Check]:
        meta = cr["metadata"]
        name, namespace = meta["name"], meta["namespace"]
        status = cr.get("status") or {}
        conditions = {c["type"]: c for c in status.get("conditions") or []}
        ready = conditions.get("Ready", {})
        listing = "; ".join(
            f"{c['type']}={c['status']}" + (f" ({c['message']})" if c.get("message") else "")
            for c in conditions.values()
        )
        checks = []
        if status.get("observedGeneration") != meta.get("generation"):
            checks.append(
                Check(
                    f"{name}: Ready",
                    FAIL,
                    "the operator has not reconciled the latest spec (is it running?)",
                    f"kubectl -n {namespace} describe jm {name}",
                )
            )
        else:
            checks.append(
                Check(
                    f"{name}: Ready",
                    OK if ready.get("status") == "True" else FAIL,
                    listing or "no conditions",
                    "" if ready.get("status") == "True" else ready.get("message", ""),
                )
            )
        labelled = owner_selector(name)
        ours = [
            obj
            for kind in MONITORING_KINDS
            if self.kube.crd_established(MONITORING_KINDS[kind])
            for obj in self.kube.list(kind, namespace, labelled)
        ]
        checks.append(self._selection(cr, ours))
        checks.append(self._endpoints(cr))
        checks += self._targets(cr, ours)
        checks.append(self._alertmanager(name, conditions))
        return checks

    def _selection(self, cr: Obj, ours: list[Obj]) -> Check:
        name, namespace = cr["metadata"]["name"], cr["metadata"]["namespace"]
        if not self.kube.crd_established(PROMETHEUS.crd):
            return Check(f"{name}: selected by Prometheus", SKIP, "no Prometheus CRD")
        prometheuses = self._prometheuses()
        labels = {
            ns["metadata"]["name"]: ns["metadata"].get("labels", {})
            for ns in (self.kube.list("Namespace") if prometheuses else [])
        }
        selection = evaluate(prometheuses, ours, labels)
        fix = ""
        if selection.missing_labels:
            patch = {
                "spec": {"monitorLabels": dict(x.split("=", 1) for x in selection.missing_labels)}
            }
            fix = f"kubectl -n {namespace} patch jm {name} --type merge -p " + shlex.quote(
                json.dumps(patch)
            )
        elif selection.status != "True":
            fix = "see the message: change that Prometheus' selectors or this namespace's labels"
        return Check(
            f"{name}: selected by Prometheus",
            OK if selection.status == "True" else FAIL,
            selection.message,
            fix,
        )

    def _prometheuses(self) -> list[Obj]:
        """Every Prometheus resource (read once per run)."""
        if self._prometheus_resources is None:
            established = self.kube.crd_established(PROMETHEUS.crd)
            self._prometheus_resources = self.kube.list("Prometheus") if established else []
        return self._prometheus_resources

    def _endpoints(self, cr: Obj) -> Check:
        name, namespace = cr["metadata"]["name"], cr["metadata"]["namespace"]
        app = cr["spec"].get("app", {})
        if not app.get("enabled", True):
            return Check(f"{name}: app endpoints", SKIP, "app.enabled is false")
        selector = app.get("podSelector", {})
        service = child_name(name, APP_COMPONENT)
        slices = self.kube.list("EndpointSlice", namespace, f"{SERVICE_NAME_LABEL}={service}")
        verdict = app_targets_found(service, namespace, selector, slices)
        if verdict.status == "True":
            return Check(f"{name}: app endpoints", OK, verdict.message)
        unlisted = ""
        try:
            pods = self.kube.list("Pod", namespace, selector_text(selector))
        except KubeError as error:
            if error.status != 403:
                raise
            # Run in the operator's pod, with its permissions: no pods (it never reads them).
            pods, unlisted = [], " (pods not listed: this identity may not list pods)"
        if pods:
            detail = (
                f"{len(pods)} pods match app.podSelector {selector_text(selector)} but none is "
                "running with an IP"
            )
            fix = f"kubectl -n {namespace} get pods -l {selector_text(selector)} -o wide"
        else:
            detail = verdict.message + unlisted
            fix = (
                f"kubectl -n {namespace} get pods --show-labels, then set app.podSelector to "
                f"the Django pods' labels: kubectl -n {namespace} patch jm {name} --type merge "
                + shlex.quote(
                    json.dumps({"spec": {"app": {"podSelector": {"<label>": "<value>"}}}})
                )
            )
        return Check(f"{name}: app endpoints", FAIL, detail, fix)

    def _targets(self, cr: Obj, ours: list[Obj]) -> list[Check]:
        """Every endpoint, rule group, alert and SLO of the resource as its Prometheus sees
        them: the one the user names, else the one the operator would ask."""
        meta = cr["metadata"]
        name, namespace = meta["name"], meta["namespace"]
        try:
            spec = JewelryMonitoringSpec.model_validate(self.defaults.apply(cr["spec"]))
        except ValueError:
            return [Check(f"{name}: Prometheus", SKIP, "the spec is invalid: see Ready above")]
        url = self.prometheus_url
        if not url:
            asked = choose(spec.prometheus, self.defaults, self._prometheuses())
            if not asked.url:
                where = sorted({p["metadata"]["namespace"] for p in self._prometheuses()})
                return [
                    Check(
                        f"{name}: targets",
                        FAIL if asked.reason == "PrometheusNotAllowed" else SKIP,
                        asked.message,
                        f"kubectl -n {where[0] if len(where) == 1 else '<its namespace>'} "
                        "port-forward svc/prometheus-operated 9090, then add "
                        "--prometheus-url http://127.0.0.1:9090",
                    )
                ]
            url = asked.url
        owner = Owner(name=name, namespace=namespace, uid=meta.get("uid", ""), spec=spec)
        services = self.kube.list("Service", namespace, owner_selector(name))
        objects = [{"kind": "Service", **s} for s in services] + ours
        slices = self.kube.list("EndpointSlice", namespace, f"{OWNER_LABEL}={instance_label(name)}")
        pools = scrape_pools(ours)
        endpoints = our_endpoints(objects, slices)
        groups = rule_groups_of(ours)
        alerts = alert_needs(groups)
        api = PrometheusAPI(url)
        answers = ask(api, questions(owner, ours, [], url))
        if answers.error:
            return [Check(f"{name}: Prometheus", FAIL, answers.error, "check --prometheus-url")]
        checks = [Check(f"{name}: Prometheus", OK, f"asking {url}")]
        app_pools = frozenset(scrape_pools(ours, APP_COMPONENT))
        states = endpoint_states(endpoints, pools, answers.targets, "", app_pools)
        checks += [self._target(name, namespace, s, s.pool in app_pools) for s in states]
        if pools and not states:
            checks.append(
                Check(
                    f"{name}: targets",
                    FAIL,
                    f"Prometheus at {url} has no target of {', '.join(pools)}",
                    "see 'selected by Prometheus' and 'app endpoints' above",
                )
            )
        rule_name = next((o["metadata"]["name"] for o in ours if o["kind"] == "PrometheusRule"), "")
        verdict = rules_loaded(
            url, [str(g["name"]) for g in groups], answers.groups, f"{namespace}-{rule_name}-"
        )
        checks.append(
            Check(
                f"{name}: rule groups",
                {"True": OK, "False": FAIL}.get(verdict.status, SKIP),
                verdict.message,
                "see 'selected by Prometheus' above (its ruleSelector must select the "
                "PrometheusRule)"
                if verdict.reason == "RulesNotLoaded"
                else "",
            )
        )
        blocked = cannot_fire(alerts, present(answers.series), scraped_jobs(answers.targets))
        checks += [
            Check(
                f"{name}: alert {alert}",
                FAIL if why.certain else SKIP,
                f"cannot fire: {why.text}",
                "enable what it names",
            )
            for alert, why in blocked.items()
        ]
        if alerts and not blocked:
            checks.append(Check(f"{name}: alerts", OK, f"all {len(alerts)} can fire"))
        slos = slo_statuses(spec, answers.slo_series, [])
        budget = error_budget_left(spec, slos)
        if budget.reason != "NoSLOs":
            checks.append(
                Check(
                    f"{name}: error budget",
                    {"True": OK, "False": FAIL}.get(budget.status, SKIP),
                    budget.message
                    + "".join(
                        f"; {slo.name} burn rates {slo.burn_rates}"
                        for slo in slos
                        if slo.burn_rates
                    ),
                )
            )
        checks += self._exporters_reach(cr, api)
        checks.append(self._families(cr, api))
        return checks

    def _families(self, cr: Obj, api: PrometheusAPI) -> Check:
        """The app's biggest metric families, and how near its sampleLimit the app job is."""
        name, namespace = cr["metadata"]["name"], cr["metadata"]["namespace"]
        job = child_name(name, APP_COMPONENT)
        matchers = f'namespace="{namespace}",job="{job}"'
        try:
            found = cardinality.families(api.query(cardinality.families_query(matchers)))
            biggest = api.query(f"max(scrape_samples_post_metric_relabeling{{{matchers}}})")
        except PrometheusError as error:
            return Check(f"{name}: app metric families", SKIP, str(error))
        if not found:
            return Check(f"{name}: app metric families", SKIP, f"no series of job {job}")
        limit = ((cr["spec"].get("app") or {}).get("scrapeLimits") or {}).get("sampleLimit", 0)
        scrape = max((float(row["value"][1]) for row in biggest), default=0.0)
        detail = f"{cardinality.summary(found)}; the biggest scrape {scrape:,.0f} samples"
        if limit and scrape > 0.8 * limit:
            return Check(
                f"{name}: app metric families",
                FAIL,
                f"{detail}, {scrape / limit:.0%} of its sampleLimit {limit:,}",
                "bound the labels of the biggest family (runbook TargetNearSampleLimit) "
                "before raising spec.app.scrapeLimits.sampleLimit",
            )
        return Check(f"{name}: app metric families", OK, detail + f" (sampleLimit {limit:,})")

    def _exporters_reach(self, cr: Obj, api: PrometheusAPI) -> list[Check]:
        """Each enabled exporter's own ``*_up``: 0 while it is scraped means it cannot reach
        what it watches. With a NetworkPolicy restricting its egress, that is the first
        suspect (a managed database on another address or port), and the policy says what
        it allows."""
        name, namespace = cr["metadata"]["name"], cr["metadata"]["namespace"]
        exporters = cr["spec"].get("exporters") or {}
        checks = []
        for exporter in EXPORTER_NAMES:
            metric = EXPORTERS[exporter].up_metric
            if not (exporters.get(exporter) or {}).get("enabled") or metric is None:
                continue
            check = f"{name}: {exporter} exporter reaches its target"
            job = child_name(name, component(exporter))
            try:
                samples = api.query(
                    f'max by (namespace, job) ({metric}{{namespace="{namespace}",job="{job}"}})'
                )
            except PrometheusError as error:
                checks.append(Check(check, SKIP, str(error)))
                continue
            if not samples:
                checks.append(Check(check, SKIP, f"no {metric} of job {job} yet"))
            elif float(samples[0]["value"][1]) == 1:
                checks.append(Check(check, OK, f"{metric} is 1"))
            else:
                checks.append(self._unreachable(cr, exporter, metric, job))
        return checks

    def _unreachable(self, cr: Obj, exporter: str, metric: str, job: str) -> Check:
        name, namespace = cr["metadata"]["name"], cr["metadata"]["namespace"]
        detail = f"{metric} is 0: the exporter runs but cannot reach what it watches"
        logs = f"kubectl -n {namespace} logs deployment/{job}"
        policy = self.kube.get("NetworkPolicy", namespace, job)
        if policy is None or "Egress" not in policy["spec"].get("policyTypes", []):
            return Check(f"{name}: {exporter} exporter reaches its target", FAIL, detail, logs)
        allowed = policy["metadata"].get("annotations", {}).get(EGRESS_ANNOTATION, "")
        patch = {
            "spec": {
                "exporters": {
                    exporter: {
                        "networkTarget": {"cidrs": ["<its address range>"], "ports": ["<its port>"]}
                    }
                }
            }
        }
        return Check(
            f"{name}: {exporter} exporter reaches its target",
            FAIL,
            f"{detail}, and NetworkPolicy {job} restricts its egress to {allowed}",
            "if the target is elsewhere (a managed database, another port), say where: "
            f"kubectl -n {namespace} patch jm {name} --type merge -p "
            + shlex.quote(json.dumps(patch))
            + f" (or networkPolicy.enabled: false); else see why: {logs}",
        )

    def _target(self, name: str, namespace: str, state: EndpointState, is_app: bool) -> Check:
        check = f"{name}: target {state.address}"
        if state.state == UP:
            return Check(check, OK, f"up ({state.pool})")
        if state.state == NOT_SCRAPED_YET:
            return Check(check, SKIP, f"not scraped yet ({state.pool})")
        detail = f"{state.state} ({state.pool}): {state.why}"
        if state.state != FAILING:
            return Check(check, FAIL, detail, "see the reason; 'selected by Prometheus' above")
        if is_app and "403" in state.why:
            return Check(
                check,
                FAIL,
                detail,
                f"{APP_403_FIX} (find their IPs with: kubectl get pods -A "
                "-l app.kubernetes.io/name=prometheus -o wide), e.g. kubectl -n "
                f"{namespace} set env deployment/<django deployment> "
                "PROMETHEUS_METRICS_ALLOWED_IPS=10.244.0.0/16",
            )
        return Check(
            check,
            FAIL,
            detail,
            f"kubectl -n {namespace} get pods -o wide (is the pod up, does it listen on the "
            "metrics port?)",
        )

    def _alertmanager(self, name: str, conditions: dict[str, Obj]) -> Check:
        routing = conditions.get("SelectedByAlertmanager")
        if routing is None or routing.get("reason") == "RoutingNotConfigured":
            return Check(f"{name}: selected by Alertmanager", SKIP, "no routing configured")
        selected = routing.get("status") == "True"
        return Check(
            f"{name}: selected by Alertmanager",
            OK if selected else FAIL,
            routing.get("message", ""),
            "" if selected else routing.get("message", ""),
        )


def _lease_name(deployment: Obj) -> str:
    """The Lease the operator's replicas compete for, as the chart tells them (JM_LEASE_NAME:
    shortened for a long release name); "" without leader election."""
    for container in deployment["spec"]["template"]["spec"].get("containers", []):
        for variable in container.get("env") or []:
            if variable.get("name") == "JM_LEASE_NAME":
                return str(variable.get("value") or "")
    return ""


def _age_seconds(stamp: str) -> float | None:
    try:
        when = datetime.datetime.fromisoformat(stamp.replace("Z", "+00:00"))
    except ValueError:
        return None
    return (datetime.datetime.now(datetime.UTC) - when).total_seconds()


MARKS = {OK: "[ok]  ", FAIL: "[FAIL]", SKIP: "[skip]"}


def human(checks: list[Check]) -> str:
    lines = []
    for check in checks:
        lines.append(f"{MARKS[check.status]} {check.name}: {check.detail}")
        if check.fix and check.status != OK:
            lines.append(f"       fix: {check.fix}")
    failed = sum(1 for c in checks if c.status == FAIL)
    lines.append(f"{failed} problem{'s' if failed != 1 else ''} found" if failed else "all good")
    return "\n".join(lines) + "\n"


def as_json(checks: list[Check]) -> str:
    healthy = not any(c.status == FAIL for c in checks)
    return json.dumps({"healthy": healthy, "checks": [asdict(c) for c in checks]}, indent=2) + "\n"


def exit_code(checks: list[Check]) -> int:
    return 1 if any(c.status == FAIL for c in checks) else 0
