"""The operator's own credentials loader (jewelry_monitoring.kubeconfig) and its thin client
(kube.ApiClient): kubeconfig files and contexts, token files that rotate, exec credential
plugins, in-cluster config; then the real API server, reached with a client certificate given
as data, with an exec plugin, and after its token was rotated (a 401, then the new token)."""

from __future__ import annotations

import base64
import datetime
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml
from kubernetes import client

from devkit.cluster import ControlPlane
from jewelry_monitoring.kube import ApiClient, Kube
from jewelry_monitoring.kubeconfig import (
    ConfigError,
    CredentialSource,
    Kubeconfig,
    in_cluster,
    load,
    namespace,
)


def _write(path: Path, document: dict[str, Any]) -> Path:
    path.write_text(yaml.safe_dump(document))
    return path


def _config(
    user: dict[str, Any], cluster: dict[str, Any] | None = None, ns: str | None = None
) -> dict[str, Any]:
    context: dict[str, Any] = {"cluster": "c", "user": "u"}
    if ns:
        context["namespace"] = ns
    return {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": "c", "cluster": cluster or {"server": "https://127.0.0.1:6443"}}],
        "users": [{"name": "u", "user": user}],
        "contexts": [{"name": "ctx", "context": context}],
        "current-context": "ctx",
    }


def test_files_merge_first_wins_and_contexts_give_namespaces(tmp_path: Path) -> None:
    first = _write(tmp_path / "a", _config({"token": "first"}, ns="shop"))
    second = _config({"token": "second"})
    second["contexts"].append({"name": "other", "context": {"cluster": "c", "user": "u"}})
    second["current-context"] = "other"
    _write(tmp_path / "b", second)
    env = {"KUBECONFIG": f"{first}:{tmp_path / 'b'}:{tmp_path / 'missing'}"}
    config = Kubeconfig.load(env)
    assert config.current_context == "ctx"  # the first file that sets it
    assert config.namespace() == "shop" and config.namespace("other") == "default"
    assert config.credentials().get().token == "first"
    assert namespace(environ=env, in_cluster_first=False) == "shop"
    with pytest.raises(ConfigError, match="context 'nope'"):
        config.credentials("nope")
    with pytest.raises(ConfigError, match="does not exist"):
        Kubeconfig.load({"KUBECONFIG": str(tmp_path / "missing")})


def test_tls_material_as_data_or_files_relative_to_the_kubeconfig(tmp_path: Path) -> None:
    pem = "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n"
    cluster = {
        "server": "https://10.0.0.1:443/",
        "certificate-authority-data": base64.b64encode(pem.encode()).decode(),
        "tls-server-name": "kubernetes",
    }
    user = {"client-certificate": "certs/me.crt", "client-key": "/abs/me.key"}
    path = _write(tmp_path / "config", _config(user, cluster))
    got = Kubeconfig.load({"KUBECONFIG": str(path)}).credentials().get()
    assert got.server == "https://10.0.0.1:443" and got.ca_data == pem
    assert got.tls_server_name == "kubernetes" and not got.insecure
    assert got.cert_file == str(tmp_path / "certs" / "me.crt") and got.key_file == "/abs/me.key"
    insecure = _write(
        tmp_path / "insecure",
        _config({"token": "t"}, {"server": "https://x:1", "insecure-skip-tls-verify": True}),
    )
    assert Kubeconfig.load({"KUBECONFIG": str(insecure)}).credentials().get().insecure


def test_what_is_not_supported_is_refused_by_name(tmp_path: Path) -> None:
    for user, field in (
        ({"username": "a", "password": "b"}, "username"),
        ({"auth-provider": {"name": "gcp"}}, "auth-provider"),
    ):
        path = _write(tmp_path / field, _config(user))
        with pytest.raises(ConfigError, match=field):
            Kubeconfig.load({"KUBECONFIG": str(path)}).credentials()


class _Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_a_token_file_is_read_again_as_it_rotates(tmp_path: Path) -> None:
    token = tmp_path / "token"
    token.write_text("one\n")
    path = _write(tmp_path / "config", _config({"tokenFile": "token"}))
    source = Kubeconfig.load({"KUBECONFIG": str(path)}).credentials()
    clock = source.clock = _Clock()
    assert source.get().token == "one"
    token.write_text("two")
    clock.now = 30.0
    assert source.get().token == "one"  # read at most once a minute
    clock.now = 61.0
    assert source.get().token == "two"
    token.write_text("three")
    source.invalidate()  # as after a 401
    assert source.get().token == "three"


def test_in_cluster_config_from_the_pods_service_account(tmp_path: Path) -> None:
    (tmp_path / "token").write_text("pod-token")
    (tmp_path / "ca.crt").write_text("ca")
    (tmp_path / "namespace").write_text("jm-system")
    env = {"KUBERNETES_SERVICE_HOST": "10.96.0.1", "KUBERNETES_SERVICE_PORT": "443"}
    source = in_cluster(env, tmp_path)
    assert source is not None
    got = source.get()
    assert got.server == "https://10.96.0.1:443" and got.token == "pod-token"
    assert got.ca_file == str(tmp_path / "ca.crt") and got.namespace == "jm-system"
    ipv6 = in_cluster({**env, "KUBERNETES_SERVICE_HOST": "fd00::1"}, tmp_path)
    assert ipv6 is not None and ipv6.get().server == "https://[fd00::1]:443"
    assert in_cluster({}, tmp_path) is None  # not in a pod
    assert in_cluster(env, tmp_path / "elsewhere") is None  # no token mounted


def _plugin(tmp_path: Path, api_version: str, status: dict[str, Any], exit_code: int = 0) -> Path:
    """An exec credential plugin that records what it was given and prints ``status``."""
    script = tmp_path / "plugin.py"
    script.write_text(
        "import json, os, sys\n"
        f"open({str(tmp_path / 'calls')!r}, 'a').write(os.environ['KUBERNETES_EXEC_INFO'] + "
        "os.environ.get('EXTRA', '') + '\\n')\n"
        f"print(json.dumps({{'apiVersion': {api_version!r}, 'kind': 'ExecCredential', "
        f"'status': {status!r}}}))\n"
        f"sys.stderr.write('plugin says no')\nsys.exit({exit_code})\n"
    )
    return script


@pytest.mark.parametrize(
    "api_version", ["client.authentication.k8s.io/v1", "client.authentication.k8s.io/v1beta1"]
)
def test_exec_plugins_of_eks_and_gke_kubeconfigs(tmp_path: Path, api_version: str) -> None:
    soon = datetime.datetime.now(datetime.UTC) + datetime.timedelta(seconds=30)
    expires = soon.strftime("%Y-%m-%dT%H:%M:%SZ")
    script = _plugin(tmp_path, api_version, {"token": "exec-token", "expirationTimestamp": expires})
    exec_spec = {
        "apiVersion": api_version,
        "command": sys.executable,
        "args": [str(script)],
        "env": [{"name": "EXTRA", "value": "+env"}],
        "provideClusterInfo": True,
        "interactiveMode": "Never",
    }
    path = _write(tmp_path / "config", _config({"exec": exec_spec}))
    source = Kubeconfig.load({"KUBECONFIG": str(path)}).credentials()
    got = source.get()
    assert got.token == "exec-token" and got.expires is not None
    info = json.loads((tmp_path / "calls").read_text().splitlines()[0].removesuffix("+env"))
    assert info["apiVersion"] == api_version and info["spec"]["interactive"] is False
    assert info["spec"]["cluster"]["server"] == "https://127.0.0.1:6443"
    assert (tmp_path / "calls").read_text().splitlines()[0].endswith("+env")
    source.get()  # expires in 30 s, within the renewal margin: the plugin runs again
    assert len((tmp_path / "calls").read_text().splitlines()) == 2


def test_exec_plugin_failures_are_clear(tmp_path: Path) -> None:
    version = "client.authentication.k8s.io/v1"
    failing = _plugin(tmp_path, version, {"token": "x"}, exit_code=3)
    spec = {"apiVersion": version, "command": sys.executable, "args": [str(failing)]}
    path = _write(tmp_path / "config", _config({"exec": spec}))
    with pytest.raises(ConfigError, match="exited 3: plugin says no"):
        Kubeconfig.load({"KUBECONFIG": str(path)}).credentials().get()
    old = {**spec, "apiVersion": "client.authentication.k8s.io/v1alpha1"}
    path = _write(tmp_path / "config", _config({"exec": old}))
    with pytest.raises(ConfigError, match="v1alpha1"):
        Kubeconfig.load({"KUBECONFIG": str(path)}).credentials().get()
    missing = {**spec, "command": "no-such-plugin", "installHint": "install no-such-plugin"}
    path = _write(tmp_path / "config", _config({"exec": missing}))
    with pytest.raises(ConfigError, match="install no-such-plugin"):
        Kubeconfig.load({"KUBECONFIG": str(path)}).credentials().get()


# -- against the real API server --------------------------------------------------------------


ACCOUNT = "jm-kubeconfig-test"


def _token(admin_api: client.ApiClient) -> str:
    """A token of ServiceAccount default/ACCOUNT (made here: no controller makes "default")."""
    core = client.CoreV1Api(admin_api)
    account = client.V1ServiceAccount(metadata=client.V1ObjectMeta(name=ACCOUNT))
    try:
        core.create_namespaced_service_account("default", account)
    except client.ApiException as error:
        if error.status != 409:
            raise
    request = client.AuthenticationV1TokenRequest(spec=client.V1TokenRequestSpec(audiences=[]))
    token: str = core.create_namespaced_service_account_token(
        ACCOUNT, "default", request
    ).status.token
    return token


@pytest.mark.cluster
def test_client_certificate_and_ca_as_data_reach_the_api_server(
    control_plane: ControlPlane, tmp_path: Path
) -> None:
    """The admin's certificate, key and CA inlined, as cloud kubeconfigs carry them."""
    document = yaml.safe_load(control_plane.kubeconfig.read_text())
    cluster, user = document["clusters"][0]["cluster"], document["users"][0]["user"]
    for field, data in (
        ("certificate-authority", "certificate-authority-data"),
        ("client-certificate", "client-certificate-data"),
        ("client-key", "client-key-data"),
    ):
        holder = cluster if field == "certificate-authority" else user
        if field in holder:
            holder[data] = base64.b64encode(Path(holder.pop(field)).read_bytes()).decode()
    path = _write(tmp_path / "inline", document)
    kube = Kube(ApiClient(load(environ={"KUBECONFIG": str(path)}, in_cluster_first=False)))
    assert any(n["metadata"]["name"] == "default" for n in kube.list("Namespace"))


@pytest.mark.cluster
def test_exec_plugin_token_and_a_rotated_token_after_a_401(
    control_plane: ControlPlane, admin_api: client.ApiClient, tmp_path: Path
) -> None:
    version = "client.authentication.k8s.io/v1beta1"
    token = _token(admin_api)
    script = _plugin(tmp_path, version, {"token": token})
    spec = {"apiVersion": version, "command": sys.executable, "args": [str(script)]}
    document = yaml.safe_load(control_plane.kubeconfig.read_text())
    document["users"][0]["user"] = {"exec": spec}
    path = _write(tmp_path / "exec", document)
    exec_api = ApiClient(load(environ={"KUBECONFIG": str(path)}, in_cluster_first=False))
    assert _whoami(exec_api) == f"system:serviceaccount:default:{ACCOUNT}"

    tokens = iter(["not-a-valid-token", token])
    base = load(environ={"KUBECONFIG": str(path)}, in_cluster_first=False)
    rotating = CredentialSource(lambda: _with_token(base.get(), next(tokens)))
    assert _whoami(ApiClient(rotating)) == f"system:serviceaccount:default:{ACCOUNT}"


def _whoami(api: ApiClient) -> str:
    """Who the API server says we are (a SelfSubjectReview: any authenticated user may)."""
    body = {"apiVersion": "authentication.k8s.io/v1", "kind": "SelfSubjectReview"}
    response = api.request(
        "POST",
        "/apis/authentication.k8s.io/v1/selfsubjectreviews",
        [],
        json.dumps(body).encode(),
        {"Content-Type": "application/json", "Accept": "application/json"},
        (5.0, 30.0),
        False,
    )
    assert response.status == 201, (response.status, response.data[:300])
    return str(json.loads(response.data)["status"]["userInfo"]["username"])


def _with_token(credentials: Any, token: str) -> Any:
    return type(credentials)(**{**credentials.__dict__, "token": token})


# A pod without a kubeconfig, as `kubectl exec deploy/jewelry-monitoring -- jewelry-monitoring
# doctor` runs it: the service account mounted at SERVICE_ACCOUNT (here a directory of the
# test's: this module's constant is set before the CLI runs).
IN_A_POD = """
import sys
from pathlib import Path
from jewelry_monitoring import kubeconfig
kubeconfig.SERVICE_ACCOUNT = Path(sys.argv[1])
from jewelry_monitoring.cli import main
sys.exit(main(sys.argv[2:]))
"""


@pytest.mark.cluster
def test_doctor_in_a_pod_uses_its_service_account(
    control_plane: ControlPlane,
    admin_api: client.ApiClient,
    jewelry_crd: list[str],
    namespace: str,
    tmp_path: Path,
) -> None:
    """With the operator's own permissions, which do not list pods: the app endpoints check
    says so instead of failing the whole run. The chart is installed under a release of this
    test's own, so that its refused list of pods is not the session operator's identity's
    (test_chart_rbac_grants_only_what_the_operator_uses reads every request of that one)."""
    from devkit.crs import GROUP, PLURAL, VERSION, CustomApi, cr_body
    from devkit.operator_process import install_rbac

    CustomApi(admin_api).create_namespaced_custom_object(
        GROUP, VERSION, namespace, PLURAL, cr_body("shop", {"app": {"podSelector": {"a": "b"}}})
    )
    operator_config = yaml.safe_load(
        install_rbac(control_plane, admin_api, "jm-doctor", "jm-doctor").read_text()
    )
    account = tmp_path / "serviceaccount"
    account.mkdir()
    (account / "token").write_text(operator_config["users"][0]["user"]["token"])
    (account / "ca.crt").write_bytes(Path(control_plane.ca_cert).read_bytes())
    (account / "namespace").write_text("jm-doctor")
    host, _, port = control_plane.server.removeprefix("https://").rpartition(":")
    env = {
        "PATH": os.environ["PATH"],
        "HOME": str(tmp_path),  # no ~/.kube/config
        "KUBERNETES_SERVICE_HOST": host,
        "KUBERNETES_SERVICE_PORT": port,
    }
    result = subprocess.run(
        [sys.executable, "-c", IN_A_POD, str(account), "doctor", "-n", namespace, "-o", "json"],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode in (0, 1), result.stderr  # 2: it could not read the cluster
    checks = {check["name"]: check for check in json.loads(result.stdout)["checks"]}
    assert checks["CRD jewelrymonitorings.monitoring.jewelry.io"]["status"] == "ok", checks
    assert "pods not listed" in checks["shop: app endpoints"]["detail"], checks
