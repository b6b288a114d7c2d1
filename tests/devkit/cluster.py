"""A real Kubernetes control plane as local processes: etcd, apiserver, controller-manager.

This is the envtest idea for a machine without Docker: the API server is the real one, with
RBAC authorization, service-account token issuing, structural-schema validation of CRDs and
an audit log; the controller manager runs garbage collection, Deployment -> ReplicaSet and the
service-account controllers. There is no kubelet or scheduler, so pods stay Pending, unless a
node (devkit.node: kubelet, kube-proxy, kube-scheduler, CoreDNS) is started beside it.

Ports are chosen free, so two control planes on one machine never collide; a component that
loses one of its ports to another process before binding it starts again on fresh ones
(devkit.ports). ``stop()`` kills every process it started and removes its working directory.
"""

from __future__ import annotations

import base64
import datetime
import functools
import ipaddress
import json
import os
import shutil
import signal
import ssl
import subprocess
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NamedTuple

import yaml
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import NameOID

from devkit.ports import (
    PortTaken,
    StartOutput,
    exited_during_start,
    free_port,
    start_on_free_ports,
)
from devkit.toolchain import binary, built_binary

SERVICE_CIDR = "10.96.0.0/16"
# The Kubernetes releases a control plane runs: the newest (tests/toolchain/kube, the node's
# too) and the oldest minor the chart claims in its kubeVersion (tests/toolchain/kube-oldest,
# kube-apiserver and kube-controller-manager built as <name>-oldest).
KUBE_RELEASES = ("newest", "oldest")
ADMIN_USER = "jm-admin"
SERVICE_ACCOUNT_ISSUER = "https://kubernetes.default.svc.cluster.local"

# Every request at Metadata level: enough to count who wrote what, without request bodies
# (which could hold Secret data).
AUDIT_POLICY = {
    "apiVersion": "audit.k8s.io/v1",
    "kind": "Policy",
    "omitStages": ["RequestReceived"],
    "rules": [{"level": "Metadata"}],
}


def _write_pem(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    path.chmod(0o600)
    return path


def _key_pem(key: rsa.RSAPrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.TraditionalOpenSSL,
        serialization.NoEncryption(),
    )


@dataclass
class _Certificates:
    """A throwaway CA, the API server's serving cert, an admin client cert and the SA key."""

    directory: Path

    def generate(self) -> None:
        now = datetime.datetime.now(datetime.UTC)
        ca_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "jewelry-monitoring-test-ca")])
        ca_cert = (
            x509.CertificateBuilder()
            .subject_name(ca_name)
            .issuer_name(ca_name)
            .public_key(ca_key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(days=7))
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .sign(ca_key, hashes.SHA256())
        )

        def leaf(
            name: x509.Name, usage: x509.ObjectIdentifier, sans: list[x509.GeneralName]
        ) -> tuple[bytes, bytes]:
            key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
            builder = (
                x509.CertificateBuilder()
                .subject_name(name)
                .issuer_name(ca_name)
                .public_key(key.public_key())
                .serial_number(x509.random_serial_number())
                .not_valid_before(now - datetime.timedelta(minutes=5))
                .not_valid_after(now + datetime.timedelta(days=7))
                .add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
            )
            if sans:
                builder = builder.add_extension(x509.SubjectAlternativeName(sans), critical=False)
            cert = builder.sign(ca_key, hashes.SHA256())
            return cert.public_bytes(serialization.Encoding.PEM), _key_pem(key)

        serving_sans: list[x509.GeneralName] = [
            x509.DNSName("localhost"),
            x509.DNSName("kubernetes"),
            x509.DNSName("kubernetes.default.svc"),
            x509.IPAddress(ipaddress.ip_address("127.0.0.1")),
            x509.IPAddress(ipaddress.ip_address("10.96.0.1")),
        ]
        serving = leaf(
            x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "kube-apiserver")]),
            x509.oid.ExtendedKeyUsageOID.SERVER_AUTH,
            serving_sans,
        )
        admin = leaf(
            x509.Name(
                [
                    x509.NameAttribute(NameOID.COMMON_NAME, ADMIN_USER),
                    x509.NameAttribute(NameOID.ORGANIZATION_NAME, "system:masters"),
                ]
            ),
            x509.oid.ExtendedKeyUsageOID.CLIENT_AUTH,
            [],
        )
        sa_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)

        _write_pem(self.ca_cert, ca_cert.public_bytes(serialization.Encoding.PEM))
        _write_pem(self.serving_cert, serving[0])
        _write_pem(self.serving_key, serving[1])
        _write_pem(self.admin_cert, admin[0])
        _write_pem(self.admin_key, admin[1])
        _write_pem(self.sa_key, _key_pem(sa_key))
        _write_pem(
            self.sa_pub,
            sa_key.public_key().public_bytes(
                serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
            ),
        )

    @property
    def ca_cert(self) -> Path:
        return self.directory / "ca.crt"

    @property
    def serving_cert(self) -> Path:
        return self.directory / "apiserver.crt"

    @property
    def serving_key(self) -> Path:
        return self.directory / "apiserver.key"

    @property
    def admin_cert(self) -> Path:
        return self.directory / "admin.crt"

    @property
    def admin_key(self) -> Path:
        return self.directory / "admin.key"

    @property
    def sa_key(self) -> Path:
        return self.directory / "sa.key"

    @property
    def sa_pub(self) -> Path:
        return self.directory / "sa.pub"


def kubeconfig_document(server: str, ca_file: Path, user: dict[str, str]) -> dict[str, object]:
    """A one-context kubeconfig for ``server`` with the given ``users[].user`` credentials."""
    return {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [
            {"name": "local", "cluster": {"server": server, "certificate-authority": str(ca_file)}}
        ],
        "users": [{"name": "user", "user": user}],
        "contexts": [{"name": "local", "context": {"cluster": "local", "user": "user"}}],
        "current-context": "local",
    }


class _Component(NamedTuple):
    name: str
    command: Callable[[], list[str]]
    ready: Callable[[], bool]
    ports: tuple[str, ...]  # the ControlPlane fields that hold its ports


@dataclass
class ControlPlane:
    """etcd + kube-apiserver + kube-controller-manager rooted in ``workdir``."""

    workdir: Path
    release: str = "newest"  # one of KUBE_RELEASES
    etcd_port: int = field(default_factory=free_port)
    etcd_peer_port: int = field(default_factory=free_port)
    apiserver_port: int = field(default_factory=free_port)
    controller_manager_port: int = field(default_factory=free_port)
    pids: dict[str, int] = field(default_factory=dict)

    @classmethod
    def create(cls, parent: Path | None = None, release: str = "newest") -> ControlPlane:
        """A control plane in a fresh temporary directory (under ``parent`` if given), of
        the Kubernetes ``release`` (KUBE_RELEASES)."""
        if release not in KUBE_RELEASES:
            raise ValueError(f"no Kubernetes release {release!r}: one of {KUBE_RELEASES}")
        workdir = Path(tempfile.mkdtemp(prefix="jm-cluster-", dir=parent))
        return cls(workdir=workdir, release=release)

    @property
    def server(self) -> str:
        return f"https://127.0.0.1:{self.apiserver_port}"

    @property
    def kubeconfig(self) -> Path:
        """The admin kubeconfig (system:masters): for setup and assertions, never the operator."""
        return self.workdir / "admin.kubeconfig"

    @property
    def audit_log(self) -> Path:
        return self.workdir / "audit.log"

    @property
    def ca_cert(self) -> Path:
        return self._certs.ca_cert

    @property
    def admin_cert(self) -> Path:
        """The admin client cert (system:masters), for tools that take cert files."""
        return self._certs.admin_cert

    @property
    def admin_key(self) -> Path:
        return self._certs.admin_key

    def admin_context(self) -> ssl.SSLContext:
        """TLS as the admin client (system:masters), for plain HTTPS to the API server."""
        context = ssl.create_default_context(cafile=str(self.ca_cert))
        context.load_cert_chain(str(self.admin_cert), str(self.admin_key))
        return context

    @property
    def _certs(self) -> _Certificates:
        return _Certificates(self.workdir / "pki")

    def start(self, timeout: float = 60.0) -> ControlPlane:
        """Start all three processes and wait until the API server is ready."""
        deadline = time.monotonic() + timeout
        try:
            self._prepare()
            for component in self._components():
                start_on_free_ports(
                    functools.partial(self._start, component, deadline),
                    functools.partial(self._repick, component),
                )
        except BaseException:
            self.stop()
            raise
        return self

    def restart(self, name: str, down_seconds: float = 0.0, timeout: float = 60.0) -> None:
        """Stop one component ("etcd", "kube-apiserver", "kube-controller-manager"), keep
        it down for ``down_seconds``, start it again with the same flags and data, and wait
        until it is ready: what a crash and restart of that process looks like to clients
        (on the same ports: its clients know them)."""
        components = {component.name: component for component in self._components()}
        _terminate(self.pids.pop(name))
        time.sleep(down_seconds)
        self._start(components[name], time.monotonic() + timeout)
        # Keep the start order: stop() stops in reverse.
        self.pids = {n: self.pids[n] for n in components if n in self.pids}
        if name == "etcd":  # the API server notices etcd is back on its own, in a moment
            self._wait(
                "kube-apiserver",
                lambda: self._api_ok("/readyz"),
                time.monotonic() + timeout,
                StartOutput(self._log("kube-apiserver")),
            )

    def compact_etcd(self) -> int:
        """Compact etcd's history up to its current revision, as its periodic compaction
        does, and return that revision: watches resumed from before it get 410 Gone."""
        base = f"http://127.0.0.1:{self.etcd_port}/v3/kv"
        key = base64.b64encode(b"/registry").decode()
        revision = int(_post_json(f"{base}/range", {"key": key, "limit": 1})["header"]["revision"])
        _post_json(f"{base}/compaction", {"revision": revision, "physical": True})
        return revision

    def stop(self, remove: bool = True) -> None:
        """Kill the processes (their whole process groups) and remove the working directory."""
        for name in reversed(list(self.pids)):
            _terminate(self.pids.pop(name))
        if remove:
            _remove_tree(self.workdir)

    def log_tail(self, name: str, lines: int = 30) -> str:
        path = self._log(name)
        if not path.exists():
            return ""
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])

    # -- state file, so a CLI can start the plane and a later CLI call can stop it ------------

    def save_state(self) -> Path:
        state = self.workdir / "state.json"
        state.write_text(
            json.dumps(
                {
                    "workdir": str(self.workdir),
                    "release": self.release,
                    "etcd_port": self.etcd_port,
                    "etcd_peer_port": self.etcd_peer_port,
                    "apiserver_port": self.apiserver_port,
                    "controller_manager_port": self.controller_manager_port,
                    "pids": self.pids,
                }
            )
        )
        return state

    @classmethod
    def load_state(cls, workdir: Path) -> ControlPlane:
        data = json.loads((workdir / "state.json").read_text())
        data["workdir"] = Path(data["workdir"])
        return cls(**data)

    def running(self) -> bool:
        return bool(self.pids) and all(_alive(pid) for pid in self.pids.values())

    # -- internals ---------------------------------------------------------------------------

    def _prepare(self) -> None:
        (self.workdir / "pki").mkdir(parents=True, exist_ok=True)
        self._certs.generate()
        (self.workdir / "audit-policy.yaml").write_text(yaml.safe_dump(AUDIT_POLICY))
        self._write_kubeconfig()

    def _write_kubeconfig(self) -> None:
        user = {
            "client-certificate": str(self._certs.admin_cert),
            "client-key": str(self._certs.admin_key),
        }
        document = kubeconfig_document(self.server, self._certs.ca_cert, user)
        self.kubeconfig.write_text(yaml.safe_dump(document))
        self.kubeconfig.chmod(0o600)

    def _kube_binary(self, name: str) -> Path:
        return binary(name) if self.release == "newest" else built_binary(f"{name}-oldest")

    def _etcd_command(self) -> list[str]:
        client = f"http://127.0.0.1:{self.etcd_port}"
        peer = f"http://127.0.0.1:{self.etcd_peer_port}"
        return [
            str(binary("etcd")),
            "--name=jm",
            f"--data-dir={self.workdir / 'etcd'}",
            f"--listen-client-urls={client}",
            f"--advertise-client-urls={client}",
            f"--listen-peer-urls={peer}",
            f"--initial-advertise-peer-urls={peer}",
            f"--initial-cluster=jm={peer}",
            "--log-level=warn",
        ]

    def _apiserver_command(self) -> list[str]:
        certs = self._certs
        return [
            str(self._kube_binary("kube-apiserver")),
            f"--etcd-servers=http://127.0.0.1:{self.etcd_port}",
            "--bind-address=127.0.0.1",
            "--advertise-address=127.0.0.1",
            f"--secure-port={self.apiserver_port}",
            f"--cert-dir={self.workdir / 'apiserver-certs'}",
            f"--tls-cert-file={certs.serving_cert}",
            f"--tls-private-key-file={certs.serving_key}",
            f"--client-ca-file={certs.ca_cert}",
            "--authorization-mode=RBAC",
            f"--service-account-issuer={SERVICE_ACCOUNT_ISSUER}",
            f"--service-account-key-file={certs.sa_pub}",
            f"--service-account-signing-key-file={certs.sa_key}",
            f"--api-audiences={SERVICE_ACCOUNT_ISSUER}",
            f"--service-cluster-ip-range={SERVICE_CIDR}",
            # A node's kubelet (devkit.node) serves logs and exec to this client cert, and is
            # dialled by its InternalIP only: its host name resolves nowhere here.
            f"--kubelet-client-certificate={certs.admin_cert}",
            f"--kubelet-client-key={certs.admin_key}",
            "--kubelet-preferred-address-types=InternalIP",
            "--allow-privileged=true",
            # As OpenShift: setting blockOwnerDeletion needs "update" on the owner's finalizers.
            "--enable-admission-plugins=OwnerReferencesPermissionEnforcement",
            f"--audit-policy-file={self.workdir / 'audit-policy.yaml'}",
            f"--audit-log-path={self.audit_log}",
            "--audit-log-mode=blocking",
            "--v=0",
        ]

    def _controller_manager_command(self) -> list[str]:
        certs = self._certs
        return [
            str(self._kube_binary("kube-controller-manager")),
            f"--kubeconfig={self.kubeconfig}",
            f"--authentication-kubeconfig={self.kubeconfig}",
            f"--authorization-kubeconfig={self.kubeconfig}",
            "--bind-address=127.0.0.1",
            f"--secure-port={self.controller_manager_port}",
            f"--cert-dir={self.workdir / 'kcm-certs'}",
            f"--service-account-private-key-file={certs.sa_key}",
            f"--root-ca-file={certs.ca_cert}",
            "--leader-elect=false",
            "--use-service-account-credentials=false",
            "--controllers=*,-nodeipam,-nodelifecycle,-cloud-node-lifecycle,-persistentvolume-binder",
            "--v=0",
        ]

    def _components(self) -> list[_Component]:
        """Each process, in start order."""
        return [
            _Component(
                "etcd",
                self._etcd_command,
                lambda: _http_ok(f"http://127.0.0.1:{self.etcd_port}/health"),
                ("etcd_port", "etcd_peer_port"),
            ),
            _Component(
                "kube-apiserver",
                self._apiserver_command,
                lambda: self._api_ok("/readyz"),
                ("apiserver_port",),
            ),
            _Component(
                "kube-controller-manager",
                self._controller_manager_command,
                lambda: _https_ok(f"https://127.0.0.1:{self.controller_manager_port}/healthz"),
                ("controller_manager_port",),
            ),
        ]

    def _start(self, component: _Component, deadline: float) -> None:
        output = self._spawn(component.name, component.command())
        self._wait(component.name, component.ready, deadline, output)

    def _repick(self, component: _Component, _: PortTaken) -> None:
        """Fresh ports for a component that lost one (it has exited), and what names them."""
        for port in component.ports:
            setattr(self, port, free_port())
        if component.name == "etcd":  # a data directory made for the old URLs
            _remove_tree(self.workdir / "etcd")
        if component.name == "kube-apiserver":
            self._write_kubeconfig()

    def _log(self, name: str) -> Path:
        return self.workdir / f"{name}.log"

    def _spawn(self, name: str, command: list[str]) -> StartOutput:
        output = StartOutput(self._log(name))
        log = output.log.open("ab")
        process = subprocess.Popen(
            command, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
        )
        log.close()
        self.pids[name] = process.pid
        return output

    def _wait(
        self, name: str, ready: Callable[[], bool], deadline: float, output: StartOutput
    ) -> None:
        while time.monotonic() < deadline:
            if not _alive(self.pids[name]):
                raise exited_during_start(name, output.text())
            if ready():
                return
            time.sleep(0.2)
        raise TimeoutError(f"{name} not ready in time:\n{output.tail()}")

    def _api_ok(self, path: str) -> bool:
        return _http_ok(self.server + path, self.admin_context())


def _http_ok(url: str, context: ssl.SSLContext | None = None) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2, context=context) as response:
            return int(response.status) == 200
    except (urllib.error.URLError, OSError, ssl.SSLError):
        return False


def _post_json(url: str, body: dict[str, object]) -> dict[str, Any]:
    """One JSON request to etcd's HTTP gateway (loopback)."""
    request = urllib.request.Request(
        url, data=json.dumps(body).encode(), headers={"Content-Type": "application/json"}
    )
    with urllib.request.urlopen(request, timeout=10) as response:
        answer: dict[str, Any] = json.loads(response.read())
    return answer


def _https_ok(url: str) -> bool:
    """Health of a component serving a self-signed cert: only liveness matters here."""
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    return _http_ok(url, context)


def _alive(pid: int) -> bool:
    """Whether process ``pid`` runs; an exited child of ours is reaped. A pid of 0 or less
    names no process (none recorded): ``waitpid`` would take it for a process group and reap
    whichever other child of ours had exited, stealing its exit status from its owner."""
    if pid <= 0:
        return False
    try:
        waited, _ = os.waitpid(pid, os.WNOHANG)
    except ChildProcessError:
        waited = 0  # not our child (started by an earlier CLI call): ask the kernel instead
    if waited == pid:
        return False
    try:
        os.kill(pid, 0)
        # An exited process that is not our child stays a zombie until init reaps it.
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except (ProcessLookupError, FileNotFoundError):
        return False


def _terminate(pid: int, grace: float = 10.0) -> None:
    """SIGTERM the process group, SIGKILL it if it lingers, and reap it."""
    try:
        os.killpg(pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    deadline = time.monotonic() + grace
    while time.monotonic() < deadline and _alive(pid):
        time.sleep(0.1)
    if _alive(pid):
        try:
            os.killpg(pid, signal.SIGKILL)
        except ProcessLookupError:
            return
        while _alive(pid):
            time.sleep(0.05)


def _remove_tree(path: Path) -> None:
    shutil.rmtree(path, ignore_errors=True)
