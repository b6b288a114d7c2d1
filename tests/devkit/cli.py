"""`jm-dev`: the developer's command for the local control plane and the demo.

jm-dev cluster up          start etcd + kube-apiserver + kube-controller-manager, detached
jm-dev cluster kubeconfig  print the admin kubeconfig path of the running plane
jm-dev cluster status      say whether it runs
jm-dev cluster down        stop it and remove its files
jm-dev demo                the whole product on the local plane (see devkit.demo)
jm-dev manifests           regenerate the chart's dashboards and manifests/jewelry-monitoring.yaml
jm-dev images              build (if changed) every image we deploy; list their tarballs
    jm-dev bench [--short]     operator latency (create -> Ready) and API quietness
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from devkit.cluster import ControlPlane
from devkit.toolchain import cache_dir


def state_dir() -> Path:
    """Where the detached CLI control plane keeps its files: one per machine user."""
    return cache_dir() / "cluster"


def cluster_up() -> int:
    existing = _running_plane()
    if existing:
        print(f"already running: export KUBECONFIG={existing.kubeconfig}")
        return 0
    workdir = state_dir()
    if (workdir / "state.json").exists():  # a stale plane whose processes died: clean it up
        ControlPlane.load_state(workdir).stop()
    workdir.mkdir(parents=True, exist_ok=True)
    plane = ControlPlane(workdir=workdir).start()
    plane.save_state()
    print(f"control plane up at {plane.server}")
    print(f"  export KUBECONFIG={plane.kubeconfig}")
    print("  kubectl get namespaces")
    print("  jm-dev cluster down   # stops it and removes its files")
    return 0


def cluster_down() -> int:
    workdir = state_dir()
    if (workdir / "state.json").exists():
        ControlPlane.load_state(workdir).stop()
        print("control plane stopped")
    else:
        print("no control plane was running")
    return 0


def cluster_kubeconfig() -> int:
    plane = _running_plane()
    if not plane:
        print("no control plane is running: jm-dev cluster up", file=sys.stderr)
        return 1
    print(plane.kubeconfig)
    return 0


def cluster_status() -> int:
    plane = _running_plane()
    print(f"running at {plane.server}" if plane else "not running")
    return 0 if plane else 1


def _running_plane() -> ControlPlane | None:
    state = state_dir() / "state.json"
    if not state.exists():
        return None
    plane = ControlPlane.load_state(state_dir())
    return plane if plane.running() else None


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="jm-dev", description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)
    cluster = commands.add_parser("cluster", help="the local Kubernetes control plane")
    cluster.add_argument("action", choices=["up", "down", "kubeconfig", "status"])
    demo = commands.add_parser("demo", help="run the product end to end on a local control plane")
    demo.add_argument("--keep", action="store_true", help="leave the control plane running")
    commands.add_parser(
        "manifests",
        help="regenerate the chart's dashboards and node rules from the builders, then "
        "manifests/jewelry-monitoring.yaml from the Helm chart",
    )
    commands.add_parser(
        "images", help="build the operator, shop and exporter images (see devkit.images)"
    )
    commands.add_parser("bench", help="measure the operator (see devkit.bench; --help there)")
    arguments = sys.argv[1:] if argv is None else argv
    if arguments[:1] == ["bench"]:  # its options are its own
        from devkit.bench import main as bench_main

        return bench_main(arguments[1:])
    args = parser.parse_args(arguments)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")

    if args.command == "cluster":
        action = {
            "up": cluster_up,
            "down": cluster_down,
            "kubeconfig": cluster_kubeconfig,
            "status": cluster_status,
        }[args.action]
        return action()
    if args.command == "images":
        from devkit.images import main as images_main

        return images_main()
    if args.command == "manifests":
        from devkit.manifests import (
            write_chart_dashboards,
            write_chart_node_rules,
            write_release_manifest,
        )

        for path in [*write_chart_dashboards(), write_chart_node_rules()]:
            print(f"wrote {path}")
        print(f"wrote {write_release_manifest()}")
        return 0
    from devkit.demo import run_demo

    return run_demo(keep=args.keep)


if __name__ == "__main__":
    sys.exit(main())
