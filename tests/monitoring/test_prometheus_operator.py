"""Our objects as the real consumer reads them: prometheus-operator v0.85 generates from them.

On the local control plane, our operator (subprocess, chart RBAC) reconciles three CRs:

* the example CR from manifests/ with its Secrets, its app endpoint extended with HTTPS, a
  bearer token, a CA and relabelings;
* ``canary``: only an app endpoint behind basic auth, same ``release`` label;
* ``unselected``: ``monitorLabels`` that the Prometheus does not select.

The real prometheus-operator (built by the setup from its Go module) runs on the host with
the admin credentials, for a kube-prometheus-stack style Prometheus selecting
``release: kube-prometheus-stack``. The tests read what it generated: the config Secret's
jobs, the rule-file ConfigMap, and check both with Prometheus 3's promtool (Debian's promtool
rejects ``kubernetes_sd_configs``).
"""

from __future__ import annotations

import contextlib
import re
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml
from kubernetes import client

from devkit.cluster import ControlPlane
from devkit.crs import (
    GROUP,
    PLURAL,
    VERSION,
    CustomApi,
    condition,
    cr_body,
    create_referenced_secrets,
    wait_condition,
)
from devkit.demo import EXAMPLE
from devkit.kubetools import load_yaml_documents
from devkit.operator_process import OperatorProcess
from devkit.prometheus_operator import (
    MONITORING,
    generated_config,
    kube_prometheus_stack_prometheus,
    materialize,
    prometheus_operator,
    rule_config_maps,
)
from devkit.toolchain import built_binary
from jewelry_monitoring.builders.common import APP_COMPONENT, OWNER_LABEL

pytestmark = pytest.mark.cluster

RELEASE = {"release": "kube-prometheus-stack"}
SELECTED, UNSELECTED = ("jewelry-shop", "canary"), "unselected"
# CA of the app's HTTPS metrics endpoint: any real PEM certificate will do (the control
# plane's CA); prometheus-operator parses it before it accepts the ServiceMonitor.
CA_SECRET = {"name": "jewelry-shop-metrics-ca", "key": "ca.crt"}
# Relabelings in the CR (prometheus-operator's form) and as the config must hold them.
RELABELINGS = [
    {
        "sourceLabels": ["__meta_kubernetes_pod_node_name"],
        "targetLabel": "node",
        "action": "replace",
    }
]
RELABEL_CONFIGS = [
    {
        "source_labels": ["__meta_kubernetes_pod_node_name"],
        "target_label": "node",
        "action": "replace",
    }
]
METRIC_RELABELINGS = [{"sourceLabels": ["__name__"], "regex": "python_gc_.*", "action": "drop"}]
METRIC_RELABEL_CONFIGS = [
    {"source_labels": ["__name__"], "regex": "python_gc_.*", "action": "drop"}
]


def secret_value(name: str, key: str, ca_pem: str = "") -> str:
    """What each referenced Secret key holds: the CA's PEM, else a value naming its key."""
    return ca_pem if (name, key) == (CA_SECRET["name"], CA_SECRET["key"]) else f"{name}:{key}"


def _example_cr() -> dict[str, Any]:
    """The example CR, its app endpoint extended with every scrape setting we pass on."""
    example = next(
        d for d in load_yaml_documents(EXAMPLE.read_text()) if d["kind"] == "JewelryMonitoring"
    )
    example["spec"]["app"].update(
        scheme="https",
        scrapeTimeout="7s",
        bearerTokenSecret={"name": "jewelry-shop-metrics", "key": "token"},
        tls={"ca": CA_SECRET, "serverName": "shop.jewelry-shop.svc"},
        relabelings=RELABELINGS,
        metricRelabelings=METRIC_RELABELINGS,
    )
    return example


CANARY_SPEC = {
    "app": {
        "podSelector": {"app": "jewelry-shop-canary"},
        "path": "/internal/metrics",
        "interval": "20s",
        "basicAuth": {
            "username": {"name": "canary-metrics", "key": "username"},
            "password": {"name": "canary-metrics", "key": "password"},
        },
    },
    "monitorLabels": RELEASE,
}
UNSELECTED_SPEC = {
    "app": {"podSelector": {"app": "jewelry-shop-legacy"}},
    "monitorLabels": {"release": "another-stack"},
}


@dataclass
class Generated:
    """What prometheus-operator made of our objects, beside the objects themselves."""

    namespace: str
    prometheus_namespace: str
    prometheus_name: str
    jobs: dict[str, dict[str, Any]]  # job_name -> scrape config
    rule_maps: dict[str, dict[str, str]]  # rule-file ConfigMap -> {file name: YAML}
    monitors: dict[str, list[dict[str, Any]]]  # CR name -> its ServiceMonitors
    rules: dict[str, list[dict[str, Any]]]  # CR name -> its PrometheusRules
    admin_api: client.ApiClient
    ca_pem: str

    def job_name(self, monitor: dict[str, Any]) -> str:
        meta = monitor["metadata"]
        return f"serviceMonitor/{meta['namespace']}/{meta['name']}/0"

    def app_job(self, cr_name: str) -> dict[str, Any]:
        (app,) = [
            m
            for m in self.monitors[cr_name]
            if m["metadata"]["labels"]["app.kubernetes.io/component"] == APP_COMPONENT
        ]
        return self.jobs[self.job_name(app)]


def _owned(api: client.ApiClient, namespace: str, plural: str, owner: str) -> list[Any]:
    listing = CustomApi(api).list_namespaced_custom_object(
        *MONITORING, namespace, plural, label_selector=f"{OWNER_LABEL}={owner}"
    )
    return list(listing["items"])


def _version(tool: str) -> str:
    """``3.16.0`` from ``prometheus, version 3.16.0 (branch: ...)``."""
    output = subprocess.run(
        [str(built_binary(tool)), "--version"], capture_output=True, text=True, timeout=30
    ).stdout
    found = re.search(r"version (\d+\.\d+\.\d+)", output)
    assert found, f"no version in `{tool} --version`: {output!r}"
    return found.group(1)


def _promtool(*args: str) -> subprocess.CompletedProcess[str]:
    """Prometheus 3's promtool (the setup's build; it knows kubernetes_sd_configs)."""
    return subprocess.run(
        [str(built_binary("promtool")), *args], capture_output=True, text=True, timeout=60
    )


@pytest.fixture(scope="module")
def generated(
    control_plane: ControlPlane, admin_api: client.ApiClient, operator: OperatorProcess
) -> Iterator[Generated]:
    """Our CRs reconciled, then prometheus-operator's output once it holds all of them."""
    example = _example_cr()
    namespace = example["metadata"]["namespace"]
    core, custom = client.CoreV1Api(admin_api), CustomApi(admin_api)
    prometheus = kube_prometheus_stack_prometheus(RELEASE, version=f"v{_version('prometheus')}")
    prometheus_namespace = prometheus["metadata"]["namespace"]
    prometheus_name = prometheus["metadata"]["name"]
    ca_pem = control_plane.ca_cert.read_text()
    crs = {
        example["metadata"]["name"]: example,
        "canary": cr_body("canary", CANARY_SPEC),
        UNSELECTED: cr_body(UNSELECTED, UNSELECTED_SPEC),
    }
    assert set(crs) == {*SELECTED, UNSELECTED}
    with contextlib.ExitStack() as cleanup:
        for name in (namespace, prometheus_namespace):
            core.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name=name)))
            cleanup.callback(core.delete_namespace, name)
        for body in crs.values():
            create_referenced_secrets(
                admin_api,
                namespace,
                body["spec"],
                lambda name, key: secret_value(name, key, ca_pem),
            )
            custom.create_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, body)
        custom.create_namespaced_custom_object(
            *MONITORING, prometheus_namespace, "prometheuses", prometheus
        )
        # Gone at once, not with its namespace later: later tests' CRs must not see it.
        cleanup.callback(
            custom.delete_namespaced_custom_object,
            *MONITORING,
            prometheus_namespace,
            "prometheuses",
            prometheus_name,
        )
        for name in SELECTED:
            wait_condition(admin_api, namespace, name, "Ready", "True", timeout=90)
        monitors = {name: _owned(admin_api, namespace, "servicemonitors", name) for name in crs}
        rules = {name: _owned(admin_api, namespace, "prometheusrules", name) for name in crs}
        expected_jobs = {
            f"serviceMonitor/{namespace}/{m['metadata']['name']}/0"
            for name in SELECTED
            for m in monitors[name]
        }
        expected_files = sum(len(rules[name]) for name in SELECTED)

        running = cleanup.enter_context(prometheus_operator(control_plane))
        # prometheus-operator rewrites its output as its informers fill: poll until the output
        # holds every selected object, or the deadline passes; the tests then assert on it.
        deadline = time.monotonic() + 120
        while True:
            config = generated_config(admin_api, prometheus_namespace, prometheus_name) or {}
            jobs = {job["job_name"]: job for job in config.get("scrape_configs") or []}
            rule_maps = rule_config_maps(admin_api, prometheus_namespace, prometheus_name)
            files = sum(len(contents) for contents in rule_maps.values())
            if set(jobs) >= expected_jobs and files >= expected_files:
                break
            assert running.running, f"prometheus-operator exited:\n{running.log_tail()}"
            if time.monotonic() > deadline:
                print(f"prometheus-operator log:\n{running.log_tail(60)}")
                break
            time.sleep(0.5)
        yield Generated(
            namespace=namespace,
            prometheus_namespace=prometheus_namespace,
            prometheus_name=prometheus_name,
            jobs=jobs,
            rule_maps=rule_maps,
            monitors=monitors,
            rules=rules,
            admin_api=admin_api,
            ca_pem=ca_pem,
        )


def test_one_job_per_selected_service_monitor(generated: Generated) -> None:
    # The example enables postgres, redis, nginx and celery beside the app; canary is app-only.
    assert [len(generated.monitors[name]) for name in (*SELECTED, UNSELECTED)] == [5, 1, 1]
    expected = {
        generated.job_name(monitor) for name in SELECTED for monitor in generated.monitors[name]
    }
    assert set(generated.jobs) == expected


def test_jobs_scrape_what_our_endpoints_say(generated: Generated) -> None:
    for monitor in (m for name in SELECTED for m in generated.monitors[name]):
        job = generated.jobs[generated.job_name(monitor)]
        (endpoint,) = monitor["spec"]["endpoints"]
        assert job["scrape_interval"] == endpoint["interval"]
        assert job["scrape_timeout"] == endpoint["scrapeTimeout"]
        assert job["metrics_path"] == endpoint["path"]
        assert job.get("scheme", "http") == endpoint.get("scheme", "http")
        # The cardinality guard (spec scrapeLimits) reaches the scrape job.
        limits = {
            "sample_limit": "sampleLimit",
            "label_limit": "labelLimit",
            "label_name_length_limit": "labelNameLengthLimit",
            "label_value_length_limit": "labelValueLengthLimit",
        }
        assert {key: job.get(key) for key in limits} == {
            key: monitor["spec"][field] for key, field in limits.items()
        }
        (discovery,) = job["kubernetes_sd_configs"]
        assert discovery["namespaces"]["names"] == [generated.namespace]
        relabel = job["relabel_configs"]
        # Only our own Service, by the labels our ServiceMonitor selects, and its port by name.
        for key, value in monitor["spec"]["selector"]["matchLabels"].items():
            source = "__meta_kubernetes_service_label_" + re.sub(r"[^a-zA-Z0-9_]", "_", key)
            assert any(
                r.get("action") == "keep"
                and r["source_labels"][0] == source
                and r["regex"].startswith(f"({value})")
                for r in relabel
            ), (key, value, relabel)
        assert any(
            r.get("action") == "keep" and r.get("regex") == endpoint["port"] for r in relabel
        ), relabel
        # Our rules and dashboards match job = Service name and namespace: both are set so.
        targets = {r.get("target_label"): r.get("source_labels") for r in relabel}
        assert targets["job"] == ["__meta_kubernetes_service_name"]
        assert targets["namespace"] == ["__meta_kubernetes_namespace"]


def test_app_jobs_carry_the_crs_auth_tls_and_relabelings(
    generated: Generated, tmp_path: Path
) -> None:
    app = generated.app_job("jewelry-shop")
    assert (app["scheme"], app["scrape_interval"], app["scrape_timeout"]) == ("https", "15s", "7s")
    assert app["authorization"] == {
        "type": "Bearer",
        "credentials": secret_value("jewelry-shop-metrics", "token"),
    }
    tls = app["tls_config"]
    assert tls["server_name"] == "shop.jewelry-shop.svc"
    assert not tls.get("insecure_skip_verify")
    relabel = app["relabel_configs"]
    start = relabel.index(RELABEL_CONFIGS[0])
    assert relabel[start : start + len(RELABEL_CONFIGS)] == RELABEL_CONFIGS
    assert app["metric_relabel_configs"] == METRIC_RELABEL_CONFIGS
    # The CA file the config names is the CA from our Secret, as the pod would mount it.
    materialize(
        generated.admin_api, generated.prometheus_namespace, generated.prometheus_name, tmp_path
    )
    ca_file = tmp_path / "certs" / Path(tls["ca_file"]).name
    assert ca_file.read_text() == generated.ca_pem

    canary = generated.app_job("canary")
    assert (canary["metrics_path"], canary["scrape_interval"]) == ("/internal/metrics", "20s")
    assert canary["basic_auth"] == {
        "username": secret_value("canary-metrics", "username"),
        "password": secret_value("canary-metrics", "password"),
    }
    assert "authorization" not in canary and "tls_config" not in canary


def test_rule_files_hold_our_groups_and_pass_promtool(generated: Generated, tmp_path: Path) -> None:
    assert list(generated.rule_maps) == [f"prometheus-{generated.prometheus_name}-rulefiles-0"]
    files = generated.rule_maps[f"prometheus-{generated.prometheus_name}-rulefiles-0"]
    loaded = [yaml.safe_load(text)["groups"] for text in files.values()]
    ours = [rule["spec"]["groups"] for name in SELECTED for rule in generated.rules[name]]
    assert sorted(loaded, key=str) == sorted(ours, key=str)
    for name, text in files.items():
        (tmp_path / name).write_text(text)
        result = _promtool("check", "rules", str(tmp_path / name))
        assert result.returncode == 0, result.stdout + result.stderr
        count = sum(len(group["rules"]) for group in yaml.safe_load(text)["groups"])
        assert f"SUCCESS: {count} rules found" in result.stdout


def test_generated_config_passes_promtool_check_config(
    generated: Generated, tmp_path: Path
) -> None:
    assert _version("promtool").startswith("3."), "needs Prometheus 3's promtool"
    config = materialize(
        generated.admin_api, generated.prometheus_namespace, generated.prometheus_name, tmp_path
    )
    result = _promtool("check", "config", str(config))
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"SUCCESS: {config} is valid prometheus config file syntax" in result.stdout
    # promtool follows rule_files into the materialized rule-file ConfigMap.
    rule_count = sum(
        len(group["rules"])
        for name in SELECTED
        for rule in generated.rules[name]
        for group in rule["spec"]["groups"]
    )
    found = sum(int(n) for n in re.findall(r"SUCCESS: (\d+) rules found", result.stdout))
    assert found == rule_count, result.stdout


def test_unselected_cr_gets_no_job_and_says_not_selected(generated: Generated) -> None:
    cr = wait_condition(
        generated.admin_api, generated.namespace, UNSELECTED, "SelectedByPrometheus", "False"
    )
    assert condition(cr, "SelectedByPrometheus")["reason"] == "NotSelected"
    # Applied, and monitored by nothing: not Ready, with the label that is missing.
    cr = wait_condition(
        generated.admin_api,
        generated.namespace,
        UNSELECTED,
        "Ready",
        "False",
        "NotSelectedByPrometheus",
    )
    assert (
        "add release=kube-prometheus-stack to spec.monitorLabels"
        in condition(cr, "Ready")["message"]
    )
    (monitor,) = generated.monitors[UNSELECTED]
    assert generated.job_name(monitor) not in generated.jobs
    unselected_groups = {
        group["name"] for rule in generated.rules[UNSELECTED] for group in rule["spec"]["groups"]
    }
    assert unselected_groups, "the unselected CR has rules of its own"
    for text in generated.rule_maps[f"prometheus-{generated.prometheus_name}-rulefiles-0"].values():
        assert not unselected_groups & {group["name"] for group in yaml.safe_load(text)["groups"]}
    selected = wait_condition(
        generated.admin_api, generated.namespace, "canary", "SelectedByPrometheus", "True"
    )
    assert generated.prometheus_name in condition(selected, "SelectedByPrometheus")["message"]
