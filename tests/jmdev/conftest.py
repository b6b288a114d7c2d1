"""What the jm-dev command tests share."""

from __future__ import annotations

from pathlib import Path

import pytest

from devkit.sandbox import JmDevSandbox


@pytest.fixture
def sandbox(tmp_path: Path) -> JmDevSandbox:
    return JmDevSandbox(tmp_path)
