"""dbt tests as SLO checks: a test's SLO category comes from its kind in the manifest
(`test_metadata.name`), never from the shape of its name."""

from __future__ import annotations

import json
from pathlib import Path

from retail_dp.descriptors import SloCategory

# test kind -> the SLO category it measures; any other kind (a singular test) is accuracy
TEST_CATEGORIES = {
    "not_null": SloCategory.completeness,
    "unique": SloCategory.uniqueness,
    "unique_combination": SloCategory.uniqueness,
    "accepted_values": SloCategory.validity,
    "relationships": SloCategory.accuracy,
}


def test_category(node: dict) -> SloCategory:
    kind = (node.get("test_metadata") or {}).get("name")
    return TEST_CATEGORIES.get(kind, SloCategory.accuracy)


def test_categories(manifest_path: Path) -> dict[str, SloCategory]:
    """Every dbt test's name (its check name) -> its SLO category."""
    manifest = json.loads(manifest_path.read_text())
    return {
        node["name"]: test_category(node)
        for node in manifest["nodes"].values()
        if node["resource_type"] == "test"
    }
