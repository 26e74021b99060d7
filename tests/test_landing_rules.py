"""Landing rules on data we did not generate: open identifiers and vocabularies, countries in
any common form, no silent coercion, deferral at as_of, and one-line errors naming the file."""

from __future__ import annotations

import csv
import json
import os
from datetime import datetime
from pathlib import Path

import duckdb
import pytest

from retail_dp.descriptors import Catalog
from retail_dp.settings import Settings
from retail_dp.sources import ingest
from retail_dp.sources.contracts import LANDING_FORMATS, build_contracts
from retail_dp.sources.ingest import judging, load_source
from retail_dp.sources.landing import LandingError

CONTRACTS = build_contracts(Catalog.load(Settings().descriptors_dir))
AS_OF = datetime(2026, 7, 1)
# the landing format's columns, in its order
CUSTOMER, PRODUCT, PURCHASE = (
    list(LANDING_FORMATS[name].columns) for name in ("customer_info", "product", "purchase")
)


def _write(path: Path, header: list[str], rows: list[dict]) -> None:
    with path.open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=header)
        writer.writeheader()
        writer.writerows(rows)


def customer(cid: str, **values) -> dict:
    row = dict.fromkeys(CUSTOMER, "")
    row.update(customer_id=cid, country="US", signup_date="2025-01-01", updated_at="2026-01-01")
    row.update(values)
    return row


def product(pid: str, category: str = "Books", **values) -> dict:
    row = dict(
        product_id=pid,
        product_name="",
        product_category=category,
        price="10.0",
        updated_at="2026-01-01",
    )
    row.update(values)
    return row


def line(lid: str, cid: str, pid: str, **values) -> dict:
    row = dict(
        purchase_id=lid,
        order_id="o" + lid,
        customer_id=cid,
        product_id=pid,
        purchase_ts="2026-03-01 10:00:00",
        quantity="1",
        unit_price="10.0",
        channel="web",
        is_deal="false",
        updated_at="2026-03-01 10:00:00",
    )
    row.update(values)
    return row


def landing(folder: Path, customers, products, lines) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    _write(folder / "customer_info.csv", CUSTOMER, customers)
    _write(folder / "product.csv", PRODUCT, products)
    _write(folder / "purchase.csv", PURCHASE, lines)
    return folder


def load(folder: Path, as_of: datetime = AS_OF) -> tuple[duckdb.DuckDBPyConnection, dict]:
    con = duckdb.connect()
    results = {s: load_source(con, CONTRACTS[s], folder, s, as_of) for s in CONTRACTS}
    return con, results


def quarantined(con) -> dict[tuple[str, str], str]:
    rows = con.execute("SELECT reason, field, detail FROM sources.quarantine").fetchall()
    return {(r, f): d for r, f, d in rows}


def test_numeric_and_hex_ids_and_nameless_products_are_accepted(tmp_path):
    hex_id = "9f86d081884c7d659a2feaa0c55ad015"
    folder = landing(
        tmp_path,
        [customer("5524"), customer(hex_id), customer("  77  ")],
        [product("1001"), product(hex_id, category="Electronics")],
        [line("1", "5524", "1001"), line("2", hex_id, hex_id), line("3", "77", "1001")],
    )
    con, results = load(folder)
    assert {s: r.rows_quarantined for s, r in results.items()} == dict.fromkeys(CONTRACTS, 0)
    ids = {r[0] for r in con.execute("SELECT customer_id FROM sources.customer_info").fetchall()}
    assert ids == {"5524", hex_id, "77"}  # trimmed, text or number alike


def test_any_category_is_accepted_seventy_of_them(tmp_path):
    products = [product(f"P{i}", category=f"Category {i % 71}") for i in range(142)]
    folder = landing(tmp_path, [customer("1")], products, [line("1", "1", "P0")])
    con, results = load(folder)
    assert results["product"].rows_accepted == 142
    cats = con.execute("SELECT count(DISTINCT product_category) FROM sources.product").fetchall()
    assert cats[0][0] == 71


@pytest.mark.parametrize(
    "written, stored",
    [("US", "US"), ("USA", "US"), ("United States", "US"), ("GER", "DE"), ("IND", "IN")],
)
def test_countries_in_any_common_form_become_alpha_2(tmp_path, written, stored):
    folder = landing(tmp_path, [customer("1", country=written)], [product("P")], [])
    folder.joinpath("purchase.csv").unlink()
    con = duckdb.connect()
    load_source(con, CONTRACTS["customer_info"], folder, "customer_info", AS_OF)
    assert con.execute("SELECT country FROM sources.customer_info").fetchall() == [(stored,)]


def test_an_unknown_country_keeps_the_customer_and_warns(tmp_path):
    folder = landing(
        tmp_path,
        [customer("1", country="Atlantis"), customer("2")],
        [product("P")],
        [line("1", "1", "P")],
    )
    con, results = load(folder)
    assert results["customer_info"].rows_accepted == 2
    assert results["purchase"].rows_accepted == 1  # no orphaned purchases
    warnings = results["customer_info"].audit.warnings
    assert next(n for label, n in warnings.items() if label.startswith("country")) == 1


def test_out_of_range_demographics_are_kept_and_counted(tmp_path):
    folder = landing(
        tmp_path,
        [customer("1", birth_year="1850", income="-5", email="not-an-email")],
        [product("P")],
        [],
    )
    folder.joinpath("purchase.csv").unlink()
    con = duckdb.connect()
    result = load_source(con, CONTRACTS["customer_info"], folder, "customer_info", AS_OF)
    assert result.rows_accepted == 1
    assert sorted(k.split(" ")[0] for k, n in result.audit.warnings.items() if n) == [
        "birth_year",
        "email",
        "income",
    ]


def test_offsets_become_utc_instants_and_pick_the_newest_correctly(tmp_path):
    # the same line twice: 16:44+02:00 is 14:44 UTC, older than the naive (UTC) 15:00
    folder = landing(
        tmp_path,
        [customer("1")],
        [product("P")],
        [
            line("1", "1", "P", quantity="2", updated_at="2026-03-01T16:44:01+02:00"),
            line("1", "1", "P", quantity="3", updated_at="2026-03-01 15:00:00"),
            line("2", "1", "P", purchase_ts="2026-03-02T10:00:00Z"),
        ],
    )
    con, _ = load(folder)
    rows = con.execute(
        "SELECT purchase_id, quantity, purchase_ts FROM sources.purchase ORDER BY 1"
    ).fetchall()
    assert rows == [
        ("1", 3, datetime(2026, 3, 1, 10, 0)),
        ("2", 1, datetime(2026, 3, 2, 10, 0)),
    ]


@pytest.mark.parametrize(
    "column, value, detail",
    [
        ("quantity", "2.5", "quantity=2.5 is not a whole number within BIGINT"),
        ("quantity", "99999999999999999999", "is not a whole number within BIGINT"),
        ("unit_price", "NaN", "unit_price=NaN is not a finite number"),
        ("unit_price", "inf", "unit_price=inf is not a finite number"),
    ],
)
def test_numbers_that_do_not_fit_are_rejected_never_rounded(tmp_path, column, value, detail):
    folder = landing(
        tmp_path, [customer("1")], [product("P")], [line("1", "1", "P", **{column: value})]
    )
    con, results = load(folder)
    assert results["purchase"].rows_accepted == 0
    found = quarantined(con)[("unparseable_value", column)]
    assert detail in found


def test_non_finite_income_is_rejected(tmp_path):
    folder = landing(tmp_path, [customer("1", income="NaN")], [product("P")], [])
    folder.joinpath("purchase.csv").unlink()
    con = duckdb.connect()
    result = load_source(con, CONTRACTS["customer_info"], folder, "customer_info", AS_OF)
    assert result.quarantined_by_reason == {"unparseable_value": 1}


def test_rows_after_as_of_are_deferred_not_rejected(tmp_path):
    folder = landing(
        tmp_path,
        [customer("1"), customer("2", signup_date="2026-08-01")],
        [product("P")],
        [line("1", "1", "P"), line("2", "1", "P", purchase_ts="2026-07-02 00:00:00")],
    )
    con, results = load(folder)
    assert (results["customer_info"].rows_deferred, results["purchase"].rows_deferred) == (1, 1)
    assert con.execute("SELECT count(*) FROM sources.quarantine").fetchall()[0][0] == 0
    assert all(r.reconciles for r in results.values())


def test_an_oversized_field_quarantines_only_its_row(tmp_path):
    folder = landing(
        tmp_path,
        [customer("1"), customer("2", first_name="x" * 5_000_000)],
        [product("P")],
        [],
    )
    folder.joinpath("purchase.csv").unlink()
    con = duckdb.connect()
    result = load_source(con, CONTRACTS["customer_info"], folder, "customer_info", AS_OF)
    assert (result.rows_accepted, result.quarantined_by_reason) == (1, {"oversized_field": 1})
    detail = quarantined(con)[("oversized_field", "first_name")]
    assert detail == "first_name has 5000000 characters, more than 1000000"


def test_an_overlong_identifier_is_rejected(tmp_path):
    folder = landing(tmp_path, [customer("1"), customer("x" * 500)], [product("P")], [])
    folder.joinpath("purchase.csv").unlink()
    con = duckdb.connect()
    result = load_source(con, CONTRACTS["customer_info"], folder, "customer_info", AS_OF)
    assert result.quarantined_by_reason == {"invalid_identifier": 1}


def test_a_quote_in_the_landing_path_is_just_a_path(tmp_path):
    folder = landing(tmp_path / "it's here", [customer("1")], [product("P")], [line("1", "1", "P")])
    _, results = load(folder)
    assert results["purchase"].rows_accepted == 1


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads files whatever their mode")
def test_an_unreadable_file_names_its_path(tmp_path):
    folder = landing(tmp_path, [customer("1")], [product("P")], [line("1", "1", "P")])
    (folder / "product.csv").chmod(0)
    with pytest.raises(LandingError, match=r"product\.csv: cannot be read"):
        load(folder)


def test_a_file_that_is_not_csv_names_its_path(tmp_path):
    folder = landing(tmp_path, [customer("1")], [product("P")], [line("1", "1", "P")])
    (folder / "product.csv").write_bytes(b"\x00\xff\xfe" * 1000)
    with pytest.raises(LandingError, match=r"product\.csv"):
        load(folder)


def test_a_missing_landing_zone_names_its_path(tmp_path):
    with pytest.raises(LandingError, match="is not a folder"):
        load_source(duckdb.connect(), CONTRACTS["product"], tmp_path / "nope", "product", AS_OF)


def test_a_channel_outside_the_descriptors_list_is_kept_and_counted(tmp_path):
    folder = landing(
        tmp_path,
        [customer("1")],
        [product("P")],
        [line("1", "1", "P", channel="mobile_app"), line("2", "1", "P")],
    )
    _, results = load(folder)
    assert results["purchase"].rows_accepted == 2
    warned = {k: n for k, n in results["purchase"].audit.warnings.items() if n}
    assert warned == {"channel breaks isin(['web', 'store', 'catalog'])": 1}


# (column, value, read typed): values of the columns a CSV read may type, awkward ones too
TYPED_READ_CASES = [
    ("purchase_ts", "2026-03-01 10:00:00", True),
    ("purchase_ts", "2026-3-1 9:5:7", True),
    ("purchase_ts", " 2026-03-01 10:00:00", True),
    ("purchase_ts", "", True),
    ("purchase_ts", "2026-07-02 00:00:00", True),  # deferred
    ("purchase_ts", "2026-03-01T10:00:00", False),
    ("purchase_ts", "2026-03-01 10:00:00+02:00", False),
    ("purchase_ts", "2026-03-01 10:00:00.250", False),
    ("purchase_ts", "2026-03-01", False),
    ("purchase_ts", "2026-03-01 24:00:00", False),
    ("purchase_ts", "2026-02-30 10:00:00", False),
    ("purchase_ts", "  ", False),
    ("purchase_ts", "epoch", False),
    ("purchase_ts", "infinity", False),
    ("purchase_ts", "-infinity", False),
    ("purchase_ts", "1970-01-01 00:00:00", False),
    ("updated_at", "2026-03-01 11:00:00", True),
    ("is_deal", "yes", True),
    ("is_deal", "t", True),
    ("is_deal", "1", True),
    ("is_deal", "TRUE", True),
    ("is_deal", " true", False),
    ("is_deal", "maybe", False),
    ("is_deal", "", True),
    ("signup_date", "2025-1-5", True),
    ("signup_date", "2025-01-05 10:00:00", False),
    ("signup_date", "epoch", False),
    ("signup_date", "infinity", False),
]


def _everything(con) -> dict[str, list]:
    """What a load leaves for consumers: the accepted rows, and the quarantined and deferred
    rows with their records and reasons."""
    tables = {
        "customer_info": "SELECT * EXCLUDE (_load_id) FROM sources.customer_info",
        "purchase": "SELECT * EXCLUDE (_load_id) FROM sources.purchase",
        "quarantine": "SELECT * EXCLUDE (quarantined_at, run_id) FROM sources.quarantine",
        "deferred": "SELECT * EXCLUDE (run_id) FROM sources.deferred",
    }
    return {name: sorted(con.execute(sql).fetchall(), key=repr) for name, sql in tables.items()}


@pytest.mark.parametrize("column, value, typed", TYPED_READ_CASES)
def test_a_typed_read_judges_every_value_as_the_text_read_does(
    tmp_path, monkeypatch, column, value, typed
):
    """A CSV file is read typed only when each typed column's value is in its strict form; any
    other text makes the read fall back to text. Either way every row is judged alike."""
    is_customer = column in CUSTOMER and column not in PURCHASE
    folder = landing(
        tmp_path / "in",
        [
            customer("1", updated_at="2026-01-01 00:00:00"),
            customer(
                "2", updated_at="2026-01-01 00:00:00", **({column: value} if is_customer else {})
            ),
        ],
        [product("P")],
        # the second line is quarantined: its record is kept
        [
            line("1", "2", "P", **({} if is_customer else {column: value})),
            line("2", "1", "P", quantity="0"),
        ],
    )
    con, results = load(folder)
    source = "customer_info" if is_customer else "purchase"
    assert results[source].files_read_as_text == ([] if typed else [str(folder / f"{source}.csv")])
    monkeypatch.setattr(ingest, "typed_reads", lambda schema: {})
    text_con, text_results = load(folder)
    assert text_results[source].files_read_as_text == []
    assert _everything(con) == _everything(text_con)
    assert results[source].quarantined_by_reason == text_results[source].quarantined_by_reason


def test_a_typed_read_keeps_a_rejected_rows_values_as_canonical_text(tmp_path):
    """A typed read keeps no text: a quarantined row's record holds its typed values as text,
    the same values in their canonical form, so a later load judges them alike."""
    folder = landing(
        tmp_path,
        [customer("1")],
        [product("P")],
        [line("1", "1", "P", quantity="0", purchase_ts="2026-3-1 9:5:7", is_deal="yes")],
    )
    con, results = load(folder)
    assert results["purchase"].files_read_as_text == []
    record = con.execute("SELECT record FROM sources.quarantine").fetchall()[0][0]
    stored = json.loads(record)
    assert (stored["purchase_ts"], stored["is_deal"], stored["quantity"]) == (
        "2026-03-01 09:05:07",
        "true",
        "0",
    )


def _work_files(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if ".judging" in p.name)


def test_judging_works_beside_the_warehouse_and_leaves_nothing_behind(tmp_path):
    """The rows being judged live in a scratch database beside the warehouse file (compressed,
    where temp tables spilled uncompressed); after the load it is gone, the warehouse holds no
    work table and the connection's search path is as it was, also when the load fails."""
    folder = landing(tmp_path / "in", [customer("1")], [product("P")], [line("1", "1", "P")])
    home = tmp_path / "it's a warehouse"
    home.mkdir()
    con = duckdb.connect(str(home / "wh.duckdb"))
    con.execute("SET search_path = 'main'")
    results = {s: load_source(con, CONTRACTS[s], folder, s, AS_OF) for s in CONTRACTS}
    assert results["purchase"].rows_accepted == 1
    assert _work_files(home) == []
    tables = con.execute("SELECT table_catalog, table_name FROM information_schema.tables")
    assert not [t for t in tables.fetchall() if t[1].startswith("_")]
    assert con.execute("SELECT current_setting('search_path')").fetchall() == [("main",)]
    # a purchase file that breaks past the rows the reader samples: it fails while judging
    lines = [line(str(i), "1", "P") for i in range(1, 30_001)]
    _write(folder / "purchase.csv", PURCHASE, lines)
    with (folder / "purchase.csv").open("a") as f:
        f.write('"x","o","1","P","2026-03-01 10:00:00","1","10.0","web","false","unterminated\n')
    with pytest.raises(duckdb.Error):
        load_source(con, CONTRACTS["purchase"], folder, "purchase", AS_OF)
    assert _work_files(home) == []
    assert con.execute("SELECT current_setting('search_path')").fetchall() == [("main",)]
    assert con.execute("SELECT count(*) FROM sources.purchase").fetchall() == [(1,)]
    # a second judgement on the same database refuses, and leaves the first one's file alone
    with judging(con):
        with pytest.raises(RuntimeError, match="another load"), judging(con):
            pass
        assert _work_files(home) == ["wh.duckdb.judging"]
    assert _work_files(home) == []
