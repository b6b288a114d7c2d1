"""The one module that talks to the Kubernetes API.

Everything above it works with plain dicts and ``KubeError``; this keeps the reconciler
testable and lets import-linter guarantee that builders never do I/O. Writes are server-side
apply with our field manager; reads are plain GETs and LISTs.
"""

from __future__ import annotations

import contextlib
import datetime
import json
import logging
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from kubernetes import client, config
from kubernetes.client.rest import ApiException

from jewelry_monitoring import metrics

FIELD_MANAGER = "jewelry-monitoring"
Obj = dict[str, Any]
log = logging.getLogger(__name__)


class KubeError(Exception):
    """An API error, reduced to what callers decide on."""

    def __init__(self, status: int, reason: str, message: str) -> None:
        super().__init__(f"{status} {reason}: {message}")
        self.status = status
        self.reason = reason
        self.message = message


@dataclass(frozen=True)
class Resource:
    """Where a kind lives in the REST API."""

    api_version: str
    plural: str
    namespaced: bool = True

    def path(self, namespace: str | None = None, name: str | None = None) -> str:
        prefix = "/api/v1" if self.api_version == "v1" else f"/apis/{self.api_version}"
        parts = [prefix]
        if self.namespaced and namespace:
            parts.append(f"namespaces/{namespace}")
        parts.append(self.plural)
        if name:
            parts.append(name)
        return "/".join(parts)


RESOURCES: dict[str, Resource] = {
    "Deployment": Resource("apps/v1", "deployments"),
    "DaemonSet": Resource("apps/v1", "daemonsets"),
    "Service": Resource("v1", "services"),
    "ConfigMap": Resource("v1", "configmaps"),
    "Secret": Resource("v1", "secrets"),
    "Event": Resource("v1", "events"),
    "Namespace": Resource("v1", "namespaces", namespaced=False),
    "ServiceMonitor": Resource("monitoring.coreos.com/v1", "servicemonitors"),
    "PrometheusRule": Resource("monitoring.coreos.com/v1", "prometheusrules"),
    "Prometheus": Resource("monitoring.coreos.com/v1", "prometheuses"),
    "CustomResourceDefinition": Resource(
        "apiextensions.k8s.io/v1", "customresourcedefinitions", namespaced=False
    ),
    "JewelryMonitoring": Resource("monitoring.jewelry.io/v1alpha1", "jewelrymonitorings"),
    "Lease": Resource("coordination.k8s.io/v1", "leases"),
}
_COLLECTIONS = {resource.plural for resource in RESOURCES.values()}
_VERBS = {"GET": "get", "POST": "create", "PUT": "update", "PATCH": "patch", "DELETE": "delete"}


def _always_may_write() -> bool:
    return True


def load_api_client() -> client.ApiClient:
    """In-cluster credentials when running in a pod, else the kubeconfig ($KUBECONFIG)."""
    configuration = client.Configuration()
    try:
        config.load_incluster_config(client_configuration=configuration)
    except config.ConfigException:
        config.load_kube_config(client_configuration=configuration)
    return client.ApiClient(configuration)


class Kube:
    """Typed-dict access to the few resources the operator reads and writes."""

    def __init__(
        self,
        api: client.ApiClient,
        component: str = FIELD_MANAGER,
        may_write: Callable[[], bool] = _always_may_write,
        request_timeout: float | None = None,
    ) -> None:
        """``may_write`` is asked before every write: with leader election, it is the fence
        that keeps a replica that no longer holds the Lease from writing anything."""
        self._api = api
        self._component = component
        self._may_write = may_write
        self._request_timeout = request_timeout

    def _call(
        self,
        method: str,
        path: str,
        body: Any = None,
        query: list[tuple[str, str]] | None = None,
        content_type: str = "application/json",
    ) -> Any:
        """One request: fenced if it writes, timed and counted by verb."""
        verb = _VERBS[method]
        if method == "GET" and path.rsplit("/", 1)[-1] in _COLLECTIONS:
            verb = "list"
        if verb not in ("get", "list") and not self._may_write():
            raise KubeError(0, "NotLeader", f"{verb} {path}: this replica does not hold the lease")
        with metrics.api_request(verb):
            return self._request(method, path, body, query, content_type)

    def _request(
        self,
        method: str,
        path: str,
        body: Any,
        query: list[tuple[str, str]] | None,
        content_type: str,
    ) -> Any:
        try:
            return self._api.call_api(
                path,
                method,
                query_params=query or [],
                header_params={"Accept": "application/json", "Content-Type": content_type},
                body=body,
                response_type="object",
                auth_settings=["BearerToken"],
                _return_http_data_only=True,
                _preload_content=True,
                _request_timeout=self._request_timeout,
            )
        except ApiException as error:
            raise _kube_error(error) from None

    def get(self, kind: str, namespace: str | None, name: str) -> Obj | None:
        try:
            result: Obj = self._call("GET", RESOURCES[kind].path(namespace, name))
        except KubeError as error:
            if error.status == 404:
                return None
            raise
        return result

    def list(self, kind: str, namespace: str | None = None, label_selector: str = "") -> list[Obj]:
        query = [("labelSelector", label_selector)] if label_selector else []
        result = self._call("GET", RESOURCES[kind].path(namespace), query=query)
        items: list[Obj] = result.get("items", [])
        for item in items:  # list items omit these; give back whole objects, as GET does
            item.setdefault("apiVersion", result.get("apiVersion", RESOURCES[kind].api_version))
            item.setdefault("kind", kind)
        return items

    def apply(self, obj: Obj) -> Obj:
        """Server-side apply with our field manager, taking fields back from hand edits."""
        meta = obj["metadata"]
        path = RESOURCES[obj["kind"]].path(meta.get("namespace"), meta["name"])
        query = [("fieldManager", FIELD_MANAGER), ("force", "true")]
        result: Obj = self._call(
            "PATCH", path, body=obj, query=query, content_type="application/apply-patch+yaml"
        )
        return result

    def create(self, obj: Obj) -> Obj:
        meta = obj["metadata"]
        path = RESOURCES[obj["kind"]].path(meta.get("namespace"))
        result: Obj = self._call("POST", path, body=obj)
        return result

    def replace(self, obj: Obj) -> Obj:
        """PUT the whole object; its resourceVersion makes a concurrent change fail (409)."""
        meta = obj["metadata"]
        path = RESOURCES[obj["kind"]].path(meta.get("namespace"), meta["name"])
        result: Obj = self._call("PUT", path, body=obj)
        return result

    def delete(self, obj: Obj) -> None:
        """Delete exactly this object (UID precondition), letting its dependents be collected."""
        meta = obj["metadata"]
        body = {
            "kind": "DeleteOptions",
            "apiVersion": "v1",
            "propagationPolicy": "Background",
            "preconditions": {"uid": meta["uid"]},
        }
        try:
            self._call(
                "DELETE", RESOURCES[obj["kind"]].path(meta.get("namespace"), meta["name"]), body
            )
        except KubeError as error:
            if error.status not in (404, 409):
                raise

    def patch_status(self, kind: str, namespace: str, name: str, status: Obj) -> None:
        path = RESOURCES[kind].path(namespace, name) + "/status"
        self._call(
            "PATCH", path, body={"status": status}, content_type="application/merge-patch+json"
        )

    def event(self, involved: Obj, event_type: str, reason: str, message: str) -> None:
        """Record a core/v1 Event on ``involved`` (best effort: events must never fail a run)."""
        meta = involved["metadata"]
        now = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        event = {
            "apiVersion": "v1",
            "kind": "Event",
            "metadata": {
                "name": f"{meta['name']}.{uuid.uuid4().hex[:12]}",
                "namespace": meta["namespace"],
            },
            "involvedObject": {
                "apiVersion": involved["apiVersion"],
                "kind": involved["kind"],
                "name": meta["name"],
                "namespace": meta["namespace"],
                "uid": meta["uid"],
            },
            "type": event_type,
            "reason": reason,
            "message": message[:1024],
            "source": {"component": self._component},
            "firstTimestamp": now,
            "lastTimestamp": now,
            "count": 1,
        }
        try:
            self._call("POST", RESOURCES["Event"].path(meta["namespace"]), body=event)
        except KubeError as error:
            log.warning("could not record event %s on %s: %s", reason, meta["name"], error)

    def crd_established(self, name: str) -> bool:
        crd = self.get("CustomResourceDefinition", None, name)
        if crd is None:
            return False
        return any(
            c.get("type") == "Established" and c.get("status") == "True"
            for c in crd.get("status", {}).get("conditions", [])
        )


def _kube_error(error: ApiException) -> KubeError:
    message = error.reason or ""
    with contextlib.suppress(ValueError, AttributeError):
        message = json.loads(error.body or "{}").get("message", message)
    return KubeError(int(error.status or 0), str(error.reason or ""), str(message))
