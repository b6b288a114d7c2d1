"""Fixtures for running the real operator against the local control plane."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from kubernetes import client

from devkit.cluster import ControlPlane
from devkit.crs import GROUP, PLURAL, VERSION, CustomApi, cr_body
from devkit.kubetools import apply_crds
from devkit.operator_process import CHART, OperatorProcess, install_rbac, start_operator

OPERATOR_NAMESPACE = "jm-system"
RELEASE = "jm"


@pytest.fixture(scope="session")
def jewelry_crd(admin_api: client.ApiClient) -> list[str]:
    """Our CRD exactly as the chart ships it."""
    return apply_crds(admin_api, sorted((CHART / "crds").glob("*.yaml")))


@pytest.fixture(scope="session")
def operator(
    control_plane: ControlPlane,
    admin_api: client.ApiClient,
    jewelry_crd: list[str],
    prometheus_operator_crd_names: list[str],
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[OperatorProcess]:
    """The operator, cluster-wide, authenticated as the chart's ServiceAccount."""
    kubeconfig = install_rbac(control_plane, admin_api, RELEASE, OPERATOR_NAMESPACE)
    user = f"system:serviceaccount:{OPERATOR_NAMESPACE}:{RELEASE}-jewelry-monitoring"
    log = tmp_path_factory.mktemp("operator") / "operator.log"
    handle = start_operator(kubeconfig, log, user)
    yield handle
    handle.stop()


@pytest.fixture
def create_cr(admin_api: client.ApiClient, namespace: str) -> Callable[..., dict[str, Any]]:
    def create(spec: dict[str, Any], name: str | None = None) -> dict[str, Any]:
        body = cr_body(name or f"shop-{uuid.uuid4().hex[:5]}", spec)
        result: dict[str, Any] = CustomApi(admin_api).create_namespaced_custom_object(
            GROUP, VERSION, namespace, PLURAL, body
        )
        return result

    return create
