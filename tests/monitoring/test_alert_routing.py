"""Alert routing end to end: our AlertmanagerConfig as prometheus-operator and Alertmanager use it.

On the local control plane, our operator (subprocess, chart RBAC) reconciles two CRs:

* ``full``: every receiver kind (Slack, e-mail, PagerDuty, webhook, Teams), routes by
  severity, alert name and team, inhibition; selected by an Alertmanager ``full`` at
  prometheus-operator's default Alertmanager version. Never run: its Secrets hold ``.invalid``
  URLs, and only the generated configuration is read.
* ``live``: webhooks only, to a receiver in this test on 127.0.0.1, selected by an
  Alertmanager ``live`` whose version is Debian's Alertmanager (0.25), so the configuration
  prometheus-operator generates for it is one that binary loads.

The fire drill (``jewelry-monitoring fire-drill``) runs against that Alertmanager too: every
receiver of ``live`` gets its synthetic alert, the broken one is reported failed, and an
Alertmanager that has not loaded the routing is refused before anything is sent.

The real prometheus-operator (built from its Go module by the setup) runs on the host and
writes each Alertmanager's ``alertmanager-<name>-generated`` Secret (gzip). The live test runs
Debian's Prometheus with the operator's PrometheusRule and the CR's ServiceMonitors pointed at
closed loopback ports (every target down), and Debian's Alertmanager with that generated
configuration: DjangoTargetDown (critical) pages, its warning twin is inhibited,
RedisExporterDown is routed by alert name and team, and the user's own alert (from
``extraRuleGroups``) by its name.
"""

from __future__ import annotations

import base64
import contextlib
import gzip
import json
import os
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest
import yaml
from kubernetes import client
from kubernetes.client.rest import ApiException

from devkit import prometheus as prom
from devkit.cluster import ControlPlane
from devkit.crs import (
    GROUP,
    PLURAL,
    VERSION,
    CustomApi,
    children,
    condition,
    cr_body,
    create_referenced_secrets,
    wait_condition,
)
from devkit.operator_process import OperatorProcess
from devkit.ports import refusing_port
from devkit.prometheus_operator import prometheus_operator
from devkit.services import LOOPBACK
from jewelry_monitoring.builders.common import OWNER_LABEL, Owner
from jewelry_monitoring.builders.desired import desired_objects
from jewelry_monitoring.drillplan import Outcome
from jewelry_monitoring.firedrill import human
from jewelry_monitoring.spec import JewelryMonitoringSpec

pytestmark = pytest.mark.cluster

NAMESPACE, AM_NAMESPACE = "routing-shop", "routing-alertmanagers"
MONITORING = "monitoring.coreos.com"
GRAFANA = "https://grafana.jewelry.example"
# Debian's prometheus-alertmanager, the binary the live test runs.
LIVE_ALERTMANAGER_VERSION = "v0.25.0"
# Where each live receiver's webhook points (a path on the test's receiver); "broken" answers
# 500 (a receiver that is down) and is routed only alerts of severity info, which none of the
# CR's alerts has: only the fire drill sends it one.
LIVE_RECEIVERS = ("pager", "tickets", "orders", "catchall", "broken")
BROKEN_RECEIVER = "broken"
# An alert of the user's own (extraRuleGroups) that fires as soon as any target is down.
USERS_ALERT = "ShopTargetsDown"


def ref(name: str, key: str = "url") -> dict[str, str]:
    return {"name": name, "key": key}


FULL_SPEC: dict[str, Any] = {
    "app": {"podSelector": {"app": "shop"}},
    "exporters": {"redis": {"enabled": True}},
    "routing": {
        "alertmanagerConfigLabels": {"alertmanagerConfig": "full"},
        "receivers": [
            {"name": "pager", "pagerduty": {"routingKey": ref("pagerduty", "key")}},
            {
                "name": "chat",
                "slack": {"apiUrl": ref("slack"), "channel": "#shop"},
                "msteams": {"webhookUrl": ref("teams")},
            },
            {
                "name": "mail",
                "email": {
                    "to": "ops@jewelry.invalid",
                    "from": "alerts@jewelry.invalid",
                    "smarthost": "smtp.jewelry.invalid:587",
                    "authUsername": "alerts",
                    "authPassword": ref("smtp", "password"),
                },
            },
            {"name": "hook", "webhook": {"url": ref("hook")}},
        ],
        "receiver": "mail",
        "routes": [
            {"receiver": "pager", "severities": ["critical"]},
            {"receiver": "chat", "alertNames": ["RedisDown", "SlowRequests"], "teams": ["shop"]},
            {"receiver": "hook", "severities": ["info", "warning"], "continue": True},
        ],
    },
}
LIVE_SPEC: dict[str, Any] = {
    # Scraped every second: the test's Prometheus finds the closed ports down at once.
    "app": {"podSelector": {"app": "shop"}, "interval": "1s", "scrapeTimeout": "1s"},
    "exporters": {"redis": {"enabled": True, "interval": "1s", "scrapeTimeout": "1s"}},
    "alerts": {
        "labels": {"team": "shop"},
        "overrides": {name: {"for": "0s"} for name in ("DjangoTargetDown", "RedisExporterDown")},
    },
    "dashboards": {"grafanaUrl": GRAFANA},
    "extraRuleGroups": [
        {
            "name": "shop-own",
            "rules": [
                {
                    "alert": USERS_ALERT,
                    "expr": "count by (namespace) (up == 0) > 0",
                    "labels": {"severity": "warning"},
                }
            ],
        }
    ],
    "routing": {
        "alertmanagerConfigLabels": {"alertmanagerConfig": "live"},
        "receivers": [
            {"name": name, "webhook": {"url": ref(f"live-{name}")}} for name in LIVE_RECEIVERS
        ],
        "receiver": "catchall",
        "routes": [
            {"receiver": "pager", "severities": ["critical"]},
            {"receiver": "tickets", "alertNames": ["RedisExporterDown"], "teams": ["shop"]},
            {"receiver": "orders", "alertNames": [USERS_ALERT]},
            {"receiver": BROKEN_RECEIVER, "severities": ["info"]},
        ],
        # Long enough for Alertmanager's inhibitor to have taken in the critical before the
        # warning's first notification is due: with 1s, under load, the warning went out
        # first once (the inhibitor caches sources asynchronously).
        "groupWait": "5s",
        "groupInterval": "1s",
        "repeatInterval": "1h",
    },
}
SPECS = {"full": FULL_SPEC, "live": LIVE_SPEC}


def alertmanager(name: str, version: str | None = None) -> dict[str, Any]:
    """An Alertmanager selecting AlertmanagerConfigs labelled ``alertmanagerConfig: <name>``
    in every namespace (as kube-prometheus-stack's does once given a selector)."""
    spec: dict[str, Any] = {
        "alertmanagerConfigSelector": {"matchLabels": {"alertmanagerConfig": name}},
        "alertmanagerConfigNamespaceSelector": {},
    }
    if version:
        spec["version"] = version
    return {
        "apiVersion": f"{MONITORING}/v1",
        "kind": "Alertmanager",
        "metadata": {"name": name, "namespace": AM_NAMESPACE},
        "spec": spec,
    }


def generated_alertmanager_config(api: client.ApiClient, name: str) -> Any:
    """What prometheus-operator wrote for Alertmanager ``name``, or None yet."""
    try:
        secret = client.CoreV1Api(api).read_namespaced_secret(
            f"alertmanager-{name}-generated", AM_NAMESPACE
        )
    except ApiException as error:
        if error.status == 404:
            return None
        raise
    data = (secret.data or {}).get("alertmanager.yaml.gz")
    return yaml.safe_load(gzip.decompress(base64.b64decode(data))) if data else None


def our_route(config: Any, cr: str) -> dict[str, Any] | None:
    """The first-level route prometheus-operator made of CR ``cr``'s AlertmanagerConfig."""
    for route in (config or {}).get("route", {}).get("routes") or []:
        if route.get("receiver", "").startswith(f"{NAMESPACE}/{cr}-alert-routing/"):
            return dict(route)
    return None


@dataclass
class Routed:
    api: client.ApiClient
    crs: dict[str, dict[str, Any]]  # name -> the CR as the operator left it
    configs: dict[str, Any]  # Alertmanager name -> its generated configuration
    webhook: prom.WebhookReceiver
    kubeconfig: str  # the admin's, as a user of the CLI would have

    def receiver(self, cr: str, name: str) -> str:
        return f"{NAMESPACE}/{cr}-alert-routing/{name}"


@pytest.fixture(scope="module")
def routed(
    control_plane: ControlPlane, admin_api: client.ApiClient, operator: OperatorProcess
) -> Iterator[Routed]:
    core, custom = client.CoreV1Api(admin_api), CustomApi(admin_api)
    with contextlib.ExitStack() as cleanup:
        webhook = cleanup.enter_context(prom.webhook_receiver(failing=(BROKEN_RECEIVER,)))
        for name in (NAMESPACE, AM_NAMESPACE):
            core.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name=name)))
            cleanup.callback(core.delete_namespace, name)

        def secret_value(name: str, key: str) -> str:
            if name.startswith("live-"):  # the live receivers: loopback only
                return f"{webhook.url}/{name.removeprefix('live-')}"
            return f"https://{name}.jewelry.invalid/{key}"

        for cr, spec in SPECS.items():
            create_referenced_secrets(admin_api, NAMESPACE, spec, secret_value)
            custom.create_namespaced_custom_object(
                GROUP, VERSION, NAMESPACE, PLURAL, cr_body(cr, spec)
            )
        for name, version in (("full", None), ("live", LIVE_ALERTMANAGER_VERSION)):
            custom.create_namespaced_custom_object(
                MONITORING, "v1", AM_NAMESPACE, "alertmanagers", alertmanager(name, version)
            )
            cleanup.callback(
                custom.delete_namespaced_custom_object,
                MONITORING,
                "v1",
                AM_NAMESPACE,
                "alertmanagers",
                name,
            )
        crs = {
            cr: wait_condition(
                admin_api, NAMESPACE, cr, "SelectedByAlertmanager", "True", timeout=90
            )
            for cr in SPECS
        }
        running = cleanup.enter_context(prometheus_operator(control_plane))
        deadline = time.monotonic() + 120
        while True:
            configs = {name: generated_alertmanager_config(admin_api, name) for name in SPECS}
            if all(our_route(configs[name], name) for name in SPECS):
                break
            assert running.running, f"prometheus-operator exited:\n{running.log_tail()}"
            assert time.monotonic() < deadline, (
                f"no routes of ours in {configs}\nprometheus-operator log:\n{running.log_tail(60)}"
            )
            time.sleep(0.5)
        yield Routed(
            api=admin_api,
            crs=crs,
            configs=configs,
            webhook=webhook,
            kubeconfig=str(control_plane.kubeconfig),
        )


def _stored_config(api: client.ApiClient, cr: str) -> dict[str, Any]:
    result: dict[str, Any] = CustomApi(api).get_namespaced_custom_object(
        MONITORING, "v1alpha1", NAMESPACE, "alertmanagerconfigs", f"{cr}-alert-routing"
    )
    return result


def _strict_dry_run(api: client.ApiClient, body: dict[str, Any]) -> None:
    """Create ``body`` as a dry run in which an unknown field is an error, not pruned."""
    CustomApi(api).create_namespaced_custom_object(
        MONITORING,
        "v1alpha1",
        NAMESPACE,
        "alertmanagerconfigs",
        body,
        dry_run="All",
        field_validation="Strict",
    )


def test_the_real_crd_stores_our_alertmanager_config_unpruned(routed: Routed) -> None:
    """The API server prunes fields its schema lacks: stored must equal built, field for
    field, and a strict dry-run (unknown fields are errors) must accept what we build."""
    for cr, spec in SPECS.items():
        meta = routed.crs[cr]["metadata"]
        owner = Owner(cr, NAMESPACE, meta["uid"], JewelryMonitoringSpec.model_validate(spec))
        (built,) = [
            o
            for o in desired_objects(owner, frozenset({"AlertmanagerConfig"}))
            if o["kind"] == "AlertmanagerConfig"
        ]
        stored = _stored_config(routed.api, cr)
        assert stored["spec"] == built["spec"], cr
        assert stored["metadata"]["labels"][OWNER_LABEL] == cr
        dry_run = {**built, "metadata": {**built["metadata"], "name": f"{cr}-dry-run"}}
        del dry_run["metadata"]["ownerReferences"]
        _strict_dry_run(routed.api, dry_run)
    # So the strict check above can fail.
    with pytest.raises(ApiException) as rejected:
        _strict_dry_run(routed.api, {**dry_run, "spec": {**dry_run["spec"], "notAField": 1}})
    assert rejected.value.status == 400
    message = json.loads(rejected.value.body)["message"]
    assert 'unknown field "spec.notAField"' in message


def _label_full_config(api: client.ApiClient, value: str) -> None:
    """Set the ``full`` CR's AlertmanagerConfig label ``alertmanagerConfig`` to ``value``."""
    labels = {"alertmanagerConfigLabels": {"alertmanagerConfig": value}}
    CustomApi(api).patch_namespaced_custom_object(
        GROUP, VERSION, NAMESPACE, PLURAL, "full", {"spec": {"routing": labels}}
    )


def test_selected_by_alertmanager_names_the_missing_label(routed: Routed) -> None:
    for cr in SPECS:
        message = condition(routed.crs[cr], "SelectedByAlertmanager")["message"]
        assert f"Alertmanager {AM_NAMESPACE}/{cr} selects all our objects" == message
    _label_full_config(routed.api, "elsewhere")
    try:
        cr = wait_condition(
            routed.api, NAMESPACE, "full", "SelectedByAlertmanager", "False", "NotSelected"
        )
        message = condition(cr, "SelectedByAlertmanager")["message"]
        assert (
            f"Alertmanager {AM_NAMESPACE}/full: AlertmanagerConfig full-alert-routing is not "
            "selected: add alertmanagerConfig=full to spec.routing.alertmanagerConfigLabels"
        ) in message
    finally:
        _label_full_config(routed.api, "full")
    wait_condition(routed.api, NAMESPACE, "full", "SelectedByAlertmanager", "True")


def test_prometheus_operator_renders_routes_receivers_and_inhibition(routed: Routed) -> None:
    config = routed.configs["full"]
    route = our_route(config, "full")
    assert route is not None
    # Scoped to this CR's alerts: our label, and the namespace matcher prometheus-operator adds.
    assert set(route["matchers"]) == {'jewelry_monitoring="full"', f'namespace="{NAMESPACE}"'}
    assert route["receiver"] == routed.receiver("full", "mail")
    assert route["group_by"] == ["alertname", "namespace", "job"]
    assert (route["group_wait"], route["group_interval"], route["repeat_interval"]) == (
        "30s",
        "5m",
        "4h",
    )
    pager, chat, hook = route["routes"]
    assert (pager["receiver"], pager["matchers"]) == (
        routed.receiver("full", "pager"),
        ['severity="critical"'],
    )
    assert chat["receiver"] == routed.receiver("full", "chat")
    assert chat["matchers"] == ['alertname=~"RedisDown|SlowRequests"', 'team="shop"']
    assert (hook["matchers"], hook.get("continue")) == (['severity=~"info|warning"'], True)

    receivers = {r["name"]: r for r in config["receivers"]}
    ours = {name for name in receivers if name.startswith(f"{NAMESPACE}/full-alert-routing/")}
    assert ours == {routed.receiver("full", n) for n in ("pager", "chat", "mail", "hook")}
    # Secret values arrive in the generated config only, read by prometheus-operator.
    (pagerduty,) = receivers[routed.receiver("full", "pager")]["pagerduty_configs"]
    assert pagerduty["routing_key"] == "https://pagerduty.jewelry.invalid/key"
    chat_receiver = receivers[routed.receiver("full", "chat")]
    (slack,) = chat_receiver["slack_configs"]
    assert (slack["api_url"], slack["channel"]) == ("https://slack.jewelry.invalid/url", "#shop")
    (teams,) = chat_receiver["msteamsv2_configs"]
    assert teams["webhook_url"] == "https://teams.jewelry.invalid/url"
    (email,) = receivers[routed.receiver("full", "mail")]["email_configs"]
    assert (email["to"], email["smarthost"], email["auth_password"]) == (
        "ops@jewelry.invalid",
        "smtp.jewelry.invalid:587",
        "https://smtp.jewelry.invalid/password",
    )
    (webhook,) = receivers[routed.receiver("full", "hook")]["webhook_configs"]
    assert webhook["url"] == "https://hook.jewelry.invalid/url"

    (inhibit,) = [
        rule
        for rule in config.get("inhibit_rules") or []
        if 'jewelry_monitoring="full"' in rule.get("source_matchers", [])
    ]
    assert set(inhibit["source_matchers"]) == {
        'jewelry_monitoring="full"',
        'severity="critical"',
        f'namespace="{NAMESPACE}"',
    }
    assert set(inhibit["target_matchers"]) == {
        'jewelry_monitoring="full"',
        'severity="warning"',
        f'namespace="{NAMESPACE}"',
    }
    assert inhibit["equal"] == ["alertname", "namespace", "job"]
    # The other Alertmanager selects only the live CR's configuration.
    assert our_route(routed.configs["live"], "full") is None


def _alertmanager_alerts(port: int, alertname: str) -> list[dict[str, Any]]:
    url = f"http://{LOOPBACK}:{port}/api/v2/alerts?filter=alertname%3D%22{alertname}%22"
    with urllib.request.urlopen(url, timeout=10) as response:
        alerts: list[dict[str, Any]] = json.loads(response.read())
    return alerts


def _owned_objects(api: client.ApiClient, cr: str) -> list[dict[str, Any]]:
    """The Services, ServiceMonitors and PrometheusRule the operator made for ``cr``."""
    scraped = ("Service", "ServiceMonitor", "PrometheusRule")
    return [obj for obj in children(api, NAMESPACE, cr).values() if obj["kind"] in scraped]


def test_alertmanager_delivers_our_alerts_as_routed_and_inhibits_the_warning(
    routed: Routed,
) -> None:
    config = routed.configs["live"]
    assert our_route(config, "live") is not None
    objects = _owned_objects(routed.api, "live")
    with contextlib.ExitStack() as stack:
        # Every target of the CR on a loopback port that refuses (held, so no other process
        # can serve on it meanwhile): all down.
        targets = {
            o["metadata"]["name"]: [f"{LOOPBACK}:{stack.enter_context(refusing_port())}"]
            for o in objects
            if o["kind"] == "Service"
        }
        alertmanager = stack.enter_context(prom.alertmanager_with_config(config))
        prometheus_config = prom.prometheus_config(
            objects, targets, rule_files=[], alertmanager=f"{LOOPBACK}:{alertmanager.port}"
        )
        prometheus = stack.enter_context(
            prom.prometheus_server(prometheus_config, prom.rule_file(objects))
        )
        pager, tickets = routed.receiver("live", "pager"), routed.receiver("live", "tickets")
        orders = routed.receiver("live", "orders")

        def delivered(receiver: str, alertname: str, severity: str) -> list[dict[str, Any]]:
            return [
                alert
                for note in list(routed.webhook.notifications)
                if note.get("receiver") == receiver
                for alert in note.get("alerts", [])
                if alert["labels"].get("alertname") == alertname
                and alert["labels"].get("severity") == severity
                and alert["status"] == "firing"
            ]

        deadline = time.monotonic() + 120
        while not (
            delivered(pager, "DjangoTargetDown", "critical")
            and delivered(tickets, "RedisExporterDown", "warning")
            and delivered(orders, USERS_ALERT, "warning")
        ):
            assert time.monotonic() < deadline, (
                f"not delivered; firing: {prometheus.api.alerts()}\n"
                f"notifications: {routed.webhook.notifications}\n{alertmanager.log_tail()}"
            )
            time.sleep(0.5)

        # The warning twin fires in Prometheus and reaches Alertmanager, which holds it back.
        firing = {
            (a["labels"]["alertname"], a["labels"]["severity"])
            for a in prometheus.api.alerts()
            if a["state"] == "firing"
        }
        assert ("DjangoTargetDown", "warning") in firing
        warnings = [
            a
            for a in _alertmanager_alerts(alertmanager.port, "DjangoTargetDown")
            if a["labels"]["severity"] == "warning"
        ]
        assert warnings, "the warning never reached Alertmanager: the test would prove nothing"
        for warning in warnings:
            assert warning["status"]["state"] == "suppressed"
            assert warning["status"]["inhibitedBy"], warning
        time.sleep(3)  # three group intervals: had it not been inhibited, it would be sent
    notified = [
        (note["receiver"], alert["labels"]["alertname"], alert["labels"]["severity"])
        for note in routed.webhook.notifications
        for alert in note.get("alerts", [])
    ]
    assert ("DjangoTargetDown", "warning") not in {(n, s) for _, n, s in notified}, notified
    # Nothing fell through to the default receiver: every alert found its route.
    assert not [n for n in notified if n[0] == routed.receiver("live", "catchall")], notified
    (page,) = {
        json.dumps(a["annotations"], sort_keys=True)
        for a in delivered(pager, "DjangoTargetDown", "critical")
    }
    annotations = json.loads(page)
    assert annotations["dashboard_url"].startswith(f"{GRAFANA}/d/jewelry-system?viewPanel=")
    assert "var-namespace=routing-shop" in annotations["dashboard_url"]


def _fire_drill(routed: Routed, url: str, *args: str) -> subprocess.CompletedProcess[str]:
    """``jewelry-monitoring fire-drill live`` as a user runs it, with the admin kubeconfig."""
    command = [sys.executable, "-m", "jewelry_monitoring.cli", "fire-drill", "live"]
    return subprocess.run(
        [*command, "-n", NAMESPACE, "--alertmanager-url", url, *args],
        env={**os.environ, "KUBECONFIG": routed.kubeconfig},
        capture_output=True,
        text=True,
        timeout=300,
    )


def _drill_notes(routed: Routed) -> list[tuple[str, str, str]]:
    """(receiver, status, severity) of every drill alert the webhook received so far."""
    return [
        (note["receiver"], alert["status"], alert["labels"]["severity"])
        for note in list(routed.webhook.notifications)
        for alert in note.get("alerts", [])
        if "fire_drill" in alert["labels"]
    ]


def test_fire_drill_reports_each_receiver_and_pages_nobody_without_yes(routed: Routed) -> None:
    assert not _drill_notes(routed)
    with prom.alertmanager_with_config(routed.configs["live"]) as alertmanager:
        url = f"http://{LOOPBACK}:{alertmanager.port}"
        planned = _fire_drill(routed, url)
        assert planned.returncode == 0, planned.stderr
        assert f"through Alertmanager {AM_NAMESPACE}/live at {url}" in planned.stdout
        assert "nothing sent" in planned.stdout
        planned_receivers = {
            line.split()[1] for line in planned.stdout.splitlines() if line.startswith("[plan]")
        }
        assert planned_receivers == set(LIVE_RECEIVERS)
        assert not _alertmanager_alerts(alertmanager.port, "JewelryFireDrill")
        # doctor --fire-drill: the same plan, one check per receiver (skipped: not sent).
        command = [sys.executable, "-m", "jewelry_monitoring.cli", "doctor", "live"]
        doctor = subprocess.run(
            [*command, "-n", NAMESPACE, "--fire-drill", "--alertmanager-url", url, "-o", "json"],
            env={**os.environ, "KUBECONFIG": routed.kubeconfig},
            capture_output=True,
            text=True,
            timeout=120,
        )
        checks = {c["name"]: c for c in json.loads(doctor.stdout)["checks"]}
        assert checks["live: fire drill"]["status"] == "ok"
        for name in LIVE_RECEIVERS:
            drilled = checks[f"live: fire drill {name}"]
            assert (drilled["status"], drilled["detail"][:8]) == ("skip", "planned:"), drilled
        assert not _alertmanager_alerts(alertmanager.port, "JewelryFireDrill")

        started = time.monotonic()
        result = _fire_drill(routed, url, "--yes", "-o", "json")
        took = time.monotonic() - started
        assert result.returncode == 1, result.stderr  # one receiver is broken
        report = json.loads(result.stdout)
        verdicts = {o["receiver"]: (o["verdict"], o["detail"]) for o in report["outcomes"]}
        assert {name: verdict for name, (verdict, _) in verdicts.items()} == {
            "pager": "sent",
            "tickets": "sent",
            "orders": "sent",
            "catchall": "sent",
            BROKEN_RECEIVER: "failed",
        }, f"{verdicts}\n{alertmanager.log_tail()}"
        assert "webhook: " in verdicts[BROKEN_RECEIVER][1]
        assert report["version"] == "0.25.0" and report["still_active"] == 0
        print(f"\n{planned.stdout}fire drill of 5 webhook receivers (5 batches): {took:.1f}s")
        outcomes = [
            Outcome(**{**o, "integrations": tuple(o["integrations"])}) for o in report["outcomes"]
        ]
        print(human(outcomes))

        # Each working receiver got its alert once, firing, then resolved once the drill
        # resolved it (group interval 1s); the broken one recorded nothing (it answers 500).
        deadline = time.monotonic() + 30
        while {r for r, status, _ in _drill_notes(routed) if status == "resolved"} != {
            routed.receiver("live", name) for name in LIVE_RECEIVERS if name != BROKEN_RECEIVER
        }:
            assert time.monotonic() < deadline, _drill_notes(routed)
            time.sleep(0.5)
        firing = sorted((r, s) for r, status, s in _drill_notes(routed) if status == "firing")
        assert firing == sorted(
            [
                # info is the broken receiver's route: the default gets a warning.
                (routed.receiver("live", "catchall"), "warning"),
                (routed.receiver("live", "orders"), "info"),
                (routed.receiver("live", "pager"), "critical"),
                (routed.receiver("live", "tickets"), "info"),
            ]
        )
        active = _alertmanager_alerts(alertmanager.port, "JewelryFireDrill")
        active += _alertmanager_alerts(alertmanager.port, "RedisExporterDown")
        assert not [a for a in active if "fire_drill" in a["labels"]], active


def test_fire_drill_refuses_an_alertmanager_without_our_routing(routed: Routed) -> None:
    """Its default receiver would get the alerts: somebody else's pager. Nothing is sent."""
    with prom.alertmanager_server(routed.webhook.url) as elsewhere:
        before = len(routed.webhook.notifications)
        result = _fire_drill(routed, f"http://{LOOPBACK}:{elsewhere.port}", "--yes")
        assert result.returncode == 2
        assert "has not loaded the routing of routing-shop/live" in result.stderr
        assert "Nothing was sent" in result.stderr
        assert not _alertmanager_alerts(elsewhere.port, "JewelryFireDrill")
        time.sleep(2)  # its group wait is 1s: anything sent would have arrived
        assert len(routed.webhook.notifications) == before
