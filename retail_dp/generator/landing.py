"""Write a landing zone of sample data: customer_info, product, purchase and manifest.json.

NumPy simulates numbers in chunks of customers; DuckDB turns them into ids, names and
timestamps and writes the files, spilling to disk rather than holding everything in memory.
The same seed and profile give byte-identical files. The vocabulary the files must speak
(channels, the price ceiling) and the SLOs the planted defects must respect come from the
data product descriptors.
"""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import Literal

import duckdb
import numpy as np
import pandas as pd

from retail_dp.generator import marketplace, names, sequential
from retail_dp.generator.defects import KINDS, by_fate, plant
from retail_dp.generator.profiles import (
    GroceryProfile,
    MarketplaceProfile,
    Profile,
    SequentialProfile,
)
from retail_dp.generator.simulate import (
    PRODUCTS_PER_CATEGORY,
    WINDOW_DAYS,
    ProductTable,
    channel_concentration,
    interest_sets,
    simulate_lines,
    simulate_orders,
    simulate_products,
)
from retail_dp.generator.terms import ContractTerms, load_terms
from retail_dp.settings import Settings

Format = Literal["csv", "parquet"]
CHUNK_CUSTOMERS = 50_000
SOURCES = ("customer_info", "product", "purchase")
PURCHASE_DEFECTS = (
    "nonpositive_quantity",
    "orphan_customer_id",
    "orphan_product_id",
    "future_purchase_ts",
    "bad_unit_price",
)
# the grocery's ids: a prefix and a zero-padded counter
PREFIXED_IDS = {"customer": ("C", 7), "product": ("PRD", 4), "order": ("O", 9), "line": ("L", 10)}


@dataclass(frozen=True)
class GenerateRequest:
    customers: int = 2240
    seed: int = 42
    end_date: date = date(2026, 11, 24)
    out: Path = Path("data/landing")
    format: Format = "csv"
    defect_rate: float = 0.003
    profile: Profile = field(default_factory=GroceryProfile)
    # None: the project's descriptors ($RETAIL_DP_DESCRIPTORS_DIR, else data_products/)
    descriptors_dir: Path | None = None


@dataclass
class _Run:
    """What every chunk of one generation shares."""

    req: GenerateRequest
    terms: ContractTerms
    products: ProductTable
    defects: dict[str, int]

    @property
    def profile(self) -> Profile:
        return self.req.profile


def defect_kinds(profile: Profile) -> tuple[str, ...]:
    return ("duplicate_customer_id", "missing_customer_id", profile.customer_validity_defect)


def _chunk_seeds(seed: int, chunks: int) -> list[np.random.Generator]:
    return [np.random.default_rng(s) for s in np.random.SeedSequence(seed).spawn(chunks + 1)]


def _check_request(req: GenerateRequest, terms: ContractTerms) -> None:
    if req.customers < 1:
        raise ValueError(f"customers must be positive, got {req.customers}")
    if not 0 <= req.defect_rate < 0.1:
        raise ValueError(f"defect_rate must lie in [0, 0.1), got {req.defect_rate}")
    ratio = terms.price_ceiling_ratio
    if ratio is not None and req.profile.overpriced_factor <= ratio:
        raise ValueError(
            f"profile {req.profile.name}: overpriced_factor {req.profile.overpriced_factor} "
            f"does not exceed the contract's price ceiling of {ratio}x the list price"
        )


def _simulate_products(rng: np.random.Generator, req: GenerateRequest) -> ProductTable:
    if isinstance(req.profile, MarketplaceProfile):
        return marketplace.simulate_catalogue(rng, req.profile, req.customers)
    if isinstance(req.profile, SequentialProfile):
        return sequential.simulate_catalogue(rng, req.profile)
    return simulate_products(rng)


def simulated_catalogue(req: GenerateRequest) -> ProductTable:
    """The catalogue `generate(req)` draws (from the first of its random streams), with each
    product's share of the lines: for comparing a model with the process that made the data."""
    n_chunks = -(-req.customers // CHUNK_CUSTOMERS)
    return _simulate_products(_chunk_seeds(req.seed, n_chunks)[0], req)


def generate(req: GenerateRequest) -> dict:
    """Write the landing files and return the manifest."""
    terms = load_terms(req.descriptors_dir or Settings.from_env().descriptors_dir)
    _check_request(req, terms)
    out = req.out
    out.mkdir(parents=True, exist_ok=True)
    for stale in SOURCES:
        for suffix in (".csv", ".parquet"):
            (out / f"{stale}{suffix}").unlink(missing_ok=True)
    window_end = datetime.combine(req.end_date + timedelta(days=1), datetime.min.time())
    window_start = window_end - timedelta(days=WINDOW_DAYS)
    n_chunks = -(-req.customers // CHUNK_CUSTOMERS)
    rngs = _chunk_seeds(req.seed, n_chunks)
    kinds = defect_kinds(req.profile) + PURCHASE_DEFECTS
    # the catalogue from the first stream (rngs[0]), as simulated_catalogue draws it
    run = _Run(req, terms, simulated_catalogue(req), dict.fromkeys(kinds, 0))

    spill = out / ".generate.tmp"
    shutil.rmtree(spill, ignore_errors=True)
    con = duckdb.connect()
    con.execute("SET enable_progress_bar = false")
    con.execute(f"SET temp_directory = '{spill}'")
    con.execute("SET memory_limit = '1GB'")
    con.execute("SET preserve_insertion_order = true")
    _create_lookup_tables(con, run)
    order_offset = 0
    line_offset = 0
    for i in range(n_chunks):
        rng = rngs[i + 1]
        first = i * CHUNK_CUSTOMERS
        n = min(CHUNK_CUSTOMERS, req.customers - first)
        number = np.arange(first + 1, first + n + 1)
        order_customer, order_day, lines = _simulate_chunk(rng, run, n)
        first_day = np.full(n, np.inf)
        np.minimum.at(first_day, order_customer, order_day)
        first_day[np.isinf(first_day)] = np.nan
        _insert_customers(con, rng, run, number, first_day)
        _insert_purchases(con, rng, run, lines, number, order_offset, line_offset)
        order_offset += order_customer.size
        line_offset += lines["line_order"].size

    _write(con, run, window_start)
    con.close()
    shutil.rmtree(spill, ignore_errors=True)
    manifest = _manifest(run, window_start)
    (out / "manifest.json").write_text(json.dumps(manifest, indent=2, sort_keys=True) + "\n")
    return manifest


def _manifest(run: _Run, window_start: datetime) -> dict:
    req, defects = run.req, run.defects
    return {
        "seed": req.seed,
        "customers": req.customers,
        "end_date": req.end_date.isoformat(),
        "window_start": window_start.isoformat(),
        "format": req.format,
        "defect_rate": req.defect_rate,
        "profile": run.profile.describe(),
        "files": {s: f"{s}.{req.format}" for s in SOURCES},
        "rows": _row_counts(req.out, req.format),
        # every planted defect, and by what the landing contract does with its rows
        "defects": defects,
        "quarantined_defects": by_fate(defects, "quarantined"),
        "kept_defects": by_fate(defects, "kept"),
        "deferred_defects": by_fate(defects, "deferred"),
        "true_parameters": run.profile.true_parameters(),
        "planted_affinities": run.profile.planted_affinities(),
        "contract": {
            "price_ceiling_ratio": run.terms.price_ceiling_ratio,
            "channels": list(run.terms.channels),
        },
    }


def _simulate_chunk(
    rng: np.random.Generator, run: _Run, n: int
) -> tuple[np.ndarray, np.ndarray, dict[str, np.ndarray]]:
    """(order customer, order day, lines) for `n` customers; draws in a fixed order per profile,
    which is what keeps a seed's files byte-identical."""
    profile = run.profile
    weights = channel_concentration(profile.channel_weights, len(run.terms.channels))
    if isinstance(profile, GroceryProfile):
        params = profile.parameters
        interest = interest_sets(rng, n, params)
        order_customer, order_day = simulate_orders(rng, n, params, profile.never_bought_share)
        lines = simulate_lines(
            rng, order_customer, order_day, interest, run.products, params, weights
        )
    elif isinstance(profile, MarketplaceProfile):
        order_customer, order_day = simulate_orders(
            rng, n, profile.purchase_process, profile.never_bought_share
        )
        lines = marketplace.simulate_lines(
            rng, order_customer, order_day, run.products, profile, weights
        )
    elif isinstance(profile, SequentialProfile):
        order_customer, order_day = simulate_orders(
            rng, n, profile.purchase_process, profile.never_bought_share, dropout_at_first=True
        )
        lines = sequential.simulate_lines(
            rng, order_customer, order_day, run.products, profile, weights
        )
    else:
        raise TypeError(f"no simulation for profile {profile.name!r}")
    return order_customer, order_day, lines


def _create_lookup_tables(con: duckdb.DuckDBPyConnection, run: _Run) -> None:
    profile = run.profile
    countries = [c for c, _ in profile.countries] + list(profile.unrecognised_countries)
    for table, values in (
        ("first_names", names.FIRST_NAMES),
        ("last_names", names.LAST_NAMES),
        ("countries", countries),
        ("educations", names.EDUCATION),
        ("maritals", names.MARITAL_STATUS),
        ("domains", names.EMAIL_DOMAINS),
        ("channels", list(run.terms.channels)),
    ):
        con.execute(f"CREATE TABLE {table} (idx INTEGER, value VARCHAR)")
        con.executemany(f"INSERT INTO {table} VALUES (?, ?)", list(enumerate(values)))
    con.execute(
        """CREATE TABLE customers_raw (seq BIGINT, number BIGINT, missing_id BOOLEAN,
        first_name INT, last_name INT, email_defect INT, domain INT, birth_year INT,
        education INT, marital INT, income DOUBLE, country INT, signup_s BIGINT,
        updated_s BIGINT, phone BIGINT)"""
    )
    con.execute(
        """CREATE TABLE purchases_raw (line BIGINT, order_no BIGINT, customer BIGINT,
        product BIGINT, ts_s BIGINT, quantity BIGINT, unit_price DOUBLE, channel INT,
        is_deal BOOLEAN, updated_s BIGINT)"""
    )


def _customer_frame(
    rng: np.random.Generator, profile: Profile, number: np.ndarray, first_day: np.ndarray
) -> pd.DataFrame:
    n = number.size
    weights = np.array([w for _, w in profile.countries])
    never = np.isnan(first_day)
    # signup precedes the first purchase; non-buyers signed up at any time in the window
    signup_day = np.where(
        never, rng.uniform(-180, WINDOW_DAYS, n), first_day - rng.exponential(20.0, n)
    )
    signup_day = np.minimum(signup_day, np.where(never, WINDOW_DAYS - 1, first_day))
    updated_day = np.minimum(signup_day + rng.exponential(200.0, n), WINDOW_DAYS - 0.01)
    income = np.round(rng.lognormal(np.log(52000), 0.45, n), -1)
    income[rng.random(n) < 0.005] = np.nan
    cols = {
        "number": number,
        "missing_id": np.zeros(n, bool),
        "first_name": rng.integers(0, len(names.FIRST_NAMES), n),
        "last_name": rng.integers(0, len(names.LAST_NAMES), n),
        "email_defect": np.zeros(n, np.int64),
        "domain": rng.integers(0, len(names.EMAIL_DOMAINS), n),
        "birth_year": np.clip(np.rint(rng.normal(1972, 12, n)), 1935, 2006).astype(np.int64),
        "education": rng.choice(len(names.EDUCATION), n, p=names.EDUCATION_WEIGHTS),
        "marital": rng.choice(len(names.MARITAL_STATUS), n, p=names.MARITAL_WEIGHTS),
        "income": income,
        "country": rng.choice(len(weights), n, p=weights / weights.sum()),
        "signup_s": (signup_day * 86400).astype(np.int64),
        "updated_s": (updated_day * 86400).astype(np.int64),
        "phone": rng.integers(200_000_0000, 999_999_9999, n),
    }
    return pd.DataFrame(cols)


def _insert_customers(
    con: duckdb.DuckDBPyConnection,
    rng: np.random.Generator,
    run: _Run,
    number: np.ndarray,
    first_day: np.ndarray,
) -> None:
    profile, rate = run.profile, run.req.defect_rate
    frame = _customer_frame(rng, profile, number, first_day)
    n = len(frame)
    kinds = defect_kinds(profile)
    invalid_rate = profile.customer_validity_rate
    rates = [rate, rate, rate if invalid_rate is None else invalid_rate]
    dup, missing, invalid = plant(
        rng, n, [KINDS[k] for k in kinds], rates, run.terms, frame["signup_s"].to_numpy()
    )
    if profile.customer_validity_defect == "malformed_email":
        frame.loc[invalid, "email_defect"] = rng.integers(1, 4, invalid.size)
    else:
        unknown = rng.integers(0, len(profile.unrecognised_countries), invalid.size)
        frame.loc[invalid, "country"] = len(profile.countries) + unknown
    # an older copy of the record: the newest (the original) wins, the copy is quarantined
    copies = frame.iloc[dup].copy()
    copies["updated_s"] -= (rng.uniform(1, 300, dup.size) * 86400).astype(np.int64)
    copies["phone"] = rng.integers(200_000_0000, 999_999_9999, dup.size)
    # records that lost their key: extra rows, so that no purchase points at them
    lost = frame.iloc[missing].copy()
    lost["missing_id"] = True
    frame = pd.concat([frame, copies, lost], ignore_index=True)
    # put the extra rows among the others, deterministically
    frame = frame.iloc[rng.permutation(len(frame))].reset_index(drop=True)
    seq_start = con.execute("SELECT count(*) FROM customers_raw").fetchall()[0][0]
    frame.insert(0, "seq", np.arange(seq_start, seq_start + len(frame)))
    _append(con, "customers_raw", frame)
    for kind, rows in zip(kinds, (dup, missing, invalid), strict=True):
        run.defects[kind] += int(rows.size)


def _append(con: duckdb.DuckDBPyConnection, table: str, frame: pd.DataFrame) -> None:
    con.register("chunk", frame)
    con.execute(f"INSERT INTO {table} SELECT * FROM chunk")
    con.unregister("chunk")


def _bad_prices(rng: np.random.Generator, list_price: np.ndarray, run: _Run) -> np.ndarray:
    """Zero, negative or (when the contract has a ceiling) far above the ceiling."""
    overpriced = run.terms.price_ceiling_ratio is not None
    kind = rng.integers(0, 3 if overpriced else 2, list_price.size)
    return np.where(
        kind == 0,
        0.0,
        np.where(kind == 1, -list_price, np.round(list_price * run.profile.overpriced_factor, 2)),
    )


def _insert_purchases(
    con: duckdb.DuckDBPyConnection,
    rng: np.random.Generator,
    run: _Run,
    lines: dict[str, np.ndarray],
    number: np.ndarray,
    order_offset: int,
    line_offset: int,
) -> None:
    size = lines["line_order"].size
    if size == 0:
        return
    customer = number[lines["customer"]]
    product = lines["product"].copy()
    ts = lines["ts"].copy()
    quantity = lines["quantity"].copy()
    unit_price = lines["unit_price"].copy()
    rates = [run.req.defect_rate] * len(PURCHASE_DEFECTS)
    planted = plant(rng, size, [KINDS[k] for k in PURCHASE_DEFECTS], rates, run.terms, ts)
    qty, orphan_c, orphan_p, future, bad_price = planted
    quantity[qty] = -rng.integers(0, 3, qty.size)  # 0, -1 or -2
    customer = customer.copy()
    customer[orphan_c] = run.req.customers + 1_000_000 + rng.integers(0, 1_000_000, orphan_c.size)
    product[orphan_p] = run.products.price.size + rng.integers(1, 900, orphan_p.size)
    ts[future] = WINDOW_DAYS * 86400 + rng.integers(2 * 86400, 30 * 86400, future.size)
    unit_price[bad_price] = _bad_prices(rng, run.products.price[product[bad_price] - 1], run)
    lag = rng.integers(60, 6 * 3600, size)
    frame = pd.DataFrame(
        {
            "line": np.arange(line_offset + 1, line_offset + size + 1),
            "order_no": order_offset + lines["line_order"] + 1,
            "customer": customer,
            "product": product,
            "ts_s": ts,
            "quantity": quantity,
            "unit_price": unit_price,
            "channel": lines["channel"],
            "is_deal": lines["is_deal"],
            "updated_s": ts + lag,
        }
    )
    _append(con, "purchases_raw", frame)
    for kind, rows in zip(PURCHASE_DEFECTS, planted, strict=True):
        run.defects[kind] += int(rows.size)


def _id_sql(run: _Run, entity: str, number: str) -> str:
    """SQL for the id of `entity` number `number`: an md5 (a marketplace's opaque ids) or a
    prefixed, zero-padded counter."""
    if run.profile.hex_ids:
        return f"md5('{int(run.req.seed)}:{entity}:' || {number}::VARCHAR)"
    prefix, width = PREFIXED_IDS[entity]
    return f"'{prefix}' || lpad({number}::VARCHAR, {width}, '0')"


def _write(con: duckdb.DuckDBPyConnection, run: _Run, window_start: datetime) -> None:
    req = run.req
    start = f"TIMESTAMP '{window_start.isoformat(sep=' ')}'"
    options = "(FORMAT csv, HEADER true)" if req.format == "csv" else "(FORMAT parquet)"

    def copy(select: str, name: str) -> None:
        con.execute(f"COPY ({select}) TO '{req.out / f'{name}.{req.format}'}' {options}")

    copy(_customers_sql(run, start), "customer_info")
    con.register("catalogue", _catalogue(run))
    copy(
        f"""
        SELECT {_id_sql(run, "product", "number")} AS product_id,
               name AS product_name,
               category AS product_category,
               price,
               strftime({start} - INTERVAL 30 DAY, '%Y-%m-%d %H:%M:%S') AS updated_at
        FROM catalogue ORDER BY number
        """,
        "product",
    )
    copy(_purchases_sql(run, start), "purchase")


def _customers_sql(run: _Run, start: str) -> str:
    if run.profile.contact_details:
        contact = """fn.value AS first_name,
            ln.value AS last_name,
            lower(CASE c.email_defect
                WHEN 0 THEN fn.value || '.' || ln.value || c.number::VARCHAR || '@' || d.value
                WHEN 1 THEN fn.value || '.' || ln.value || c.number::VARCHAR || d.value
                WHEN 2 THEN fn.value || '.' || ln.value || c.number::VARCHAR || '@'
                ELSE fn.value || ' ' || ln.value || '@' || d.value
            END) AS email,
            '+1-' || substr(c.phone::VARCHAR, 1, 3) || '-' || substr(c.phone::VARCHAR, 4, 3)
                || '-' || substr(c.phone::VARCHAR, 7, 4) AS phone"""
    else:
        contact = ", ".join(
            f"NULL::VARCHAR AS {c}" for c in ("first_name", "last_name", "email", "phone")
        )
    return f"""
        SELECT
            CASE WHEN c.missing_id THEN NULL ELSE {_id_sql(run, "customer", "c.number")} END
                AS customer_id,
            {contact},
            c.birth_year,
            e.value AS education,
            m.value AS marital_status,
            c.income,
            co.value AS country,
            CAST({start} + to_seconds(c.signup_s) AS DATE) AS signup_date,
            strftime({start} + to_seconds(c.updated_s), '%Y-%m-%d %H:%M:%S') AS updated_at
        FROM customers_raw c
        JOIN first_names fn ON fn.idx = c.first_name
        JOIN last_names ln ON ln.idx = c.last_name
        JOIN domains d ON d.idx = c.domain
        JOIN educations e ON e.idx = c.education
        JOIN maritals m ON m.idx = c.marital
        JOIN countries co ON co.idx = c.country
        ORDER BY c.seq
        """


def _catalogue(run: _Run) -> pd.DataFrame:
    products, categories = run.products, run.profile.categories
    if run.profile.product_names:
        product_names = [
            names.PRODUCT_WORDS[categories[c]][k % PRODUCTS_PER_CATEGORY]
            for k, c in enumerate(products.category)
        ]
    else:
        product_names = pd.Series([None] * products.price.size, dtype="string")
    return pd.DataFrame(
        {
            "number": np.arange(1, products.price.size + 1),
            "category": [categories[i] for i in products.category],
            "name": product_names,
            "price": products.price,
        }
    )


def _purchases_sql(run: _Run, start: str) -> str:
    return f"""
        SELECT {_id_sql(run, "line", "p.line")} AS purchase_id,
               {_id_sql(run, "order", "p.order_no")} AS order_id,
               {_id_sql(run, "customer", "p.customer")} AS customer_id,
               {_id_sql(run, "product", "p.product")} AS product_id,
               strftime({start} + to_seconds(p.ts_s), '%Y-%m-%d %H:%M:%S') AS purchase_ts,
               p.quantity,
               round(p.unit_price, 2) AS unit_price,
               ch.value AS channel,
               p.is_deal,
               strftime({start} + to_seconds(p.updated_s), '%Y-%m-%d %H:%M:%S') AS updated_at
        FROM purchases_raw p JOIN channels ch ON ch.idx = p.channel
        ORDER BY p.line
        """


def _row_counts(out: Path, fmt: Format) -> dict[str, int]:
    reader = "read_csv" if fmt == "csv" else "read_parquet"
    with duckdb.connect() as con:
        con.execute("SET enable_progress_bar = false")
        return {
            s: con.execute(f"SELECT count(*) FROM {reader}('{out / f'{s}.{fmt}'}')").fetchall()[0][
                0
            ]
            for s in SOURCES
        }
