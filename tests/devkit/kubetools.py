"""Test-side helpers over the kubernetes client: CRD loading, service-account kubeconfigs, polling.

These serve the tests and the demo; the operator has its own single client module.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any, TypeVar

import yaml
from kubernetes import client, config
from kubernetes.client.rest import ApiException

from devkit.cluster import kubeconfig_document
from jewelry_monitoring.kube import ApiClient, Kube
from jewelry_monitoring.kubeconfig import Credentials, CredentialSource

T = TypeVar("T")


class _KubeYamlLoader(yaml.SafeLoader):
    """SafeLoader that reads a bare ``=`` as the string it is in Kubernetes YAML.

    PyYAML maps ``=`` to the obscure ``tag:yaml.org,2002:value`` and then cannot construct
    it; prometheus-operator's CRDs use ``=`` as an enum value (relabel actions).
    """


_KubeYamlLoader.add_constructor("tag:yaml.org,2002:value", yaml.SafeLoader.construct_yaml_str)


def load_yaml_documents(text: str) -> list[dict[str, Any]]:
    """All non-empty documents of a Kubernetes YAML stream."""
    return [document for document in yaml.load_all(text, Loader=_KubeYamlLoader) if document]


def api_client(kubeconfig: Path | None, context: str | None = None) -> client.ApiClient:
    """An ApiClient for one kubeconfig, not touching the library's global default.

    ``kubeconfig`` None means the user's own: $KUBECONFIG (several files merged) or
    ~/.kube/config; ``context`` None means its current context.
    """
    configuration = client.Configuration()
    config.load_kube_config(
        config_file=str(kubeconfig) if kubeconfig else None,
        context=context,
        client_configuration=configuration,
    )
    return client.ApiClient(configuration)


def api_at(server: str) -> ApiClient:
    """The operator's client for ``server`` without credentials (a test's fake server, or
    one that is never called: a test that replaces the requests)."""
    credentials = Credentials(server=server)
    return ApiClient(CredentialSource(lambda: credentials))


def operator_kube(api: client.ApiClient) -> Kube:
    """The operator's own client (jewelry_monitoring.kube) with the credentials of a test's
    ``kubernetes`` ApiClient: for tests that read or write as the operator does."""
    configuration = api.configuration
    token = (configuration.api_key or {}).get("authorization", "").removeprefix("Bearer ")
    credentials = Credentials(
        server=configuration.host,
        ca_file=configuration.ssl_ca_cert,
        cert_file=configuration.cert_file,
        key_file=configuration.key_file,
        token=token or None,
    )
    return Kube(ApiClient(CredentialSource(lambda: credentials)))


def wait_for(
    probe: Callable[[], T | None], timeout: float = 30.0, interval: float = 0.2, what: str = ""
) -> T:
    """Poll ``probe`` until it returns something truthy; raise with ``what`` on timeout."""
    deadline = time.monotonic() + timeout
    last_error: Exception | None = None
    while time.monotonic() < deadline:
        try:
            result = probe()
        except ApiException as error:
            last_error, result = error, None
        if result:
            return result
        time.sleep(interval)
    raise TimeoutError(f"timed out after {timeout}s waiting for {what or probe}: {last_error}")


def wait_gone(read: Callable[[], object], what: str, timeout: float, interval: float) -> None:
    """Poll ``read`` (a GET of one object) until the API server answers 404."""

    def gone() -> bool:
        try:
            read()
        except ApiException as error:
            return error.status == 404
        return False

    wait_for(gone, timeout=timeout, interval=interval, what=f"{what} deleted")


def apply_crds(api: client.ApiClient, files: Iterable[Path], timeout: float = 30.0) -> list[str]:
    """Create or replace the CRDs in ``files`` and wait until each is Established."""
    extensions = client.ApiextensionsV1Api(api)
    names: list[str] = []
    for path in files:
        for document in load_yaml_documents(path.read_text()):
            name = document["metadata"]["name"]
            try:
                extensions.create_custom_resource_definition(document)
            except ApiException as error:
                if error.status != 409:
                    raise
                current = extensions.read_custom_resource_definition(name)
                document["metadata"]["resourceVersion"] = current.metadata.resource_version
                extensions.replace_custom_resource_definition(name, document)
            names.append(name)
    for name in names:
        wait_for(lambda name=name: crd_established(extensions, name), timeout, what=f"CRD {name}")
    return names


# What says which release of a CRD a cluster holds, and who installed it.
CRD_PROVENANCE = (
    "operator.prometheus.io/version",
    "controller-gen.kubebuilder.io/version",
    "app.kubernetes.io/managed-by",
    "meta.helm.sh/release-name",
)


def install_missing_crds(
    api: client.ApiClient, files: Iterable[Path], timeout: float = 30.0
) -> tuple[list[str], dict[str, str]]:
    """Create the CRDs in ``files`` that the cluster lacks; never touch one that exists.

    A cluster's existing CRD may be newer than ours or owned by a Helm release
    (kube-prometheus-stack): replacing it would downgrade it and take it from its owner.
    Returns the names created, and for each CRD left alone what it is (its version and owner
    labels), so the caller can say so.
    """
    extensions = client.ApiextensionsV1Api(api)
    created: list[str] = []
    kept: dict[str, str] = {}
    for path in files:
        for document in load_yaml_documents(path.read_text()):
            name = document["metadata"]["name"]
            try:
                existing = extensions.read_custom_resource_definition(name)
            except ApiException as error:
                if error.status != 404:
                    raise
            else:
                kept[name] = _provenance(existing.metadata)
                continue
            try:
                extensions.create_custom_resource_definition(document)
            except ApiException as error:
                if error.status != 409:  # created meanwhile by someone else: theirs stays
                    raise
                kept[name] = "created by someone else just now"
                continue
            created.append(name)
    for name in created:
        wait_for(lambda name=name: crd_established(extensions, name), timeout, what=f"CRD {name}")
    return created, kept


def _provenance(metadata: client.V1ObjectMeta) -> str:
    marks = {**(metadata.labels or {}), **(metadata.annotations or {})}
    found = [f"{key}={marks[key]}" for key in CRD_PROVENANCE if key in marks]
    return ", ".join(found) or "no version or owner marks"


def delete_crds(api: client.ApiClient, names: Iterable[str], timeout: float = 30.0) -> None:
    """Delete CRDs and wait until they are gone, so a later create starts from nothing."""
    extensions = client.ApiextensionsV1Api(api)
    for name in names:
        try:
            extensions.delete_custom_resource_definition(name)
        except ApiException as error:
            if error.status != 404:
                raise
    for name in names:
        wait_for(lambda name=name: _absent(extensions, name), timeout, what=f"CRD {name} deleted")


def crd_established(extensions: client.ApiextensionsV1Api, name: str) -> bool:
    crd = extensions.read_custom_resource_definition(name)
    return any(
        condition.type == "Established" and condition.status == "True"
        for condition in (crd.status.conditions or [])
    )


def _absent(extensions: client.ApiextensionsV1Api, name: str) -> bool:
    try:
        extensions.read_custom_resource_definition(name)
    except ApiException as error:
        if error.status == 404:
            return True
        raise
    return False


def service_account_kubeconfig(
    api: client.ApiClient,
    server: str,
    ca_file: Path,
    namespace: str,
    name: str,
    destination: Path,
    expiration_seconds: int = 7200,
    bound_pod: tuple[str, str] | None = None,
) -> Path:
    """Write a kubeconfig that authenticates as ServiceAccount ``namespace/name``.

    The token comes from the TokenRequest API, so the holder has exactly the RBAC of that
    ServiceAccount: this is how tests run the operator under the chart's own permissions.
    ``bound_pod`` (name, uid) binds the token to a Pod of ``namespace``, like a kubelet-issued
    token: valid only while that Pod exists, and named in the audit log's ``user.extra``.
    """
    core = client.CoreV1Api(api)
    bound = (
        client.V1BoundObjectReference(
            api_version="v1", kind="Pod", name=bound_pod[0], uid=bound_pod[1]
        )
        if bound_pod
        else None
    )
    request = client.AuthenticationV1TokenRequest(
        spec=client.V1TokenRequestSpec(
            audiences=[], expiration_seconds=expiration_seconds, bound_object_ref=bound
        )
    )
    token = core.create_namespaced_service_account_token(name, namespace, request).status.token
    document = kubeconfig_document(server, ca_file, {"token": token})
    destination.write_text(yaml.safe_dump(document))
    destination.chmod(0o600)
    return destination
