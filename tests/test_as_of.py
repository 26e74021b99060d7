"""`as_of` is a point in time: building a full landing zone at an earlier as_of gives exactly
the marts of files cut at that as_of, bit for bit (two separate runs, so also reproducible)."""

from __future__ import annotations

import hashlib
from datetime import datetime
from pathlib import Path

import duckdb
import pytest

from .conftest import END_DATE, build

EARLIER = datetime(2026, 3, 1, 0, 0, 0)
# what consumers read; the run's own bookkeeping (monitor, sources) differs by design
SCHEMAS = ("marts", "semantic")


def cut_at(full: Path, out: Path, as_of: datetime) -> None:
    """The landing zone as it stood at as_of: no customer who signed up later, no later line."""
    out.mkdir()
    con = duckdb.connect()
    con.execute("SET TimeZone = 'UTC'")
    cuts = {
        "customer_info": "TRY_CAST(signup_date AS DATE) IS NULL OR signup_date::DATE <= $t",
        "product": "TRUE",
        "purchase": "TRY_CAST(purchase_ts AS TIMESTAMP) IS NULL OR purchase_ts::TIMESTAMP <= $t",
    }
    for name, keep in cuts.items():
        params = {"src": str(full / f"{name}.csv"), "t": as_of}
        if "$t" not in keep:
            del params["t"]
        frame = con.execute(
            f"SELECT * FROM read_csv($src, all_varchar = true) WHERE {keep}", params
        ).df()
        frame.to_csv(out / f"{name}.csv", index=False)


def fingerprints(warehouse: Path) -> dict[str, str]:
    con = duckdb.connect(str(warehouse), read_only=True)
    try:
        tables = con.execute(
            "SELECT table_schema, table_name FROM information_schema.tables "
            f"WHERE table_schema IN {SCHEMAS} ORDER BY ALL"
        ).fetchall()
        return {
            f"{s}.{t}": hashlib.sha256(
                repr(con.execute(f'SELECT * FROM {s}."{t}" ORDER BY ALL').fetchall()).encode()
            ).hexdigest()
            for s, t in tables
        }
    finally:
        con.close()


@pytest.fixture(scope="module")
def two_builds(sample, tmp_path_factory):
    data_dir, _ = sample
    cut = tmp_path_factory.mktemp("cut") / "landing"
    cut_at(data_dir, cut, EARLIER)
    builds = {}
    for name, folder in (("full", data_dir), ("cut", cut)):
        report, settings = build(folder, tmp_path_factory.mktemp(name) / "wh.duckdb", EARLIER)
        assert report.ok, (report.failure, report.failed_error_checks)
        builds[name] = settings.warehouse
    return builds


def test_full_files_at_an_earlier_as_of_equal_files_cut_there(two_builds):
    full, cut = fingerprints(two_builds["full"]), fingerprints(two_builds["cut"])
    assert len(full) >= 12
    assert full == cut, sorted(k for k in full if full[k] != cut.get(k))


def test_nothing_after_as_of_and_no_negative_tenure(two_builds):
    con = duckdb.connect(str(two_builds["full"]), read_only=True)
    assert con.execute("SELECT max(purchase_ts) FROM marts.fct_purchase").fetchall()[0][0] <= (
        EARLIER
    )
    assert (
        con.execute(
            "SELECT count(*) FROM marts.dim_customer WHERE signup_date > $t", {"t": EARLIER}
        ).fetchall()[0][0]
        == 0
    )
    negative = con.execute(
        "SELECT count(*) FROM marts.customer_purchase_metrics WHERE tenure_days < 0"
    ).fetchall()[0][0]
    assert negative == 0
    assert END_DATE > EARLIER.date()
