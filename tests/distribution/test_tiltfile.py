"""The Tiltfile, evaluated without Tilt or a cluster (neither can run here).

Starlark is a subset of Python, so the Tiltfile is executed with stand-ins for Tilt's
builtins that record every call. Then: every path it references exists, the images it
builds are the ones the chart and the dev manifests run, the chart values it sets pass
the chart's schema, and every resource, object selector and dependency it names exists.
"""

from __future__ import annotations

import os.path
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

        fake_os = SimpleNamespace(getenv=os.environ.get, path=SimpleNamespace(join=os.path.join))
        return {
            "docker_build": docker_build,
            "helm": helm,
            "k8s_yaml": k8s_yaml,
            "read_file": read_file,
            "k8s_resource": k8s_resource,
            "local_resource": local_resource,
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
    names = {r["name"] for r in tilt.local_resources}
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
