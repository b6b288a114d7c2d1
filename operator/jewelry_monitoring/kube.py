"""The one module that talks to the Kubernetes API.

Everything above it works with plain dicts and ``KubeError``; this keeps the reconciler
testable and lets import-linter guarantee that builders never do I/O. Writes are server-side
apply with our field manager; reads are plain GETs and LISTs. Every request has a timeout:
a half-open connection must fail the call, not block a worker forever.
"""

from __future__ import annotations

import contextlib
import datetime
import json
import logging
import math
import random
import ssl
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import urllib3

from jewelry_monitoring import kubeconfig, metrics
from jewelry_monitoring.fieldsets import FIELD_MANAGER

# A resourceVersion no object can have (etcd's revisions count up from 1 and never reach
# the largest int64): an apply that carries it as its precondition can only create.
NO_VERSION = str(2**63 - 1)
# (connect, read) seconds for one request; a LIST of a big namespace still fits in the read.
REQUEST_TIMEOUT = (5.0, 30.0)
# A watch asks the server to end it after this long, then resumes from where it was.
WATCH_SECONDS = 270
# Requests (other than watches) one client has in flight at once. The API server's priority
# and fairness answers 429 when a client's queue overflows: measured at 16 reconciles, each
# applying its children in parallel, hundreds of requests at once got 429 and their
# reconciles backed off for up to a minute.
MAX_IN_FLIGHT = 24
# Objects per page of a watch's list. The API server decodes every object of a page whole,
# even for PartialObjectMetadata: a page of 500 PrometheusRules (~70 KB of JSON each with
# their managed fields) took over REQUEST_TIMEOUT's 30 s at 1,100 resources, the restarted
# operator started reconciling before its lists were in, and read 2,322 children one by one.
LIST_PAGE = 100
# Pages of those lists decoded at once, across all watches. A just-started operator's watches
# (about 16: one per child kind and namespace) all list together, and each page is held
# decoded whole until it is reduced: at 1,100 resources their pages were 42.6 MiB of the
# restart's peak (issue 19's heap profile). Decoding is bound by the GIL anyway, so two at a
# time loses little.
LIST_PAGES_AT_ONCE = 2
# Connections kept open for reuse: the requests in flight plus the watches, which hold one
# each (one per child kind, Secrets, CRDs, Prometheus and Alertmanager resources,
# namespaces, EndpointSlices, per watched namespace). A request that finds none free opens
# one and closes it after: a TLS handshake each time.
POOL_SIZE = 64
# A 429 ("too many requests") is retried after a pause this many times before it fails.
RETRIES_ON_429 = 5
# Objects as PartialObjectMetadata: names and labels, never a Secret's data.
METADATA_ONLY = "application/json;as=PartialObjectMetadata{};g=meta.k8s.io;v=v1"
Obj = dict[str, Any]
Objs = list[Obj]  # inside Kube, "list" is its method
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
    "Service": Resource("v1", "services"),
    "ConfigMap": Resource("v1", "configmaps"),
    "NetworkPolicy": Resource("networking.k8s.io/v1", "networkpolicies"),
    "Secret": Resource("v1", "secrets"),
    "Event": Resource("v1", "events"),
    "Namespace": Resource("v1", "namespaces", namespaced=False),
    "ServiceMonitor": Resource("monitoring.coreos.com/v1", "servicemonitors"),
    "PrometheusRule": Resource("monitoring.coreos.com/v1", "prometheusrules"),
    "Prometheus": Resource("monitoring.coreos.com/v1", "prometheuses"),
    "AlertmanagerConfig": Resource("monitoring.coreos.com/v1alpha1", "alertmanagerconfigs"),
    "Alertmanager": Resource("monitoring.coreos.com/v1", "alertmanagers"),
    "CustomResourceDefinition": Resource(
        "apiextensions.k8s.io/v1", "customresourcedefinitions", namespaced=False
    ),
    "JewelryMonitoring": Resource("monitoring.jewelry.io/v1alpha1", "jewelrymonitorings"),
    "Lease": Resource("coordination.k8s.io/v1", "leases"),
    "EndpointSlice": Resource("discovery.k8s.io/v1", "endpointslices"),
    "Pod": Resource("v1", "pods"),
}
_COLLECTIONS = {resource.plural for resource in RESOURCES.values()}
_VERBS = {"GET": "get", "POST": "create", "PUT": "update", "PATCH": "patch", "DELETE": "delete"}


def _always_may_write() -> float:
    return math.inf


class ApiClient:
    """HTTP(S) to one API server with one set of credentials, over urllib3 (the operator's
    own thin client: the ``kubernetes`` package's models cost 51 MiB at import).

    Connections are pooled (one per request in flight) and rebuilt only when the TLS
    material changes; a token is read from ``credentials`` before each request (it re-reads
    token files and renews exec credentials itself). A 401 fetches the credentials anew and
    retries the request once: a rotated token or an expired exec credential."""

    def __init__(
        self, credentials: kubeconfig.CredentialSource, pool_size: int = POOL_SIZE
    ) -> None:
        self.credentials = credentials
        self._pool_size = pool_size
        self._lock = threading.Lock()
        self._pool: urllib3.PoolManager | None = None
        self._pool_tls: tuple[Any, ...] | None = None

    def _pool_for(self, credentials: kubeconfig.Credentials) -> urllib3.PoolManager:
        with self._lock:
            if self._pool is None or self._pool_tls != credentials.tls():
                if self._pool is not None:
                    self._pool.clear()
                options: dict[str, Any] = {"maxsize": self._pool_size, "block": False}
                if credentials.server.startswith("https:"):
                    options["ssl_context"] = _ssl_context(credentials)
                    if credentials.tls_server_name:
                        options["server_hostname"] = credentials.tls_server_name
                    if credentials.insecure:
                        options["cert_reqs"] = "CERT_NONE"
                        options["assert_hostname"] = False
                self._pool = urllib3.PoolManager(**options)
                self._pool_tls = credentials.tls()
            return self._pool

    def request(
        self,
        method: str,
        path: str,
        query: list[tuple[str, str]],
        body: bytes | None,
        headers: dict[str, str],
        timeout: tuple[float, float],
        stream: bool,
    ) -> urllib3.BaseHTTPResponse:
        """The response, whatever its status; a streamed one is left open for the caller."""
        for attempt in (1, 2):
            credentials = self.credentials.get()
            url = credentials.server + path + ("?" + urlencode(query) if query else "")
            sent = dict(headers)
            if credentials.token:
                sent["Authorization"] = f"Bearer {credentials.token}"
            response = self._pool_for(credentials).request(
                method,
                url,
                body=body,
                headers=sent,
                timeout=urllib3.Timeout(connect=timeout[0], read=timeout[1]),
                preload_content=not stream,
                retries=False,
                redirect=False,
            )
            if response.status != 401 or attempt == 2:
                return response
            response.drain_conn()
            response.release_conn()
            self.credentials.invalidate()
        raise AssertionError("unreachable")


def _ssl_context(credentials: kubeconfig.Credentials) -> ssl.SSLContext:
    """The server's CA (else the system's), and our client certificate if any. Python's ssl
    loads a certificate and key only from files: data is written to a private temporary
    file for the moment it is loaded."""
    context = ssl.create_default_context(cafile=credentials.ca_file, cadata=credentials.ca_data)
    if credentials.insecure:
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    cert, key = credentials.cert_file, credentials.key_file
    if credentials.cert_data or credentials.key_data:
        with tempfile.TemporaryDirectory() as directory:
            written = []
            for name, data, given in (
                ("tls.crt", credentials.cert_data, cert),
                ("tls.key", credentials.key_data, key),
            ):
                if data:
                    target = Path(directory) / name
                    target.touch(mode=0o600)
                    target.write_text(data)
                    written.append(str(target))
                else:
                    written.append(given or "")
            context.load_cert_chain(written[0], written[1] or None)
    elif cert:
        context.load_cert_chain(cert, key)
    return context


def load_api_client(context: str | None = None) -> ApiClient:
    """In-cluster credentials when running in a pod, else the kubeconfig ($KUBECONFIG)."""
    try:
        return ApiClient(kubeconfig.load(context, in_cluster_first=True))
    except (kubeconfig.ConfigError, OSError) as error:
        raise KubeError(0, "ConfigError", str(error)) from None


def kubeconfig_api_client(context: str | None = None) -> ApiClient:
    """A client for a CLI, as kubectl finds its cluster: the kubeconfig ($KUBECONFIG or
    ~/.kube/config), else in a pod its service account."""
    try:
        return ApiClient(kubeconfig.load(context, in_cluster_first=False))
    except (kubeconfig.ConfigError, OSError) as error:
        raise KubeError(0, "ConfigError", str(error)) from None


def kubeconfig_namespace(context: str | None = None) -> str:
    """The namespace of a kubeconfig context, as kubectl uses it (default: "default"); in a
    pod without a kubeconfig, the pod's."""
    try:
        return kubeconfig.namespace(context, in_cluster_first=False)
    except (kubeconfig.ConfigError, OSError) as error:
        raise KubeError(0, "ConfigError", str(error)) from None


class Kube:
    """Typed-dict access to the few resources the operator reads and writes."""

    def __init__(
        self,
        api: ApiClient,
        component: str = FIELD_MANAGER,
        timeout: tuple[float, float] = REQUEST_TIMEOUT,
        may_write: Callable[[], float] = _always_may_write,
    ) -> None:
        """``may_write`` is asked before every write: how many seconds a write sent now may
        take to land (0: none may be sent). With leader election it is the fence that keeps
        a replica that no longer holds the Lease from writing anything, and a write it sent
        from landing once another replica may have taken the Lease."""
        self._api = api
        self._component = component
        self._timeout = timeout
        self._may_write = may_write
        self._in_flight = threading.BoundedSemaphore(MAX_IN_FLIGHT)
        self._list_pages = threading.BoundedSemaphore(LIST_PAGES_AT_ONCE)
        self._writes = threading.Condition()
        self._writing = 0  # writes let through the fence and not answered yet

    @contextlib.contextmanager
    def _fenced(self, verb: str, path: str) -> Iterator[float]:
        """Let a write through only if ``may_write`` says so at the last moment, once it
        has a slot (MAX_IN_FLIGHT) and after any pause for a 429, and count it until it is
        answered: a leader that has closed its fence waits for these (``writes_settled``)
        before handing the Lease over, so that none lands after the next leader's first.
        Yields the seconds the request may take (infinite for a read)."""
        if verb in ("get", "list", "watch"):
            yield math.inf
            return
        with self._writes:
            left = self._may_write()
            left = math.floor(left * 1000) / 1000 if left < math.inf else left  # milliseconds
            if left <= 0:
                raise KubeError(
                    0, "NotLeader", f"{verb} {path}: this replica does not hold the lease"
                )
            self._writing += 1
        try:
            yield left
        finally:
            with self._writes:
                self._writing -= 1
                self._writes.notify_all()

    def writes_settled(self, timeout: float) -> bool:
        """Wait until every write let through the fence has been answered (call it once the
        fence is closed); False if some are still out after ``timeout`` seconds."""
        with self._writes:
            return self._writes.wait_for(lambda: self._writing == 0, timeout)

    def _call(
        self,
        method: str,
        path: str,
        body: Any = None,
        query: list[tuple[str, str]] | None = None,
        content_type: str = "application/json",
        accept: str = "application/json",
        timeout: tuple[float, float] | None = None,
        stream: bool = False,
    ) -> Any:
        """One request: fenced if it writes, timed and counted by verb; at most
        MAX_IN_FLIGHT at once (watches aside), and retried after a pause when the API server
        answers 429, as client-go does. A write the fence gives a deadline is bounded by it,
        here and on the API server (its ``timeout`` parameter: it drops the request then)."""
        verb = _VERBS[method]
        if method == "GET" and path.rsplit("/", 1)[-1] in _COLLECTIONS:
            verb = "watch" if stream else "list"
        limit = contextlib.nullcontext() if stream else self._in_flight
        retries = 0
        while True:
            try:
                with limit, self._fenced(verb, path) as left, metrics.api_request(verb):
                    bound, bounded_query = timeout or self._timeout, query
                    if left < math.inf:
                        bound = (min(bound[0], left), min(bound[1], left))
                        bounded_query = [*(query or []), ("timeout", f"{left:.3f}s")]
                    return self._request(
                        method,
                        path,
                        body,
                        bounded_query,
                        content_type,
                        accept,
                        bound,
                        stream,
                    )
            except KubeError as error:
                retries += 1
                if error.status != 429 or retries > RETRIES_ON_429:
                    raise
            time.sleep(random.uniform(0.5, 1.0) * retries)  # outside the limit

    def _request(
        self,
        method: str,
        path: str,
        body: Any,
        query: list[tuple[str, str]] | None,
        content_type: str,
        accept: str,
        timeout: tuple[float, float],
        stream: bool,
    ) -> Any:
        """The decoded answer, or for ``stream`` the open response; KubeError for any
        status but 2xx and for transport failures (timeouts, refused or reset connections)."""
        # The User-Agent names the field manager of writes that give none (status patches).
        headers = {"Accept": accept, "User-Agent": FIELD_MANAGER}
        data = None
        if body is not None:
            headers["Content-Type"] = content_type
            data = json.dumps(body).encode()
        try:
            response = self._api.request(method, path, query or [], data, headers, timeout, stream)
            if response.status >= 300:
                payload = response.read() if stream else response.data
                if stream:
                    response.release_conn()
                raise _kube_error(response.status, response.reason or "", payload)
            if stream:
                return response
            return json.loads(response.data) if response.data else {}
        except urllib3.exceptions.HTTPError as error:
            raise KubeError(0, type(error).__name__, str(error)) from None

    def get(
        self,
        kind: str,
        namespace: str | None,
        name: str,
        timeout: tuple[float, float] | None = None,
    ) -> Obj | None:
        try:
            result: Obj = self._call("GET", RESOURCES[kind].path(namespace, name), timeout=timeout)
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

    def apply_new(self, obj: Obj) -> Obj:
        """Create ``obj`` by server-side apply (so that our Apply entry owns its fields, and a
        later apply can remove one), or fail with 409 if an object of that name exists,
        whoever's it is: the apply carries a resourceVersion precondition that no existing
        object meets. One request where a GET (is it there? is it ours?) and an apply took
        two; an object that exists is left untouched."""
        meta = obj["metadata"]
        guarded = {**obj, "metadata": {**meta, "resourceVersion": NO_VERSION}}
        return self.apply(guarded)

    def create(self, obj: Obj, timeout: tuple[float, float] | None = None) -> Obj:
        meta = obj["metadata"]
        path = RESOURCES[obj["kind"]].path(meta.get("namespace"))
        result: Obj = self._call("POST", path, body=obj, timeout=timeout)
        return result

    def replace(self, obj: Obj, timeout: tuple[float, float] | None = None) -> Obj:
        """PUT the whole object; its resourceVersion makes a concurrent change fail (409)."""
        meta = obj["metadata"]
        path = RESOURCES[obj["kind"]].path(meta.get("namespace"), meta["name"])
        result: Obj = self._call("PUT", path, body=obj, timeout=timeout)
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

    def patch_status(self, kind: str, namespace: str, name: str, status: Obj) -> Obj:
        """The object as the patch left it."""
        path = RESOURCES[kind].path(namespace, name) + "/status"
        result: Obj = self._call(
            "PATCH", path, body={"status": status}, content_type="application/merge-patch+json"
        )
        return result

    def event(self, involved: Obj, event_type: str, reason: str, message: str) -> None:
        """Record a core/v1 Event on ``involved`` (best effort: events must never fail a run)."""
        meta = involved["metadata"]
        now = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        event = {
            "apiVersion": "v1",
            "kind": "Event",
            "metadata": {
                # A name is at most 253 characters, and so may the resource's be.
                "name": f"{meta['name'][:240]}.{uuid.uuid4().hex[:12]}",
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

    def mirror(
        self,
        kind: str,
        listed: Callable[[Objs], None],
        changed: Callable[[str, Obj], None],
        stopping: threading.Event,
        metadata_only: bool = False,
        namespace: str | None = None,
        label_selector: str = "",
        reduce: Callable[[Obj], Obj] | None = None,
    ) -> None:
        """Keep a caller's copy of every ``kind`` object in the cluster (or ``namespace``;
        only those ``label_selector`` selects, filtered by the server): ``listed(objects)``
        with all of them at the start and after a watch expired (410), then ``changed(type,
        object)`` per event (type ADDED, MODIFIED or DELETED). Blocking: run it in a thread.

        For what every reconcile would otherwise LIST or GET (CRDs, Prometheus resources,
        namespaces, our children, Secrets' versions): the watch costs nothing while nothing
        changes. ``metadata_only`` reads PartialObjectMetadata, so even watching Secrets
        never brings their data to the operator. ``reduce`` keeps of each listed object
        what the caller needs, page by page: a list of 24,000 whole children held at once
        took the restarted operator past its memory limit."""

        def start() -> str:
            try:
                items, version = self._list_all(
                    kind, namespace, label_selector, metadata_only, reduce
                )
            except KubeError as error:
                if error.status == 404:  # a custom kind whose CRD is not installed (yet)
                    listed([])
                raise  # and try again later
            listed(items)
            return version

        self._watch_forever(
            kind, namespace, label_selector, start, changed, stopping, metadata_only
        )

    def _watch_forever(
        self,
        kind: str,
        namespace: str | None,
        label_selector: str,
        start: Callable[[], str],
        changed: Callable[[str, Obj], None],
        stopping: threading.Event,
        metadata_only: bool,
    ) -> None:
        """List (``start`` returns the version to watch from), then watch and resume until
        ``stopping`` is set; a watch too old to resume (410) starts over with ``start``.

        An event counts as handled only once ``changed`` has completed: the watch resumes
        from the last event handled, so after an API error (in the watch or in a callback's
        own request) the event comes again. Any other error (a bug in a callback, an
        unreadable event) starts over with ``start``: nothing ends the watch but
        ``stopping``. Errors back off, up to a minute."""
        version, failures = "", 0
        while not stopping.is_set():
            try:
                if not version:
                    version = start()
                events = self._watch(kind, namespace, label_selector, version, metadata_only)
                for event_type, obj in events:
                    if event_type in ("ADDED", "MODIFIED", "DELETED"):
                        changed(event_type, obj)
                    version = obj.get("metadata", {}).get("resourceVersion") or version
                failures = 0
                continue
            except KubeError as error:
                if error.status == 410:  # too old to resume: start afresh
                    version = ""
                    continue
                failures += 1
                log.warning("watch of %s failed (%d in a row): %s", kind, failures, error)
            except Exception:
                version = ""
                failures += 1
                log.exception("watch of %s failed (%d in a row), listing again", kind, failures)
            stopping.wait(min(2.0**failures, 60.0))

    def _list_all(
        self,
        kind: str,
        namespace: str | None,
        label_selector: str,
        metadata_only: bool,
        reduce: Callable[[Obj], Obj] | None = None,
    ) -> tuple[Objs, str]:
        """Every ``kind`` object in the cluster (or ``namespace``) that ``label_selector``
        selects, in pages, and the version to watch from."""
        items: Objs = []
        accept = METADATA_ONLY.format("List") if metadata_only else "application/json"
        selecting = [("labelSelector", label_selector)] if label_selector else []
        page = ""
        while True:
            query = [("limit", str(LIST_PAGE)), *selecting]
            query += [("continue", page)] if page else []
            path = RESOURCES[kind].path(namespace)
            with self._list_pages:
                result = self._call("GET", path, query=query, accept=accept)
                page_items = result.pop("items", None) or []  # null when empty, as metadata
                items.extend(map(reduce, page_items) if reduce else page_items)
                del page_items  # the whole objects of this page go before the next arrives
            page = result["metadata"].get("continue") or ""
            if not page:
                return items, str(result["metadata"]["resourceVersion"])

    def _watch(
        self,
        kind: str,
        namespace: str | None,
        label_selector: str,
        version: str,
        metadata_only: bool,
    ) -> Iterator[tuple[str, Obj]]:
        """(type, object) of each event of one watch request, until the server ends it."""
        query = [
            ("watch", "true"),
            ("resourceVersion", version),
            ("allowWatchBookmarks", "true"),
            ("timeoutSeconds", str(WATCH_SECONDS)),
        ] + ([("labelSelector", label_selector)] if label_selector else [])
        response = self._call(
            "GET",
            RESOURCES[kind].path(namespace),
            query=query,
            accept=METADATA_ONLY.format("") if metadata_only else "application/json",
            timeout=(self._timeout[0], WATCH_SECONDS + self._timeout[1]),
            stream=True,
        )
        pending = b""
        try:
            for chunk in response.stream(4096, decode_content=True):
                pending += chunk
                *lines, pending = pending.split(b"\n")
                for line in lines:
                    if not line.strip():
                        continue
                    event = json.loads(line)
                    if event["type"] == "ERROR":
                        status = event["object"]
                        raise KubeError(
                            int(status.get("code", 0)),
                            status.get("reason", ""),
                            status.get("message", ""),
                        )
                    yield event["type"], event["object"]
        except urllib3.exceptions.HTTPError as error:
            raise KubeError(0, type(error).__name__, str(error)) from None
        finally:
            response.release_conn()

    def crd_established(self, name: str) -> bool:
        crd = self.get("CustomResourceDefinition", None, name)
        if crd is None:
            return False
        return any(
            c.get("type") == "Established" and c.get("status") == "True"
            # A CRD just created has "status": {"conditions": null}
            for c in (crd.get("status") or {}).get("conditions") or []
        )


def _kube_error(status: int, http_reason: str, payload: bytes) -> KubeError:
    """The API's Status (reason "AlreadyExists", "Conflict"...), else the HTTP reason."""
    reason, message = http_reason, payload.decode(errors="replace")[:1000]
    with contextlib.suppress(ValueError, AttributeError):
        answer = json.loads(payload)
        reason = answer.get("reason") or reason
        message = answer.get("message") or message
    return KubeError(status, str(reason), str(message))
