"""`jewelry-monitoring doctor` against the real control plane and a real local Prometheus.

Each failure mode is produced on purpose and doctor must name it, with its fix and exit 1:
a Prometheus that lacks a label of ours (the printed patch then fixes it), an app Service
without endpoints and pods that match but do not run, the real shop's /metrics refusing
Prometheus' address (PROMETHEUS_METRICS_ALLOWED_IPS), rule groups not loaded, an invalid
resource, routing not selected, no operator Deployment, a dead leader, missing CRDs. A
healthy setup exits 0.
"""

from __future__ import annotations

import contextlib
import datetime
import json
import os
import shlex
import subprocess
import sys
import uuid
from pathlib import Path
from typing import Any

import pytest
import yaml
from kubernetes import client
from kubernetes.client.rest import ApiException

from devkit.cluster import ControlPlane
from devkit.crs import (
    ALERT_WEBHOOK,
    GROUP,
    PLURAL,
    VERSION,
    CustomApi,
    cr_body,
    make_secrets,
    wait_condition,
)
from devkit.kubetools import api_client, apply_crds
from devkit.operator_process import OperatorProcess, render_chart
from devkit.scrape_targets import fake_endpoints, metrics_target, prometheus_for
from devkit.shopapp import ShopServer, gunicorn_server, shop_env
from jewelry_monitoring.doctor import OPERATOR_SELECTOR

pytestmark = pytest.mark.cluster
SELECTING = {"matchLabels": {"release": "kps"}}
# The Python whose jewelry-monitoring runs doctor: this virtualenv's, or (set by
# tests/distribution/test_fresh_install.py) one with only the CLI, at the newest versions
# its pyproject allows.
DOCTOR_PYTHON = os.environ.get("JM_DOCTOR_PYTHON", sys.executable)


def doctor(plane: ControlPlane, *args: str, output: str = "json") -> tuple[int, Any]:
    """Run the doctor command as a user would: exit code, and its checks by name (JSON) or
    its text (human)."""
    result = subprocess.run(
        [DOCTOR_PYTHON, "-m", "jewelry_monitoring.cli", "doctor", *args, "-o", output],
        env={**os.environ, "KUBECONFIG": str(plane.kubeconfig)},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode in (0, 1), result.stderr
    if output != "json":
        return result.returncode, result.stdout
    report = json.loads(result.stdout)
    assert report["healthy"] is (result.returncode == 0)
    return result.returncode, {check["name"]: check for check in report["checks"]}


def _prometheus_resource(api: client.ApiClient, namespace: str) -> None:
    """A Prometheus resource that selects objects labelled release=kps."""
    CustomApi(api).create_namespaced_custom_object(
        "monitoring.coreos.com",
        "v1",
        namespace,
        "prometheuses",
        {
            "apiVersion": "monitoring.coreos.com/v1",
            "kind": "Prometheus",
            "metadata": {"name": "k8s"},
            "spec": {"serviceMonitorSelector": SELECTING, "ruleSelector": SELECTING},
        },
    )


def _create_cr(api: client.ApiClient, namespace: str, spec: dict[str, Any]) -> str:
    name = f"shop-{uuid.uuid4().hex[:5]}"
    CustomApi(api).create_namespaced_custom_object(
        GROUP, VERSION, namespace, PLURAL, cr_body(name, spec)
    )
    return name


def _rule_groups(api: client.ApiClient, namespace: str, name: str) -> dict[str, Any]:
    rule = CustomApi(api).get_namespaced_custom_object(
        "monitoring.coreos.com", "v1", namespace, "prometheusrules", f"{name}-rules"
    )
    return {"groups": rule["spec"]["groups"]}


def _shop(tmp_path: Path, allowed: str) -> Any:
    """The real shop under gunicorn, its /metrics open to ``allowed`` only."""
    env = shop_env(f"sqlite:///{tmp_path / 'shop.sqlite3'}", PROMETHEUS_METRICS_ALLOWED_IPS=allowed)
    return gunicorn_server(env, workers=1)


def _scraped(shop: ShopServer, service: str) -> dict[str, list[str]]:
    return {service: [f"{shop.host}:{shop.port}"]}


APP = {"podSelector": {"app": "shop"}, "interval": "1s", "scrapeTimeout": "1s"}


def test_doctor_names_each_failure_and_its_fix(
    operator: OperatorProcess,
    admin_api: client.ApiClient,
    control_plane: ControlPlane,
    namespace: str,
    tmp_path: Path,
) -> None:
    name = _create_cr(admin_api, namespace, {"app": APP})
    _prometheus_resource(admin_api, namespace)
    wait_condition(admin_api, namespace, name, "SelectedByPrometheus", "False")
    service = f"{name}-app-metrics"
    # The shop's allowlist leaves out the address Prometheus scrapes from (loopback here, the
    # Prometheus pod's IP in a cluster); this Prometheus has no rule files.
    with (
        _shop(tmp_path, "10.0.0.0/8") as shop,
        prometheus_for(admin_api, namespace, name, _scraped(shop, service)) as prometheus,
    ):
        prometheus.api.wait_for(f'up{{job="{service}"}} == 0', 60)
        code, checks = doctor(
            control_plane, name, "-n", namespace, "--prometheus-url", prometheus.url
        )
        assert code == 1
        selection = checks[f"{name}: selected by Prometheus"]
        assert selection["status"] == "fail" and "release=kps" in selection["detail"]
        assert selection["fix"] == (
            f"kubectl -n {namespace} patch jm {name} --type merge -p "
            """'{"spec": {"monitorLabels": {"release": "kps"}}}'"""
        )
        endpoints = checks[f"{name}: app endpoints"]
        assert endpoints["status"] == "fail" and "app.podSelector app=shop" in endpoints["detail"]
        assert f"kubectl -n {namespace} get pods --show-labels" in endpoints["fix"]
        target = checks[f"{name}: target {shop.host}:{shop.port}"]
        assert target["status"] == "fail"
        assert "PROMETHEUS_METRICS_ALLOWED_IPS" in target["detail"]
        assert "refused (403)" in target["detail"]
        assert "PROMETHEUS_METRICS_ALLOWED_IPS=" in target["fix"]
        rules = checks[f"{name}: rule groups"]
        assert rules["status"] == "fail"
        assert f"jewelry.{namespace}.{name}." in rules["detail"]
        routing = checks[f"{name}: selected by Alertmanager"]
        assert (routing["status"], routing["detail"]) == ("skip", "no routing configured")
        # The operator runs beside the plane here, not as a Deployment.
        assert checks["operator"]["status"] == "fail"
        assert "helm install" in checks["operator"]["fix"]
        # Applied, and loaded by no Prometheus: not Ready, and why.
        ready = checks[f"{name}: Ready"]
        assert ready["status"] == "fail" and "add release=kps to spec.monitorLabels" in ready["fix"]

        code, text = doctor(
            control_plane, name, "-n", namespace, "--prometheus-url", prometheus.url, output="human"
        )
        assert code == 1
        assert f"[FAIL] {name}: selected by Prometheus: " in text
        assert f"       fix: {selection['fix']}\n" in text
        assert text.endswith("problems found\n")

    # The fix doctor printed (kubectl's merge patch, sent through the API: kubectl is not
    # part of the toolchain) is the fix.
    argv = shlex.split(selection["fix"])
    assert argv[:-1] == ["kubectl", "-n", namespace, "patch", "jm", name, "--type", "merge", "-p"]
    CustomApi(admin_api).patch_namespaced_custom_object(
        GROUP, VERSION, namespace, PLURAL, name, json.loads(argv[-1])
    )
    wait_condition(admin_api, namespace, name, "SelectedByPrometheus", "True")
    # Pods that match but do not run (Pending: nothing schedules them) are no endpoints.
    client.CoreV1Api(admin_api).create_namespaced_pod(
        namespace,
        client.V1Pod(
            metadata=client.V1ObjectMeta(name="pending", labels={"app": "shop"}),
            spec=client.V1PodSpec(
                containers=[client.V1Container(name="app", image="localhost/never-pulled:0")]
            ),
        ),
    )
    _, checks = doctor(control_plane, name, "-n", namespace)
    assert checks[f"{name}: selected by Prometheus"]["status"] == "ok"
    endpoints = checks[f"{name}: app endpoints"]
    assert endpoints["status"] == "fail"
    assert (
        endpoints["detail"]
        == "1 pods match app.podSelector app=shop but none is running with an IP"
    )
    # No Prometheus URL given and none in the spec: said, not failed.
    assert checks[f"{name}: targets"]["status"] == "skip"
    assert checks[f"{name}: targets"]["fix"] == (
        f"kubectl -n {namespace} port-forward svc/prometheus-operated 9090, then add "
        "--prometheus-url http://127.0.0.1:9090"
    )


def test_doctor_reports_an_invalid_resource_and_unselected_routing(
    operator: OperatorProcess,
    admin_api: client.ApiClient,
    control_plane: ControlPlane,
    namespace: str,
) -> None:
    invalid = _create_cr(admin_api, namespace, {"app": {**APP, "scrapeTimeout": "5s"}})
    wait_condition(admin_api, namespace, invalid, "Ready", "False", "InvalidSpec")
    code, checks = doctor(control_plane, invalid, "-n", namespace)
    assert code == 1
    ready = checks[f"{invalid}: Ready"]
    assert ready["status"] == "fail"
    assert "app.scrapeTimeout 5s is longer than app.interval 1s" in ready["fix"]

    # Routing that no Alertmanager selects: doctor passes on SelectedByAlertmanager's fix.
    make_secrets(admin_api, namespace)
    CustomApi(admin_api).create_namespaced_custom_object(
        "monitoring.coreos.com",
        "v1",
        namespace,
        "alertmanagers",
        {
            "apiVersion": "monitoring.coreos.com/v1",
            "kind": "Alertmanager",
            "metadata": {"name": "main"},
            "spec": {"alertmanagerConfigSelector": {"matchLabels": {"alertmanagerConfig": "shop"}}},
        },
    )
    routing = {
        "receivers": [{"name": "hook", "webhook": {"url": ALERT_WEBHOOK}}],
        "receiver": "hook",
    }
    name = _create_cr(admin_api, namespace, {"app": APP, "routing": routing})
    wait_condition(admin_api, namespace, name, "SelectedByAlertmanager", "False", "NotSelected")
    code, checks = doctor(control_plane, name, "-n", namespace)
    assert code == 1
    check = checks[f"{name}: selected by Alertmanager"]
    assert check["status"] == "fail"
    assert "add alertmanagerConfig=shop to spec.routing.alertmanagerConfigLabels" in check["fix"], (
        check
    )


def test_doctor_names_the_network_policy_of_an_exporter_that_cannot_reach_its_target(
    operator: OperatorProcess,
    admin_api: client.ApiClient,
    control_plane: ControlPlane,
    namespace: str,
) -> None:
    """postgres_exporter answers but its pg_up is 0 (a stand-in serving exactly that) while
    the exporter's NetworkPolicy restricts its egress: doctor says so, with what the policy
    allows and the networkTarget patch that says where the database is."""
    make_secrets(admin_api, namespace)
    postgres = {
        "enabled": True,
        "dataSource": {"name": "shop-db", "key": "dsn"},
        "interval": "1s",
        "scrapeTimeout": "1s",
    }
    name = _create_cr(admin_api, namespace, {"app": APP, "exporters": {"postgres": postgres}})
    wait_condition(admin_api, namespace, name, "Ready", "True")
    job = f"{name}-postgres-exporter"
    check = f"{name}: postgres exporter reaches its target"
    found = {}
    for pg_up in (0, 1):
        with (
            metrics_target({"pg_up": pg_up}) as exporter,
            prometheus_for(
                admin_api, namespace, name, {job: [f"127.0.0.1:{exporter.port}"]}
            ) as prometheus,
        ):
            prometheus.api.wait_for(f'pg_up{{job="{job}"}} == {pg_up}', 60)
            _, checks = doctor(
                control_plane, name, "-n", namespace, "--prometheus-url", prometheus.url
            )
        assert check in checks, sorted(checks)
        found[pg_up] = checks[check]
    unreachable, reached = found[0], found[1]
    assert (unreachable["status"], reached["status"]) == ("fail", "ok")
    assert unreachable["detail"] == (
        "pg_up is 0: the exporter runs but cannot reach what it watches, and NetworkPolicy "
        f"{job} restricts its egress to any address on [5432]: the target is in a Secret the "
        "operator does not read; set exporters.postgres.networkTarget (cidrs, or podSelector "
        "and namespace; ports) to narrow"
    )
    assert unreachable["fix"].startswith(
        "if the target is elsewhere (a managed database, another port), say where: "
        f"kubectl -n {namespace} patch jm {name} --type merge -p "
        """'{"spec": {"exporters": {"postgres": {"networkTarget": {"cidrs": """
    )
    assert unreachable["fix"].endswith(f"kubectl -n {namespace} logs deployment/{job}")


@pytest.fixture
def operator_deployment(admin_api: client.ApiClient, namespace: str) -> dict[str, Any]:
    """The chart's operator Deployment (2 replicas) and ServiceAccount in ``namespace``."""
    objects = render_chart("jm", namespace, {"replicas": 2})
    core = client.CoreV1Api(admin_api)
    for obj in objects:
        if obj["kind"] == "ServiceAccount":
            core.create_namespaced_service_account(namespace, obj)
    deployment = next(obj for obj in objects if obj["kind"] == "Deployment")
    client.AppsV1Api(admin_api).create_namespaced_deployment(namespace, deployment)
    return deployment


def _lease(api: client.ApiClient, namespace: str, name: str, renewed: datetime.datetime) -> None:
    """The Lease as the leader writes it (renewed at ``renewed``)."""
    stamp = renewed.strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    body = {
        "metadata": {"name": name},
        "spec": {
            "holderIdentity": "jm-jewelry-monitoring-abc",
            "leaseDurationSeconds": 15,
            "acquireTime": stamp,
            "renewTime": stamp,
        },
    }
    coordination = client.CoordinationV1Api(api)
    try:
        coordination.read_namespaced_lease(name, namespace)
    except ApiException:
        coordination.create_namespaced_lease(namespace, body)
    else:
        coordination.patch_namespaced_lease(name, namespace, body)


def test_doctor_exits_zero_when_all_is_well_and_names_a_dead_leader(
    operator: OperatorProcess,
    admin_api: client.ApiClient,
    control_plane: ControlPlane,
    namespace: str,
    operator_deployment: dict[str, Any],
    tmp_path: Path,
) -> None:
    deployment = operator_deployment["metadata"]["name"]
    version = operator_deployment["metadata"]["labels"]["app.kubernetes.io/version"]
    name = _create_cr(admin_api, namespace, {"app": APP, "monitorLabels": {"release": "kps"}})
    _prometheus_resource(admin_api, namespace)
    wait_condition(admin_api, namespace, name, "SelectedByPrometheus", "True")
    service = f"{name}-app-metrics"
    lease = f"{deployment}-leader"
    with fake_endpoints(admin_api, namespace) as pods:
        pods.add_pod({"app": "shop"}, "10.244.8.10")
        # The operator's pods run and are ready (as a kubelet would report them).
        apps = client.AppsV1Api(admin_api)

        def available() -> int:
            pods.run_pods(OPERATOR_SELECTOR)
            status = apps.read_namespaced_deployment(deployment, namespace).status
            return int(status.available_replicas or 0)

        deadline = datetime.datetime.now() + datetime.timedelta(seconds=60)
        while available() < 2:
            assert datetime.datetime.now() < deadline, "operator Deployment never available"
        wait_condition(admin_api, namespace, name, "AppTargetsFound", "True")
        groups = _rule_groups(admin_api, namespace, name)
        with contextlib.ExitStack() as running_shop:
            shop = running_shop.enter_context(_shop(tmp_path, "127.0.0.1/32"))
            scraped = _scraped(shop, service)
            with prometheus_for(admin_api, namespace, name, scraped, groups) as prom:
                prom.api.wait_for(f'up{{job="{service}"}} == 1', 60)
                # Renewed just now, as by a leader that renews every 2 s.
                _lease(admin_api, namespace, lease, datetime.datetime.now(datetime.UTC))
                url = ("--prometheus-url", prom.url)
                code, text = doctor(control_plane, name, "-n", namespace, *url, output="human")
                assert (code, text.splitlines()[-1]) == (0, "all good"), text
                _, checks = doctor(control_plane, name, "-n", namespace, *url)
                assert checks[f"operator {namespace}/{deployment}"]["detail"] == (
                    f"version {version}, 2/2 replicas available"
                )
                assert "held by jm-jewelry-monitoring-abc" in checks["operator leader"]["detail"]
                target = f"{name}: target {shop.host}:{shop.port}"
                assert checks[target]["status"] == "ok"
                assert checks[f"{name}: rule groups"]["status"] == "ok"
                # The cardinality guard's pointer: the app's biggest families, its limit.
                families = checks[f"{name}: app metric families"]
                assert families["status"] == "ok", families
                assert "families; biggest: django_" in families["detail"]
                assert families["detail"].endswith("(sampleLimit 20,000)")

                running_shop.close()  # the app goes down
                prom.api.wait_for(f'up{{job="{service}"}} == 0', 60)
                code, checks = doctor(control_plane, name, "-n", namespace, *url)
                assert (code, checks[target]["status"]) == (1, "fail")
                assert checks[target]["detail"].startswith("failing (")
                assert "connection refused" in checks[target]["detail"]

        # The leader stopped renewing a minute ago: nobody leads.
        stale = datetime.datetime.now(datetime.UTC) - datetime.timedelta(minutes=1)
        _lease(admin_api, namespace, lease, stale)
        code, checks = doctor(control_plane, name, "-n", namespace)
        leader = checks["operator leader"]
        assert (code, leader["status"]) == (1, "fail")
        assert leader["fix"] == (f"kubectl -n {namespace} get pods -l {OPERATOR_SELECTOR}")


def test_doctor_on_a_cluster_without_the_crds(tmp_path: Path) -> None:
    """A cluster of its own: CRDs are cluster-wide, the session's plane keeps them."""
    plane = ControlPlane.create(tmp_path).start()
    try:
        code, checks = doctor(plane, "-n", "default")
        assert code == 1
        ours = checks["CRD jewelrymonitorings.monitoring.jewelry.io"]
        assert (ours["status"], ours["detail"]) == ("fail", "not installed")
        assert ours["fix"] == "jewelry-monitoring crd | kubectl apply --server-side -f -"
        monitors = checks["CRD servicemonitors.monitoring.coreos.com"]
        assert monitors["status"] == "fail" and "prometheus-operator" in monitors["fix"]

        # The fix: the CRD that `jewelry-monitoring crd` prints.
        printed = subprocess.run(
            [sys.executable, "-m", "jewelry_monitoring.cli", "crd"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout
        crd_file = tmp_path / "crd.yaml"
        crd_file.write_text(printed)
        apply_crds(api_client(plane.kubeconfig), [crd_file])
        code, checks = doctor(plane, "-n", "default")
        assert checks["CRD jewelrymonitorings.monitoring.jewelry.io"]["status"] == "ok"
        missing = checks["JewelryMonitoring"]
        assert (missing["status"], missing["detail"]) == (
            "fail",
            "no JewelryMonitoring in namespace default",
        )
        assert yaml.safe_load(printed)["kind"] == "CustomResourceDefinition"
    finally:
        plane.stop()
