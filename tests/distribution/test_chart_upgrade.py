"""`helm upgrade` upgrades the CRD: a field the new chart adds is kept by the API server.

Helm installs a chart's crds/ once and never upgrades them, so a CRD shipped there would keep
its first schema and the server would prune every field a later chart adds. This chart renders
the CRD from a template (with helm.sh/resource-policy: keep). Here, on a control plane of its
own, a chart whose CRD lacks one field (the current chart with the field removed, as a release
before the field would be) is installed, a CR using the field loses it, then the current chart
is upgraded onto it and the same field is kept. ``helm uninstall`` leaves the CRD and the CRs.
"""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from kubernetes import client

from devkit.cluster import ControlPlane
from devkit.crs import GROUP, PLURAL, VERSION, cr_body
from devkit.kubetools import api_client, wait_for
from devkit.manifests import CHART, CHART_CRDS
from devkit.toolchain import binary

pytestmark = pytest.mark.cluster

RELEASE, NAMESPACE, SHOP = "jm", "jm-system", "shop"
CRD_NAME = f"{PLURAL}.{GROUP}"
NEW_FIELD = "commonLabels"  # optional in spec: what the "previous" chart's CRD lacks
LABELS = {"team": "gems"}


@pytest.fixture
def plane(tmp_path: Path) -> Iterator[ControlPlane]:
    """A control plane of its own: the session's has our CRD applied without Helm."""
    own = ControlPlane.create(tmp_path).start()
    try:
        yield own
    finally:
        own.stop()


def chart_without_the_field(destination: Path) -> Path:
    """The current chart with ``NEW_FIELD`` removed from its CRD."""
    chart = destination / CHART.name
    shutil.copytree(CHART, chart)
    (crd_file,) = (chart / CHART_CRDS.relative_to(CHART)).glob("*.yaml")
    crd = yaml.safe_load(crd_file.read_text())
    (version,) = crd["spec"]["versions"]
    del version["schema"]["openAPIV3Schema"]["properties"]["spec"]["properties"][NEW_FIELD]
    crd_file.write_text(yaml.safe_dump(crd, sort_keys=False))
    return chart


def helm(plane: ControlPlane, *args: str) -> subprocess.CompletedProcess[str]:
    command = [str(binary("helm")), *args, "--kubeconfig", str(plane.kubeconfig)]
    return subprocess.run(
        [*command, "--namespace", NAMESPACE], capture_output=True, text=True, timeout=180
    )


def apply_labels(api: client.ApiClient, name: str) -> dict[str, Any]:
    """Set ``NEW_FIELD`` on the CR and return what the server stored."""
    custom = client.CustomObjectsApi(api)
    patch = {"spec": {NEW_FIELD: LABELS}}
    custom.patch_namespaced_custom_object(GROUP, VERSION, SHOP, PLURAL, name, patch)
    stored: dict[str, Any] = custom.get_namespaced_custom_object(GROUP, VERSION, SHOP, PLURAL, name)
    return stored


def test_upgrade_keeps_a_field_the_new_crd_adds(plane: ControlPlane, tmp_path: Path) -> None:
    api = api_client(plane.kubeconfig)
    installed = helm(
        plane, "install", RELEASE, str(chart_without_the_field(tmp_path)), "--create-namespace"
    )
    assert installed.returncode == 0, installed.stderr
    client.CoreV1Api(api).create_namespace(
        client.V1Namespace(metadata=client.V1ObjectMeta(name=SHOP))
    )
    client.CustomObjectsApi(api).create_namespaced_custom_object(
        GROUP, VERSION, SHOP, PLURAL, cr_body("before", {"app": {"podSelector": {"app": "x"}}})
    )
    assert NEW_FIELD not in apply_labels(api, "before")["spec"], "the old schema prunes it"

    # no --wait: this control plane runs no pods
    upgraded = helm(plane, "upgrade", RELEASE, str(CHART))
    assert upgraded.returncode == 0, upgraded.stderr

    # The server serves the new schema once it has processed the CRD's update.
    stored = wait_for(
        lambda: (cr := apply_labels(api, "before"))["spec"].get(NEW_FIELD) and cr,
        timeout=60,
        what=f"the upgraded CRD to keep spec.{NEW_FIELD}",
    )
    assert stored["spec"][NEW_FIELD] == LABELS
    crd = client.ApiextensionsV1Api(api).read_custom_resource_definition(CRD_NAME)
    assert crd.metadata.annotations["helm.sh/resource-policy"] == "keep"
    assert crd.metadata.annotations["meta.helm.sh/release-name"] == RELEASE

    uninstalled = helm(plane, "uninstall", RELEASE)
    assert uninstalled.returncode == 0, uninstalled.stderr
    assert f"{CRD_NAME}" in uninstalled.stdout + uninstalled.stderr  # "kept due to the policy"
    assert client.ApiextensionsV1Api(api).read_custom_resource_definition(CRD_NAME)
    kept = client.CustomObjectsApi(api).get_namespaced_custom_object(
        GROUP, VERSION, SHOP, PLURAL, "before"
    )
    assert kept["spec"][NEW_FIELD] == LABELS
