"""The node's network and what keeps its packets on this machine.

The bridge is up before any pod (kubelet needs the node IP); the pod CIDR and the Service
CIDR are routed to it, never to the default route; an nftables table drops every forwarded
packet except bridge-to-bridge, so a pod that dials an outside address, or a Service whose
endpoint is outside, dies on this host. Pods get no default route from CNI either: only the
Service CIDR through the node IP. Teardown removes the bridge with its routes and veths, the
nftables tables and KUBE-* chains kube-proxy and kubelet made, and the pods' network
namespaces.
"""

from __future__ import annotations

import contextlib
import json
import subprocess
from pathlib import Path

from devkit.cluster import SERVICE_CIDR
from devkit.toolchain import binary

BRIDGE = "jm-br0"
POD_CIDR = "10.244.0.0/24"
# The bridge's own address: kubelet's node IP (kubelet refuses loopback, and kube-proxy
# programs nothing for a node without an InternalIP) and the address CoreDNS answers on.
NODE_IP = "10.244.0.1"
CNI_NETWORK = "jm-pods"
CNI_BIN_DIR = Path("/usr/lib/cni")
NFT_TABLE = "jm_node"
NETNS_DIR = Path("/run/netns")  # where containerd's CRI puts pod network namespaces


def setup_network() -> None:
    """The bridge (up before any pod: kubelet needs the node IP), routes and the filter.

    The caller holds the host claim, so a bridge or table of that name is a dead node's.
    """
    if any(link["ifname"] == BRIDGE for link in links()):
        run("ip", "link", "delete", BRIDGE)
    subprocess.run(
        ["nft", "delete", "table", "inet", NFT_TABLE], stderr=subprocess.DEVNULL, check=False
    )
    run("ip", "link", "add", BRIDGE, "type", "bridge")
    run("ip", "addr", "add", f"{NODE_IP}/{POD_CIDR.split('/')[1]}", "dev", BRIDGE)
    run("ip", "link", "set", BRIDGE, "up")
    # Host processes reach ClusterIPs through kube-proxy's DNAT, which runs after the
    # first routing decision: the Service CIDR needs a local route, never the default one.
    run("ip", "route", "add", SERVICE_CIDR, "dev", BRIDGE, "src", NODE_IP)
    ruleset = f"""
table inet {NFT_TABLE} {{
    chain forward {{
        type filter hook forward priority filter - 10; policy accept;
        iifname "{BRIDGE}" oifname != "{BRIDGE}" drop
        oifname "{BRIDGE}" iifname != "{BRIDGE}" drop
    }}
}}
"""
    subprocess.run(["nft", "-f", "-"], input=ruleset, text=True, check=True)


def teardown_network(nft_tables_before: list[str] | None) -> None:
    """Remove kube-proxy's and kubelet's rules, the tables that appeared since
    ``nft_tables_before`` (None: unknown, a dead node's state was lost), the veths, the
    bridge with its routes and the filter table."""
    with contextlib.suppress(FileNotFoundError):
        subprocess.run(
            [str(binary("kube-proxy")), "--cleanup"],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            check=False,
        )
    for save, restore in (
        ("iptables-save", "iptables-restore"),
        ("ip6tables-save", "ip6tables-restore"),
    ):
        _drop_kube_chains(save, restore)
    # Tables that appeared while the node ran are its own (iptables-nft makes them for
    # kube-proxy and kubelet).
    if nft_tables_before is not None:
        for table in set(nft_tables()) - set(nft_tables_before):
            subprocess.run(["nft", "delete", "table", *table.split()], check=False)
    for link in links(kind="veth"):
        if link.get("master") == BRIDGE:
            run("ip", "link", "delete", link["ifname"], check=False)
    if any(link["ifname"] == BRIDGE for link in links()):
        run("ip", "link", "delete", BRIDGE, check=False)  # its routes go with it
    subprocess.run(
        ["nft", "delete", "table", "inet", NFT_TABLE],
        stderr=subprocess.DEVNULL,
        check=False,
    )


def remove_pod_netns(before: list[str]) -> None:
    """The pods' network namespaces that CNI made since ``before`` (bind-mounted files)."""
    for name in set(netns_names()) - set(before):
        if name.startswith("cni-"):
            subprocess.run(["umount", "-l", str(NETNS_DIR / name)], capture_output=True)
            with contextlib.suppress(OSError):
                (NETNS_DIR / name).unlink(missing_ok=True)


def cni_config(ipam_dir: Path) -> dict[str, object]:
    """The pods' CNI network: the bridge with host-local addresses and no default route."""
    return {
        "cniVersion": "0.4.0",
        "name": CNI_NETWORK,
        "plugins": [
            {
                "type": "bridge",
                "bridge": BRIDGE,
                "isGateway": True,
                "ipMasq": False,
                "hairpinMode": True,
                "ipam": {
                    "type": "host-local",
                    "ranges": [[{"subnet": POD_CIDR, "gateway": NODE_IP}]],
                    # Pods get no default route: only the Service CIDR through the
                    # node; the pod CIDR is on the link. Anything else is unreachable
                    # inside the pod already.
                    "routes": [{"dst": SERVICE_CIDR, "gw": NODE_IP}],
                    "dataDir": str(ipam_dir),
                },
            },
            {"type": "portmap", "capabilities": {"portMappings": True}},
            {"type": "loopback"},
        ],
    }


def netns_names() -> list[str]:
    return sorted(path.name for path in NETNS_DIR.glob("*"))


def links(kind: str | None = None) -> list[dict[str, str]]:
    command = ["ip", "-json", "link", "show"]
    if kind:
        command += ["type", kind]
    result = subprocess.run(command, capture_output=True, text=True, check=False)
    found: list[dict[str, str]] = json.loads(result.stdout or "[]")
    return found


def nft_tables() -> list[str]:
    """``family name`` of every nftables table (iptables-nft keeps its rules in them too)."""
    result = subprocess.run(["nft", "list", "tables"], capture_output=True, text=True, check=False)
    return [line.removeprefix("table ").strip() for line in result.stdout.splitlines() if line]


def run(*command: str, check: bool = True) -> None:
    result = subprocess.run(command, capture_output=True, text=True, check=False)
    if check and result.returncode != 0:
        raise RuntimeError(f"{' '.join(command)} failed: {result.stderr.strip()}")


def _drop_kube_chains(save: str, restore: str) -> None:
    """Remove every KUBE-* chain and every rule naming one, leaving other rules alone."""
    dumped = subprocess.run([save], capture_output=True, text=True, check=False).stdout
    if "KUBE-" not in dumped:
        return
    kept = "\n".join(line for line in dumped.splitlines() if "KUBE-" not in line) + "\n"
    subprocess.run([restore], input=kept, text=True, capture_output=True, check=False)
