"""The kind node image's programs reuse the kube build's compiled packages.

Setup builds containerd, etcd, CoreDNS and local-path-provisioner (tests/toolchain/kind)
after the Kubernetes commands (tests/toolchain/kube). Go's build cache shares a compiled
package between two builds only when the package, every package it imports and the build
flags are the same, so each kind go.mod holds every module it shares with kube/go.mod at
kube's version. With their own (older) versions, the four cost about 30 CPU-minutes cold on
top of setup; aligned, about 3. A module kube has at an older version than a program needs
stays at the program's (MVS cannot go lower); SKEWED lists the few held below kube's
because the program does not compile against kube's.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

TOOLCHAIN = Path(__file__).parent
KIND_PROGRAMS = ("containerd", "etcd", "coredns", "local-path-provisioner")
# containerd v2.1.4's CRI server implements k8s.io/cri-api v0.32's RuntimeServiceServer:
# with kube's v0.35.4 it fails to compile ("*criService does not implement ...
# RuntimeServiceServer (missing method UpdatePodSandboxResources)"); k8s.io/kubelet follows
# cri-api's version.
SKEWED = {"containerd": {"k8s.io/cri-api", "k8s.io/kubelet"}}

_REQUIRE = re.compile(r"^\s*(?:require\s+)?(\S+)\s+(v\S+)(?:\s*//.*)?$")
_REPLACE = re.compile(r"^\s*(?:replace\s+)?(\S+)\s+=>\s+(\S+)\s+(v\S+)\s*$")


def required_versions(go_mod: Path) -> dict[str, str]:
    """Module -> version of a go.mod's require lines, a replace to a version winning."""
    required: dict[str, str] = {}
    replaced: dict[str, str] = {}
    block = ""
    for line in go_mod.read_text().splitlines():
        stripped = line.split("//")[0].strip() if "=>" in line else line.strip()
        if stripped.endswith("("):
            block = stripped.split()[0]
            continue
        if stripped == ")":
            block = ""
            continue
        if block == "replace" or stripped.startswith("replace "):
            if found := _REPLACE.match(stripped):
                replaced[found[1]] = found[3]
        elif (block == "require" or stripped.startswith("require ")) and (
            found := _REQUIRE.match(stripped)
        ):
            required[found[1]] = found[2]
    return {**required, **{module: replaced[module] for module in required if module in replaced}}


def _semver(version: str) -> tuple[tuple[int, ...], str]:
    """Sort key of a module version: its numeric core, then the rest (pre-release...)."""
    core = re.split(r"[-+]", version.removeprefix("v"), maxsplit=1)[0]
    return tuple(int(part) for part in core.split(".")), version


def test_go_mod_parser_reads_require_and_replace(tmp_path: Path) -> None:
    go_mod = tmp_path / "go.mod"
    go_mod.write_text(
        "module example\n\ngo 1.25.0\n\nrequire k8s.io/kubernetes v1.35.4\n\n"
        "require (\n\tgithub.com/a/b v1.2.3 // indirect\n\tk8s.io/api v0.0.0\n)\n\n"
        "replace (\n\tk8s.io/api => k8s.io/api v0.35.4\n)\n"
    )
    assert required_versions(go_mod) == {
        "k8s.io/kubernetes": "v1.35.4",
        "github.com/a/b": "v1.2.3",
        "k8s.io/api": "v0.35.4",
    }


@pytest.mark.parametrize("program", KIND_PROGRAMS)
def test_shared_modules_are_at_the_kube_builds_versions(program: str) -> None:
    kube = required_versions(TOOLCHAIN / "kube" / "go.mod")
    own = required_versions(TOOLCHAIN / "kind" / program / "go.mod")
    behind = {
        module: f"{version} < kube's {kube[module]}"
        for module, version in own.items()
        if module in kube
        and module not in SKEWED.get(program, set())
        and _semver(version) < _semver(kube[module])
    }
    assert not behind, (
        f"tests/toolchain/kind/{program}/go.mod is behind kube/go.mod, so its build cannot "
        f"reuse the kube build's packages: {behind}; `go get` them at kube's versions, "
        "then `go mod tidy`"
    )
