"""Check RayCluster and RayJob manifests against KubeRay's CRD schemas, strictly.

A CRD's ``openAPIV3Schema`` is turned into a JSON Schema the way the API server applies it
with strict field validation: ``x-kubernetes-int-or-string`` accepts an integer or a string,
``nullable`` adds null, an object with ``properties`` and without
``x-kubernetes-preserve-unknown-fields`` rejects unknown fields; other ``x-kubernetes-*``
keys are dropped. CEL rules (``x-kubernetes-validations``) are not evaluated.

The CRD files are not shipped with dripml (they belong to KubeRay): pass the path of
``ray.io_rayclusters.yaml`` / ``ray.io_rayjobs.yaml`` from the KubeRay release in use.
"""

from __future__ import annotations

from collections.abc import Mapping
from functools import lru_cache
from pathlib import Path
from typing import Any

import jsonschema
import yaml

# ManifestError lives with the other errors; importing it from here still works.
from dripml.errors import ManifestError


def json_schema(openapi: Mapping[str, Any]) -> dict[str, Any]:
    """The strict JSON Schema (draft 7) of one OpenAPI v3 schema node, recursively."""
    node: dict[str, Any] = {}
    for key, value in openapi.items():
        if key.startswith("x-kubernetes-") or key in ("nullable", "description"):
            continue
        if key == "properties":
            node[key] = {k: json_schema(v) for k, v in value.items()}
        elif key in ("items", "additionalProperties", "not") and isinstance(value, Mapping):
            node[key] = json_schema(value)
        elif key in ("allOf", "anyOf", "oneOf"):
            node[key] = [json_schema(v) for v in value]
        else:
            node[key] = value
    if openapi.get("x-kubernetes-int-or-string"):
        node.pop("type", None)
        node["anyOf"] = [{"type": "integer"}, {"type": "string"}]
    if (node.get("type") == "object" and "properties" in node
            and not openapi.get("x-kubernetes-preserve-unknown-fields")
            and "additionalProperties" not in node):
        node["additionalProperties"] = False
    if openapi.get("nullable"):
        if "type" in node:
            types = node["type"] if isinstance(node["type"], list) else [node["type"]]
            node["type"] = [*types, "null"]
        elif "anyOf" in node:
            node["anyOf"] = [*node["anyOf"], {"type": "null"}]
    return node


@lru_cache(maxsize=8)
def load_crd(path: str, version: str = "v1") -> tuple[str, dict[str, Any]]:
    """(kind, JSON Schema) of ``version`` in the CRD file at ``path``.

    Raises:
        ManifestError: the file holds no such version.
    """
    crd = yaml.load(Path(path).read_text(), Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))
    for entry in crd["spec"]["versions"]:
        if entry["name"] == version:
            schema = json_schema(entry["schema"]["openAPIV3Schema"])
            schema["$schema"] = "http://json-schema.org/draft-07/schema#"
            return crd["spec"]["names"]["kind"], schema
    raise ManifestError(f"{path} has no version {version!r}")


def problems(manifest: Mapping[str, Any], crd_path: str | Path) -> list[str]:
    """Every mismatch between ``manifest`` and the CRD, as ``"spec.a.b: message"``."""
    kind, schema = load_crd(str(crd_path))
    found: list[str] = []
    if manifest.get("kind") != kind:
        found.append(f"kind: expected {kind}, got {manifest.get('kind')!r}")
    validator = jsonschema.Draft7Validator(schema)
    for error in sorted(validator.iter_errors(dict(manifest)), key=lambda e: list(e.path)):
        where = ".".join(str(p) for p in error.absolute_path) or "(root)"
        found.append(f"{where}: {error.message}")
    return found


def validate(manifest: Mapping[str, Any], crd_path: str | Path) -> None:
    """Raise :class:`ManifestError` naming every field that the CRD rejects."""
    found = problems(manifest, crd_path)
    if found:
        name = manifest.get("metadata", {}).get("name", "?")
        raise ManifestError(f"{manifest.get('kind')} {name} does not match {crd_path}:\n  "
                            + "\n  ".join(found))
