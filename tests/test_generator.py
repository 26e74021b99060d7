import hashlib
from datetime import date
from pathlib import Path

import duckdb
import pytest

from retail_dp.generator.landing import GenerateRequest, generate
from retail_dp.generator.simulate import PRICE_CEILING_RATIO


def _digest(folder: Path) -> dict[str, str]:
    return {
        p.name: hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(folder.iterdir())
        if p.is_file()
    }


@pytest.mark.parametrize("fmt", ["csv", "parquet"])
def test_same_seed_gives_identical_files(tmp_path, fmt):
    req = dict(customers=300, seed=11, end_date=date(2026, 1, 31), format=fmt)
    generate(GenerateRequest(out=tmp_path / "a", **req))
    generate(GenerateRequest(out=tmp_path / "b", **req))
    a, b = _digest(tmp_path / "a"), _digest(tmp_path / "b")
    assert set(a) == {f"{s}.{fmt}" for s in ("customer_info", "product", "purchase")} | {
        "manifest.json"
    }
    assert a == b
    generate(GenerateRequest(out=tmp_path / "c", **{**req, "seed": 12}))
    assert _digest(tmp_path / "c")[f"purchase.{fmt}"] != a[f"purchase.{fmt}"]


def test_planted_defect_counts_match_manifest(sample):
    """Count each defect kind straight from the files, without the contract code."""
    folder, manifest = sample
    end = manifest["end_date"]
    con = duckdb.connect()
    con.execute(f"CREATE VIEW c AS SELECT * FROM read_csv('{folder}/customer_info.csv')")
    con.execute(f"CREATE VIEW p AS SELECT * FROM read_csv('{folder}/product.csv')")
    con.execute(f"CREATE VIEW l AS SELECT * FROM read_csv('{folder}/purchase.csv')")

    def one(sql: str) -> int:
        return con.execute(sql).fetchall()[0][0]

    found = {
        "duplicate_customer_id": one(
            "SELECT count(customer_id) - count(DISTINCT customer_id) FROM c"
        ),
        "missing_customer_id": one("SELECT count(*) FROM c WHERE customer_id IS NULL"),
        "malformed_email": one(
            r"SELECT count(*) FROM c "
            r"WHERE NOT regexp_matches(email, '^[^@\s]+@[^@\s]+\.[a-z]{2,}$')"
        ),
        "nonpositive_quantity": one("SELECT count(*) FROM l WHERE quantity <= 0"),
        "orphan_customer_id": one(
            "SELECT count(*) FROM l WHERE customer_id NOT IN "
            "(SELECT customer_id FROM c WHERE customer_id IS NOT NULL)"
        ),
        "orphan_product_id": one(
            "SELECT count(*) FROM l WHERE product_id NOT IN (SELECT product_id FROM p)"
        ),
        "future_purchase_ts": one(
            f"SELECT count(*) FROM l WHERE purchase_ts >= DATE '{end}' + INTERVAL 1 DAY"
        ),
        "bad_unit_price": one(
            "SELECT count(*) FROM l JOIN p USING (product_id) "
            f"WHERE unit_price <= 0 OR unit_price > {PRICE_CEILING_RATIO} * price"
        ),
    }
    assert found == manifest["defects"]
    assert manifest["rows"]["purchase"] == one("SELECT count(*) FROM l")


def test_realistic_shape_and_planted_affinities(tmp_path):
    manifest = generate(
        GenerateRequest(customers=3000, seed=5, end_date=date(2026, 1, 31), out=tmp_path)
    )
    lines_per_customer = manifest["rows"]["purchase"] / manifest["customers"]
    assert 15 <= lines_per_customer <= 25
    con = duckdb.connect()
    lift = dict(
        con.execute(
            f"""
            WITH lines AS (
                SELECT l.customer_id, p.product_category AS cat
                FROM read_csv('{tmp_path}/purchase.csv') l
                JOIN read_csv('{tmp_path}/product.csv') p USING (product_id)
            ),
            baskets AS (SELECT DISTINCT customer_id, cat FROM lines),
            n AS (SELECT count(DISTINCT customer_id) AS n FROM baskets),
            single AS (SELECT cat, count(*) / any_value(n.n) AS s FROM baskets, n GROUP BY cat),
            pairs AS (
                SELECT a.cat AS a, b.cat AS b, count(*) / any_value(n.n) AS s
                FROM baskets a JOIN baskets b USING (customer_id), n
                WHERE a.cat <> b.cat GROUP BY 1, 2
            )
            SELECT pairs.a || '>' || pairs.b, pairs.s / (sa.s * sb.s)
            FROM pairs JOIN single sa ON sa.cat = pairs.a JOIN single sb ON sb.cat = pairs.b
            """
        ).fetchall()
    )
    # planted pairs are bought together far more often than chance
    assert lift["Wines>Meats"] > 1.4
    assert lift["Fish>Fruits"] > 1.4
    # Gold is planted independent; what remains is the activity effect (heavy buyers buy
    # more categories of every kind), well below the planted pairs
    for other in ("Wines", "Meats", "Fish", "Sweets", "Fruits"):
        assert 0.85 < lift[f"Gold>{other}"] < 1.25, (other, lift[f"Gold>{other}"])


def test_rejects_bad_requests(tmp_path):
    with pytest.raises(ValueError, match="customers"):
        generate(GenerateRequest(customers=0, out=tmp_path))
    with pytest.raises(ValueError, match="defect_rate"):
        generate(GenerateRequest(defect_rate=0.5, out=tmp_path))
