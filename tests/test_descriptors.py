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


def test_outputs_must_be_the_published_marts_of_the_dbt_manifest(tmp_path):
    from retail_dp.transform.assets import dbt_project
    from retail_dp.transform.marts import check_outputs, load_marts

    settings = Settings()
    marts = load_marts(dbt_project(settings.dbt_project_dir).manifest_path)
    published = {m.name for m in marts if m.published}
    assert {"fct_purchase", "customer_lifetime_value", "cross_sell_recommendations"} <= published
    assert all(m.slo for m in marts if m.published)  # none silently without checks
    consumer = Catalog.load(settings.descriptors_dir).consumer
    check_outputs(consumer, marts, settings.descriptors_dir)
    fewer = consumer.model_copy(update={"outputs": consumer.outputs[1:]})
    missing = consumer.outputs[0].table
    with pytest.raises(DescriptorError, match=rf"field 'outputs'.*missing \['{missing}'\]"):
        check_outputs(fewer, marts, settings.descriptors_dir)


def test_a_malformed_contract_rule_names_the_file_and_field(tmp_path):
    folder = tmp_path / "data_products"
    shutil.copytree(FOLDER, folder)
    path = folder / "purchase.yaml"
    text = path.read_text()
    broken = text.replace(
        '{column: quantity, rule: ">", value: 0, on_fail: reject}',
        "{column: quantity, rule: between, value: [1, 2, 3], on_fail: reject}",
    )
    assert broken != text
    path.write_text(broken)
    with pytest.raises(DescriptorError, match=r"purchase\.yaml: field 'contract\.rules\.0'"):
        Catalog.load(folder)


def test_a_rule_on_an_unknown_column_is_refused():
    from retail_dp.sources.contracts import contract_for

    product = Catalog.load(FOLDER)["product"]
    rules = [*product.contract.rules, {"column": "colour", "rule": "in", "value": ["red"]}]
    contract = product.contract.model_validate({**product.contract.model_dump(), "rules": rules})
    with pytest.raises(ValueError, match=r"product: descriptor rules name unknown columns"):
        contract_for(product.model_copy(update={"contract": contract}))
