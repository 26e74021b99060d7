"""The landing contracts: quarantine reasons, reconciliation, pandera agreement, clear errors."""

import json
import shutil
import warnings
from datetime import datetime
from pathlib import Path

import duckdb
import pandas as pd
import pandera.errors
import pytest

from retail_dp.descriptors import Catalog
from retail_dp.settings import Settings
from retail_dp.sources.contracts import build_contracts
from retail_dp.sources.ingest import load_source
from retail_dp.sources.landing import LandingError

from .conftest import AS_OF

SOURCES = ("customer_info", "product", "purchase")
CONTRACTS = build_contracts(Catalog.load(Settings().descriptors_dir))
# (source, reason, field) in quarantine -> the generator's defect kind
KIND_OF = {
    ("customer_info", "duplicate_key", "customer_id"): "duplicate_customer_id",
    ("customer_info", "missing_key", "customer_id"): "missing_customer_id",
    ("purchase", "out_of_range", "quantity"): "nonpositive_quantity",
    ("purchase", "orphan_reference", "customer_id"): "orphan_customer_id",
    ("purchase", "orphan_reference", "product_id"): "orphan_product_id",
    ("purchase", "out_of_range", "unit_price"): "bad_unit_price",
}


def load_all(con, data_dir: Path, as_of: datetime = AS_OF) -> dict:
    return {s: load_source(con, CONTRACTS[s], data_dir, s, as_of) for s in SOURCES}


@pytest.fixture
def loaded(sample):
    data_dir, manifest = sample
    con = duckdb.connect()
    results = load_all(con, data_dir)
    yield con, results, manifest
    con.close()


def test_each_defect_kind_is_quarantined_with_its_reason(loaded):
    con, results, manifest = loaded
    rows = con.execute(
        "SELECT source, reason, field, count(*) FROM sources.quarantine GROUP BY ALL"
    ).fetchall()
    found = {KIND_OF[(s, r, f)]: n for s, r, f, n in rows}
    expected = dict(manifest["quarantined_defects"])
    # a line after as_of has not happened yet: deferred, counted, neither loaded nor rejected
    assert results["purchase"].rows_deferred == manifest["deferred_defects"]["future_purchase_ts"]
    assert found == expected
    # a malformed email is kept: a customer with a bad email is still a customer
    kept_bad = con.execute(
        r"SELECT count(*) FROM sources.customer_info "
        r"WHERE NOT regexp_matches(email, '^[^@\s]+@[^@\s]+\.[A-Za-z]{2,}$')"
    ).fetchall()[0][0]
    assert kept_bad == manifest["defects"]["malformed_email"]


def test_rows_read_reconcile_with_manifest(loaded):
    con, results, manifest = loaded
    for source, result in results.items():
        assert result.rows_read == manifest["rows"][source]
        assert result.rows_read == (
            result.rows_accepted + result.rows_quarantined + result.rows_deferred
        )
    stored = con.execute("SELECT count(*) FROM sources.quarantine").fetchall()[0][0]
    assert stored == sum(r.rows_quarantined for r in results.values())


def test_quarantine_keeps_source_file_original_row_and_detail(loaded):
    con, _, _ = loaded
    file, record, detail = con.execute(
        "SELECT source_file, record, detail FROM sources.quarantine "
        "WHERE reason = 'out_of_range' AND field = 'quantity' LIMIT 1"
    ).fetchall()[0]
    assert file.endswith("purchase.csv")
    original = json.loads(record)
    assert set(original) == set(CONTRACTS["purchase"].columns)
    assert int(original["quantity"]) <= 0
    assert detail.startswith(f"quantity={original['quantity']} breaks greater_than")


def test_pandera_agrees_with_the_compiled_sql(loaded):
    """The same schema in pandera accepts the accepted rows and rejects the range breakers."""
    con, _, _ = loaded
    for source in SOURCES:
        columns = ", ".join(CONTRACTS[source].columns)  # the lineage columns are not contract
        accepted = con.execute(f"SELECT {columns} FROM sources.{source} USING SAMPLE 300 ROWS").df()
        for name, column in CONTRACTS[source].columns.items():
            if str(column.dtype) == "date":  # DuckDB hands dates to pandas as datetimes
                accepted[name] = accepted[name].dt.date
        with warnings.catch_warnings(record=True):  # malformed emails only warn, by design
            CONTRACTS[source].validate(accepted)
    records = [
        json.loads(r)
        for (r,) in con.execute(
            "SELECT record FROM sources.quarantine WHERE reason = 'out_of_range' "
            "AND field = 'quantity'"
        ).fetchall()
    ]
    rejected = pd.DataFrame(records)
    rejected = rejected.astype(
        {"quantity": "Int64", "unit_price": "float64", "is_deal": "bool"}
    ).assign(
        purchase_ts=pd.to_datetime(rejected["purchase_ts"]),
        updated_at=pd.to_datetime(rejected["updated_at"]),
    )
    with pytest.raises(pandera.errors.SchemaErrors) as err:
        CONTRACTS["purchase"].validate(rejected, lazy=True)
    assert set(err.value.failure_cases["column"]) == {"quantity"}
    assert len(err.value.failure_cases) == len(records)


def test_same_as_of_reproduces_and_earlier_as_of_defers_later_lines(sample):
    data_dir, _ = sample
    a, b = duckdb.connect(), duckdb.connect()
    load_all(a, data_dir)
    load_all(b, data_dir)
    query = "SELECT * FROM sources.purchase ORDER BY purchase_id"
    assert a.execute(query).fetchall() == b.execute(query).fetchall()
    earlier = datetime(2026, 3, 1)
    load_all(b, data_dir, as_of=earlier)
    latest = b.execute("SELECT max(purchase_ts) FROM sources.purchase").fetchall()[0][0]
    assert latest <= earlier
    # deferred, not rejected: nothing after as_of is in the quarantine
    reasons = {r for (r,) in b.execute("SELECT DISTINCT reason FROM sources.quarantine").fetchall()}
    assert "after_as_of" not in reasons and "deferred" not in reasons


def test_parquet_and_folders_of_files_load_like_csv(sample, tmp_path):
    data_dir, manifest = sample
    con = duckdb.connect()
    (tmp_path / "purchase").mkdir()
    for s in ("customer_info", "product"):
        con.execute(
            f"COPY (SELECT * FROM read_csv('{data_dir}/{s}.csv', all_varchar=true)) "
            f"TO '{tmp_path}/{s}.parquet' (FORMAT parquet)"
        )
    # two daily drops of purchase lines, one CSV and one Parquet
    src = f"read_csv('{data_dir}/purchase.csv', all_varchar=true)"
    con.execute(
        f"COPY (SELECT * FROM {src} WHERE purchase_id <= 'L0000005000') "
        f"TO '{tmp_path}/purchase/day1.csv' (HEADER true)"
    )
    con.execute(
        f"COPY (SELECT * FROM {src} WHERE purchase_id > 'L0000005000') "
        f"TO '{tmp_path}/purchase/day2.parquet' (FORMAT parquet)"
    )
    results = load_all(con, tmp_path)
    assert len(results["purchase"].files) == 2
    for s in SOURCES:
        assert results[s].rows_read == manifest["rows"][s]
    reference = load_all(duckdb.connect(), data_dir)
    for s in SOURCES:
        assert results[s].rows_accepted == reference[s].rows_accepted


def _copy_sample(sample, tmp_path) -> Path:
    data_dir, _ = sample
    for s in SOURCES:
        shutil.copy(data_dir / f"{s}.csv", tmp_path / f"{s}.csv")
    return tmp_path


def test_missing_file_names_the_location(sample, tmp_path):
    folder = _copy_sample(sample, tmp_path)
    (folder / "product.csv").unlink()
    with pytest.raises(LandingError, match=r"source 'product': no landing files at .*product"):
        load_source(duckdb.connect(), CONTRACTS["product"], folder, "product", AS_OF)


@pytest.mark.parametrize(
    "content, message",
    [
        ("", r"product\.csv: the file is empty"),
        ("product_id,product_name,product_category,price,updated_at\n", r"header but no rows"),
        (
            "product_id,product_name,category,price,updated_at\nPRD1,x,Wines,1.0,2026-01-01\n",
            r"product\.csv: column 'product_category' is missing",
        ),
    ],
)
def test_bad_files_fail_with_file_and_column(sample, tmp_path, content, message):
    folder = _copy_sample(sample, tmp_path)
    (folder / "product.csv").write_text(content)
    with pytest.raises(LandingError, match=message):
        load_source(duckdb.connect(), CONTRACTS["product"], folder, "product", AS_OF)


def test_unparseable_values_are_quarantined_with_field(sample, tmp_path):
    folder = _copy_sample(sample, tmp_path)
    lines = (folder / "product.csv").read_text().splitlines()
    head = lines[1].split(",")
    head[3] = "twelve"
    lines[1] = ",".join(head)
    (folder / "product.csv").write_text("\n".join(lines) + "\n")
    con = duckdb.connect()
    result = load_source(con, CONTRACTS["product"], folder, "product", AS_OF)
    assert result.quarantined_by_reason == {"unparseable_value": 1}
    reason, field, detail = con.execute(
        "SELECT reason, field, detail FROM sources.quarantine"
    ).fetchall()[0]
    assert (reason, field) == ("unparseable_value", "price")
    assert detail == "price=twelve is not a finite number"


def test_failed_load_keeps_the_previous_tables(sample, tmp_path):
    folder = _copy_sample(sample, tmp_path)
    con = duckdb.connect()
    before = load_all(con, folder)
    (folder / "customer_info.csv").write_text("customer_id,first_name\nC1,Ann\n")
    with pytest.raises(LandingError, match="column 'last_name' is missing"):
        load_source(con, CONTRACTS["customer_info"], folder, "customer_info", AS_OF)
    rows = con.execute("SELECT count(*) FROM sources.customer_info").fetchall()[0][0]
    assert rows == before["customer_info"].rows_accepted
    kept = con.execute(
        "SELECT count(*) FROM sources.quarantine WHERE source = 'customer_info'"
    ).fetchall()[0][0]
    assert kept == before["customer_info"].rows_quarantined
