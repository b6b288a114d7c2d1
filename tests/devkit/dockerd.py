"""A Docker engine of our own: Debian's dockerd, started and stopped like the other daemons.

Debian's ``docker.io`` package enables systemd units that cannot start on a machine without
systemd as PID 1, and the machine's own engine (if any) is not ours to touch. So each
``DockerEngine`` runs its own dockerd with:

- its own data root, exec root, socket and pid file under ``SHORT_ROOT/<id>`` (a socket
  path has at most 104 bytes), its own daemon.json (the trust key goes there too, not to
  /etc/docker) and its own cgroup parent;
- no iptables rules, no masquerading and no change to the kernel's forwarding setting
  (``--iptables=false --ip-forward=false --ip-masq=false``); published ports go through
  docker-proxy on the host;
- a default bridge it is given (for ``docker build``'s ``RUN`` steps) and networks made with
  ``create_network`` (kind's), every bridge named ``BRIDGE_PREFIX...``;
- an environment whose only HTTP(S) proxy is a dead loopback port, so a pull it is asked
  for (an image it lacks, a Dockerfile's ``# syntax`` frontend) fails at once, on this
  machine, instead of resolving or dialling a registry.

Network safety (the project's rule: no packet off the machine): before the first bridge
exists, an nftables table drops every forwarded packet between one of its bridges and any
interface that is not one of them, so a container's packet to an outside address dies on
this host (``forward_rules``). The same drop covers ``br-*`` and ``docker0``, the names
dockerd gives a bridge it was not told to name. Checked by inspection (``safety_problems``:
the ruleset, every network's bridge name, ``ip route get`` of its addresses), never by
sending.

``stop()`` removes every container and network, stops dockerd by its pid, and removes every
process, mount, cgroup, bridge, rule and directory it made; ``leftovers()`` lists any that
remain.
"""

from __future__ import annotations

import contextlib
import fnmatch
import ipaddress
import json
import logging
import os
import shutil
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

from devkit.cluster import _alive, _terminate
from devkit.node.host import _mounts_under, unmount_under
from devkit.node.network import links, nft_tables

log = logging.getLogger(__name__)

DOCKERD = Path("/usr/sbin/dockerd")
# Debian's client (docker.io), which speaks to its own dockerd's BuildKit; another client
# earlier on PATH (a newer one wants the buildx plugin for every build) is not used.
DOCKER_CLIENT = Path("/usr/bin/docker")
SHORT_ROOT = Path("/var/lib/jm-docker")
BOUNDED_RUNC = Path(__file__).with_name("bounded_runc.py")
BRIDGE_PREFIX = "jm-dk"  # + engine id (6 hex) + "-" + index: at most 15 characters
NFT_TABLE_PREFIX = "jm_docker_"
# Names dockerd gives bridges it was not told to name (user networks, the default bridge).
DOCKER_DEFAULT_BRIDGES = ("br-*", "docker0")
# The pool the engines' bridges take their /24s from (10.244/16 is the node's pods, 10.96/16
# its Services).
SUBNET_POOL = ipaddress.IPv4Network("10.200.0.0/16")
DEAD_PROXY = "http://127.0.0.1:9"
# Directories dockerd (its plugin sockets) and its containerd's shims (their sockets)
# create on the host whatever the roots are: removed at stop when this engine created them
# and they are empty (a node's containerd may use the second ones too). Deepest first.
HOST_DIRECTORIES = (
    Path("/run/docker/plugins"),
    Path("/run/docker"),
    Path("/run/containerd/s"),
    Path("/run/containerd"),
)


class EngineUnavailable(RuntimeError):
    """This host cannot run a Docker engine now; the message says why."""


def why_no_engine() -> str | None:
    """Why a Docker engine cannot start here (privilege, package, tools), or None."""
    if os.geteuid() != 0:
        return "a Docker engine needs root (bridges, mounts, cgroups)"
    for program in (DOCKERD, DOCKER_CLIENT):
        if not program.is_file():
            return f"{program} is missing: install Debian's docker.io (bash tests/toolchain/setup)"
    for name in ("ip", "nft"):
        if not shutil.which(name):
            return f"{name} is not installed (bash tests/toolchain/setup)"
    return None


@dataclass
class Network:
    """A bridge network of the engine: docker's name, the host bridge and its subnet."""

    name: str
    bridge: str
    subnet: ipaddress.IPv4Network

    @property
    def gateway(self) -> str:
        return str(self.subnet[1])


@dataclass
class DockerEngine:
    """One dockerd; ``start()`` then ``docker(...)`` or ``env()`` for other clients (kind)."""

    workdir: Path  # logs and daemon.json; removed at stop
    ident: str = field(default_factory=lambda: uuid.uuid4().hex[:6])
    pid: int | None = None
    networks: list[Network] = field(default_factory=list)
    created_directories: list[str] = field(default_factory=list)

    # -- paths and names -----------------------------------------------------------------

    @property
    def root(self) -> Path:
        return SHORT_ROOT / self.ident

    @property
    def socket(self) -> Path:
        return self.root / "docker.sock"

    @property
    def host(self) -> str:
        return f"unix://{self.socket}"

    @property
    def bridge_prefix(self) -> str:
        return f"{BRIDGE_PREFIX}{self.ident}-"

    @property
    def bridge_patterns(self) -> tuple[str, ...]:
        """Interface names (nft wildcards) the forward drop covers."""
        return (f"{self.bridge_prefix}*", *DOCKER_DEFAULT_BRIDGES)

    @property
    def nft_table(self) -> str:
        return f"{NFT_TABLE_PREFIX}{self.ident}"

    @property
    def cgroup_parent(self) -> str:
        return f"jm-docker-{self.ident}"

    @property
    def default_bridge(self) -> Network:
        """The bridge dockerd puts containers on without ``--network`` (build steps too)."""
        return self.networks[0]

    def env(self) -> dict[str, str]:
        """The environment for a docker client (or kind) to use this engine: its socket,
        BuildKit, and Debian's client first on PATH."""
        path = f"{DOCKER_CLIENT.parent}:{os.environ.get('PATH', '/usr/sbin:/usr/bin')}"
        return {**os.environ, "DOCKER_HOST": self.host, "DOCKER_BUILDKIT": "1", "PATH": path}

    # -- lifecycle -----------------------------------------------------------------------

    def start(self, timeout: float = 60.0) -> DockerEngine:
        reason = why_no_engine()
        if reason:
            raise EngineUnavailable(reason)
        try:
            self.workdir.mkdir(parents=True, exist_ok=True)
            self.created_directories = [str(d) for d in HOST_DIRECTORIES if not d.exists()]
            self._install_forward_rules()
            self.networks = [self._make_bridge(f"{self.bridge_prefix}0")]
            self.root.mkdir(parents=True, exist_ok=True)
            launcher = self.root / "bounded-runc"
            launcher.write_text(f'#!/bin/sh\nexec {sys.executable} {BOUNDED_RUNC} "$@"\n')
            launcher.chmod(0o755)
            config = self.workdir / "daemon.json"
            config.write_text(json.dumps(self._daemon_config(), indent=1))
            self._spawn(config)
            deadline = time.monotonic() + timeout
            while not self._answers():
                if self.pid is None or not _alive(self.pid):
                    raise RuntimeError(f"dockerd exited during start:\n{self.log_tail()}")
                if time.monotonic() > deadline:
                    raise TimeoutError(f"dockerd did not answer in {timeout}s:\n{self.log_tail()}")
                time.sleep(0.2)
        except BaseException:
            self.stop()
            raise
        return self

    def stop(self) -> None:
        """Remove every container and network, stop dockerd, undo everything it did."""
        if self.pid is not None and _alive(self.pid) and self._answers():
            containers = self.docker("ps", "--all", "--quiet", check=False).split()
            if containers:
                self.docker("rm", "--force", "--volumes", *containers, check=False)
            for network in self.networks[1:]:
                self.docker("network", "rm", network.name, check=False)
        if self.pid is not None:
            _terminate(self.pid, grace=30.0)
            self.pid = None
        self._kill_strays()
        unmount_under(self.root)
        self._remove_cgroups()
        for link in _bridge_names():
            if link.startswith(self.bridge_prefix):
                subprocess.run(["ip", "link", "delete", link], capture_output=True, check=False)
        subprocess.run(
            ["nft", "delete", "table", "inet", self.nft_table], capture_output=True, check=False
        )
        shutil.rmtree(self.root, ignore_errors=True)
        with contextlib.suppress(OSError):
            SHORT_ROOT.rmdir()  # only when no other engine runs
        for directory in self.created_directories:
            with contextlib.suppress(OSError):
                Path(directory).rmdir()
        shutil.rmtree(self.workdir, ignore_errors=True)

    def leftovers(self) -> list[str]:
        """What this engine left on the host after ``stop()``; empty when it cleaned up."""
        found = [f"process {pid}: {command}" for pid, command in self._processes()]
        found += [f"mount {target}" for target in _mounts_under(self.root)]
        found += [
            f"bridge {name}" for name in _bridge_names() if name.startswith(self.bridge_prefix)
        ]
        if f"inet {self.nft_table}" in nft_tables():
            found.append(f"nft table inet {self.nft_table}")
        found += [f"cgroup {path}" for path in self._cgroups()]
        found += [f"directory {path}" for path in (self.root, self.workdir) if path.exists()]
        # One another daemon (a node's containerd) uses meanwhile is not empty: not ours.
        found += [f"directory {d}" for d in self.created_directories if _empty_directory(d)]
        return found

    def log_tail(self, lines: int = 30) -> str:
        path = self.workdir / "dockerd.log"
        if not path.exists():
            return ""
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])

    # -- using it ------------------------------------------------------------------------

    def docker(
        self, *arguments: str, check: bool = True, timeout: float = 300, input: str | None = None
    ) -> str:
        """Run Debian's docker client against this engine; its stdout."""
        result = subprocess.run(
            [str(DOCKER_CLIENT), *arguments],
            capture_output=True,
            text=True,
            env=self.env(),
            timeout=timeout,
            input=input,
            check=False,
        )
        if check and result.returncode != 0:
            raise RuntimeError(
                f"docker {' '.join(arguments)} exited {result.returncode}:\n"
                f"{result.stdout[-3000:]}\n{result.stderr[-3000:]}"
            )
        return result.stdout

    def create_network(self, name: str) -> Network:
        """A bridge network for containers (kind's nodes), its bridge covered by the forward
        drop before it exists."""
        bridge = f"{self.bridge_prefix}{len(self.networks)}"
        subnet = _free_subnet(taken=[network.subnet for network in self.networks])
        self.docker(
            "network",
            "create",
            "--driver=bridge",
            f"--subnet={subnet}",
            f"--gateway={subnet[1]}",
            f"--opt=com.docker.network.bridge.name={bridge}",
            # No NAT: with --iptables=false dockerd would not program it anyway.
            "--opt=com.docker.network.bridge.enable_ip_masquerade=false",
            name,
        )
        network = Network(name, bridge, subnet)
        self.networks.append(network)
        return network

    def safety_problems(self) -> list[str]:
        """What breaks the network rule, found by inspection only: a missing forward drop,
        a network whose bridge the drop does not cover, an address of a network routed
        anywhere but its bridge. Empty when every bridge is fenced in."""
        problems: list[str] = []
        ruleset = self.ruleset()
        for rule in self.forward_rules():
            if rule not in ruleset:
                problems.append(f"nft table inet {self.nft_table} lacks: {rule}")
        if "hook forward" not in ruleset:
            problems.append(f"nft table inet {self.nft_table} has no forward hook")
        listing = self.docker("network", "ls", "--filter=driver=bridge", "--format={{.ID}}")
        for network in json.loads(self.docker("network", "inspect", *listing.split()) or "[]"):
            name = network["Name"]
            # A user network without a bridge name gets "br-" + the start of its id.
            default = f"br-{network['Id'][:12]}"
            bridge = network["Options"].get("com.docker.network.bridge.name", default)
            if not any(fnmatch.fnmatchcase(bridge, pattern) for pattern in self.bridge_patterns):
                problems.append(f"network {name} has bridge {bridge!r}, outside the drop")
            for config in (network.get("IPAM") or {}).get("Config") or []:
                subnet = ipaddress.ip_network(config["Subnet"])
                for address in (subnet[2], subnet[-2]):
                    device = route_device(str(address))
                    if device != bridge:
                        problems.append(f"{address} of network {name} routes to {device}")
        return problems

    def ruleset(self) -> str:
        """The engine's nftables table as ``nft list`` prints it (empty when it is gone)."""
        return subprocess.run(
            ["nft", "list", "table", "inet", self.nft_table],
            capture_output=True,
            text=True,
            check=False,
        ).stdout

    def forward_rules(self) -> list[str]:
        """The drop rules, as ``nft list`` prints them: a packet between one of these bridges
        and anything else is not forwarded (traffic within one bridge is not routed)."""
        rules = []
        for pattern in self.bridge_patterns:
            rules.append(f'iifname "{pattern}" oifname != "{pattern}" drop')
            rules.append(f'oifname "{pattern}" iifname != "{pattern}" drop')
        return rules

    # -- internals -----------------------------------------------------------------------

    def _daemon_config(self) -> dict[str, object]:
        gateway = self.default_bridge.gateway
        return {
            "data-root": str(self.root / "data"),
            "exec-root": str(self.root / "exec"),
            "pidfile": str(self.root / "docker.pid"),
            "hosts": [self.host],
            "deprecated-key-path": str(self.root / "key.json"),
            "bridge": self.default_bridge.bridge,
            "iptables": False,
            "ip6tables": False,
            "ip-forward": False,
            "ip-masq": False,
            "storage-driver": "overlay2",
            "exec-opts": ["native.cgroupdriver=cgroupfs"],
            "cgroup-parent": f"/{self.cgroup_parent}",
            # A container's resolver is the default bridge's gateway (this host, where no
            # DNS server listens): a name lookup fails here instead of going elsewhere.
            "dns": [gateway],
            "log-level": "warn",
            "features": {"buildkit": True},
            # runc behind a filter of capabilities root may not grant (devkit.bounded_runc).
            "runtimes": {"bounded-runc": {"path": str(self.root / "bounded-runc")}},
            "default-runtime": "bounded-runc",
        }

    def _spawn(self, config: Path) -> None:
        environment = {
            "PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
            "HTTP_PROXY": DEAD_PROXY,
            "HTTPS_PROXY": DEAD_PROXY,
            "NO_PROXY": "localhost,127.0.0.1,::1",
        }
        with (self.workdir / "dockerd.log").open("ab") as output:
            process = subprocess.Popen(
                [str(DOCKERD), "--config-file", str(config)],
                stdout=output,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                env=environment,
            )
        self.pid = process.pid

    def _answers(self) -> bool:
        if not self.socket.exists():
            return False
        result = subprocess.run(
            [str(DOCKER_CLIENT), "version", "--format", "{{.Server.Version}}"],
            capture_output=True,
            env=self.env(),
            timeout=30,
            check=False,
        )
        return result.returncode == 0

    def _install_forward_rules(self) -> None:
        rules = "\n".join(f"        {rule}" for rule in self.forward_rules())
        ruleset = f"""
table inet {self.nft_table} {{
    chain forward {{
        type filter hook forward priority filter - 10; policy accept;
{rules}
    }}
}}
"""
        subprocess.run(["nft", "-f", "-"], input=ruleset, text=True, check=True)

    def _make_bridge(self, bridge: str) -> Network:
        subnet = _free_subnet(taken=[])
        for command in (
            ["ip", "link", "add", bridge, "type", "bridge"],
            ["ip", "addr", "add", f"{subnet[1]}/{subnet.prefixlen}", "dev", bridge],
            ["ip", "link", "set", bridge, "up"],
        ):
            subprocess.run(command, capture_output=True, text=True, check=True)
        return Network("bridge", bridge, subnet)

    def _processes(self) -> list[tuple[int, str]]:
        """Processes of this engine: dockerd, its containerd, shims, docker-proxy."""
        marker = str(self.root).encode()
        found = []
        for entry in Path("/proc").iterdir():
            if entry.name.isdigit():
                with contextlib.suppress(OSError):
                    command = (entry / "cmdline").read_bytes()
                    if marker in command:
                        found.append((int(entry.name), command.replace(b"\0", b" ").decode()))
        return found

    def _kill_strays(self) -> None:
        for pid, _ in self._processes():
            with contextlib.suppress(OSError):
                os.kill(pid, 9)

    def _cgroups(self) -> list[Path]:
        root = Path("/sys/fs/cgroup")
        if not root.is_dir():
            return []
        return [h / self.cgroup_parent for h in root.iterdir() if (h / self.cgroup_parent).is_dir()]

    def _remove_cgroups(self) -> None:
        for top in self._cgroups():
            directories = sorted((p for p, _, _ in os.walk(top)), key=len, reverse=True)
            for directory in directories:
                with contextlib.suppress(OSError):
                    os.rmdir(directory)


# -- host helpers ----------------------------------------------------------------------------


def route_device(address: str) -> str:
    """The interface ``ip route get`` picks for ``address`` (an inspection: nothing is sent)."""
    result = subprocess.run(
        ["ip", "-json", "route", "get", address], capture_output=True, text=True, check=True
    )
    routes = json.loads(result.stdout)
    return str(routes[0].get("dev", "")) if routes else ""


def _free_subnet(taken: list[ipaddress.IPv4Network]) -> ipaddress.IPv4Network:
    """A /24 of ``SUBNET_POOL`` that no route on the host and no network in ``taken`` uses."""
    result = subprocess.run(
        ["ip", "-json", "-4", "route", "show", "table", "all"],
        capture_output=True,
        text=True,
        check=True,
    )
    used = list(taken)
    for route in json.loads(result.stdout or "[]"):
        destination = route.get("dst", "")
        with contextlib.suppress(ValueError):
            if destination and destination != "default":
                used.append(ipaddress.IPv4Network(destination, strict=False))
    for candidate in SUBNET_POOL.subnets(new_prefix=24):
        if not any(candidate.overlaps(network) for network in used):
            return candidate
    raise EngineUnavailable(f"no free /24 left in {SUBNET_POOL}")


def _bridge_names() -> list[str]:
    return [link["ifname"] for link in links(kind="bridge")]


def _empty_directory(path: str) -> bool:
    return Path(path).is_dir() and not any(Path(path).iterdir())
