"""runc for our dockerd, with a container's capabilities cut to what this process may hold.

A privileged container (every kind node is one) asks runc for every capability the kernel
knows. Root on the machines of these tests lacks some of them in its bounding set (here
CAP_SYS_RESOURCE, as root may not lower oom_score_adj either), and runc then refuses the
container: ``unable to apply caps: operation not permitted``. Docker 20.10 offers no way
to leave one out of a privileged container, and kind always asks for one. So devkit.dockerd
makes this its default runtime: before runc reads a bundle's ``config.json`` (create, run)
or an exec's process file, every capability set in it loses what the bounding set of this
process lacks; then runc runs with the same arguments. Nothing else changes.

Run as a program (``python3 bounded_runc.py <runc arguments>``); no imports of the devkit.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

RUNC = "/usr/sbin/runc"
# Capability numbers of Linux, in order (capability.h); the bounding set is a bit mask.
CAPABILITIES = [
    "CAP_CHOWN",
    "CAP_DAC_OVERRIDE",
    "CAP_DAC_READ_SEARCH",
    "CAP_FOWNER",
    "CAP_FSETID",
    "CAP_KILL",
    "CAP_SETGID",
    "CAP_SETUID",
    "CAP_SETPCAP",
    "CAP_LINUX_IMMUTABLE",
    "CAP_NET_BIND_SERVICE",
    "CAP_NET_BROADCAST",
    "CAP_NET_ADMIN",
    "CAP_NET_RAW",
    "CAP_IPC_LOCK",
    "CAP_IPC_OWNER",
    "CAP_SYS_MODULE",
    "CAP_SYS_RAWIO",
    "CAP_SYS_CHROOT",
    "CAP_SYS_PTRACE",
    "CAP_SYS_PACCT",
    "CAP_SYS_ADMIN",
    "CAP_SYS_BOOT",
    "CAP_SYS_NICE",
    "CAP_SYS_RESOURCE",
    "CAP_SYS_TIME",
    "CAP_SYS_TTY_CONFIG",
    "CAP_MKNOD",
    "CAP_LEASE",
    "CAP_AUDIT_WRITE",
    "CAP_AUDIT_CONTROL",
    "CAP_SETFCAP",
    "CAP_MAC_OVERRIDE",
    "CAP_MAC_ADMIN",
    "CAP_SYSLOG",
    "CAP_WAKE_ALARM",
    "CAP_BLOCK_SUSPEND",
    "CAP_AUDIT_READ",
    "CAP_PERFMON",
    "CAP_BPF",
    "CAP_CHECKPOINT_RESTORE",
]


def bounding_set(status: str) -> set[str]:
    """The capability names of the ``CapBnd`` line of a /proc/<pid>/status text."""
    line = next(line for line in status.splitlines() if line.startswith("CapBnd:"))
    mask = int(line.split()[1], 16)
    return {name for bit, name in enumerate(CAPABILITIES) if mask >> bit & 1}


def bound_process(process: dict[str, object], allowed: set[str]) -> bool:
    """Cut every capability set of an OCI ``process`` to ``allowed``; whether it changed."""
    capabilities = process.get("capabilities")
    if not isinstance(capabilities, dict):
        return False
    changed = False
    for kind, names in capabilities.items():
        kept = [name for name in names if name in allowed]
        if kept != names:
            capabilities[kind] = kept
            changed = True
    return changed


def _option(arguments: list[str], name: str) -> str | None:
    for index, argument in enumerate(arguments):
        if argument == name and index + 1 < len(arguments):
            return arguments[index + 1]
        if argument.startswith(f"{name}="):
            return argument.split("=", 1)[1]
    return None


def main(arguments: list[str]) -> None:
    allowed = bounding_set(Path("/proc/self/status").read_text())
    bundle = _option(arguments, "--bundle") or _option(arguments, "-b")
    targets = []
    if bundle and any(command in arguments for command in ("create", "run")):
        targets.append((Path(bundle) / "config.json", "process"))
    process_file = _option(arguments, "--process") or _option(arguments, "-p")
    if process_file and "exec" in arguments:
        targets.append((Path(process_file), None))
    for path, key in targets:
        document = json.loads(path.read_text())
        process = document.get(key) if key else document
        if isinstance(process, dict) and bound_process(process, allowed):
            path.write_text(json.dumps(document))
    os.execv(RUNC, [RUNC, *arguments])


if __name__ == "__main__":
    main(sys.argv[1:])
