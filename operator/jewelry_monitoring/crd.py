"""Generate the JewelryMonitoring CustomResourceDefinition from the typed spec and status.

pydantic's JSON schema is close to what Kubernetes wants but not structural: it uses $ref,
``anyOf`` for optional and int-or-string fields, titles and ``null`` defaults. This module
rewrites it into a structural OpenAPI v3 schema. A test compares the result with the CRD
committed in the chart, so the two never drift.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, cast

from pydantic import TypeAdapter
from pydantic.json_schema import GenerateJsonSchema

from jewelry_monitoring.spec import (
    API_GROUP,
    API_VERSION,
    KIND,
    PLURAL,
    SHORT_NAMES,
    SINGULAR,
    JewelryMonitoringSpec,
)
from jewelry_monitoring.status import JewelryMonitoringStatus

Schema = dict[str, Any]


def _structural(schema: Schema, definitions: dict[str, Schema]) -> Schema:
    """One node of pydantic's schema rewritten as a structural Kubernetes schema node."""
    if "$ref" in schema:
        target = definitions[schema["$ref"].rsplit("/", 1)[-1]]
        merged = {**target, **{k: v for k, v in schema.items() if k != "$ref"}}
        return _structural(merged, definitions)
    if "anyOf" in schema:
        variants = [v for v in schema["anyOf"] if v.get("type") != "null"]
        rest = {k: v for k, v in schema.items() if k != "anyOf"}
        if rest.get("default", "") is None:
            del rest["default"]
        types = sorted(v.get("type", "") for v in variants)
        if types == ["integer", "string"]:
            return {**_clean(rest), "x-kubernetes-int-or-string": True}
        if len(variants) == 1:
            return _structural({**variants[0], **rest}, definitions)
        raise ValueError(f"cannot express anyOf {schema['anyOf']} structurally")

    node = _clean(schema)
    if node.get("type") == "object":
        properties = node.get("properties")
        if properties:
            node["properties"] = {
                name: _structural(child, definitions) for name, child in properties.items()
            }
            node.pop("additionalProperties", None)
        else:
            extra = node.pop("additionalProperties", True)
            if extra is True or extra == {}:
                node["x-kubernetes-preserve-unknown-fields"] = True
            elif extra is not False:
                node["additionalProperties"] = _structural(extra, definitions)
    if node.get("type") == "array":
        node["items"] = _structural(node.get("items", {}), definitions)
    return node


def _clean(schema: Schema) -> Schema:
    """Drop what Kubernetes rejects or does not need: titles and ``null`` defaults."""
    node = {k: v for k, v in schema.items() if k not in ("title", "$defs")}
    if "default" in node and node["default"] is None:
        del node["default"]
    if "const" in node:
        node["enum"] = [node.pop("const")]
    # JSON Schema 2020 (pydantic) puts the bound in exclusiveMinimum; OpenAPI v3.0 (Kubernetes)
    # wants the bound in minimum and exclusiveMinimum as a flag.
    for bound in ("Minimum", "Maximum"):
        if not isinstance(node.get(f"exclusive{bound}", False), bool):
            node[bound.lower()] = node[f"exclusive{bound}"]
            node[f"exclusive{bound}"] = True
    return node


class _FactoryDefaults(GenerateJsonSchema):
    """Defaults made by a ``default_factory`` (an empty list or map, a label set) too, which
    pydantic leaves out of a schema: what the operator uses when a field is left out."""

    def get_default_value(self, schema: Any) -> Any:
        # ``schema`` is pydantic-core's WithDefaultSchema; typed loosely so that the operator
        # imports only pydantic, the distribution it declares.
        if "default_factory" in schema and not schema.get("default_factory_takes_data"):
            factory = cast(Callable[[], Any], schema["default_factory"])
            return _JSONABLE.dump_python(factory(), mode="json", by_alias=True)
        return super().get_default_value(schema)


# Any value as JSON would hold it (models by their aliases), for the defaults above.
_JSONABLE: TypeAdapter[Any] = TypeAdapter(Any)

Model = type[JewelryMonitoringSpec] | type[JewelryMonitoringStatus]


def _model_schema(model: Model, generator: type[GenerateJsonSchema] = GenerateJsonSchema) -> Schema:
    raw = model.model_json_schema(by_alias=True, mode="validation", schema_generator=generator)
    return _structural(raw, raw.get("$defs", {}))


def reference_schemas() -> dict[str, Schema]:
    """The spec and status schemas of the CRD, with every default the operator applies (the
    CRD's carry only the plain ones): what the CRD reference documents."""
    return {
        "spec": _model_schema(JewelryMonitoringSpec, _FactoryDefaults),
        "status": _model_schema(JewelryMonitoringStatus, _FactoryDefaults),
    }


def _condition_column(name: str, condition: str, field: str = "status") -> Schema:
    return {
        "name": name,
        "type": "string",
        "jsonPath": f'.status.conditions[?(@.type=="{condition}")].{field}',
    }


# What `kubectl get jm` shows: whether monitoring works (READY) and, if not, why (REASON);
# whether a Prometheus loads our objects (SELECTED), scrapes the targets (TARGETS), and the
# error budget left of the SLO with the least (BUDGET). `-o wide` adds the exporters.
PRINTER_COLUMNS: list[Schema] = [
    _condition_column("Ready", "Ready"),
    _condition_column("Reason", "Ready", "reason"),
    _condition_column("Selected", "SelectedByPrometheus"),
    _condition_column("Targets", "TargetsHealthy"),
    {"name": "Budget", "type": "string", "jsonPath": ".status.budget"},
    {"name": "Exporters", "type": "string", "priority": 1, "jsonPath": ".status.exporters"},
    {"name": "Age", "type": "date", "jsonPath": ".metadata.creationTimestamp"},
]


def build_crd() -> dict[str, Any]:
    """The complete CustomResourceDefinition object."""
    return {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": f"{PLURAL}.{API_GROUP}"},
        "spec": {
            "group": API_GROUP,
            "scope": "Namespaced",
            "names": {
                "kind": KIND,
                "listKind": f"{KIND}List",
                "plural": PLURAL,
                "singular": SINGULAR,
                "shortNames": SHORT_NAMES,
                "categories": ["monitoring"],
            },
            "versions": [
                {
                    "name": API_VERSION,
                    "served": True,
                    "storage": True,
                    "subresources": {"status": {}},
                    "additionalPrinterColumns": PRINTER_COLUMNS,
                    "schema": {
                        "openAPIV3Schema": {
                            "type": "object",
                            "description": JewelryMonitoringSpec.__doc__,
                            "required": ["spec"],
                            "properties": {
                                "apiVersion": {
                                    "type": "string",
                                    "description": f"{API_GROUP}/{API_VERSION}.",
                                },
                                "kind": {"type": "string", "description": f"{KIND}."},
                                # The API server allows nothing more on metadata: its
                                # description is ObjectMeta's own.
                                "metadata": {"type": "object"},
                                "spec": _model_schema(JewelryMonitoringSpec),
                                "status": _model_schema(JewelryMonitoringStatus),
                            },
                        }
                    },
                }
            ],
        },
    }
