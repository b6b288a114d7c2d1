"""The generated rules as Prometheus itself sees them: ``promtool check rules`` and
``promtool test rules`` with a firing and a quiet case for every alert in ``KNOWN_ALERTS``.

The cases are a table of synthetic scrapes. Expected labels are written out (what a person
reading the alert would see besides ``severity``); the rule's own labels and rendered
annotations are added from the generated rules, so a wrong template fails the test too.
"""

from __future__ import annotations

import re
import subprocess
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import yaml

from jewelry_monitoring.builders.common import Owner
from jewelry_monitoring.builders.rules import KNOWN_ALERTS, NODE_CATALOG, rule_groups
from jewelry_monitoring.spec import JewelryMonitoringSpec, validate

PROMTOOL = Path("/usr/bin/promtool")  # from Debian's prometheus, installed by tests/toolchain/setup

NAMESPACE = "jewelry"
JOBS = {
    "app": "shop-app-metrics",
    **{e: f"shop-{e}-exporter" for e in ("postgres", "redis", "nginx", "celery")},
    # The chart's node exporter, released as "jm" into the same namespace.
    "node": "jm-jewelry-monitoring-node-exporter",
}
INSTANCE = "10.0.0.7:9000"

FULL_SPEC: dict[str, Any] = {
    "app": {"podSelector": {"app": "jewelry"}},
    "exporters": {
        "postgres": {"enabled": True, "dataSource": {"name": "pg", "key": "dsn"}},
        "redis": {"enabled": True},
        "nginx": {"enabled": True},
        "celery": {"enabled": True, "brokerUrl": {"name": "broker", "key": "url"}},
    },
    # 1.0 on purpose: prometheus_client exposes that bucket as le="1.0".
    "slos": {
        "availability": {"objective": 99.9},
        "latency": {"objective": 99, "thresholdSeconds": 1.0},
    },
}


def full_owner() -> Owner:
    return Owner(
        name="shop",
        namespace=NAMESPACE,
        uid="uid-1",
        spec=JewelryMonitoringSpec.model_validate(FULL_SPEC),
    )


def s(metric: str, component: str, values: str, **labels: str) -> dict[str, str]:
    """One input series of ``component``'s job, as the scrape would label it."""
    all_labels = {"namespace": NAMESPACE, "job": JOBS[component], "instance": INSTANCE, **labels}
    text = ",".join(f'{k}="{v}"' for k, v in all_labels.items())
    return {"series": f"{metric}{{{text}}}", "values": values}


def job(component: str, **labels: str) -> dict[str, str]:
    """Expected alert labels: namespace and job of ``component`` plus ``labels``."""
    return {"namespace": NAMESPACE, "job": JOBS[component], **labels}


def inst(component: str, **labels: str) -> dict[str, str]:
    """Expected labels of an alert that keeps the target's instance label."""
    return job(component, instance=INSTANCE, **labels)


@dataclass(frozen=True)
class Case:
    """Input that must make ``alert`` fire with ``labels`` at ``at``, or stay silent."""

    alert: str
    at: str
    series: list[dict[str, str]]
    labels: list[dict[str, str]] = field(default_factory=list)  # empty: must not fire
    interval: str = "1m"
    # Of an alert with several rules, the ones expected to fire: those carrying these labels.
    rules: dict[str, str] = field(default_factory=dict)


def _buckets(metric: str, view_labels: dict[str, str], counts: dict[str, int], n: int) -> list:
    """Cumulative histogram buckets growing by ``counts[le]`` per minute."""
    return [
        s(f"{metric}_bucket", "app", f"0+{per_min}x{n}", **view_labels, le=le)
        for le, per_min in counts.items()
    ]


VIEW = {"view": "catalog:product-list", "method": "GET"}
DB = {"alias": "default", "vendor": "postgresql"}
RESP = "django_http_responses_total_by_status_total"
HTTP_LAT = "django_http_requests_latency_seconds_by_view_method"


CACHE = {"namespace": NAMESPACE, "job": JOBS["app"], "backend": "redis"}


def _cache_reads(hits: int | None, misses: int | None, fails: int = 0) -> list[dict[str, str]]:
    """django-prometheus' read counters, per minute; None: the series never existed (each
    appears on its first use, as a Redis failure's)."""
    gets = (hits or 0) + (misses or 0) + fails
    counts = {"get": gets, "get_hits": hits, "get_misses": misses, "get_fail": fails or None}
    return [
        s(f"django_cache_{name}_total", "app", f"0+{per_minute}x40", backend="redis")
        for name, per_minute in counts.items()
        if per_minute is not None
    ]


def _target_down_cases(alert: str, component: str) -> list[Case]:
    return [
        Case(alert, "10m", [s("up", component, "0x15")], [inst(component)]),
        # No target at all: absent() still reports the job.
        Case(alert, "10m", [s("up", "app", "1x15")], [job(component)]),
        Case(alert, "10m", [s("up", component, "1x15")]),
    ]


def _pods_up(states: str) -> list[dict[str, str]]:
    """``up`` of one app target per character of ``states`` ("1" up, "0" down)."""
    return [
        s("up", "app", f"{state}x15", instance=f"10.0.0.{index}:8000")
        for index, state in enumerate(states)
    ]


ALL = {"targets": "all"}
SOME = {"targets": "some"}
DJANGO_TARGET_DOWN_CASES = [
    # One pod of two down: a ticket (half the targets), not a page.
    Case("DjangoTargetDown", "10m", _pods_up("10"), [job("app")], rules=SOME),
    # Every pod down: the page, and the ticket it inhibits in Alertmanager.
    Case("DjangoTargetDown", "10m", _pods_up("000"), [job("app")]),
    # No target at all: absent() pages.
    Case("DjangoTargetDown", "10m", [s("up", "postgres", "1x15")], [job("app")], rules=ALL),
    # One pod of twenty is below the 0.1 share: nothing.
    Case("DjangoTargetDown", "10m", _pods_up("0" + "1" * 19)),
    Case("DjangoTargetDown", "10m", _pods_up("111")),
]


def _slo_cases(alert: str, bad: list[dict[str, str]], good: list[dict[str, str]]) -> list[Case]:
    """30 hours of 5-minute scrapes: 50 % bad fires every window pair; 0 % bad none.

    30h, not 3d: ``rate(...[3d])`` extrapolates from the samples it has, and the longest
    ``for`` (3h) is long over by then; a shorter history keeps promtool quick.
    """
    return [
        Case(alert, "30h", bad, [job("app")], interval="5m"),
        Case(alert, "30h", good, interval="5m"),
    ]


N = 372  # 31 hours of 5m samples

CASES: list[Case] = [
    *DJANGO_TARGET_DOWN_CASES,
    *(
        case
        for component, alert in [
            ("postgres", "PostgresExporterDown"),
            ("redis", "RedisExporterDown"),
            ("nginx", "NginxExporterDown"),
            ("celery", "CeleryExporterDown"),
        ]
        for case in _target_down_cases(alert, component)
    ),
    Case(
        "HighErrorRate",
        "15m",
        [s(RESP, "app", "0+30x20", status="500"), s(RESP, "app", "0+30x20", status="200")],
        [job("app")],
    ),
    Case(
        "HighErrorRate",
        "15m",
        [s(RESP, "app", "0+1x20", status="500"), s(RESP, "app", "0+100x20", status="200")],
    ),
    # A quiet app: one 5xx a minute out of two responses is half of them, but at 1/30
    # responses per second it is below the 0.1/s floor and must not page.
    Case(
        "HighErrorRate",
        "15m",
        [s(RESP, "app", "0+1x20", status="500"), s(RESP, "app", "0+1x20", status="200")],
    ),
    # Just above the floor (12 responses a minute = 0.2/s), the same share pages.
    Case(
        "HighErrorRate",
        "15m",
        [s(RESP, "app", "0+6x20", status="500"), s(RESP, "app", "0+6x20", status="200")],
        [job("app")],
    ),
    Case(
        "SlowRequests",
        "15m",
        _buckets(HTTP_LAT, VIEW, {"0.1": 0, "2.5": 0, "5.0": 60, "+Inf": 60}, 20),
        [job("app")],
    ),
    Case(
        "SlowRequests",
        "15m",
        _buckets(HTTP_LAT, VIEW, {"0.1": 60, "2.5": 60, "5.0": 60, "+Inf": 60}, 20),
    ),
    Case(
        "DjangoUnhandledExceptions",
        "15m",
        [s("django_http_exceptions_total_by_type_total", "app", "0+60x20", type="ValueError")],
        [job("app", type="ValueError")],
    ),
    Case(
        "DjangoUnhandledExceptions",
        "15m",
        [s("django_http_exceptions_total_by_type_total", "app", "0+1x20", type="ValueError")],
    ),
    Case(
        "DjangoDatabaseErrors",
        "15m",
        [s("django_db_errors_total", "app", "0+60x20", **DB, type="OperationalError")],
        [job("app", alias="default", type="OperationalError")],
    ),
    Case(
        "DjangoDatabaseErrors",
        "15m",
        [s("django_db_errors_total", "app", "0+1x20", **DB, type="UniqueViolation")],
    ),
    Case(
        "DjangoSlowDatabaseQueries",
        "20m",
        _buckets("django_db_query_duration_seconds", DB, {"0.5": 0, "1.0": 60, "+Inf": 60}, 30),
        [job("app")],
    ),
    Case(
        "DjangoSlowDatabaseQueries",
        "20m",
        _buckets("django_db_query_duration_seconds", DB, {"0.01": 60, "0.5": 60, "+Inf": 60}, 30),
    ),
    Case("DjangoCacheHitRatioLow", "25m", _cache_reads(hits=10, misses=50), [CACHE]),
    Case("DjangoCacheHitRatioLow", "25m", _cache_reads(hits=90, misses=10)),
    # A cache that never hit: django_cache_get_hits_total never existed.
    Case("DjangoCacheHitRatioLow", "25m", _cache_reads(hits=None, misses=50), [CACHE]),
    # Redis down under CACHE_IGNORE_EXCEPTIONS: every read fails, none hits nor misses.
    Case("DjangoCacheHitRatioLow", "25m", _cache_reads(hits=None, misses=None, fails=50), [CACHE]),
    Case(
        "DjangoUnappliedMigrations",
        "20m",
        [
            s("django_migrations_unapplied_total", "app", "3x30", connection="default", pod=p)
            for p in ("web-1", "web-2")
        ],
        [job("app", connection="default")],
    ),
    Case(
        "DjangoUnappliedMigrations",
        "20m",
        [s("django_migrations_unapplied_total", "app", "0x30", connection="default")],
    ),
    Case("PostgresDown", "5m", [s("pg_up", "postgres", "0x10")], [inst("postgres")]),
    Case("PostgresDown", "5m", [s("pg_up", "postgres", "1x10")]),
    Case(
        "PostgresTooManyConnections",
        "10m",
        [
            s("pg_stat_database_numbackends", "postgres", "85x20", datname="jewelry"),
            s("pg_stat_database_numbackends", "postgres", "5x20", datname="postgres"),
            s("pg_settings_max_connections", "postgres", "100x20"),
        ],
        [inst("postgres")],
    ),
    Case(
        "PostgresTooManyConnections",
        "10m",
        [
            s("pg_stat_database_numbackends", "postgres", "20x20", datname="jewelry"),
            s("pg_settings_max_connections", "postgres", "100x20"),
        ],
    ),
    Case("RedisDown", "5m", [s("redis_up", "redis", "0x10")], [inst("redis")]),
    Case("RedisDown", "5m", [s("redis_up", "redis", "1x10")]),
    Case(
        "RedisMemoryNearLimit",
        "10m",
        [
            s("redis_memory_used_bytes", "redis", "95x20"),
            s("redis_memory_max_bytes", "redis", "100x20"),
        ],
        [inst("redis")],
    ),
    # maxmemory 0 means "no limit": a full ratio of +Inf must not alert.
    Case(
        "RedisMemoryNearLimit",
        "10m",
        [
            s("redis_memory_used_bytes", "redis", "95x20"),
            s("redis_memory_max_bytes", "redis", "0x20"),
        ],
    ),
    Case(
        "RedisRejectedConnections",
        "10m",
        [s("redis_rejected_connections_total", "redis", "0+1x20")],
        [inst("redis")],
    ),
    Case(
        "RedisRejectedConnections", "10m", [s("redis_rejected_connections_total", "redis", "5x20")]
    ),
    Case("NginxDown", "5m", [s("nginx_up", "nginx", "0x10")], [inst("nginx")]),
    Case("NginxDown", "5m", [s("nginx_up", "nginx", "1x10")]),
    Case(
        "NginxDroppedConnections",
        "15m",
        [
            s("nginx_connections_accepted", "nginx", "0+100x20"),
            s("nginx_connections_handled", "nginx", "0+90x20"),
        ],
        [inst("nginx")],
    ),
    Case(
        "NginxDroppedConnections",
        "15m",
        [
            s("nginx_connections_accepted", "nginx", "0+100x20"),
            s("nginx_connections_handled", "nginx", "0+100x20"),
        ],
    ),
    Case(
        "CeleryTaskFailures",
        "25m",
        [
            s("celery_task_failed_total", "celery", "0+10x30", **task, exception="SMTPError")
            for task in [{"name": "shop.send_receipt", "hostname": "w1", "queue_name": "celery"}]
        ]
        + [
            s(
                "celery_task_succeeded_total",
                "celery",
                "0+10x30",
                name="shop.send_receipt",
                hostname="w1",
                queue_name="celery",
            )
        ],
        [job("celery", name="shop.send_receipt")],
    ),
    Case(
        "CeleryTaskFailures",
        "25m",
        [
            s(
                f"celery_task_{outcome}_total",
                "celery",
                values,
                name="shop.send_receipt",
                hostname="w1",
                queue_name="celery",
            )
            for outcome, values in [("failed", "0x30"), ("succeeded", "0+10x30")]
        ],
    ),
    # Every run of the task fails: celery_task_succeeded_total never existed for it.
    Case(
        "CeleryTaskFailures",
        "25m",
        [
            s(
                "celery_task_failed_total",
                "celery",
                "0+10x30",
                name="shop.send_receipt",
                hostname="w1",
                queue_name="celery",
                exception="SMTPError",
            )
        ],
        [job("celery", name="shop.send_receipt")],
    ),
    Case(
        "CeleryNoWorkers",
        "10m",
        [s("celery_worker_up", "celery", "0x20", hostname="celery@w1")],
        [job("celery")],
    ),
    Case("CeleryNoWorkers", "10m", [s("celery_worker_up", "celery", "1x20", hostname="celery@w1")]),
    # The exporter is up but has never seen a worker: no worker series at all.
    Case("CeleryNoWorkers", "10m", [s("up", "celery", "1x20")], [job("celery")]),
    Case(
        "CeleryQueueBacklog",
        "20m",
        [s("celery_queue_length", "celery", "500x30", queue_name="celery")],
        [job("celery", queue_name="celery")],
    ),
    Case(
        "CeleryQueueBacklog",
        "20m",
        [s("celery_queue_length", "celery", "5x30", queue_name="celery")],
    ),
    *_slo_cases(
        "JewelryAvailabilityBudgetBurn",
        [s(RESP, "app", f"0+300x{N}", status=st) for st in ("500", "200")],
        [s(RESP, "app", f"0x{N}", status="500"), s(RESP, "app", f"0+300x{N}", status="200")],
    ),
    *_slo_cases(
        "JewelryLatencyBudgetBurn",
        [
            s(f"{HTTP_LAT}_bucket", "app", f"0+150x{N}", **VIEW, le="1.0"),
            s(f"{HTTP_LAT}_bucket", "app", f"0+300x{N}", **VIEW, le="+Inf"),
            s(f"{HTTP_LAT}_count", "app", f"0+300x{N}", **VIEW),
        ],
        [
            s(f"{HTTP_LAT}_bucket", "app", f"0+300x{N}", **VIEW, le="1.0"),
            s(f"{HTTP_LAT}_bucket", "app", f"0+300x{N}", **VIEW, le="+Inf"),
            s(f"{HTTP_LAT}_count", "app", f"0+300x{N}", **VIEW),
        ],
    ),
    # The cardinality guard: 85 % of the default sampleLimit (20,000) for 20 minutes, while
    # the Postgres exporter stays small; then 75 %.
    Case(
        "TargetNearSampleLimit",
        "20m",
        [
            s("scrape_samples_post_metric_relabeling", "app", "17000x25"),
            s("scrape_samples_post_metric_relabeling", "postgres", "900x25"),
        ],
        [inst("app")],
    ),
    Case(
        "TargetNearSampleLimit",
        "20m",
        [s("scrape_samples_post_metric_relabeling", "app", "15000x25")],
    ),
]

FS = {"device": "/dev/sda1", "fstype": "ext4", "mountpoint": "/"}

# The alerts the chart ships with its node exporter (rules.NODE_CATALOG).
NODE_CASES: list[Case] = [
    *_target_down_cases("NodeExporterDown", "node"),
    Case(
        "NodeFilesystemAlmostFull",
        "20m",
        [
            s("node_filesystem_avail_bytes", "node", "5x30", **FS),
            s("node_filesystem_size_bytes", "node", "100x30", **FS),
            s("node_filesystem_readonly", "node", "0x30", **FS),
        ],
        [inst("node", **FS)],
    ),
    # A full tmpfs is not a disk running out.
    Case(
        "NodeFilesystemAlmostFull",
        "20m",
        [
            s(
                f"node_filesystem_{m}_bytes",
                "node",
                v,
                device="tmpfs",
                fstype="tmpfs",
                mountpoint="/run",
            )
            for m, v in [("avail", "5x30"), ("size", "100x30")]
        ],
    ),
    Case(
        "NodeMemoryLow",
        "15m",
        [
            s("node_memory_MemAvailable_bytes", "node", "5x20"),
            s("node_memory_MemTotal_bytes", "node", "100x20"),
        ],
        [inst("node")],
    ),
    Case(
        "NodeMemoryLow",
        "15m",
        [
            s("node_memory_MemAvailable_bytes", "node", "50x20"),
            s("node_memory_MemTotal_bytes", "node", "100x20"),
        ],
    ),
]

_LABEL_REF = re.compile(r"\{\{ \$labels\.(\w+) \}\}")


def render(template: str, labels: dict[str, str]) -> str:
    """What Prometheus makes of our annotation templates, which only use ``$labels.x``."""
    return _LABEL_REF.sub(lambda m: labels.get(m.group(1), ""), template)


def expected_alerts(case: Case, rules: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """One expected alert per (firing labels, rule of that name), annotations rendered."""
    expected = []
    chosen = [rule for rule in rules if case.rules.items() <= rule["labels"].items()]
    for labels in case.labels:
        for rule in chosen:
            alert_labels = {**labels, **rule["labels"]}
            annotations = {
                key: render(text, alert_labels) for key, text in rule["annotations"].items()
            }
            expected.append({"exp_labels": alert_labels, "exp_annotations": annotations})
    return expected


def promtool_tests(groups: list[dict[str, Any]], cases: list[Case]) -> list[dict[str, Any]]:
    rules_by_alert: dict[str, list[dict[str, Any]]] = {}
    for group in groups:
        for rule in group["rules"]:
            if "alert" in rule:
                rules_by_alert.setdefault(rule["alert"], []).append(rule)
    return [
        {
            "name": f"{case.alert} #{index} ({'fires' if case.labels else 'silent'})",
            "interval": case.interval,
            "input_series": case.series,
            "alert_rule_test": [
                {
                    "eval_time": case.at,
                    "alertname": case.alert,
                    "exp_alerts": expected_alerts(case, rules_by_alert[case.alert]),
                }
            ],
        }
        for index, case in enumerate(cases)
    ]


def run_promtool(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(PROMTOOL), *args], cwd=cwd, capture_output=True, text=True, timeout=300
    )


def promtool_test_rules(
    rules_file: Path, cases: list[Case], evaluation_interval: str, test_name: str = "test.yaml"
) -> None:
    """``promtool test rules`` of ``cases`` against the groups in ``rules_file``."""
    groups = yaml.safe_load(rules_file.read_text())["groups"]
    (rules_file.parent / test_name).write_text(
        yaml.safe_dump(
            {
                "rule_files": [rules_file.name],
                "evaluation_interval": evaluation_interval,
                "tests": promtool_tests(groups, cases),
            },
            sort_keys=False,
        )
    )
    result = run_promtool("test", "rules", test_name, cwd=rules_file.parent)
    assert result.returncode == 0, f"{test_name}:\n{result.stdout}\n{result.stderr}"


def write_rules(groups: list[dict[str, Any]], directory: Path) -> Path:
    path = directory / "rules.yaml"
    path.write_text(yaml.safe_dump({"groups": groups}, sort_keys=False))
    return path


@pytest.fixture(scope="module")
def rules_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("rules") / "rules.yaml"
    path.write_text(yaml.safe_dump({"groups": rule_groups(full_owner())}, sort_keys=False))
    return path


def test_every_known_alert_has_a_firing_and_a_silent_case() -> None:
    firing = {case.alert for case in CASES if case.labels}
    silent = {case.alert for case in CASES if not case.labels}
    assert firing == KNOWN_ALERTS
    assert silent == KNOWN_ALERTS


def test_the_fully_enabled_cr_produces_every_known_alert(rules_file: Path) -> None:
    groups = yaml.safe_load(rules_file.read_text())["groups"]
    produced = {rule["alert"] for group in groups for rule in group["rules"] if "alert" in rule}
    assert produced == KNOWN_ALERTS


def test_promtool_check_rules_accepts_the_generated_groups(rules_file: Path) -> None:
    result = run_promtool("check", "rules", rules_file.name, cwd=rules_file.parent)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout


@pytest.mark.parametrize(
    "spec",
    [
        {"app": {"podSelector": {"app": "jewelry"}}},
        {
            "app": {"podSelector": {"app": "jewelry"}},
            "slos": {"window": "7d", "latency": {"objective": 99.5, "thresholdSeconds": 0.075}},
            "alerts": {
                "labels": {"team": "shop"},
                "overrides": {
                    "SlowRequests": {"threshold": 0.75, "for": "1m", "severity": "info"},
                    "HighErrorRate": {"disabled": True},
                },
            },
        },
        {**FULL_SPEC, "slos": {"window": "28d", "availability": {"objective": 99.95}}},
    ],
    ids=["defaults", "overrides-7d-latency", "28d-availability"],
)
def test_promtool_accepts_other_specs(spec: dict[str, Any], tmp_path: Path) -> None:
    cr = Owner(
        name="shop", namespace=NAMESPACE, uid="u", spec=JewelryMonitoringSpec.model_validate(spec)
    )
    path = write_rules(rule_groups(cr), tmp_path)
    result = run_promtool("check", "rules", path.name, cwd=tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr


def test_promtool_unit_tests_of_every_alert(rules_file: Path) -> None:
    # SLO cases span three days: evaluating them every 5m keeps promtool fast; the rest use 1m.
    for name, cases, evaluation_interval in [
        ("alerts_test.yaml", [c for c in CASES if c.interval == "1m"], "1m"),
        ("slo_test.yaml", [c for c in CASES if c.interval == "5m"], "5m"),
    ]:
        promtool_test_rules(rules_file, cases, evaluation_interval, name)


def test_slo_firing_case_expects_all_four_window_pairs(rules_file: Path) -> None:
    """A 50 % error ratio exceeds every burn threshold: two pages and two tickets."""
    groups = yaml.safe_load(rules_file.read_text())["groups"]
    case = next(c for c in CASES if c.alert == "JewelryAvailabilityBudgetBurn" and c.labels)
    test = promtool_tests(groups, [case])[0]
    alerts = test["alert_rule_test"][0]["exp_alerts"]
    assert [
        (
            a["exp_labels"]["severity"],
            a["exp_labels"]["long_window"],
            a["exp_labels"]["short_window"],
        )
        for a in alerts
    ] == [
        ("critical", "1h", "5m"),
        ("critical", "6h", "30m"),
        ("warning", "1d", "2h"),
        ("warning", "3d", "6h"),
    ]


def test_seven_day_slo_pages_on_fast_burn_and_never_inside_the_budget(tmp_path: Path) -> None:
    """A 7-day SLO: burning at half the sustainable rate keeps every alert silent.

    With the 30-day windows and budget shares (factor 0.23 for the 3-day ticket) the slow
    burn opened a ticket although the budget would last the whole window.
    """
    spec = {**FULL_SPEC, "slos": {"window": "7d", "availability": {"objective": 99.9}}}
    cr = Owner(
        name="shop", namespace=NAMESPACE, uid="u", spec=JewelryMonitoringSpec.model_validate(spec)
    )
    rules_file = write_rules(rule_groups(cr), tmp_path)
    alert = "JewelryAvailabilityBudgetBurn"
    half_burn = [  # 1 bad in 2001: 0.0005, half the 0.001 budget
        s(RESP, "app", f"0+1x{N}", status="500"),
        s(RESP, "app", f"0+2000x{N}", status="200"),
    ]
    fast_burn = [s(RESP, "app", f"0+300x{N}", status=st) for st in ("500", "200")]
    cases = [
        Case(alert, "30h", half_burn, interval="5m"),
        Case(alert, "30h", fast_burn, [job("app")], interval="5m"),
    ]
    promtool_test_rules(rules_file, cases, "5m")
    fired = promtool_tests(rule_groups(cr), cases)[1]["alert_rule_test"][0]["exp_alerts"]
    assert [a["exp_labels"]["long_window"] for a in fired] == ["14m", "1h24m", "5h36m", "16h48m"]


def test_the_charts_node_exporter_alerts(tmp_path: Path) -> None:
    """The PrometheusRule the chart renders for its node exporter: every alert of
    rules.NODE_CATALOG fires on its case and stays quiet on the other."""
    from devkit.operator_process import render_chart

    values = {"nodeExporter.enabled": True, "nodeExporter.prometheusRule.enabled": True}
    rendered = render_chart("jm", NAMESPACE, values)
    [rule] = [o for o in rendered if o["kind"] == "PrometheusRule"]
    groups = rule["spec"]["groups"]
    names = {alert.name for alert in NODE_CATALOG}
    assert {case.alert for case in NODE_CASES if case.labels} == names
    assert {case.alert for case in NODE_CASES if not case.labels} == names
    assert not names & KNOWN_ALERTS  # not a CR's alerts any more
    rules_file = write_rules(groups, tmp_path)
    result = run_promtool("check", "rules", rules_file.name, cwd=tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    promtool_test_rules(rules_file, NODE_CASES, "1m")


USER_GROUPS: list[dict[str, Any]] = [
    {
        "name": "shop-business",
        "interval": "1m",
        "rules": [
            {
                "record": "shop:orders:rate5m",
                "expr": "sum by (namespace) (rate(django_http_requests_total_by_method_total[5m]))",
            },
            {
                "alert": "ShopNoOrders",
                "expr": "shop:orders:rate5m == 0",
                "for": "30m",
                "keep_firing_for": "5m",
                "labels": {"severity": "warning", "team": "shop"},
                "annotations": {"summary": "No order in {{ $labels.namespace }} for 30m"},
            },
        ],
    }
]


def test_the_users_rule_groups_follow_ours_and_pass_promtool(tmp_path: Path) -> None:
    spec = {**FULL_SPEC, "extraRuleGroups": USER_GROUPS}
    owner = Owner("shop", NAMESPACE, "u", JewelryMonitoringSpec.model_validate(spec))
    groups = rule_groups(owner)
    assert groups[: len(rule_groups(full_owner()))] == rule_groups(full_owner())
    assert groups[-1]["name"] == USER_GROUPS[0]["name"]  # appended
    path = write_rules(groups, tmp_path)
    result = run_promtool("check", "rules", path.name, cwd=tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    # The user's alert fires with the resource label the AlertmanagerConfig routes by.
    no_orders = [s("django_http_requests_total_by_method_total", "app", "5x60", method="GET")]
    cases = [
        Case(
            "ShopNoOrders",
            "40m",
            no_orders,
            [{"namespace": NAMESPACE, "jewelry_monitoring": "shop"}],
        ),
        Case("ShopNoOrders", "20m", no_orders),  # not yet for its 30m
    ]
    promtool_test_rules(path, cases, "1m")


def test_promtool_is_what_checks_the_users_promql(tmp_path: Path) -> None:
    """The operator checks structure only; a PromQL typo passes it and promtool catches it."""
    broken = [{"name": "typo", "rules": [{"alert": "X", "expr": "sum(rate(x[5m])"}]}]
    spec = {"app": {"podSelector": {"app": "jewelry"}}, "extraRuleGroups": broken}
    problems, parsed = validate(spec, KNOWN_ALERTS)
    assert problems == [] and parsed is not None
    path = write_rules(rule_groups(Owner("shop", NAMESPACE, "u", parsed)), tmp_path)
    result = run_promtool("check", "rules", path.name, cwd=tmp_path)
    assert result.returncode != 0
    assert "ShopNoOrders" not in result.stderr and "parse error" in result.stderr.lower(), (
        result.stderr
    )


@pytest.mark.parametrize(
    ("kind", "objective"), [("availability", 90), ("availability", 51), ("latency", 80)]
)
def test_slo_pages_can_fire_at_low_objectives(kind: str, objective: float, tmp_path: Path) -> None:
    """At 90 % the 1-hour page would need 144 % of requests to fail (14.4 x the 10 % budget):
    the burn rate is capped at what the budget allows, 1 / budget, i.e. every request bad.
    So every rule fires when every request fails, and none while the SLO is met."""
    spec = {"app": FULL_SPEC["app"], "slos": {kind: {"objective": objective}}}
    cr = Owner("shop", NAMESPACE, "u", JewelryMonitoringSpec.model_validate(spec))
    rules_file = write_rules(rule_groups(cr), tmp_path)
    alert = {"availability": "JewelryAvailabilityBudgetBurn", "latency": "JewelryLatencyBudgetBurn"}

    def latency(fast_per_5m: int) -> list[dict[str, str]]:
        """300 requests per 5 minutes, ``fast_per_5m`` of them under the 0.5 s threshold."""
        return [
            s(f"{HTTP_LAT}_bucket", "app", f"0+{fast_per_5m}x{N}", **VIEW, le="0.5"),
            s(f"{HTTP_LAT}_bucket", "app", f"0+300x{N}", **VIEW, le="+Inf"),
            s(f"{HTTP_LAT}_count", "app", f"0+300x{N}", **VIEW),
        ]

    bad = {"availability": [s(RESP, "app", f"0+300x{N}", status="500")], "latency": latency(0)}
    good = {"availability": [s(RESP, "app", f"0+300x{N}", status="200")], "latency": latency(300)}
    cases = [
        Case(alert[kind], "30h", bad[kind], [job("app")], interval="5m"),
        Case(alert[kind], "30h", good[kind], interval="5m"),
    ]
    fired = promtool_tests(rule_groups(cr), cases)[0]["alert_rule_test"][0]["exp_alerts"]
    assert [a["exp_labels"]["long_window"] for a in fired] == ["1h", "6h", "1d", "3d"]
    promtool_test_rules(rules_file, cases, "5m")
