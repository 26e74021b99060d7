import shutil
from pathlib import Path

import pytest
import yaml

from retail_dp.descriptors import Catalog, DescriptorError, ProductInput
from retail_dp.settings import Settings

FOLDER = Settings().descriptors_dir


def test_the_four_products_load_and_reference_each_other():
    catalog = Catalog.load(FOLDER)
    assert set(catalog.products) == {
        "product_affinity_cross_sell",
        "customer_info",
        "purchase",
        "product",
    }
    consumer = catalog.consumer
    assert consumer.kind == "consumer-aligned"
    assert {i.data_product for i in consumer.inputs if isinstance(i, ProductInput)} == {
        "customer_info",
        "purchase",
        "product",
    }
    for product in catalog.products.values():
        assert {"completeness", "uniqueness", "freshness", "validity", "schema"} <= set(
            product.slos
        )
        assert product.owner.email and product.tags.tier and product.metrics
    assert consumer.slos["uniqueness"].target == 0.995
    assert consumer.slos["freshness"].target == 24


def _broken(tmp_path: Path, name: str, change) -> Path:
    folder = tmp_path / "data_products"
    shutil.copytree(FOLDER, folder)
    path = folder / f"{name}.yaml"
    doc = yaml.safe_load(path.read_text())
    change(doc)
    path.write_text(yaml.safe_dump(doc))
    return folder


@pytest.mark.parametrize(
    "change, field, problem",
    [
        (
            lambda d: d["slos"]["completeness"].update(target=1.5),
            "slos.completeness",
            "ratio target",
        ),
        (lambda d: d.pop("owner"), "owner", "Field required"),
        (lambda d: d["owner"].update(email="not-an-email"), "owner.email", "not-an-email"),
        (lambda d: d["slos"].pop("freshness"), "<root>", "slos lacks ['freshness']"),
        (lambda d: d["refresh"].update(cron="daily"), "refresh.cron", "five-field cron"),
        (lambda d: d["tags"].update(tier="gold tier!"), "tags.tier", "gold tier!"),
    ],
)
def test_malformed_descriptor_names_file_field_and_problem(tmp_path, change, field, problem):
    folder = _broken(tmp_path, "purchase", change)
    with pytest.raises(DescriptorError) as err:
        Catalog.load(folder)
    message = str(err.value)
    assert str(folder / "purchase.yaml") in message
    assert f"field '{field}" in message
    assert problem in message


def test_unknown_input_product_is_rejected(tmp_path):
    folder = _broken(
        tmp_path,
        "product_affinity_cross_sell",
        lambda d: d["inputs"].append({"data_product": "loyalty"}),
    )
    with pytest.raises(DescriptorError, match="'loyalty', which no descriptor declares"):
        Catalog.load(folder)
