"""`jm-dev`: the developer's command for the local control plane and the demo.

jm-dev cluster up          start etcd + kube-apiserver + kube-controller-manager, detached,
                           and a node (devkit.node) unless this host cannot run one
jm-dev cluster load TAR    import a docker-archive image tarball into the node
jm-dev cluster kubeconfig  print the admin kubeconfig path of the running plane
jm-dev cluster status      say whether it runs
jm-dev cluster down        stop it (node first) and remove every trace
jm-dev demo                the whole product on the local plane (see devkit.demo)
jm-dev demo --context NAME --yes-really-write-to-this-cluster
                           only the missing CRDs and namespaces, on a cluster you name
jm-dev manifests           regenerate the chart's CRD and its reference, dashboards, alert
                           catalogue and values table, and manifests/jewelry-monitoring.yaml
jm-dev images              build (if changed) every image we deploy; list their tarballs
jm-dev bench [--short]     operator latency (create -> Ready) and API quietness

Only the demo can write to a cluster other than one jm-dev started itself, and only to one
named with --context: $KUBECONFIG alone is never enough, as it may point at production. A
context other than the running `jm-dev cluster up` plane also needs the confirmation flag.

SIGTERM and SIGHUP (`timeout`, CI cancellation, a closed terminal) stop every command like
Ctrl-C does: the control plane and operator it started are stopped and their files removed
(see devkit.stopping).
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import os
import sys
import time
from pathlib import Path

from kubernetes import client
from kubernetes.config import ConfigException

from devkit.cluster import ControlPlane
from devkit.node import NODE_NAME, Node, NodeUnavailable, why_no_node
from devkit.stopping import Stopped, shielded, stop_on_signals
from devkit.toolchain import cache_dir

CONFIRM_FLAG = "--yes-really-write-to-this-cluster"


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
        _stop(ControlPlane.load_state(workdir))
    workdir.mkdir(parents=True, exist_ok=True)
    plane = ControlPlane(workdir=workdir)
    try:
        plane.start()
        plane.save_state()
        print(f"control plane up at {plane.server}")
        _start_node(plane)
    except BaseException:  # a stop signal included: nothing may outlive an unfinished start
        with shielded():
            _stop(plane)
        raise
    print(f"  export KUBECONFIG={plane.kubeconfig}")
    print("  kubectl get namespaces")
    print("  jm-dev cluster down   # stops it and removes its files")
    return 0


def _start_node(plane: ControlPlane) -> None:
    """Add the node, or say why not: the control plane alone still serves most work."""
    reason = why_no_node()
    if reason is None:
        started = time.monotonic()
        try:
            Node.for_plane(plane).start()
        except (NodeUnavailable, RuntimeError, TimeoutError) as error:
            reason = str(error)
        else:
            print(f"node {NODE_NAME} Ready in {time.monotonic() - started:.1f} s: pods run")
            print("  jm-dev cluster load IMAGE.tar   # images are loaded, never pulled")
            return
    print(f"no node ({reason}): continuing without one, pods stay Pending")


def _node_of(plane: ControlPlane) -> Node | None:
    node_dir = Node.for_plane(plane).workdir
    return Node.load_state(plane, node_dir) if (node_dir / "state.json").exists() else None


def _stop(plane: ControlPlane) -> None:
    node = _node_of(plane)
    if node:
        node.stop()
    plane.stop()


def cluster_down() -> int:
    workdir = state_dir()
    if (workdir / "state.json").exists():
        _stop(ControlPlane.load_state(workdir))
        print("control plane stopped")
    else:
        print("no control plane was running")
    return 0


def cluster_load(archive: Path) -> int:
    plane = _running_plane()
    node = _node_of(plane) if plane else None
    if not node or not node.running():
        print("no node is running: jm-dev cluster up", file=sys.stderr)
        return 1
    try:
        node.load_image(archive)
    except RuntimeError as error:  # not a docker-archive, or unreadable
        print(error, file=sys.stderr)
        return 1
    print(f"loaded {archive}; the node has: {', '.join(node.images())}")
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
    node = _node_of(plane) if plane else None
    if plane:
        print(f"node {NODE_NAME} running" if node and node.running() else "no node")
    return 0 if plane else 1


def _running_plane() -> ControlPlane | None:
    state = state_dir() / "state.json"
    if not state.exists():
        return None
    plane = ControlPlane.load_state(state_dir())
    return plane if plane.running() else None


class Refused(Exception):
    """The command would write to a cluster the user did not clearly choose."""


def named_cluster_api(context: str, confirmed: bool) -> client.ApiClient:
    """A client for kubeconfig context ``context``, if the user may write to it.

    Local means the plane of `jm-dev cluster up`; any other needs ``confirmed``.
    """
    from devkit.kubetools import api_client

    try:
        api = api_client(None, context)
    except (ConfigException, OSError) as error:
        raise Refused(f"no usable kubeconfig context {context!r}: {error}") from error
    server = api.configuration.host
    local = _running_plane()
    if not confirmed and not (local and local.server == server):
        raise Refused(
            f"context {context!r} is the cluster at {server}, not the local plane of "
            f"`jm-dev cluster up`. jm-dev would install missing CRDs and namespaces there. "
            f"If you mean it, add {CONFIRM_FLAG}."
        )
    return api


def demo(keep: bool, context: str | None, confirmed: bool) -> int:
    from devkit.demo import prepare_named_cluster, run_demo

    if context is None:
        if confirmed:
            raise Refused(f"{CONFIRM_FLAG} goes with --context NAME")
        configured = os.environ.get("KUBECONFIG")
        if configured:
            raise Refused(
                f"KUBECONFIG is set ({configured}), but the demo writes to a cluster only "
                f"when you name it. Unset KUBECONFIG to run the demo on its own embedded "
                f"control plane, or name the cluster: --context NAME {CONFIRM_FLAG}"
            )
        return run_demo(keep=keep)
    if keep:
        raise Refused("--keep is for the embedded control plane; a named cluster stays anyway")
    api = named_cluster_api(context, confirmed)
    return prepare_named_cluster(context, api)


def main(argv: list[str] | None = None) -> int:
    try:
        with stop_on_signals():
            return _dispatch(argv)
    except Refused as refusal:
        print(f"jm-dev: refused: {refusal}", file=sys.stderr)
        return 2
    except Stopped as stop:
        with contextlib.suppress(OSError):
            print(f"jm-dev: stopped by {stop}; cleaned up", file=sys.stderr)
        return 128 + stop.signum


def _dispatch(argv: list[str] | None) -> int:
    parser = argparse.ArgumentParser(prog="jm-dev", description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)
    cluster = commands.add_parser("cluster", help="the local Kubernetes control plane")
    cluster.add_argument("action", choices=["up", "down", "kubeconfig", "status", "load"])
    cluster.add_argument("archive", nargs="?", type=Path, help="for load: a docker-archive tar")
    demo_parser = commands.add_parser(
        "demo", help="run the product end to end on a local control plane"
    )
    demo_parser.add_argument("--keep", action="store_true", help="leave the control plane running")
    demo_parser.add_argument(
        "--context",
        metavar="NAME",
        help="a kubeconfig context to install the missing CRDs into, instead of the demo",
    )
    demo_parser.add_argument(
        CONFIRM_FLAG,
        dest="confirmed",
        action="store_true",
        help="confirm that --context names a cluster jm-dev may write to",
    )
    commands.add_parser(
        "manifests",
        help="regenerate the chart's dashboards and node rules from the builders, then "
        "manifests/jewelry-monitoring.yaml from the Helm chart",
    )
    commands.add_parser(
        "images", help="build the operator, shop and exporter images (see devkit.images)"
    )
    commands.add_parser("bench", help="measure the operator (see devkit.bench; --help there)")
    workflow = commands.add_parser(
        "workflow", help="run a GitHub workflow's steps here (see devkit.workflow_local)"
    )
    workflow.add_argument("name", choices=["e2e-kind"])
    arguments = sys.argv[1:] if argv is None else argv
    if arguments[:1] == ["bench"]:  # its options are its own
        from devkit.bench import main as bench_main

        return bench_main(arguments[1:])
    args = parser.parse_args(arguments)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")

    if args.command == "cluster":
        if args.action == "load":
            if not args.archive:
                parser.error("cluster load needs an image tarball")
            return cluster_load(args.archive)
        action = {
            "up": cluster_up,
            "down": cluster_down,
            "kubeconfig": cluster_kubeconfig,
            "status": cluster_status,
        }[args.action]
        return action()
    if args.command == "workflow":
        from devkit.workflow_local import main as workflow_main

        return workflow_main()
    if args.command == "images":
        from devkit.images import main as images_main

        return images_main()
    if args.command == "manifests":
        from devkit.alert_catalogue import write_alert_catalogue
        from devkit.chart_readme import write_chart_readme
        from devkit.crd_reference import write_crd_reference
        from devkit.manifests import (
            write_chart_crd,
            write_chart_dashboards,
            write_chart_node_rules,
            write_release_manifest,
        )

        written = [write_chart_crd(), *write_chart_dashboards(), write_chart_node_rules()]
        for path in [
            *written,
            write_crd_reference(),
            write_alert_catalogue(),
            write_chart_readme(),
        ]:
            print(f"wrote {path}")
        print(f"wrote {write_release_manifest()}")
        return 0
    return demo(args.keep, args.context, args.confirmed)


if __name__ == "__main__":
    sys.exit(main())
