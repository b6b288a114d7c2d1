"""A Docker engine of our own (devkit.dockerd) for the module's tests; skipped with the
reason where none can run (not root, Debian's docker.io not installed)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from devkit.dockerd import DockerEngine, why_no_engine


@pytest.fixture(scope="module")
def engine(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DockerEngine]:
    reason = why_no_engine()
    if reason:
        pytest.skip(reason)
    started = DockerEngine(tmp_path_factory.mktemp("dockerd")).start()
    try:
        yield started
    finally:
        started.stop()
        assert started.leftovers() == []
