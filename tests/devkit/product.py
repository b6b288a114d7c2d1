"""The product in pods, on a cluster backend: what the e2e scenarios deploy and where.

A backend is a cluster that runs pods plus a way to get our images onto its nodes:

* ``node`` (the default): the local node (devkit.node) on its own control plane; images
  are docker-archive tarballs (devkit.images) imported into its containerd.
* ``kind``: a kind cluster (needs a Docker engine); the same tarballs through
  ``kind load image-archive``.
* ``kubeconfig``: an existing cluster, ``JM_E2E_KUBECONFIG``; nothing is loaded, so its
  nodes must already have the ``localhost/jm/...`` images (pull policy is Never).

Choose with ``JM_E2E_BACKEND``. The scenarios themselves only use the backend's kubeconfig,
plus its audit log where it has one (the local control plane).
"""

from __future__ import annotations

import copy
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from devkit.kubetools import load_yaml_documents
from devkit.manifests import MANIFESTS, REPO

BACKENDS = ("node", "kind", "kubeconfig")
# The dev stack's files in the order they apply (the namespace and Secrets first).
DEV_MANIFESTS = ("namespace.yaml", "postgres.yaml", "redis.yaml", "app.yaml")
NGINX_TEMPLATE = REPO / "app" / "deploy" / "nginx.conf.template"
# Our image of each exporter of the CR (devkit.images short names).
EXPORTER_IMAGES = {
    "postgres": "postgres-exporter",
    "redis": "redis-exporter",
    "nginx": "nginx-prometheus-exporter",
    "celery": "celery-exporter",
}


def backend_name() -> str:
    name = os.environ.get("JM_E2E_BACKEND", "node")
    if name not in BACKENDS:
        raise ValueError(f"JM_E2E_BACKEND={name!r}: choose one of {', '.join(BACKENDS)}")
    return name


@dataclass(frozen=True)
class Backend:
    """Where the scenarios run: a kubeconfig, how an image tarball gets onto the nodes
    (None: the nodes must have it already), and the API server's audit log if we have it."""

    name: str
    kubeconfig: Path
    audit_log: Path | None = None
    load: Callable[[Path], None] | None = None

    def load_images(self, archives: list[Path]) -> None:
        load = self.load
        if load is None:
            return
        for archive in archives:
            load(archive)


def retag_images(objects: list[dict[str, Any]], images: Mapping[str, str]) -> list[dict[str, Any]]:
    """``objects`` with every container image whose repository is a key of ``images``
    replaced by its value, pulled never (the image is on the node). The files stay as
    users apply them (upstream images on kind); only what the e2e applies changes."""
    rewritten = copy.deepcopy(objects)
    for obj in rewritten:
        template = obj.get("spec", {}).get("template", {}).get("spec")
        if not template:
            continue
        for container in template.get("initContainers", []) + template["containers"]:
            repository = container["image"].rsplit(":", 1)[0]
            if repository in images:
                container["image"] = images[repository]
                container["imagePullPolicy"] = "Never"
    return rewritten


def dev_shop_objects() -> list[dict[str, Any]]:
    """manifests/dev plus the nginx template ConfigMap the Tiltfile makes, as Tilt deploys."""
    objects: list[dict[str, Any]] = []
    for name in DEV_MANIFESTS:
        objects += load_yaml_documents((MANIFESTS / "dev" / name).read_text())
    objects.append(
        {
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": {"name": "nginx-templates", "namespace": "jewelry-shop"},
            "data": {"default.conf.template": NGINX_TEMPLATE.read_text()},
        }
    )
    return objects
