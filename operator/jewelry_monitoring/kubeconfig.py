"""Where the Kubernetes API is and as whom to call it: in-cluster config or a kubeconfig.

The operator's own loader, so that its process does not carry the ``kubernetes`` client
package (its models alone cost 51 MiB of memory at import, issue 19). It reads what kubectl
reads, for the cases an operator or ``doctor`` meets:

- in a pod: the service account's token (re-read as the kubelet rotates it), its CA and
  KUBERNETES_SERVICE_HOST/PORT;
- a kubeconfig ($KUBECONFIG, a list of files merged as kubectl merges them, else
  ~/.kube/config): contexts and their namespaces; a server's CA (data or file),
  ``insecure-skip-tls-verify`` and ``tls-server-name``; a user's ``token``, ``tokenFile``,
  client certificate and key (data or file), or an ``exec`` credential plugin
  (client.authentication.k8s.io v1 and v1beta1, as EKS, GKE and AKS kubeconfigs use).

What it does not support (basic auth, the removed ``auth-provider`` plugins, ``proxy-url``)
is refused with a ConfigError that names the field: silently ignoring it would send
requests without the credentials the user configured.
"""

from __future__ import annotations

import base64
import binascii
import datetime
import json
import os
import subprocess
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

SERVICE_ACCOUNT = Path("/var/run/secrets/kubernetes.io/serviceaccount")
# A token file is read again after this long: the kubelet rotates projected tokens (at 80 %
# of their lifetime) and client-go re-reads them every minute too.
TOKEN_FILE_SECONDS = 60.0
# Credentials from an exec plugin are renewed this long before they expire.
EXPIRY_MARGIN_SECONDS = 60.0
EXEC_TIMEOUT_SECONDS = 60.0
EXEC_API_VERSIONS = (
    "client.authentication.k8s.io/v1",
    "client.authentication.k8s.io/v1beta1",
)
UNSUPPORTED_USER_FIELDS = ("username", "password", "auth-provider")


class ConfigError(Exception):
    """No usable configuration: no kubeconfig, a missing context, a field we cannot honour."""


@dataclass(frozen=True)
class Credentials:
    """Everything one request needs to reach the API server as someone. PEM data is text;
    ``expires`` (UTC) is when they must be fetched again, None for never."""

    server: str
    namespace: str = "default"
    ca_file: str | None = None
    ca_data: str | None = None
    insecure: bool = False
    tls_server_name: str | None = None
    cert_file: str | None = None
    key_file: str | None = None
    cert_data: str | None = None
    key_data: str | None = None
    token: str | None = field(default=None, repr=False)
    expires: datetime.datetime | None = None

    def tls(self) -> tuple[Any, ...]:
        """What the TLS connection depends on: a change of it needs new connections, a new
        token does not."""
        return (
            self.ca_file,
            self.ca_data,
            self.insecure,
            self.tls_server_name,
            self.cert_file,
            self.key_file,
            self.cert_data,
            self.key_data,
        )


@dataclass
class CredentialSource:
    """Credentials, fetched again when they may have changed: after ``refresh_seconds``
    (a token file), shortly before they expire (an exec plugin), or when the API server
    answered 401 (``invalidate``)."""

    fetch: Callable[[], Credentials]
    refresh_seconds: float | None = None
    clock: Callable[[], float] = time.monotonic
    _current: Credentials | None = field(default=None, init=False, repr=False)
    _fetched_at: float = field(default=0.0, init=False, repr=False)
    # Requests come from many threads: one of them fetches (runs the plugin), others wait.
    _lock: threading.Lock = field(default_factory=threading.Lock, init=False, repr=False)

    def get(self) -> Credentials:
        with self._lock:
            now = self.clock()
            current = self._current
            if current is None or self._stale(current, now):
                current = self._current = self.fetch()
                self._fetched_at = now
            return current

    def invalidate(self) -> None:
        with self._lock:
            self._current = None

    def _stale(self, current: Credentials, now: float) -> bool:
        if self.refresh_seconds is not None and now - self._fetched_at >= self.refresh_seconds:
            return True
        if current.expires is None:
            return False
        left = current.expires - datetime.datetime.now(datetime.UTC)
        return left.total_seconds() < EXPIRY_MARGIN_SECONDS


# -- in a pod --------------------------------------------------------------------------------


def in_cluster(
    environ: Mapping[str, str] = os.environ, account: Path | None = None
) -> CredentialSource | None:
    """The pod's service account (mounted at ``account``, by default SERVICE_ACCOUNT), or
    None when not in a pod (as client-go decides: KUBERNETES_SERVICE_HOST/PORT and the token
    file)."""
    account = account or SERVICE_ACCOUNT
    host, port = environ.get("KUBERNETES_SERVICE_HOST"), environ.get("KUBERNETES_SERVICE_PORT")
    token_file = account / "token"
    if not host or not port or not token_file.exists():
        return None
    server = f"https://[{host}]:{port}" if ":" in host else f"https://{host}:{port}"
    ca = account / "ca.crt"
    namespace_file = account / "namespace"
    namespace = namespace_file.read_text().strip() if namespace_file.exists() else "default"

    def fetch() -> Credentials:
        return Credentials(
            server=server,
            namespace=namespace or "default",
            ca_file=str(ca) if ca.exists() else None,
            token=_read_token(token_file),
        )

    return CredentialSource(fetch, refresh_seconds=TOKEN_FILE_SECONDS)


def _read_token(path: Path) -> str:
    token = path.read_text().strip()
    if not token:
        raise ConfigError(f"token file {path} is empty")
    return token


# -- kubeconfig ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Kubeconfig:
    """The merged kubeconfig files: the first file that sets a value wins, as with kubectl."""

    current_context: str | None
    contexts: dict[str, dict[str, Any]]
    clusters: dict[str, dict[str, Any]]
    users: dict[str, dict[str, Any]]
    # The file each named entry came from: relative paths in it are relative to that file.
    origins: dict[tuple[str, str], Path]

    @classmethod
    def load(cls, environ: Mapping[str, str] = os.environ) -> Kubeconfig:
        listed = environ.get("KUBECONFIG", "")
        paths = [Path(p).expanduser() for p in listed.split(os.pathsep) if p]
        if not paths:
            paths = [Path(environ.get("HOME", "~")).expanduser() / ".kube" / "config"]
        existing = [p for p in paths if p.exists()]
        if not existing:
            raise ConfigError(
                "no kubeconfig: " + ", ".join(map(str, paths)) + " does not exist"
                if len(paths) == 1
                else "none of the KUBECONFIG files exists: " + ", ".join(map(str, paths))
            )
        current: str | None = None
        sections: dict[str, dict[str, dict[str, Any]]] = {
            "contexts": {},
            "clusters": {},
            "users": {},
        }
        origins: dict[tuple[str, str], Path] = {}
        for path in existing:
            try:
                document = yaml.safe_load(path.read_text()) or {}
            except yaml.YAMLError as error:
                raise ConfigError(f"{path}: not YAML: {error}") from None
            current = current or document.get("current-context") or None
            for section, entries in sections.items():
                inner = section[:-1]  # "contexts" -> "context"
                for entry in document.get(section) or []:
                    name = entry.get("name")
                    if name and name not in entries:
                        entries[name] = entry.get(inner) or {}
                        origins[section, name] = path
        return cls(current, sections["contexts"], sections["clusters"], sections["users"], origins)

    def context(self, name: str | None = None) -> tuple[str, dict[str, Any]]:
        chosen = name or self.current_context
        if not chosen:
            raise ConfigError("the kubeconfig has no current-context; pass --context")
        if chosen not in self.contexts:
            raise ConfigError(f"context {chosen!r} is not in the kubeconfig")
        return chosen, self.contexts[chosen]

    def namespace(self, context: str | None = None) -> str:
        """The context's namespace, as kubectl uses it ("default" if it sets none)."""
        return str(self.context(context)[1].get("namespace") or "default")

    def credentials(self, context: str | None = None) -> CredentialSource:
        name, ctx = self.context(context)
        cluster_name, user_name = ctx.get("cluster"), ctx.get("user")
        if cluster_name not in self.clusters:
            raise ConfigError(
                f"context {name!r}: cluster {cluster_name!r} is not in the kubeconfig"
            )
        cluster = self.clusters[cluster_name]
        user = self.users.get(user_name or "", {}) if user_name else {}
        if user_name and user_name not in self.users:
            raise ConfigError(f"context {name!r}: user {user_name!r} is not in the kubeconfig")
        cluster_dir = self.origins[("clusters", cluster_name)].parent
        user_dir = self.origins[("users", user_name)].parent if user_name else cluster_dir
        for unsupported in UNSUPPORTED_USER_FIELDS:
            if user.get(unsupported):
                raise ConfigError(
                    f"user {user_name!r}: {unsupported} is not supported; use a token, a "
                    "client certificate or an exec credential plugin"
                )
        if cluster.get("proxy-url"):
            raise ConfigError(f"cluster {cluster_name!r}: proxy-url is not supported")
        if not cluster.get("server"):
            raise ConfigError(f"cluster {cluster_name!r} has no server")
        base = Credentials(
            server=str(cluster["server"]).rstrip("/"),
            namespace=str(ctx.get("namespace") or "default"),
            ca_file=_path(cluster.get("certificate-authority"), cluster_dir),
            ca_data=_pem(cluster.get("certificate-authority-data"), "certificate-authority-data"),
            insecure=bool(cluster.get("insecure-skip-tls-verify")),
            tls_server_name=cluster.get("tls-server-name") or None,
            cert_file=_path(user.get("client-certificate"), user_dir),
            key_file=_path(user.get("client-key"), user_dir),
            cert_data=_pem(user.get("client-certificate-data"), "client-certificate-data"),
            key_data=_pem(user.get("client-key-data"), "client-key-data"),
            token=user.get("token") or None,
        )
        if user.get("exec"):
            plugin = ExecPlugin(user["exec"], base, cluster, user_dir)
            return CredentialSource(plugin.credentials)
        token_file = _path(user.get("tokenFile"), user_dir)
        if token_file and not base.token:

            def fetch() -> Credentials:
                return _replace(base, token=_read_token(Path(token_file)))

            return CredentialSource(fetch, refresh_seconds=TOKEN_FILE_SECONDS)
        return CredentialSource(lambda: base)


def _path(value: Any, directory: Path) -> str | None:
    if not value:
        return None
    path = Path(str(value)).expanduser()
    return str(path if path.is_absolute() else directory / path)


def _pem(value: Any, what: str) -> str | None:
    """base64 of PEM, as kubeconfigs carry it."""
    if not value:
        return None
    try:
        return base64.b64decode(str(value), validate=True).decode()
    except (binascii.Error, UnicodeDecodeError):
        raise ConfigError(f"{what} is not base64 of PEM data") from None


def _replace(credentials: Credentials, **changes: Any) -> Credentials:
    fields = {**credentials.__dict__, **changes}
    return Credentials(**fields)


@dataclass
class ExecPlugin:
    """An exec credential plugin: a command that prints an ExecCredential with a token or
    a client certificate, and when they expire."""

    spec: dict[str, Any]
    base: Credentials
    cluster: dict[str, Any]
    directory: Path

    def credentials(self) -> Credentials:
        api_version = self.spec.get("apiVersion")
        if api_version not in EXEC_API_VERSIONS:
            raise ConfigError(
                f"exec plugin apiVersion {api_version!r} is not supported "
                f"(supported: {', '.join(EXEC_API_VERSIONS)})"
            )
        if self.spec.get("interactiveMode") == "Always":
            raise ConfigError("the exec plugin needs a terminal (interactiveMode: Always)")
        command = str(self.spec.get("command") or "")
        if not command:
            raise ConfigError("the exec plugin has no command")
        if "/" in command and not Path(command).is_absolute():
            command = str(self.directory / command)  # relative to the kubeconfig, as kubectl
        request: dict[str, Any] = {"interactive": False}
        if self.spec.get("provideClusterInfo"):
            request["cluster"] = {
                "server": self.base.server,
                "certificate-authority-data": self.cluster.get("certificate-authority-data"),
                "insecure-skip-tls-verify": bool(self.cluster.get("insecure-skip-tls-verify")),
                "tls-server-name": self.cluster.get("tls-server-name"),
                "config": (self.cluster.get("extensions") or {}),
            }
            request["cluster"] = {k: v for k, v in request["cluster"].items() if v}
        env = {
            **os.environ,
            **{str(e["name"]): str(e["value"]) for e in self.spec.get("env") or []},
            "KUBERNETES_EXEC_INFO": json.dumps(
                {"apiVersion": api_version, "kind": "ExecCredential", "spec": request}
            ),
        }
        try:
            done = subprocess.run(
                [command, *map(str, self.spec.get("args") or [])],
                env=env,
                capture_output=True,
                text=True,
                timeout=EXEC_TIMEOUT_SECONDS,
                stdin=subprocess.DEVNULL,
            )
        except (OSError, subprocess.TimeoutExpired) as error:
            hint = self.spec.get("installHint") or ""
            raise ConfigError(f"exec plugin {command}: {error}. {hint}".strip()) from None
        if done.returncode != 0:
            raise ConfigError(
                f"exec plugin {command} exited {done.returncode}: {done.stderr.strip()[-500:]}"
            )
        return self._parse(done.stdout, command, api_version)

    def _parse(self, output: str, command: str, api_version: str) -> Credentials:
        try:
            credential = json.loads(output)
        except ValueError:
            raise ConfigError(f"exec plugin {command} did not print JSON") from None
        if credential.get("kind") != "ExecCredential" or credential.get("apiVersion") != (
            api_version
        ):
            raise ConfigError(
                f"exec plugin {command} printed {credential.get('apiVersion')}/"
                f"{credential.get('kind')}, not {api_version}/ExecCredential"
            )
        status = credential.get("status") or {}
        token = status.get("token") or None
        cert, key = status.get("clientCertificateData"), status.get("clientKeyData")
        if not token and not (cert and key):
            raise ConfigError(f"exec plugin {command} returned neither a token nor a certificate")
        expires = None
        if status.get("expirationTimestamp"):
            stamp = str(status["expirationTimestamp"]).replace("Z", "+00:00")
            expires = datetime.datetime.fromisoformat(stamp)
        return _replace(
            self.base,
            token=token,
            cert_data=cert or self.base.cert_data,
            key_data=key or self.base.key_data,
            cert_file=None if cert else self.base.cert_file,
            key_file=None if key else self.base.key_file,
            expires=expires,
        )


def _kubeconfig_exists(environ: Mapping[str, str]) -> bool:
    listed = [p for p in environ.get("KUBECONFIG", "").split(os.pathsep) if p]
    if listed:
        return any(Path(p).expanduser().exists() for p in listed)
    return (Path(environ.get("HOME", "~")).expanduser() / ".kube" / "config").exists()


def _pod(
    context: str | None, environ: Mapping[str, str], in_cluster_first: bool
) -> CredentialSource | None:
    """The pod's service account if it is the one to use: never for a named context; for
    the operator (``in_cluster_first``) whenever it runs in a pod; for a CLI, as kubectl,
    only when there is no kubeconfig."""
    if context is not None or (not in_cluster_first and _kubeconfig_exists(environ)):
        return None
    return in_cluster(environ)


def load(
    context: str | None = None,
    environ: Mapping[str, str] = os.environ,
    in_cluster_first: bool = True,
) -> CredentialSource:
    """The credentials to use: the pod's service account (see ``_pod``), else the
    kubeconfig's ``context`` (default: its current one)."""
    return _pod(context, environ, in_cluster_first) or Kubeconfig.load(environ).credentials(context)


def namespace(
    context: str | None = None,
    environ: Mapping[str, str] = os.environ,
    in_cluster_first: bool = True,
) -> str:
    """The namespace commands default to: the pod's own, or the context's."""
    pod = _pod(context, environ, in_cluster_first)
    if pod is not None:
        return pod.get().namespace
    return Kubeconfig.load(environ).namespace(context)
