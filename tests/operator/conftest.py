"""Creating JewelryMonitorings in a test's namespace; the operator fixture is in tests/conftest."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from typing import Any

import pytest
from kubernetes import client

from devkit.crs import GROUP, PLURAL, VERSION, CustomApi, cr_body


@pytest.fixture
def create_cr(admin_api: client.ApiClient, namespace: str) -> Callable[..., dict[str, Any]]:
    def create(spec: dict[str, Any], name: str | None = None) -> dict[str, Any]:
        body = cr_body(name or f"shop-{uuid.uuid4().hex[:5]}", spec)
        result: dict[str, Any] = CustomApi(admin_api).create_namespaced_custom_object(
            GROUP, VERSION, namespace, PLURAL, body
        )
        return result

    return create
