"""What the jm-dev command tests share."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from devkit.sandbox import JmDevSandbox


@pytest.fixture
def sandbox(tmp_path: Path) -> Iterator[JmDevSandbox]:
    """A sandbox for one test; whatever its command leaked is killed afterwards."""
    box = JmDevSandbox(tmp_path)
    try:
        yield box
    finally:
        box.kill_leftovers()
