"""The Tiltfile, evaluated without Tilt or a cluster (neither can run here).

Starlark is a subset of Python, so the Tiltfile is executed with stand-ins for Tilt's
builtins that record every call. Then: every path it references exists, the images it
builds are the ones the chart and the dev manifests run, the chart values it sets pass
the chart's schema, and every resource, object selector and dependency it names exists.
"""

from __future__ import annotations

import os.path
import re
from dataclasses import dataclass, field
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
import yaml

from devkit.kubetools import load_yaml_documents
from devkit.manifests import helm_template

REPO = Path(__file__).resolve().parents[2]
TILTFILE = REPO / "Tiltfile"
WORKLOAD_KINDS = ("Deployment", "DaemonSet", "StatefulSet", "Job", "CronJob", "Pod")


@dataclass
class Recorder:
    """What the Tiltfile asked Tilt to do."""

    builds: list[dict[str, Any]] = field(default_factory=list)
    yaml: list[dict[str, Any]] = field(default_factory=list)
    yaml_files: list[str] = field(default_factory=list)
    helm_calls: list[dict[str, Any]] = field(default_factory=list)
    read_files: list[str] = field(default_factory=list)
    resources: list[dict[str, Any]] = field(default_factory=list)
    local_resources: list[dict[str, Any]] = field(default_factory=list)
    loads: list[tuple[str, ...]] = field(default_factory=list)
    helm_repos: list[dict[str, Any]] = field(default_factory=list)
    helm_resources: list[dict[str, Any]] = field(default_factory=list)

    def builtins(self) -> dict[str, Any]:
        def docker_build(ref: str, context: str, **kwargs: Any) -> None:
            self.builds.append({"ref": ref, "context": context, **kwargs})

        def helm(chart: str, **kwargs: Any) -> str:
            self.helm_calls.append({"chart": chart, **kwargs})
            extra = ["--include-crds"]  # as Tilt's helm() does
            for item in kwargs.get("set", []):
                extra += ["--set", item]
            return helm_template(kwargs["name"], kwargs["namespace"], tuple(extra))

        def k8s_yaml(source: str | list[str]) -> None:
            for item in source if isinstance(source, list) else [source]:
                if isinstance(item, Blob):
                    self.yaml.extend(load_yaml_documents(item.text))
                elif "\n" in item:  # helm() output
                    self.yaml.extend(load_yaml_documents(item))
                else:
                    self.yaml_files.append(item)
                    self.yaml.extend(load_yaml_documents((REPO / item).read_text()))

        def read_file(path: str) -> str:
            self.read_files.append(path)
            return (REPO / path).read_text()

        def k8s_resource(workload: str = "", **kwargs: Any) -> None:
            self.resources.append({"workload": workload, **kwargs})

        def local_resource(name: str, **kwargs: Any) -> None:
            self.local_resources.append({"name": name, **kwargs})

        # Tilt's helm_resource extension: `helm upgrade --install` of a chart from a repo.
        def helm_repo(name: str, url: str, **kwargs: Any) -> None:
            self.helm_repos.append({"name": name, "url": url, **kwargs})

        def helm_resource(name: str, chart: str, **kwargs: Any) -> None:
            self.helm_resources.append({"name": name, "chart": chart, **kwargs})

        extensions = {"ext://helm_resource": {"helm_resource", "helm_repo"}}

        def load(module: str, *symbols: str) -> None:
            assert set(symbols) <= extensions[module], (module, symbols)
            self.loads.append((module, *symbols))

        fake_os = SimpleNamespace(getenv=os.environ.get, path=SimpleNamespace(join=os.path.join))
        return {
            "docker_build": docker_build,
            "helm": helm,
            "k8s_yaml": k8s_yaml,
            "read_file": read_file,
            "k8s_resource": k8s_resource,
            "local_resource": local_resource,
            "load": load,
            "helm_repo": helm_repo,
            "helm_resource": helm_resource,
            "allow_k8s_contexts": lambda contexts: None,
            "blob": Blob,
            "encode_yaml": lambda obj: yaml.safe_dump(obj),
            "os": fake_os,
        }


@dataclass
class Blob:
    text: str


@pytest.fixture(scope="module")
def tilt() -> Recorder:
    recorder = Recorder()
    code = compile(TILTFILE.read_text(), str(TILTFILE), "exec")
    exec(code, {"__builtins__": {"str": str}, **recorder.builtins()})
    return recorder


def _workloads(objects: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {o["metadata"]["name"]: o for o in objects if o["kind"] in WORKLOAD_KINDS}


def test_every_referenced_path_exists(tilt: Recorder) -> None:
    paths = [*tilt.yaml_files, *tilt.read_files, *(c["chart"] for c in tilt.helm_calls)]
    for build in tilt.builds:
        paths += [build["context"], build["dockerfile"], *build.get("only", [])]
    assert paths
    missing = [path for path in paths if not (REPO / path).exists()]
    assert not missing, f"the Tiltfile references missing paths: {missing}"


def test_builds_the_images_that_are_deployed(tilt: Recorder) -> None:
    images = {build["ref"]: build for build in tilt.builds}
    assert images["jewelry-monitoring-operator"]["dockerfile"] == "operator/Dockerfile"
    assert images["jewelry-shop"]["dockerfile"] == "app/Dockerfile"
    assert images["jewelry-shop"]["context"] == "app"
    deployed = {
        container["image"].split(":")[0]
        for workload in _workloads(tilt.yaml).values()
        for container in workload["spec"]["template"]["spec"]["containers"]
    }
    assert set(images) <= deployed, (set(images), deployed)
    # The chart's default is a registry's image: the Tiltfile names its own build.
    (chart,) = tilt.helm_calls
    assert "image.repository=jewelry-monitoring-operator" in chart["set"]


def test_resources_selectors_and_dependencies_exist(tilt: Recorder) -> None:
    workloads = _workloads(tilt.yaml)
    names = {r["name"] for r in [*tilt.local_resources, *tilt.helm_repos, *tilt.helm_resources]}
    for resource in tilt.resources:
        if resource["workload"]:
            assert resource["workload"] in workloads, resource["workload"]
        names.add(resource.get("new_name") or resource["workload"])
    for resource in tilt.resources:
        for dependency in resource.get("resource_deps", []):
            assert dependency in names, f"unknown resource_deps {dependency!r}"
        for selector in resource.get("objects", []):
            name, kind = selector.split(":")[:2]
            assert any(
                o["metadata"]["name"] == name and o["kind"].lower() == kind for o in tilt.yaml
            ), f"objects selector {selector!r} matches nothing"
    # The example CR and the Secrets it refers to are all deployed.
    kinds = {(o["kind"], o["metadata"]["name"]) for o in tilt.yaml}
    assert ("JewelryMonitoring", "jewelry-shop") in kinds
    for secret in ("jewelry-shop-postgres-exporter", "jewelry-shop-redis", "jewelry-shop-celery"):
        assert ("Secret", secret) in kinds


def test_port_forwards_reach_the_app_and_the_operator_liveness_and_metrics(
    tilt: Recorder,
) -> None:
    workloads = _workloads(tilt.yaml)
    forwards = {r["workload"]: r.get("port_forwards", []) for r in tilt.resources}

    def container_ports(workload: str) -> set[int]:
        pod = workloads[workload]["spec"]["template"]["spec"]
        return {p["containerPort"] for c in pod["containers"] for p in c.get("ports", [])}

    operator = next(r["workload"] for r in tilt.resources if r.get("new_name") == "operator")
    assert "8000:8000" in forwards["jewelry-shop"]
    assert 8000 in container_ports("jewelry-shop")
    assert "8080:8080" in forwards[operator]
    assert 8080 in container_ports(operator)
    assert "8081:8081" in forwards[operator]
    assert 8081 in container_ports(operator)
    probe = workloads[operator]["spec"]["template"]["spec"]["containers"][0]["livenessProbe"]
    assert probe["httpGet"]["path"] == "/healthz"


# --------------------------------------------------------------------------- monitoring

CHART_VALUES = REPO / "charts/jewelry-monitoring/values.yaml"
EXAMPLE_CR = REPO / "manifests/example-jewelrymonitoring.yaml"


def _kube_prometheus_stack(tilt: Recorder) -> tuple[dict[str, Any], dict[str, str]]:
    """The kube-prometheus-stack resource and its --set values (key -> value)."""
    (stack,) = [r for r in tilt.helm_resources if r["chart"].endswith("/kube-prometheus-stack")]
    settings = {}
    for flag in stack["flags"]:
        if flag.startswith(("--set=", "--set-string=")):
            key, _, value = flag.partition("=")[2].partition("=")
            settings[key] = value
    return stack, settings


def test_kube_prometheus_stack_is_installed_with_the_release_the_example_cr_selects(
    tilt: Recorder,
) -> None:
    """kube-prometheus-stack's Prometheus selects ServiceMonitors and PrometheusRules labelled
    ``release: <its release>``: the example CR's monitorLabels must name that release."""
    stack, settings = _kube_prometheus_stack(tilt)
    repo_name = stack["chart"].partition("/")[0]
    (repo,) = [r for r in tilt.helm_repos if r["name"] == repo_name]
    assert repo["url"] == "https://prometheus-community.github.io/helm-charts"
    assert repo_name in stack["resource_deps"]
    assert any(re.fullmatch(r"--version=\d+\.\d+\.\d+", flag) for flag in stack["flags"])
    example = yaml.safe_load(EXAMPLE_CR.read_text())
    assert stack["release_name"] == example["spec"]["monitorLabels"]["release"]
    # Its selectors stay the release label (what "NilUsesHelmValues" means).
    assert not {k: v for k, v in settings.items() if "NilUsesHelmValues" in k}
    # The operator starts once the stack (and with it prometheus-operator's CRDs) is there.
    operator = next(r for r in tilt.resources if r.get("new_name") == "operator")
    assert stack["name"] in operator["resource_deps"]


def test_grafana_loads_the_charts_dashboard_configmaps(tilt: Recorder) -> None:
    """The sidecar's label, value, folder annotation and namespaces match the ConfigMaps the
    chart renders in this Tiltfile."""
    _, settings = _kube_prometheus_stack(tilt)
    sidecar = "grafana.sidecar.dashboards."
    assert settings[sidecar + "enabled"] == "true"
    dashboards = [
        o
        for o in tilt.yaml
        if o["kind"] == "ConfigMap"
        and o["metadata"]["name"].startswith("jewelry-monitoring-dashboard")
    ]
    assert len(dashboards) == 5
    values = yaml.safe_load(CHART_VALUES.read_text())["dashboards"]
    for configmap in dashboards:
        labels = configmap["metadata"]["labels"]
        assert labels[settings[sidecar + "label"]] == settings[sidecar + "labelValue"]
        assert settings[sidecar + "folderAnnotation"] in configmap["metadata"]["annotations"]
    assert settings[sidecar + "folderAnnotation"] == values["folderAnnotation"]
    assert settings[sidecar + "provider.foldersFromFilesStructure"] == "true"
    # The dashboards are in the operator's namespace, not the stack's: Grafana looks in all.
    assert settings[sidecar + "searchNamespace"] == "ALL"


def test_prometheus_and_grafana_are_port_forwarded(tilt: Recorder) -> None:
    stack, _ = _kube_prometheus_stack(tilt)
    release, namespace = stack["release_name"], stack["namespace"]
    forwards = {
        r["name"]: r
        for r in tilt.local_resources
        if "kubectl port-forward" in r.get("serve_cmd", "")
    }
    commands = {r["serve_cmd"] for r in forwards.values()}
    # Service names and ports of kube-prometheus-stack for this release: Prometheus serves on
    # 9090, Grafana's Service on 80 (its container's 3000).
    assert f"kubectl port-forward --namespace {namespace} svc/{release}-prometheus 9090:9090" in (
        commands
    )
    assert f"kubectl port-forward --namespace {namespace} svc/{release}-grafana 3000:80" in commands
    for forward in forwards.values():
        assert forward["resource_deps"] == [stack["name"]]
    shop_forwards = {r["workload"]: r.get("port_forwards", []) for r in tilt.resources}
    assert "8000:8000" in shop_forwards["jewelry-shop"]  # beside the shop
