"""Where the machine-wide tool cache lives and what is in it.

tests/toolchain/setup builds the Go tools once per machine into this cache, outside git, so
every checkout on the machine shares them. Everything that needs a binary asks here, so a
missing tool fails with one message that names the command that builds it.
"""

from __future__ import annotations

import contextlib
import os
import shutil
from pathlib import Path

SETUP_HINT = "run `bash tests/toolchain/setup` to build it"


def cache_dir() -> Path:
    """The tool cache: $JM_CACHE_DIR, else ~/.cache/jewelry-monitoring."""
    configured = os.environ.get("JM_CACHE_DIR")
    return Path(configured) if configured else Path.home() / ".cache" / "jewelry-monitoring"


def built_binary(name: str) -> Path:
    """Path of a tool the setup builds, from the cache only.

    For names Debian ships too (prometheus, promtool): falling back to PATH would quietly
    test with Debian's older build, which lacks what the caller needs.
    """
    cached = cache_dir() / "bin" / name
    if cached.is_file() and os.access(cached, os.X_OK):
        return cached
    raise FileNotFoundError(f"{name} not found in {cache_dir() / 'bin'}: {SETUP_HINT}")


def binary(name: str) -> Path:
    """Path of a tool from the cache, or from PATH for Debian-packaged ones (etcd, nginx...)."""
    with contextlib.suppress(FileNotFoundError):
        return built_binary(name)
    found = shutil.which(name)
    if found:
        return Path(found)
    raise FileNotFoundError(f"{name} not found in {cache_dir() / 'bin'} nor on PATH: {SETUP_HINT}")


def prometheus_operator_crds() -> list[Path]:
    """prometheus-operator's CRD YAMLs copied from its pinned Go module by the setup script."""
    crd_dir = cache_dir() / "crds" / "prometheus-operator"
    files = sorted(crd_dir.glob("*.yaml"))
    if not files:
        raise FileNotFoundError(f"no prometheus-operator CRDs in {crd_dir}: {SETUP_HINT}")
    return files
