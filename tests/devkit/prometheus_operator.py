"""The real prometheus-operator beside the local control plane, and what it generates from us.

prometheus-operator is the program that gives our ServiceMonitors and PrometheusRules their
meaning: it selects them by label for a Prometheus resource and writes that Prometheus's
config Secret ``prometheus-<name>`` (``prometheus.yaml.gz``), its rule-file ConfigMaps
``prometheus-<name>-rulefiles-<n>`` and its TLS-assets Secrets. Here it runs as a host process
outside the cluster with the admin credentials; it needs no node for that (the StatefulSet it
creates only stays unscheduled). ``materialize`` lays those generated files out as the
Prometheus pod would see them under /etc/prometheus, so promtool can check the whole config.

Public API::

    kube_prometheus_stack_prometheus(release_label, version) -> Prometheus resource
    prometheus_operator(plane) -> Process     # context manager, the built v0.85 binary
    generated_config(api, namespace, prometheus) -> dict | None
    rule_config_maps(api, namespace, prometheus) -> {ConfigMap: {file name: YAML}}
    materialize(api, namespace, prometheus, directory) -> Path  # checkable prometheus.yaml
    prometheus_of(plane, api, namespace, prometheus) -> Prometheus  # context manager: a real
        # Prometheus 3 running that output, reloaded as it changes, discovering from the plane
"""

from __future__ import annotations

import base64
import contextlib
import gzip
import itertools
import os
import shutil
import signal
import tempfile
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import yaml
from kubernetes import client
from kubernetes.client.rest import ApiException

from devkit.cluster import ControlPlane
from devkit.prometheus import LOOPBACK, Process, Prometheus, process
from devkit.toolchain import built_binary

# Where the Prometheus pod mounts what the operator generates (prometheus-operator's
# pkg/prometheus: ConfDir, RulesDir, tlsAssetsDir all live under it).
POD_CONFIG_ROOT = "/etc/prometheus/"
CONFIG_KEY = "prometheus.yaml.gz"
MONITORING = ("monitoring.coreos.com", "v1")


@contextlib.contextmanager
def prometheus_operator(plane: ControlPlane) -> Iterator[Process]:
    """prometheus-operator watching the whole control plane as its admin; stopped on exit.

    ``--kubelet-service=""`` turns off the kubelet Endpoints sync (there are no nodes).
    """
    command = [
        str(built_binary("prometheus-operator")),
        f"--apiserver={plane.server}",
        f"--ca-file={plane.ca_cert}",
        f"--cert-file={plane.admin_cert}",
        f"--key-file={plane.admin_key}",
        "--kubelet-service=",
        "--log-level=info",
    ]
    with process(
        "prometheus-operator",
        lambda port: [*command, f"--web.listen-address={LOOPBACK}:{port}"],
        ready_path="/healthz",
        startup_timeout=60,
    ) as running:
        yield running


def kube_prometheus_stack_prometheus(
    release_label: dict[str, str], version: str | None = None
) -> dict[str, Any]:
    """A Prometheus resource as kube-prometheus-stack makes it: selects `release: <name>`.

    ``version`` is the Prometheus the generated config is for (prometheus-operator writes
    what that version understands); unset, the operator's default.
    """
    selector = {"matchLabels": release_label}
    spec: dict[str, Any] = {
        "serviceMonitorSelector": selector,
        "serviceMonitorNamespaceSelector": {},
        "ruleSelector": selector,
        "ruleNamespaceSelector": {},
    }
    if version:
        spec["version"] = version
    return {
        "apiVersion": "/".join(MONITORING),
        "kind": "Prometheus",
        "metadata": {"name": "kube-prometheus-stack-prometheus", "namespace": "monitoring"},
        "spec": spec,
    }


def _read_secret(api: client.ApiClient, namespace: str, name: str) -> dict[str, bytes] | None:
    try:
        secret = client.CoreV1Api(api).read_namespaced_secret(name, namespace)
    except ApiException as error:
        if error.status == 404:
            return None
        raise
    return {key: base64.b64decode(value) for key, value in (secret.data or {}).items()}


def generated_config(api: client.ApiClient, namespace: str, prometheus: str) -> Any:
    """The Prometheus config prometheus-operator generated for ``prometheus``, or None yet."""
    data = _read_secret(api, namespace, f"prometheus-{prometheus}")
    if not data or CONFIG_KEY not in data:
        return None
    return yaml.safe_load(gzip.decompress(data[CONFIG_KEY]))


def rule_config_maps(
    api: client.ApiClient, namespace: str, prometheus: str
) -> dict[str, dict[str, str]]:
    """``prometheus``'s rule-file ConfigMaps: name -> {rule file name: YAML}."""
    listing = client.CoreV1Api(api).list_namespaced_config_map(
        namespace, label_selector=f"prometheus-name={prometheus}"
    )
    return {item.metadata.name: dict(item.data or {}) for item in listing.items}


def materialize(api: client.ApiClient, namespace: str, prometheus: str, directory: Path) -> Path:
    """Write the generated config, rule files and TLS assets as the pod mounts them.

    Paths under /etc/prometheus in the config are moved under ``directory``; returns the
    config file, which promtool can then check with every file it references.
    """
    config = generated_config(api, namespace, prometheus)
    if config is None:
        raise FileNotFoundError(f"no generated config for Prometheus {namespace}/{prometheus}")
    for config_map, files in rule_config_maps(api, namespace, prometheus).items():
        rules_dir = directory / "rules" / config_map
        rules_dir.mkdir(parents=True)
        for name, text in files.items():
            (rules_dir / name).write_text(text)
    certs = directory / "certs"
    certs.mkdir()
    for shard in itertools.count():
        assets = _read_secret(api, namespace, f"prometheus-{prometheus}-tls-assets-{shard}")
        if assets is None:
            break
        for name, value in assets.items():
            (certs / name).write_bytes(value)
    path = directory / "prometheus.yaml"
    path.write_text(yaml.safe_dump(_relocate(config, str(directory) + "/"), sort_keys=False))
    return path


def _relocate(value: Any, root: str) -> Any:
    if isinstance(value, str) and value.startswith(POD_CONFIG_ROOT):
        return root + value[len(POD_CONFIG_ROOT) :]
    if isinstance(value, dict):
        return {key: _relocate(item, root) for key, item in value.items()}
    if isinstance(value, list):
        return [_relocate(item, root) for item in value]
    return value


def _discover_from(config: dict[str, Any], plane: ControlPlane) -> dict[str, Any]:
    """``config`` with its Kubernetes service discovery pointed at ``plane`` as its admin (a
    Prometheus pod uses its in-cluster credentials instead)."""
    for job in config.get("scrape_configs") or []:
        for discovery in job.get("kubernetes_sd_configs") or []:
            discovery["api_server"] = plane.server
            discovery["tls_config"] = {
                "ca_file": str(plane.ca_cert),
                "cert_file": str(plane.admin_cert),
                "key_file": str(plane.admin_key),
            }
    return config


@contextlib.contextmanager
def prometheus_of(
    plane: ControlPlane, api: client.ApiClient, namespace: str, prometheus: str
) -> Iterator[Prometheus]:
    """A real Prometheus 3 (the setup's build) running what prometheus-operator generates for
    the Prometheus resource ``namespace/prometheus``: its config and rule files, laid out
    again and reloaded (SIGHUP) within a second of each change, as prometheus-config-reloader
    does in the pod; its Kubernetes discovery reads ``plane``. Stopped and deleted on exit."""
    tmp = Path(tempfile.mkdtemp(prefix="devkit-generated-prometheus-"))
    config_path = tmp / "prometheus.yml"
    config_path.write_text(yaml.safe_dump({"global": {"scrape_interval": "15s"}}))
    proc = Process(
        name="prometheus",
        argv_for_port=lambda port: [
            str(built_binary("prometheus")),
            f"--config.file={config_path}",
            f"--storage.tsdb.path={tmp / 'data'}",
            f"--web.listen-address={LOOPBACK}:{port}",
            "--log.level=warn",
        ],
        ready_path="/-/ready",
        workdir=tmp,
        startup_timeout=60,
    )
    stop = threading.Event()

    def follow() -> None:
        shown = ""
        for generation in itertools.count():
            if stop.wait(1.0):
                return
            with contextlib.suppress(ApiException, FileNotFoundError):
                state = yaml.safe_dump(
                    [
                        generated_config(api, namespace, prometheus),
                        rule_config_maps(api, namespace, prometheus),
                    ]
                )
                if state == shown:
                    continue
                directory = tmp / f"generated-{generation}"
                directory.mkdir()
                laid_out = materialize(api, namespace, prometheus, directory)
                # What prometheus-config-reloader substitutes from the pod's environment.
                text = laid_out.read_text().replace("$(SHARD)", "0")
                text = text.replace("$(POD_NAME)", f"prometheus-{prometheus}-0")
                config = _discover_from(yaml.safe_load(text), plane)
                config_path.write_text(yaml.safe_dump(config, sort_keys=False))
                os.kill(proc.pid, signal.SIGHUP)
                shown = state
                for older in tmp.glob("generated-*"):
                    if older != directory and int(older.name.split("-")[1]) < generation - 1:
                        shutil.rmtree(older, ignore_errors=True)

    reloader = threading.Thread(target=follow, name="prometheus-config-reloader", daemon=True)
    try:
        proc.start()
        reloader.start()
        yield Prometheus(f"http://{LOOPBACK}:{proc.port}", config_path, proc)
    finally:
        stop.set()
        if reloader.is_alive():
            reloader.join(timeout=30)
        proc.stop()
        shutil.rmtree(tmp, ignore_errors=True)
