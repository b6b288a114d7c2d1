"""What reconciles need to know about the cluster beyond their own CR, kept up by watches.

Every reconcile used to GET prometheus-operator's CRDs (the Prometheus CRD alone is hundreds
of KB) and LIST every Prometheus and Namespace in the cluster: requests and memory that
grew with the cluster, not with our objects. Here the watches (run by the handlers) keep
just the parts that matter: which CRDs are Established, each Prometheus's and
Alertmanager's selectors, each namespace's labels, and each Secret's resourceVersion (from
its metadata: never its data) with the key names of those a reconcile has read, so that a
reconcile reads a referenced Secret only when it has changed (or is missing: a Secret just
created must not be reported missing because its watch event is still on its way). Each
update says whether anything that matters changed, so that a Prometheus's status update or
an unrelated CRD re-queues nothing.

Pure and thread-safe: the watches write from their threads, reconciles read from theirs.
"""

from __future__ import annotations

import threading
from typing import Any

from jewelry_monitoring.selection import SELECTING

Obj = dict[str, Any]
Key = tuple[str, str]


def _selectors(resource: Obj) -> Obj:
    """A Prometheus or Alertmanager reduced to what selection.evaluate reads."""
    meta, spec = resource["metadata"], resource.get("spec") or {}
    fields = SELECTING[resource["kind"]].spec_fields
    return {
        "kind": resource["kind"],
        "metadata": {"name": meta["name"], "namespace": meta["namespace"]},
        "spec": {field: spec[field] for field in fields if field in spec},
    }


class ClusterFacts:
    """CRDs Established, the selectors of every resource that selects ours (by kind:
    Prometheus, Alertmanager), namespace labels and Secret versions, as last seen."""

    def __init__(self, crd_names: frozenset[str]) -> None:
        self.crd_names = crd_names
        self._lock = threading.Lock()
        self._established: dict[str, bool] = {}
        self._selecting: dict[str, dict[Key, Obj]] = {kind: {} for kind in SELECTING}
        self._namespace_labels: dict[str, dict[str, str]] = {}
        self._terminating: set[str] = set()  # namespaces being deleted
        self._secret_versions: dict[Key, str] = {}
        # Key names of the Secrets a reconcile read, with the version it read.
        self._secret_keys: dict[Key, tuple[str, frozenset[str]]] = {}
        # Set once each watch has listed: until then reconciles would act on half a picture.
        self.synced = {part: threading.Event() for part in ("crds", *SELECTING, "namespaces")}

    # -- reads, for reconciles --------------------------------------------------------------

    def established(self, crd_name: str) -> bool:
        with self._lock:
            return self._established.get(crd_name, False)

    def selecting(self, kind: str) -> list[Obj]:
        """Every resource of ``kind`` (Prometheus, Alertmanager), reduced to its selectors."""
        with self._lock:
            return list(self._selecting[kind].values())

    def namespace_labels(self) -> dict[str, dict[str, str]]:
        with self._lock:
            return dict(self._namespace_labels)

    def namespace_terminating(self, name: str) -> bool:
        """Whether the namespace is being deleted (it takes no new object)."""
        with self._lock:
            return name in self._terminating

    def secret_key_names(self, namespace: str, name: str) -> frozenset[str] | None:
        """The Secret's key names if a reconcile read them at the version its watch last
        reported (None: read it)."""
        with self._lock:
            version = self._secret_versions.get((namespace, name))
            read = self._secret_keys.get((namespace, name))
        return read[1] if read is not None and read[0] == version else None

    # -- updates, from watches: each returns whether a reconcile could see a difference -----

    def set_crds(self, established: dict[str, bool]) -> bool:
        """The state of every CRD we care about (absent ones count as not Established)."""
        state = {name: established.get(name, False) for name in self.crd_names}
        with self._lock:
            changed = state != {n: self._established.get(n, False) for n in self.crd_names}
            self._established = state
        self.synced["crds"].set()
        return changed

    def set_crd(self, name: str, established: bool) -> bool:
        if name not in self.crd_names:
            return False
        with self._lock:
            changed = self._established.get(name, False) != established
            self._established[name] = established
        return changed

    def set_selecting(self, kind: str, resources: list[Obj]) -> bool:
        state = {_key(r): _selectors({"kind": kind, **r}) for r in resources}
        with self._lock:
            changed = state != self._selecting[kind]
            self._selecting[kind] = state
        self.synced[kind].set()
        return changed

    def selecting_event(self, kind: str, event_type: str, resource: Obj) -> bool:
        key = _key(resource)
        with self._lock:
            known = self._selecting[kind]
            before = known.get(key)
            if event_type == "DELETED":
                known.pop(key, None)
                return before is not None
            after = known[key] = _selectors({"kind": kind, **resource})
            return before != after

    def set_namespaces(self, namespaces: list[Obj]) -> set[str]:
        """Replace every namespace's labels; returns the namespaces whose labels changed."""
        state = {ns["metadata"]["name"]: ns["metadata"].get("labels") or {} for ns in namespaces}
        terminating = {
            ns["metadata"]["name"] for ns in namespaces if ns["metadata"].get("deletionTimestamp")
        }
        with self._lock:
            before, self._namespace_labels = self._namespace_labels, state
            self._terminating = terminating
        self.synced["namespaces"].set()
        return {
            name for name in before.keys() | state.keys() if before.get(name) != state.get(name)
        }

    def remember_secret_keys(self, secret: Obj) -> frozenset[str]:
        """Keep the key names (never the values) of a Secret a reconcile just read."""
        meta = secret["metadata"]
        keys = frozenset(secret.get("data") or {})
        with self._lock:
            self._secret_keys[meta["namespace"], meta["name"]] = (meta["resourceVersion"], keys)
        return keys

    def set_secrets(self, namespace: str | None, secrets: list[Obj]) -> set[Key]:
        """Replace what the watch of ``namespace`` (None: all) holds; returns the Secrets
        that changed (new, gone or another version)."""
        state = {_key(s): s["metadata"]["resourceVersion"] for s in secrets}
        with self._lock:
            before = {
                key: version
                for key, version in self._secret_versions.items()
                if namespace is None or key[0] == namespace
            }
            for key in before.keys() - state.keys():
                self._forget_secret(key)
            self._secret_versions.update(state)
        return {key for key in before.keys() | state.keys() if before.get(key) != state.get(key)}

    def secret_event(self, event_type: str, secret: Obj) -> Key:
        key = _key(secret)
        with self._lock:
            if event_type == "DELETED":
                self._forget_secret(key)
            else:
                self._secret_versions[key] = secret["metadata"]["resourceVersion"]
        return key

    def _forget_secret(self, key: Key) -> None:
        self._secret_versions.pop(key, None)
        self._secret_keys.pop(key, None)

    def namespace_event(self, event_type: str, namespace: Obj) -> bool:
        name = namespace["metadata"]["name"]
        labels = None if event_type == "DELETED" else namespace["metadata"].get("labels") or {}
        with self._lock:
            before = self._namespace_labels.get(name)
            if labels is None:
                self._namespace_labels.pop(name, None)
            else:
                self._namespace_labels[name] = labels
            if labels is not None and namespace["metadata"].get("deletionTimestamp"):
                self._terminating.add(name)
            else:
                self._terminating.discard(name)
        return before != labels


def _key(obj: Obj) -> Key:
    return obj["metadata"].get("namespace", ""), obj["metadata"]["name"]
