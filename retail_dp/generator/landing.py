"""Write a landing zone of sample data: customer_info, product, purchase and manifest.json.

NumPy simulates numbers in chunks of customers; DuckDB turns them into ids, names and
timestamps and writes the files, spilling to disk rather than holding everything in memory.
The same seed gives byte-identical files.
"""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import Literal

import duckdb
import numpy as np
import pandas as pd

from retail_dp.generator import names
from retail_dp.generator.simulate import (
    CATEGORIES,
    CHANNELS,
    PRICE_CEILING_RATIO,
    PRODUCTS_PER_CATEGORY,
    WINDOW_DAYS,
    TrueParameters,
    interest_sets,
    simulate_lines,
    simulate_orders,
    simulate_products,
)

Format = Literal["csv", "parquet"]
CHUNK_CUSTOMERS = 50_000
DEFECT_KINDS = (
    "duplicate_customer_id",
    "missing_customer_id",
    "malformed_email",
    "nonpositive_quantity",
    "orphan_customer_id",
    "orphan_product_id",
    "future_purchase_ts",
    "bad_unit_price",
)
# Defects of these kinds are rejected into quarantine; malformed emails are kept.
QUARANTINED_KINDS = tuple(k for k in DEFECT_KINDS if k != "malformed_email")


@dataclass(frozen=True)
class GenerateRequest:
    customers: int = 2240
    seed: int = 42
    end_date: date = date(2026, 11, 24)
    out: Path = Path("data/landing")
    format: Format = "csv"
    defect_rate: float = 0.003
    parameters: TrueParameters = TrueParameters()


def _chunk_seeds(seed: int, chunks: int) -> list[np.random.Generator]:
    return [np.random.default_rng(s) for s in np.random.SeedSequence(seed).spawn(chunks + 1)]


def _pick(rng: np.random.Generator, size: int, rate: float, kinds: int) -> list[np.ndarray]:
    """Disjoint random row indices for each of `kinds` defect kinds."""
    counts = rng.binomial(size, rate, kinds)
    counts = np.minimum(counts, size // (kinds + 1))
    chosen = rng.choice(size, int(counts.sum()), replace=False)
    return np.split(chosen, np.cumsum(counts)[:-1])


def generate(req: GenerateRequest) -> dict:
    """Write the landing files and return the manifest."""
    if req.customers < 1:
        raise ValueError(f"customers must be positive, got {req.customers}")
    if not 0 <= req.defect_rate < 0.1:
        raise ValueError(f"defect_rate must lie in [0, 0.1), got {req.defect_rate}")
    out = req.out
    out.mkdir(parents=True, exist_ok=True)
    for stale in ("customer_info", "product", "purchase"):
        for suffix in (".csv", ".parquet"):
            (out / f"{stale}{suffix}").unlink(missing_ok=True)
    window_end = datetime.combine(req.end_date + timedelta(days=1), datetime.min.time())
    window_start = window_end - timedelta(days=WINDOW_DAYS)
    n_chunks = -(-req.customers // CHUNK_CUSTOMERS)
    rngs = _chunk_seeds(req.seed, n_chunks)
    products = simulate_products(rngs[0])
    params = req.parameters
    defects = dict.fromkeys(DEFECT_KINDS, 0)

    spill = out / ".generate.tmp"
    shutil.rmtree(spill, ignore_errors=True)
    con = duckdb.connect()
    con.execute("SET enable_progress_bar = false")
    con.execute(f"SET temp_directory = '{spill}'")
    con.execute("SET memory_limit = '1GB'")
    con.execute("SET preserve_insertion_order = true")
    _create_lookup_tables(con)
    order_offset = 0
    line_offset = 0
    for i in range(n_chunks):
        rng = rngs[i + 1]
        first = i * CHUNK_CUSTOMERS
        n = min(CHUNK_CUSTOMERS, req.customers - first)
        number = np.arange(first + 1, first + n + 1)
        interest = interest_sets(rng, n, params)
        order_customer, order_day = simulate_orders(rng, n, params)
        lines = simulate_lines(rng, order_customer, order_day, interest, products, params)
        first_day = np.full(n, np.inf)
        np.minimum.at(first_day, order_customer, order_day)
        first_day[np.isinf(first_day)] = np.nan
        _insert_customers(con, rng, number, first_day, req.defect_rate, defects)
        _insert_purchases(
            con, rng, lines, number, req, order_offset, line_offset, products.price, defects
        )
        order_offset += order_customer.size
        line_offset += lines["line_order"].size

    con.register("product_df", pd.DataFrame({"price": products.price}))
    _write(con, req, window_start, products)
    con.close()
    shutil.rmtree(spill, ignore_errors=True)
    manifest = {
        "seed": req.seed,
        "customers": req.customers,
        "end_date": req.end_date.isoformat(),
        "window_start": window_start.isoformat(),
        "format": req.format,
        "defect_rate": req.defect_rate,
        "files": {s: f"{s}.{req.format}" for s in ("customer_info", "product", "purchase")},
        "rows": _row_counts(out, req.format),
        "defects": defects,
        "quarantined_defects": {k: defects[k] for k in QUARANTINED_KINDS},
        "true_parameters": {
            "bg_nbd": {k: getattr(params, k) for k in ("r", "alpha", "a", "b")},
            "gamma_gamma": {k: getattr(params, k) for k in ("p", "q", "gamma")},
            "time_unit": "weeks",
            "all": params.as_dict(),
        },
        "planted_affinities": {
            "strong": [["Wines", "Meats"], ["Fish", "Fruits"]],
            "independent": ["Gold"],
        },
        "contract": {"price_ceiling_ratio": PRICE_CEILING_RATIO},
    }
    (out / "manifest.json").write_text(json.dumps(manifest, indent=2, sort_keys=True) + "\n")
    return manifest


def _create_lookup_tables(con: duckdb.DuckDBPyConnection) -> None:
    for table, values in (
        ("first_names", names.FIRST_NAMES),
        ("last_names", names.LAST_NAMES),
        ("countries", [c for c, _ in names.COUNTRIES]),
        ("educations", names.EDUCATION),
        ("maritals", names.MARITAL_STATUS),
        ("domains", names.EMAIL_DOMAINS),
        ("channels", list(CHANNELS)),
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


def _insert_customers(con, rng, number, first_day, rate, defects) -> None:
    n = number.size
    weights = np.array([w for _, w in names.COUNTRIES])
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
    frame = pd.DataFrame(cols)
    dup, missing, bad_email = _pick(rng, n, rate, 3)
    frame.loc[bad_email, "email_defect"] = rng.integers(1, 4, bad_email.size)
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
    con.register("chunk", frame)
    con.execute("INSERT INTO customers_raw SELECT * FROM chunk")
    con.unregister("chunk")
    defects["duplicate_customer_id"] += int(dup.size)
    defects["missing_customer_id"] += int(missing.size)
    defects["malformed_email"] += int(bad_email.size)


def _insert_purchases(
    con, rng, lines, number, req, order_offset, line_offset, price, defects
) -> None:
    size = lines["line_order"].size
    if size == 0:
        return
    customer = number[lines["customer"]]
    product = lines["product"].copy()
    ts = lines["ts"].copy()
    quantity = lines["quantity"].copy()
    unit_price = lines["unit_price"].copy()
    qty, orphan_c, orphan_p, future, bad_price = _pick(rng, size, req.defect_rate, 5)
    quantity[qty] = -rng.integers(0, 3, qty.size)  # 0, -1 or -2
    customer = customer.copy()
    customer[orphan_c] = req.customers + 1_000_000 + rng.integers(0, 1_000_000, orphan_c.size)
    product[orphan_p] = len(CATEGORIES) * PRODUCTS_PER_CATEGORY + rng.integers(
        1, 900, orphan_p.size
    )
    ts[future] = WINDOW_DAYS * 86400 + rng.integers(2 * 86400, 30 * 86400, future.size)
    kind = rng.integers(0, 3, bad_price.size)
    list_price = price[product[bad_price] - 1]
    unit_price[bad_price] = np.where(
        kind == 0, 0.0, np.where(kind == 1, -list_price, np.round(list_price * 20, 2))
    )
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
    con.register("chunk", frame)
    con.execute("INSERT INTO purchases_raw SELECT * FROM chunk")
    con.unregister("chunk")
    defects["nonpositive_quantity"] += int(qty.size)
    defects["orphan_customer_id"] += int(orphan_c.size)
    defects["orphan_product_id"] += int(orphan_p.size)
    defects["future_purchase_ts"] += int(future.size)
    defects["bad_unit_price"] += int(bad_price.size)


def _write(con, req: GenerateRequest, window_start: datetime, products) -> None:
    start = f"TIMESTAMP '{window_start.isoformat(sep=' ')}'"
    options = "(FORMAT csv, HEADER true)" if req.format == "csv" else "(FORMAT parquet)"

    def copy(select: str, name: str) -> None:
        con.execute(f"COPY ({select}) TO '{req.out / f'{name}.{req.format}'}' {options}")

    customer_id = "'C' || lpad(c.number::VARCHAR, 7, '0')"
    copy(
        f"""
        SELECT
            CASE WHEN c.missing_id THEN NULL ELSE {customer_id} END AS customer_id,
            fn.value AS first_name,
            ln.value AS last_name,
            lower(CASE c.email_defect
                WHEN 0 THEN fn.value || '.' || ln.value || c.number::VARCHAR || '@' || d.value
                WHEN 1 THEN fn.value || '.' || ln.value || c.number::VARCHAR || d.value
                WHEN 2 THEN fn.value || '.' || ln.value || c.number::VARCHAR || '@'
                ELSE fn.value || ' ' || ln.value || '@' || d.value
            END) AS email,
            '+1-' || substr(c.phone::VARCHAR, 1, 3) || '-' || substr(c.phone::VARCHAR, 4, 3)
                || '-' || substr(c.phone::VARCHAR, 7, 4) AS phone,
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
        """,
        "customer_info",
    )
    catalogue = pd.DataFrame(
        {
            "number": np.arange(1, products.price.size + 1),
            "category": [CATEGORIES[i] for i in products.category],
            "name": [
                names.PRODUCT_WORDS[CATEGORIES[c]][k % PRODUCTS_PER_CATEGORY]
                for k, c in enumerate(products.category)
            ],
            "price": products.price,
        }
    )
    con.register("catalogue", catalogue)
    copy(
        f"""
        SELECT 'PRD' || lpad(number::VARCHAR, 4, '0') AS product_id,
               name AS product_name,
               category AS product_category,
               price,
               strftime({start} - INTERVAL 30 DAY, '%Y-%m-%d %H:%M:%S') AS updated_at
        FROM catalogue ORDER BY number
        """,
        "product",
    )
    copy(
        f"""
        SELECT 'L' || lpad(p.line::VARCHAR, 10, '0') AS purchase_id,
               'O' || lpad(p.order_no::VARCHAR, 9, '0') AS order_id,
               'C' || lpad(p.customer::VARCHAR, 7, '0') AS customer_id,
               'PRD' || lpad(p.product::VARCHAR, 4, '0') AS product_id,
               strftime({start} + to_seconds(p.ts_s), '%Y-%m-%d %H:%M:%S') AS purchase_ts,
               p.quantity,
               round(p.unit_price, 2) AS unit_price,
               ch.value AS channel,
               p.is_deal,
               strftime({start} + to_seconds(p.updated_s), '%Y-%m-%d %H:%M:%S') AS updated_at
        FROM purchases_raw p JOIN channels ch ON ch.idx = p.channel
        ORDER BY p.line
        """,
        "purchase",
    )


def _row_counts(out: Path, fmt: Format) -> dict[str, int]:
    reader = "read_csv" if fmt == "csv" else "read_parquet"
    with duckdb.connect() as con:
        con.execute("SET enable_progress_bar = false")
        return {
            s: con.execute(f"SELECT count(*) FROM {reader}('{out / f'{s}.{fmt}'}')").fetchall()[0][
                0
            ]
            for s in ("customer_info", "product", "purchase")
        }
