"""The landing contracts: one pandera schema per source, the single place that defines its
column names, types and rules.

Ingestion compiles these schemas to DuckDB SQL (see `sql.py`) so that 20M rows are validated
in the warehouse, not in pandas; pandera itself validates samples with the same schema.

Rules that pandera cannot express on one table live in the schema's `metadata`:
- `key`: the primary key; of rows sharing it the newest by `newest_by` is kept;
- `references`: column -> (source, column) that must exist among accepted rows;
- `not_after_as_of`: timestamp columns that may not lie after the run's reference time;
- `price_ceiling`: a column that may not exceed `ratio` times a referenced list price.

Checks with `raise_warning=True` do not reject a row: the row is kept and the validity SLO
counts it (a customer with a malformed email is still a customer).
"""

from __future__ import annotations

import pandera.pandas as pa

from retail_dp.generator.simulate import CATEGORIES, CHANNELS, PRICE_CEILING_RATIO

EMAIL_PATTERN = r"^[^@\s]+@[^@\s]+\.[A-Za-z]{2,}$"
COUNTRY_PATTERN = r"^[A-Z]{2}$"

CUSTOMER_INFO = pa.DataFrameSchema(
    name="customer_info",
    columns={
        "customer_id": pa.Column(str, nullable=False, checks=pa.Check.str_matches(r"^C\d+$")),
        "first_name": pa.Column(str, nullable=True),
        "last_name": pa.Column(str, nullable=True),
        "email": pa.Column(
            str, nullable=True, checks=pa.Check.str_matches(EMAIL_PATTERN, raise_warning=True)
        ),
        "phone": pa.Column(str, nullable=True),
        "birth_year": pa.Column(
            "Int64", nullable=True, checks=pa.Check.in_range(1900, 2010, raise_warning=True)
        ),
        "education": pa.Column(str, nullable=True),
        "marital_status": pa.Column(str, nullable=True),
        "income": pa.Column(float, nullable=True, checks=pa.Check.ge(0)),
        "country": pa.Column(str, nullable=True, checks=pa.Check.str_matches(COUNTRY_PATTERN)),
        "signup_date": pa.Column(pa.Date, nullable=True),
        "updated_at": pa.Column("datetime64[ns]", nullable=False),
    },
    metadata={"key": "customer_id", "newest_by": "updated_at"},
    strict=True,
)

PRODUCT = pa.DataFrameSchema(
    name="product",
    columns={
        "product_id": pa.Column(str, nullable=False),
        "product_name": pa.Column(str, nullable=False),
        "product_category": pa.Column(str, nullable=False, checks=pa.Check.isin(list(CATEGORIES))),
        "price": pa.Column(float, nullable=False, checks=pa.Check.gt(0)),
        "updated_at": pa.Column("datetime64[ns]", nullable=False),
    },
    metadata={"key": "product_id", "newest_by": "updated_at"},
    strict=True,
)

PURCHASE = pa.DataFrameSchema(
    name="purchase",
    columns={
        "purchase_id": pa.Column(str, nullable=False),
        "order_id": pa.Column(str, nullable=False),
        "customer_id": pa.Column(str, nullable=False),
        "product_id": pa.Column(str, nullable=False),
        "purchase_ts": pa.Column("datetime64[ns]", nullable=False),
        "quantity": pa.Column("Int64", nullable=False, checks=pa.Check.gt(0)),
        "unit_price": pa.Column(float, nullable=False, checks=pa.Check.gt(0)),
        "channel": pa.Column(str, nullable=False, checks=pa.Check.isin(list(CHANNELS))),
        "is_deal": pa.Column(bool, nullable=False),
        "updated_at": pa.Column("datetime64[ns]", nullable=False),
    },
    metadata={
        "key": "purchase_id",
        "newest_by": "updated_at",
        "references": {
            "customer_id": ["customer_info", "customer_id"],
            "product_id": ["product", "product_id"],
        },
        "not_after_as_of": ["purchase_ts"],
        "price_ceiling": {
            "column": "unit_price",
            "reference": ["product", "product_id", "product_id", "price"],
            "ratio": PRICE_CEILING_RATIO,
        },
    },
    strict=True,
)

CONTRACTS: dict[str, pa.DataFrameSchema] = {s.name: s for s in (CUSTOMER_INFO, PRODUCT, PURCHASE)}


def upstream_sources(schema: pa.DataFrameSchema) -> list[str]:
    """The sources whose accepted rows this source's rules look up."""
    refs = {src for src, _ in schema.metadata.get("references", {}).values()}
    ceiling = schema.metadata.get("price_ceiling")
    if ceiling:
        refs.add(ceiling["reference"][0])
    return sorted(refs)
