"""The marts, from the dbt manifest: the one list of them.

A mart is a dbt model in `models/marts/`, or a table a model fit writes, declared as a table of
the `fitted` dbt source. Its YAML says everything the rest of the product needs: the declared
columns and types (the schema SLO), `meta.published` (consumers read it: the snapshot waits for
it) and `meta.slo` (what its SLO checks measure). Adding a mart is SQL plus YAML.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from retail_dp.descriptors import DataProduct, DescriptorError

FITTED_SOURCE = "fitted"
MARTS_LAYER = "marts"
SEMANTIC_LAYER = "semantic"


@dataclass(frozen=True)
class Mart:
    name: str
    columns: dict[str, str]  # column -> declared type, upper case
    descriptions: dict[str, str]
    published: bool
    slo: dict[str, Any] = field(default_factory=dict)
    fitted: bool = False  # written by a model fit rather than built by dbt
    parts_by: str | None = None  # published as Parquet parts by this column (delivery/snapshots)

    @property
    def asset(self) -> str:
        return f"{MARTS_LAYER}/{self.name}"


def _meta(node: dict) -> dict:
    return {**node.get("meta", {}), **node.get("config", {}).get("meta", {})}


def _mart(node: dict, fitted: bool) -> Mart:
    meta = _meta(node)
    columns = node.get("columns", {})
    return Mart(
        name=node["name"],
        columns={n: (c.get("data_type") or "").upper() for n, c in columns.items()},
        descriptions={n: c.get("description", "") for n, c in columns.items()},
        published=bool(meta.get("published", False)),
        slo=meta.get("slo") or {},
        fitted=fitted,
        parts_by=meta.get("publish_parts_by"),
    )


def _manifest(path: Path) -> dict:
    return json.loads(path.read_text())


def load_marts(manifest_path: Path) -> list[Mart]:
    """Every mart, by name. A published mart without `meta.slo` is an error: it would silently
    get no checks."""
    manifest = _manifest(manifest_path)
    marts = [
        _mart(node, fitted=False)
        for node in manifest["nodes"].values()
        if node["resource_type"] == "model" and node["fqn"][1] == MARTS_LAYER
    ]
    marts += [
        _mart(node, fitted=True)
        for node in manifest["sources"].values()
        if node["source_name"] == FITTED_SOURCE
    ]
    unguarded = [m.name for m in marts if m.published and not m.slo]
    if unguarded:
        raise ValueError(f"published marts without meta.slo in their dbt YAML: {unguarded}")
    return sorted(marts, key=lambda m: m.name)


def semantic_tables(manifest_path: Path) -> list[str]:
    """The semantic layer's dbt models, as asset keys (`semantic/customer_value`)."""
    manifest = _manifest(manifest_path)
    return sorted(
        f"{SEMANTIC_LAYER}/{node['name']}"
        for node in manifest["nodes"].values()
        if node["resource_type"] == "model" and node["fqn"][1] == SEMANTIC_LAYER
    )


def check_outputs(product: DataProduct, marts: list[Mart], descriptors_dir: Path) -> None:
    """The descriptor's outputs are the published marts, no more and no fewer."""
    declared = set(product.output_tables)
    published = {m.name for m in marts if m.published}
    if declared != published:
        raise DescriptorError(
            f"{descriptors_dir / (product.name + '.yaml')}: field 'outputs' lists "
            f"{sorted(declared)}, but the published marts (dbt meta.published) are "
            f"{sorted(published)}; missing {sorted(published - declared)}, "
            f"not published {sorted(declared - published)}"
        )
