"""Offline JSON schemas for kubeconform, generated from a real API server and real CRDs.

kubeconform downloads its schemas from the internet by default; here there is no internet,
and a download would not match our cluster version anyway. So the schemas are made locally:

* built-in kinds (core, apps, rbac, policy, apiextensions...) from the local control
  plane's own OpenAPI v2 document (``/openapi/v2``): each kind's definition plus the
  definitions it references, in one standalone file;
* custom kinds (prometheus-operator's and ours) from each CRD version's
  ``openAPIV3Schema``, with ``metadata`` checked as a real ObjectMeta.

Both are made strict as kubeconform's ``-strict`` schemas are: an object that lists its
properties rejects unknown ones (``additionalProperties: false``) unless the API allows
unknown fields there (``x-kubernetes-preserve-unknown-fields``). Files are laid out for
``-schema-location <dir>/{{ .Group }}/{{ .ResourceKind }}_{{ .ResourceAPIVersion }}.json``,
where kubeconform's ``.Group`` is the apiVersion's group, or its version for the core group.
"""

from __future__ import annotations

import copy
import json
import subprocess
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from kubernetes import client

from devkit.kubetools import load_yaml_documents
from devkit.toolchain import binary

LOCATION = "{{ .Group }}/{{ .ResourceKind }}_{{ .ResourceAPIVersion }}.json"
OBJECT_META = "io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta"
QUANTITY = "io.k8s.apimachinery.pkg.api.resource.Quantity"
INT_OR_STRING: dict[str, Any] = {"oneOf": [{"type": "string"}, {"type": "integer"}]}

Schema = dict[str, Any]
GVK = tuple[str, str, str]  # group ("" for core), version, kind


def fetch_openapi_v2(api: client.ApiClient) -> Schema:
    """The API server's OpenAPI v2 (swagger) document."""
    response = api.call_api(
        "/openapi/v2",
        "GET",
        header_params={"Accept": "application/json"},
        auth_settings=["BearerToken"],
        _preload_content=False,
    )[0]
    document: Schema = json.loads(response.data)
    return document


def schema_path(directory: Path, gvk: GVK) -> Path:
    """Where kubeconform looks for ``gvk`` given ``-schema-location directory/LOCATION``."""
    group, version, kind = gvk
    return directory / (group or version) / f"{kind.lower()}_{version}.json"


_SCHEMA_MAPS = ("properties", "patternProperties", "definitions")
_SCHEMA_LISTS = ("allOf", "anyOf", "oneOf")
_SCHEMA_VALUES = ("items", "additionalProperties", "not", "additionalItems")


def _strict(node: Any, strict: bool) -> Any:
    """A copy of a schema with kubeconform-compatible and, if asked, strict objects.

    Walks only schema positions (not, say, the property names of a ``properties`` map, which
    in the CRD kind's own schema are words like ``type`` and ``nullable``).
    """
    if not isinstance(node, dict):
        return node
    result: dict[str, Any] = {}
    for key, value in node.items():
        if key in _SCHEMA_MAPS and isinstance(value, dict):
            result[key] = {name: _strict(item, strict) for name, item in value.items()}
        elif key in _SCHEMA_LISTS and isinstance(value, list):
            result[key] = [_strict(item, strict) for item in value]
        elif key in _SCHEMA_VALUES and isinstance(value, dict):
            result[key] = _strict(value, strict)
        elif key == "items" and isinstance(value, list):
            result[key] = [_strict(item, strict) for item in value]
        else:
            result[key] = value
    if result.get("format") == "int-or-string" or result.pop("x-kubernetes-int-or-string", None):
        result.pop("type", None)
        result.pop("format", None)
        if "anyOf" not in result and "oneOf" not in result:
            result.update(copy.deepcopy(INT_OR_STRING))
    if result.pop("nullable", False) and isinstance(result.get("type"), str):
        result["type"] = [result["type"], "null"]
    if result.get("x-kubernetes-embedded-resource"):
        properties = result.setdefault("properties", {})
        properties.setdefault("apiVersion", {"type": "string"})
        properties.setdefault("kind", {"type": "string"})
        properties.setdefault("metadata", {"type": "object"})
    if (
        strict
        and isinstance(result.get("properties"), dict)
        and "additionalProperties" not in result
        and not result.get("x-kubernetes-preserve-unknown-fields")
    ):
        result["additionalProperties"] = False
    return result


def _references(node: Any) -> Iterable[str]:
    if isinstance(node, dict):
        ref = node.get("$ref")
        if isinstance(ref, str) and ref.startswith("#/definitions/"):
            yield ref.removeprefix("#/definitions/")
        for value in node.values():
            yield from _references(value)
    elif isinstance(node, list):
        for item in node:
            yield from _references(item)


def _closure(definitions: Schema, roots: Iterable[str]) -> Schema:
    """The definitions reachable from ``roots``."""
    found: Schema = {}
    pending = list(roots)
    while pending:
        name = pending.pop()
        if name in found:
            continue
        found[name] = definitions[name]
        pending.extend(_references(definitions[name]))
    return found


@dataclass
class SchemaSet:
    """Standalone JSON schemas by group/version/kind."""

    schemas: dict[GVK, Schema] = field(default_factory=dict)

    def write(self, directory: Path) -> str:
        """Write every schema; return the ``-schema-location`` value that finds them."""
        for gvk, schema in self.schemas.items():
            path = schema_path(directory, gvk)
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(json.dumps(schema, sort_keys=True))
        return f"{directory}/{LOCATION}"


def _fix_definitions(openapi: Schema, strict: bool) -> Schema:
    definitions = {name: _strict(d, strict) for name, d in openapi["definitions"].items()}
    # Quantities are written as strings ("100m") or plain numbers (2) in manifests.
    if QUANTITY in definitions:
        quantity = {k: v for k, v in definitions[QUANTITY].items() if k != "type"}
        definitions[QUANTITY] = quantity | {"oneOf": [{"type": "string"}, {"type": "number"}]}
    return definitions


def builtin_schemas(openapi: Schema, strict: bool = True) -> SchemaSet:
    """One schema per built-in kind the API server serves, from its OpenAPI v2 document."""
    definitions = _fix_definitions(openapi, strict)
    result = SchemaSet()
    for definition in definitions.values():
        for gvk in definition.get("x-kubernetes-group-version-kind", []):
            key = (gvk["group"], gvk["version"], gvk["kind"])
            if key[2].endswith("List") or key in result.schemas:
                continue
            schema = dict(definition)
            schema["definitions"] = _closure(definitions, _references(definition))
            result.schemas[key] = schema
    return result


def crd_schemas(crd_files: Iterable[Path], openapi: Schema, strict: bool = True) -> SchemaSet:
    """One schema per served version of every CRD in ``crd_files``."""
    definitions = _fix_definitions(openapi, strict)
    metadata = _closure(definitions, [OBJECT_META])
    result = SchemaSet()
    for path in crd_files:
        for crd in load_yaml_documents(path.read_text()):
            if crd.get("kind") != "CustomResourceDefinition":
                continue
            spec = crd["spec"]
            for version in spec["versions"]:
                if not version.get("served", True):
                    continue
                raw = (version.get("schema") or {}).get("openAPIV3Schema") or {
                    "type": "object",
                    "x-kubernetes-preserve-unknown-fields": True,
                }
                schema = _strict(raw, strict)
                properties = schema.setdefault("properties", {})
                properties.setdefault("apiVersion", {"type": "string"})
                properties.setdefault("kind", {"type": "string"})
                properties["metadata"] = {"$ref": f"#/definitions/{OBJECT_META}"}
                if strict and not schema.get("x-kubernetes-preserve-unknown-fields"):
                    schema["additionalProperties"] = False
                schema["definitions"] = metadata
                key = (spec["group"], version["name"], spec["names"]["kind"])
                result.schemas[key] = schema
    return result


def write_schemas(
    directory: Path, openapi: Schema, crd_files: Iterable[Path], strict: bool = True
) -> str:
    """Built-in and CRD schemas under ``directory``; returns the ``-schema-location``."""
    builtin = builtin_schemas(openapi, strict)
    custom = crd_schemas(crd_files, openapi, strict)
    merged = SchemaSet({**builtin.schemas, **custom.schemas})  # CRDs win over the server's copy
    return merged.write(directory)


@dataclass
class KubeconformReport:
    summary: dict[str, int]
    resources: list[dict[str, Any]]
    stdout: str
    stderr: str
    returncode: int

    def problems(self) -> list[str]:
        return [
            f"{r['filename']}: {r['kind']}/{r['name']} ({r['version']}): {r['status']} {r['msg']}"
            for r in self.resources
            if r["status"] not in ("statusValid", "statusEmpty", "")
        ]


def kubeconform(files: Iterable[Path], schema_location: str) -> KubeconformReport:
    """Run kubeconform -strict -summary on ``files`` against local schemas only."""
    command = [
        str(binary("kubeconform")),
        "-strict",
        "-summary",
        "-verbose",
        "-output",
        "json",
        "-n",
        "2",
        "-schema-location",
        schema_location,
        *[str(path) for path in files],
    ]
    result = subprocess.run(command, capture_output=True, text=True, timeout=300)
    try:
        parsed = json.loads(result.stdout)
    except json.JSONDecodeError as error:
        raise RuntimeError(f"kubeconform failed: {result.stdout}\n{result.stderr}") from error
    return KubeconformReport(
        parsed["summary"], parsed["resources"], result.stdout, result.stderr, result.returncode
    )
