"""The e2e backend (devkit.product): one cluster per session, our images loaded on it."""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from kubernetes import client

from devkit.images import build_images
from devkit.kindcluster import docker_problem, new_kind_cluster
from devkit.kubetools import api_client, apply_crds
from devkit.product import Backend, backend_name
from devkit.toolchain import prometheus_operator_crds

# Step -> seconds, printed after the run (the e2e's measured times).
TIMINGS: dict[str, float] = {}


class Stopwatch:
    """Records how long each named step of the scenarios took."""

    def step(self, name: str, started: float) -> None:
        TIMINGS[name] = time.monotonic() - started


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    if TIMINGS:
        terminalreporter.section(f"e2e times ({backend_name()} backend)")
        for name, seconds in TIMINGS.items():
            terminalreporter.write_line(f"{seconds:7.1f} s  {name}")


@pytest.fixture(scope="session")
def stopwatch() -> Stopwatch:
    return Stopwatch()


@pytest.fixture(scope="session")
def e2e_backend(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Backend]:
    """The cluster of ``JM_E2E_BACKEND``: the session's local node (shared with the node
    tests), a kind cluster of its own, or the cluster of ``JM_E2E_KUBECONFIG``."""
    name = backend_name()
    if name == "node":
        node = request.getfixturevalue("node")
        yield Backend(name, node.plane.kubeconfig, node.plane.audit_log, load=node.load_image)
    elif name == "kind":
        problem = docker_problem()
        if problem:
            pytest.skip(f"the kind backend needs a Docker engine: {problem}")
        with new_kind_cluster(tmp_path_factory.mktemp("kind")) as cluster:
            yield Backend(name, cluster.kubeconfig, load=cluster.load_image_archive)
    else:
        kubeconfig = os.environ.get("JM_E2E_KUBECONFIG")
        if not kubeconfig:
            pytest.fail("JM_E2E_BACKEND=kubeconfig needs JM_E2E_KUBECONFIG (a kubeconfig file)")
        yield Backend(name, Path(kubeconfig))


@pytest.fixture(scope="session")
def e2e_images(e2e_backend: Backend, stopwatch: Stopwatch) -> dict[str, str]:
    """Every image we deploy, built (or found up to date) and on the backend's nodes:
    short name -> ``localhost/jm/<name>:<version>``."""
    started = time.monotonic()
    built = build_images(progress=lambda line: print(line, flush=True))
    stopwatch.step("images built or found up to date", started)
    started = time.monotonic()
    e2e_backend.load_images([image.archive for image in built.values()])
    stopwatch.step(f"{len(built)} images loaded onto the nodes", started)
    return {short_name: image.name for short_name, image in built.items()}


@pytest.fixture(scope="session")
def e2e_api(e2e_backend: Backend) -> client.ApiClient:
    """Cluster-admin client of the backend, with prometheus-operator's CRDs installed (the
    operator writes ServiceMonitors and PrometheusRules)."""
    api = api_client(e2e_backend.kubeconfig)
    apply_crds(api, prometheus_operator_crds(), timeout=120)
    return api
