"""The sample data generator: determinism, exact defect counts, the planted shapes of both
profiles, the descriptors as its vocabulary, and landing data that meets its SLOs at any size.
"""

import hashlib
import shutil
from datetime import date, datetime, timedelta
from pathlib import Path

import duckdb
import pytest
import yaml

from retail_dp.descriptors import Catalog, SloCategory
from retail_dp.generator.landing import GenerateRequest, generate, simulated_catalogue
from retail_dp.generator.profiles import PROFILES, MarketplaceProfile
from retail_dp.settings import Settings
from retail_dp.sources.audit import COMPLETENESS_REASONS, UNIQUENESS_REASONS, LandingAudit
from retail_dp.sources.contracts import build_contracts, country_spellings
from retail_dp.sources.ingest import load_source

CATALOG = Catalog.load(Settings().descriptors_dir)
CONTRACTS = build_contracts(CATALOG)
HEX32 = r"^[0-9a-f]{32}$"
END = date(2026, 1, 31)


def _digest(folder: Path) -> dict[str, str]:
    return {
        p.name: hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(folder.iterdir())
        if p.is_file()
    }


def _files(con: duckdb.DuckDBPyConnection, folder: Path) -> None:
    """Views c, p and l over the landing files, read as written."""
    for view, name in (("c", "customer_info"), ("p", "product"), ("l", "purchase")):
        con.execute(f"CREATE VIEW {view} AS SELECT * FROM read_csv('{folder}/{name}.csv')")


@pytest.fixture(scope="module")
def market(tmp_path_factory) -> tuple[Path, dict]:
    out = tmp_path_factory.mktemp("marketplace")
    manifest = generate(
        GenerateRequest(customers=3000, seed=8, end_date=END, out=out, profile=MarketplaceProfile())
    )
    return out, manifest


@pytest.mark.parametrize("profile", sorted(PROFILES))
@pytest.mark.parametrize("fmt", ["csv", "parquet"])
def test_same_seed_gives_identical_files(tmp_path, fmt, profile):
    req = dict(customers=300, seed=11, end_date=END, format=fmt, profile=PROFILES[profile])
    generate(GenerateRequest(out=tmp_path / "a", **req))
    generate(GenerateRequest(out=tmp_path / "b", **req))
    a, b = _digest(tmp_path / "a"), _digest(tmp_path / "b")
    assert set(a) == {f"{s}.{fmt}" for s in ("customer_info", "product", "purchase")} | {
        "manifest.json"
    }
    assert a == b
    generate(GenerateRequest(out=tmp_path / "c", **{**req, "seed": 12}))
    assert _digest(tmp_path / "c")[f"purchase.{fmt}"] != a[f"purchase.{fmt}"]


def _count_defects(folder: Path, manifest: dict) -> dict[str, int]:
    """Count each planted kind straight from the files, without the contract code."""
    end, ratio = manifest["end_date"], manifest["contract"]["price_ceiling_ratio"]
    con = duckdb.connect()
    _files(con, folder)

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
        "unrecognised_country": sum(
            upper.strip() not in country_spellings()
            for (upper,) in con.execute("SELECT upper(country) FROM c").fetchall()
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
            f"WHERE unit_price <= 0 OR unit_price > {ratio} * price"
        ),
    }
    assert manifest["rows"]["purchase"] == one("SELECT count(*) FROM l")
    return found


def test_planted_defect_counts_match_manifest(sample):
    folder, manifest = sample
    found = _count_defects(folder, manifest)
    assert found.pop("unrecognised_country") == 0
    assert found == manifest["defects"]
    # the contract quarantines these, keeps malformed emails and defers future lines
    assert manifest["deferred_defects"] == {"future_purchase_ts": found["future_purchase_ts"]}
    assert manifest["kept_defects"] == {"malformed_email": found["malformed_email"]}
    assert set(manifest["quarantined_defects"]) == set(found) - {
        "future_purchase_ts",
        "malformed_email",
    }
    assert manifest["profile"]["name"] == "grocery"


def test_marketplace_defect_counts_match_manifest(market):
    folder, manifest = market
    found = _count_defects(folder, manifest)
    # no emails to get wrong; a few countries nobody recognises instead
    assert found.pop("malformed_email") == 0
    assert found == manifest["defects"]
    assert all(n > 0 for n in found.values()), found
    assert manifest["kept_defects"] == {"unrecognised_country": found["unrecognised_country"]}


def test_realistic_shape_and_planted_affinities(tmp_path):
    manifest = generate(GenerateRequest(customers=3000, seed=5, end_date=END, out=tmp_path))
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


def test_marketplace_has_the_shape_of_a_real_marketplace(market):
    folder, manifest = market
    con = duckdb.connect()
    _files(con, folder)

    def one(sql: str):
        return con.execute(sql).fetchall()[0]

    # opaque 32-hex ids everywhere, no contact details, no product names
    for view, column in (("c", "customer_id"), ("p", "product_id"), ("l", "order_id")):
        assert one(f"SELECT bool_and(regexp_matches({column}, '{HEX32}')) FROM {view}") == (True,)
    assert one("SELECT count(first_name), count(last_name), count(email), count(phone) FROM c") == (
        0,
        0,
        0,
        0,
    )
    assert one("SELECT count(product_name), count(DISTINCT product_category) FROM p") == (0, 70)
    assert one("SELECT bool_and(regexp_matches(product_category, '^[a-z]+(_[a-z]+)*$')) FROM p")[0]
    # most buyers order once, about 3% again; some customers never order
    buyers, repeat, never = one(
        """WITH orders AS (SELECT customer_id, count(DISTINCT order_id) AS n FROM l GROUP BY 1)
        SELECT count(*), count(*) FILTER (WHERE n >= 2),
            (SELECT count(DISTINCT customer_id) FROM c WHERE customer_id NOT IN
                (SELECT customer_id FROM l))
        FROM orders"""
    )
    assert 0.01 <= repeat / buyers <= 0.05, repeat / buyers
    assert never > 0
    single_line, lines_per_order = one(
        "SELECT avg((n = 1)::INT), avg(n) FROM (SELECT count(*) AS n FROM l GROUP BY order_id)"
    )
    assert single_line > 0.8 and lines_per_order < 1.3
    # prices with a long tail: the dearest far above the median
    median, top = one("SELECT median(price), max(price) FROM p")
    assert top > 10 * median
    # countries as people type them: alpha-2, alpha-3, English names, the odd sports code
    spelled = {row[0] for row in con.execute("SELECT DISTINCT country FROM c").fetchall()}
    assert {"BR", "BRA", "Brazil", "USA", "United States"} <= spelled
    assert manifest["profile"]["name"] == "marketplace"
    assert manifest["profile"]["parameters"]["purchase_process"]["r"] > 0
    assert (
        manifest["true_parameters"]["bg_nbd"]
        == manifest["profile"]["parameters"]["purchase_process"]
    )


def test_the_simulated_catalogue_is_the_one_generate_wrote(market):
    """benchmarks/category_oracle.py ranks by the catalogue's true category shares: it must be
    the catalogue of the files, product for product."""
    folder, manifest = market
    req = GenerateRequest(
        customers=manifest["customers"], seed=manifest["seed"], profile=MarketplaceProfile()
    )
    products = simulated_catalogue(req)
    written = (
        duckdb.connect()
        .execute(f"SELECT product_category, price FROM read_csv('{folder}/product.csv')")
        .fetchall()
    )
    categories = req.profile.categories
    assert len(written) == products.category.size
    assert [c for c, _ in written] == [categories[i] for i in products.category]
    assert [p for _, p in written] == products.price.tolist()
    assert products.popularity.sum() == pytest.approx(1.0)
    # another seed draws another catalogue
    other = simulated_catalogue(
        GenerateRequest(customers=manifest["customers"], seed=manifest["seed"] + 1,
                        profile=MarketplaceProfile())
    )  # fmt: skip
    assert other.category.tolist() != products.category.tolist()


def test_vocabulary_comes_from_the_descriptors(tmp_path):
    """Channels and the price ceiling are read from the purchase descriptor, not the code."""
    descriptors = tmp_path / "descriptors"
    shutil.copytree(Settings().descriptors_dir, descriptors)
    path = descriptors / "purchase.yaml"
    purchase = yaml.safe_load(path.read_text())
    for rule in purchase["contract"]["rules"]:
        if rule["column"] == "channel":
            rule["value"] = ["app", "web"]
    purchase["contract"]["price_ceiling"]["ratio"] = 5.0
    path.write_text(yaml.safe_dump(purchase))
    manifest = generate(
        GenerateRequest(customers=300, seed=3, out=tmp_path / "out", descriptors_dir=descriptors)
    )
    assert manifest["contract"] == {"price_ceiling_ratio": 5.0, "channels": ["app", "web"]}
    channels = duckdb.sql(
        f"SELECT DISTINCT channel FROM read_csv('{tmp_path}/out/purchase.csv') ORDER BY 1"
    ).fetchall()
    assert channels == [("app",), ("web",)]
    purchase["contract"]["price_ceiling"]["ratio"] = 25.0
    path.write_text(yaml.safe_dump(purchase))
    with pytest.raises(ValueError, match="price ceiling"):
        generate(GenerateRequest(out=tmp_path / "x", descriptors_dir=descriptors))


def _slo_ratios(audit: LandingAudit) -> dict[str, float]:
    """The blocking source SLOs as the quality checks measure them from the landing audit."""
    judged = audit.rows_judged

    def ratio(bad: int) -> float:
        return round(1.0 - bad / judged, 6) if judged else 1.0

    invalid = audit.rejected_for(COMPLETENESS_REASONS + UNIQUENESS_REASONS, include=False)
    return {
        "completeness": min((ratio(n) for n in audit.nulls.values()), default=1.0),
        "uniqueness": ratio(sum(audit.rejected_for(UNIQUENESS_REASONS).values())),
        "validity": ratio(sum(invalid.values()) + sum(audit.warnings.values())),
    }


def _load(
    folder: Path, sources: tuple[str, ...] = tuple(CONTRACTS), as_of: datetime | None = None
) -> dict[str, LandingAudit]:
    if as_of is None:
        as_of = datetime.combine(END + timedelta(days=1), datetime.min.time()) + timedelta(hours=6)
    with duckdb.connect() as con:
        return {s: load_source(con, CONTRACTS[s], folder, s, as_of).audit for s in sources}


@pytest.mark.parametrize("customers", [100, 300, 1000])
@pytest.mark.parametrize("profile", sorted(PROFILES))
def test_default_defect_rate_meets_the_blocking_slos_at_any_size(tmp_path, profile, customers):
    manifest = generate(
        GenerateRequest(
            customers=customers, seed=1, end_date=END, out=tmp_path, profile=PROFILES[profile]
        )
    )
    for source, audit in _load(tmp_path).items():
        slos = CATALOG[source].slos
        for category, measured in _slo_ratios(audit).items():
            slo = slos[SloCategory(category)]
            assert slo.blocking and measured >= slo.target, (source, category, measured)
    if customers >= 1000:
        assert sum(manifest["quarantined_defects"].values()) > 0


@pytest.mark.parametrize(
    "profile, seed", [("sequential", 1), ("sequential", 5), ("grocery", 3), ("marketplace", 2)]
)
def test_the_caps_hold_at_every_as_of_a_backtest_may_use(tmp_path, profile, seed):
    """A backtest builds the product at an earlier as_of, on the rows dated by then: the
    planted defects stay within the blocking SLOs there too (a random draw broke
    customer_info's uniqueness a year before the end on sequential seeds 1 and 5)."""
    generate(
        GenerateRequest(
            customers=2240, seed=seed, end_date=END, out=tmp_path, profile=PROFILES[profile]
        )
    )
    for days_before in (30, 365, 600, 700):
        as_of = datetime.combine(END - timedelta(days=days_before), datetime.min.time())
        for source, audit in _load(tmp_path, as_of=as_of).items():
            slos = CATALOG[source].slos
            for category, measured in _slo_ratios(audit).items():
                slo = slos[SloCategory(category)]
                assert measured >= slo.target, (days_before, source, category, measured)


def test_a_rate_beyond_the_slos_allowance_still_breaks_them(tmp_path):
    """The quality tests plant 6% to see the blocking SLOs fail: the caps leave that alone."""
    generate(GenerateRequest(customers=400, seed=7, end_date=END, out=tmp_path, defect_rate=0.06))
    measured = _slo_ratios(_load(tmp_path, ("customer_info",))["customer_info"])
    targets = {c: CATALOG["customer_info"].slos[SloCategory(c)].target for c in measured}
    assert all(measured[c] < targets[c] for c in measured), measured


def test_rejects_bad_requests(tmp_path):
    with pytest.raises(ValueError, match="customers"):
        generate(GenerateRequest(customers=0, out=tmp_path))
    with pytest.raises(ValueError, match="defect_rate"):
        generate(GenerateRequest(defect_rate=0.5, out=tmp_path))
