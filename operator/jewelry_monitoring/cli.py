"""`jewelry-monitoring`: run the operator, render a CR offline, print the CRD.

jewelry-monitoring run [--namespace NS ...] [--leader-elect]
jewelry-monitoring render -f cr.yaml [--uid UID] [--without-prometheus-operator]
jewelry-monitoring crd
jewelry-monitoring doctor [NAME] [-n NS] [--context CTX] [--prometheus-url URL] [-o json]
                          [--fire-drill --alertmanager-url URL [--yes]]
jewelry-monitoring fire-drill NAME [-n NS] [--context CTX] --alertmanager-url URL [--yes]
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path
from typing import Any

import yaml

from jewelry_monitoring import config as operator_config
from jewelry_monitoring.builders.common import Owner
from jewelry_monitoring.builders.desired import MONITORING_KINDS, desired_objects
from jewelry_monitoring.builders.rules import KNOWN_ALERTS
from jewelry_monitoring.crd import build_crd
from jewelry_monitoring.spec import KIND, JewelryMonitoringSpec, semantic_problems

PLACEHOLDER_UID = "00000000-0000-0000-0000-000000000000"


class _BlockDumper(yaml.SafeDumper):
    """Plain YAML without anchors: shared sub-objects are written out in full each time."""

    def ignore_aliases(self, data: Any) -> bool:
        return True


def dump_yaml(documents: list[dict[str, Any]]) -> str:
    return yaml.dump_all(documents, Dumper=_BlockDumper, sort_keys=False, width=100)


def render(cr: dict[str, Any], uid: str, with_prometheus_operator: bool) -> list[dict[str, Any]]:
    """Exactly the objects the operator would apply for ``cr`` (same builder code)."""
    if cr.get("kind") != KIND:
        raise ValueError(f"expected kind {KIND}, got {cr.get('kind')!r}")
    spec = JewelryMonitoringSpec.model_validate(cr.get("spec") or {})
    problems = semantic_problems(spec, KNOWN_ALERTS)
    if problems:
        raise ValueError("invalid spec: " + "; ".join(problems))
    meta = cr["metadata"]
    owner = Owner(name=meta["name"], namespace=meta.get("namespace", "default"), uid=uid, spec=spec)
    kinds = frozenset(MONITORING_KINDS) if with_prometheus_operator else frozenset()
    return desired_objects(owner, kinds)


def _run(args: argparse.Namespace) -> int:
    import kopf

    from jewelry_monitoring import handlers, memory, metrics  # noqa: F401  (registers them)

    memory.limit_arenas()  # before the metrics server's and kopf's threads

    try:
        settings = operator_config.load(args.namespace, args.leader_elect or None)
    except operator_config.ConfigError as error:
        print(f"configuration error: {error}", file=sys.stderr)
        return 2
    logging.basicConfig(
        level=settings.log_level, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    if settings.metrics_port:
        metrics.serve(settings.metrics_port)
    kopf.run(
        clusterwide=settings.clusterwide,
        namespaces=settings.namespaces,
        standalone=True,  # kopf's peering would pause only kopf's watchers: see handlers.py
        liveness_endpoint=settings.liveness_endpoint or None,
        memo=kopf.Memo(config=settings),
    )
    return 0


def _user_cluster(args: argparse.Namespace) -> tuple[Any, str]:
    """A client of the cluster of the user's kubeconfig (``--context``), and the namespace
    (``-n``, else the context's)."""
    from jewelry_monitoring.kube import Kube, kubeconfig_api_client, kubeconfig_namespace

    api = kubeconfig_api_client(args.context)
    return Kube(api), args.namespace or kubeconfig_namespace(args.context)


def _doctor(args: argparse.Namespace) -> int:
    from jewelry_monitoring import doctor
    from jewelry_monitoring.kube import KubeError

    try:
        kube, namespace = _user_cluster(args)
        checks = doctor.Doctor(kube, namespace, args.prometheus_url).run(args.name)
        if args.fire_drill:
            checks += _drill_checks(kube, namespace, args)
    except (KubeError, OSError, ValueError) as error:  # no kubeconfig, cluster unreachable
        print(f"doctor: cannot read the cluster: {error}", file=sys.stderr)
        return 2
    sys.stdout.write(doctor.as_json(checks) if args.output == "json" else doctor.human(checks))
    return doctor.exit_code(checks)


def _drill_checks(kube: Any, namespace: str, args: argparse.Namespace) -> list[Any]:
    """doctor --fire-drill: the drill of the named resource, one check per receiver."""
    from jewelry_monitoring import doctor, drillplan, firedrill

    name = args.name
    cr = kube.get(KIND, namespace, name) if name else None
    if cr is None:
        return [doctor.Check("fire drill", doctor.FAIL, "--fire-drill needs a NAME that exists")]
    try:
        report = firedrill.drill(kube, cr, args.alertmanager_url, args.yes, args.timeout)
    except (firedrill.DrillError, firedrill.AlertmanagerError) as error:
        return [doctor.Check(f"{name}: fire drill", doctor.FAIL, str(error))]
    status = {drillplan.SENT: doctor.OK, drillplan.DISCARDS: doctor.OK}
    return [doctor.Check(f"{name}: fire drill", doctor.OK, report.header())] + [
        doctor.Check(
            f"{name}: fire drill {outcome.receiver}",
            status.get(outcome.verdict, doctor.SKIP if outcome.passed else doctor.FAIL),
            f"{outcome.verdict}: {outcome.alert}: {outcome.detail}",
        )
        for outcome in report.outcomes
    ]


def _fire_drill(args: argparse.Namespace) -> int:
    from jewelry_monitoring import firedrill
    from jewelry_monitoring.kube import KubeError

    try:
        kube, namespace = _user_cluster(args)
        cr = kube.get(KIND, namespace, args.name)
        if cr is None:
            print(f"fire-drill: no JewelryMonitoring {namespace}/{args.name}", file=sys.stderr)
            return 2
        report = firedrill.drill(kube, cr, args.alertmanager_url, args.yes, args.timeout)
    except (KubeError, OSError, ValueError) as error:  # no kubeconfig, cluster unreachable
        print(f"fire-drill: cannot read the cluster: {error}", file=sys.stderr)
        return 2
    except (firedrill.DrillError, firedrill.AlertmanagerError) as error:
        print(f"fire-drill: {error}", file=sys.stderr)
        return 2
    if args.output == "json":
        sys.stdout.write(firedrill.as_json(report))
    else:
        sys.stdout.write(report.header() + "\n" + firedrill.human(report.outcomes))
    return firedrill.exit_code(report)


def _drill_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--alertmanager-url",
        help="HTTP API of the Alertmanager that selects the resource's AlertmanagerConfig "
        "(e.g. after kubectl port-forward svc/alertmanager-operated 9093)",
    )
    parser.add_argument(
        "--yes",
        action="store_true",
        help="really send the drill's alerts: its receivers get notified (without it: the plan)",
    )
    parser.add_argument(
        "--timeout", type=float, default=600.0, help="seconds the whole drill may take"
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="jewelry-monitoring", description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)
    run = commands.add_parser("run", help="run the operator")
    run.add_argument("--namespace", action="append", help="watch only this namespace (repeat)")
    run.add_argument(
        "--leader-elect",
        action="store_true",
        help="only the holder of a Lease writes (for several replicas; also JM_LEADER_ELECTION)",
    )
    show = commands.add_parser("render", help="print the objects a CR would create")
    show.add_argument(
        "-f", "--file", required=True, type=Path, help="JewelryMonitoring YAML ('-' = stdin)"
    )
    show.add_argument(
        "--uid", default=PLACEHOLDER_UID, help="the CR's uid, for exact ownerReferences"
    )
    show.add_argument(
        "--without-prometheus-operator",
        action="store_true",
        help="as on a cluster without prometheus-operator's CRDs",
    )
    commands.add_parser("crd", help="print the JewelryMonitoring CRD")
    doctor = commands.add_parser(
        "doctor", help="check why metrics are missing: CRDs, operator, resource, Prometheus"
    )
    doctor.add_argument("name", nargs="?", help="the JewelryMonitoring (default: all in NS)")
    doctor.add_argument("-n", "--namespace", help="default: the kubeconfig context's")
    doctor.add_argument("--context", help="kubeconfig context (default: the current one)")
    doctor.add_argument(
        "--prometheus-url",
        help="Prometheus HTTP API to read targets and rules from (default: spec.prometheus.url)",
    )
    doctor.add_argument("-o", "--output", choices=("human", "json"), default="human")
    doctor.add_argument(
        "--fire-drill",
        action="store_true",
        help="also run the fire drill of NAME (see the fire-drill command)",
    )
    _drill_options(doctor)
    drill = commands.add_parser(
        "fire-drill",
        help="send a synthetic alert through every route of a resource's routing and report, "
        "per receiver, whether Alertmanager delivered it; resolved at the end",
    )
    drill.add_argument("name", help="the JewelryMonitoring")
    drill.add_argument("-n", "--namespace", help="default: the kubeconfig context's")
    drill.add_argument("--context", help="kubeconfig context (default: the current one)")
    drill.add_argument("-o", "--output", choices=("human", "json"), default="human")
    _drill_options(drill)
    args = parser.parse_args(argv)

    if args.command == "run":
        return _run(args)
    if args.command == "doctor":
        return _doctor(args)
    if args.command == "fire-drill":
        return _fire_drill(args)
    if args.command == "crd":
        sys.stdout.write(dump_yaml([build_crd()]))
        return 0
    text = sys.stdin.read() if str(args.file) == "-" else args.file.read_text()
    try:
        objects = render(yaml.safe_load(text), args.uid, not args.without_prometheus_operator)
    except ValueError as error:  # pydantic's ValidationError is a ValueError
        print(f"error: {error}", file=sys.stderr)
        return 1
    sys.stdout.write(dump_yaml(objects))
    return 0


if __name__ == "__main__":
    sys.exit(main())
