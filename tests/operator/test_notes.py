"""Every kubectl command the chart's NOTES print selects what the NOTES say it does.

The NOTES are rendered by the real ``helm install --dry-run``; each command is read back and
checked against the real API server, where the operator (under the chart's RBAC) has made a
JewelryMonitoring's children. No kubectl here: the commands are parsed and their selectors
run with the Python client, resolving resource names through the server's discovery.
"""

from __future__ import annotations

import shlex
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client, dynamic

from devkit.cluster import ControlPlane
from devkit.crs import get_cr, wait_condition
from devkit.operator_process import REPO, OperatorProcess, render_chart, render_notes

pytestmark = pytest.mark.cluster

# Another release than the running operator's: a dry-run install refuses to adopt
# the objects the operator fixture made from the same chart.
RELEASE, RELEASE_NAMESPACE = "notes", "jm-notes"


def kubectl_commands(text: str) -> list[list[str]]:
    """The kubectl command lines of the NOTES (continuation lines joined), as argv."""
    joined = text.replace("\\\n", " ")
    return [
        shlex.split(line.strip())
        for line in joined.splitlines()
        if line.strip().startswith("kubectl ")
    ]


def _option(argv: list[str], *names: str) -> str | None:
    for index, word in enumerate(argv):
        if word in names:
            return argv[index + 1]
    return None


def _resource(api: client.ApiClient, name: str, discovery_cache: Path) -> Any:
    """A resource type by plural, singular or short name, as kubectl resolves it.

    The discovery cache goes to the test's own directory: by default the client leaves an
    ``osrcp-*.json`` file in the system temp dir for good."""
    found = [
        resource
        for resource in dynamic.DynamicClient(
            api, cache_file=str(discovery_cache)
        ).resources.search()
        if resource.name
        and "/" not in resource.name  # not a subresource
        and resource.preferred
        and name in (resource.name, resource.singular_name, *(resource.short_names or []))
    ]
    assert found, f"no resource type {name!r} on the API server"
    return found[0]


def test_every_notes_command_selects_what_it_says(
    control_plane: ControlPlane,
    operator: OperatorProcess,
    admin_api: client.ApiClient,
    namespace: str,
    create_cr: Callable[..., dict[str, Any]],
    tmp_path: Path,
) -> None:
    discovery_cache = tmp_path / "discovery.json"
    cr = create_cr(
        {"app": {"podSelector": {"app": "shop"}}, "exporters": {"redis": {"enabled": True}}}
    )
    name = cr["metadata"]["name"]
    wait_condition(admin_api, namespace, name, "Ready", "True")
    children = {
        (c["kind"], c["name"]) for c in get_cr(admin_api, namespace, name)["status"]["children"]
    }
    assert {kind for kind, _ in children} >= {"Deployment", "Service", "ServiceMonitor"}

    values = {"replicas": 2}
    chart = render_chart(RELEASE, RELEASE_NAMESPACE, values)
    chart_names = {(o["kind"], o["metadata"]["name"]) for o in chart}
    (deployment,) = [o for o in chart if o["kind"] == "Deployment"]
    env = {
        e["name"]: e.get("value")
        for e in deployment["spec"]["template"]["spec"]["containers"][0]["env"]
    }
    commands = kubectl_commands(render_notes(control_plane, RELEASE, RELEASE_NAMESPACE, values))
    assert len(commands) >= 7, commands
    checked = []
    for argv in commands:
        words = [w.replace("<namespace>", namespace).replace("<name>", name) for w in argv[1:]]
        space = _option(words, "-n", "--namespace")
        verb = next(w for w in words if not w.startswith("-") and w != space)
        args = [w for w in words[words.index(verb) + 1 :] if not w.startswith("-")]
        selector = _option(words, "-l", "--selector")
        if selector:
            args.remove(selector)
        if verb in ("rollout", "logs"):
            target = args[-1]
            kind, _, object_name = target.partition("/")
            assert kind == "deployment" and ("Deployment", object_name) in chart_names, argv
            assert space == RELEASE_NAMESPACE
        elif verb == "apply":
            assert (REPO / "manifests" / _option(words, "-f")).is_file(), argv
        elif verb == "get" and args[0] == "lease":
            assert space == RELEASE_NAMESPACE and args[1] == env["JM_LEASE_NAME"], argv
        elif verb in ("get", "describe") and not selector:
            resource = _resource(admin_api, args[0], discovery_cache)
            assert resource.kind == "JewelryMonitoring", argv
            if len(args) > 1:
                resource.get(name=args[1], namespace=space)
            else:
                listed = resource.get(namespace=None if "--all-namespaces" in words else space)
                assert name in {item.metadata.name for item in listed.items}
        elif verb == "get":
            # "see what it created": every child of the CR, and nothing else.
            selected = set()
            for plural in args[0].split(","):
                resource = _resource(admin_api, plural, discovery_cache)
                listed = resource.get(namespace=space, label_selector=selector)
                selected |= {(resource.kind, item.metadata.name) for item in listed.items}
            assert selected == children, (argv, selected ^ children)
        else:
            raise AssertionError(f"a NOTES command this test does not understand: {argv}")
        checked.append(verb)
    print(f"checked {len(checked)} NOTES commands: {checked}")
