"""The landing contracts: one pandera schema per source, built from two halves.

- The landing format is code (`LANDING_FORMATS`): column names, types, nullability, the key,
  the newest-row-wins column and the references between sources.
- The vocabulary is data, in the source's descriptor (`contract:`): value rules with
  `on_fail: reject | warn`, identifier limits, the price ceiling, and the columns that date a
  row for `as_of` deferral.

Ingestion compiles the schema to DuckDB SQL (`rules.py`) so that 20M rows are validated in the
warehouse, not in pandas; pandera itself validates samples with the same schema.

Only rows that cannot be used are rejected: a missing key, a value that does not fit its
column's type, an orphan reference, or a rule the descriptor marks `reject`. Checks with
`raise_warning=True` keep the row and the validity SLO counts it.
"""

from __future__ import annotations

import csv
from dataclasses import dataclass
from functools import cache
from pathlib import Path

import pandas as pd
import pandera.pandas as pa

from retail_dp.descriptors import Catalog, Contract, DataProduct, ValueRule
from retail_dp.settings import PROJECT_ROOT

# The committed ISO 3166 table (alpha-2, alpha-3, names, IOC/FIFA codes, region); dbt seeds it.
COUNTRIES_CSV = PROJECT_ROOT / "dbt_project" / "seeds" / "country_regions.csv"
COUNTRY_SPELLINGS = ("country_code", "alpha3", "country_name", "official_name", "short_name")
COUNTRY_CODES = ("ioc", "fifa")


@dataclass(frozen=True)
class LandingFormat:
    """What a source's files must look like; the vocabulary comes from the descriptor."""

    columns: dict[str, tuple[str, bool]]  # name -> (pandera dtype, nullable)
    key: str
    newest_by: str
    identifiers: tuple[str, ...]  # key and reference columns: trimmed text, bounded length
    references: dict[str, tuple[str, str]] | None = None  # column -> (source, column)


LANDING_FORMATS: dict[str, LandingFormat] = {
    "customer_info": LandingFormat(
        columns={
            "customer_id": (str, False),
            "first_name": (str, True),
            "last_name": (str, True),
            "email": (str, True),
            "phone": (str, True),
            "birth_year": ("Int64", True),
            "education": (str, True),
            "marital_status": (str, True),
            "income": (float, True),
            "country": (str, True),
            "signup_date": (pa.Date, True),
            "updated_at": ("datetime64[ns]", False),
        },
        key="customer_id",
        newest_by="updated_at",
        identifiers=("customer_id",),
    ),
    "product": LandingFormat(
        columns={
            "product_id": (str, False),
            "product_name": (str, True),
            "product_category": (str, False),
            "price": (float, False),
            "updated_at": ("datetime64[ns]", False),
        },
        key="product_id",
        newest_by="updated_at",
        identifiers=("product_id",),
    ),
    "purchase": LandingFormat(
        columns={
            "purchase_id": (str, False),
            "order_id": (str, False),
            "customer_id": (str, False),
            "product_id": (str, False),
            "purchase_ts": ("datetime64[ns]", False),
            "quantity": ("Int64", False),
            "unit_price": (float, False),
            "channel": (str, False),
            "is_deal": (bool, False),
            "updated_at": ("datetime64[ns]", False),
        },
        key="purchase_id",
        newest_by="updated_at",
        identifiers=("purchase_id", "order_id", "customer_id", "product_id"),
        references={
            "customer_id": ("customer_info", "customer_id"),
            "product_id": ("product", "product_id"),
        },
    ),
}


@cache
def country_spellings(path: Path = COUNTRIES_CSV) -> dict[str, str]:
    """Upper-cased spelling (alpha-2, alpha-3, English names, IOC/FIFA codes) -> alpha-2."""
    spellings: dict[str, str] = {}
    with path.open(encoding="utf-8", newline="") as handle:
        rows = list(csv.DictReader(handle))
    # ISO spellings first, so a sports code never shadows an ISO alpha-3 of another country
    for columns in (COUNTRY_SPELLINGS, COUNTRY_CODES):
        for row in rows:
            for column in columns:
                spelling = row[column].strip().upper()
                if spelling:
                    spellings.setdefault(spelling, row["country_code"])
    return spellings


def iso_country_codes() -> list[str]:
    return sorted(set(country_spellings().values()))


def _check(rule: ValueRule) -> pa.Check:
    warn = rule.on_fail == "warn"
    value = rule.value
    match rule.rule:
        case ">":
            return pa.Check.gt(value, raise_warning=warn)
        case ">=":
            return pa.Check.ge(value, raise_warning=warn)
        case "<":
            return pa.Check.lt(value, raise_warning=warn)
        case "<=":
            return pa.Check.le(value, raise_warning=warn)
        case "between":
            return pa.Check.in_range(value[0], value[1], raise_warning=warn)
        case "in":
            return pa.Check.isin(list(value), raise_warning=warn)
        case "matches":
            return pa.Check.str_matches(value, raise_warning=warn)
        case "country":
            codes = iso_country_codes()
            return pa.Check(
                lambda s: s.isin(codes),
                name="iso_country",
                raise_warning=warn,
                statistics={"allowed_values": codes},
                error="a recognised ISO 3166 country",
            )
    raise ValueError(f"no check for rule {rule.rule!r}")


def identifier_checks(contract: Contract) -> list[pa.Check]:
    checks = [pa.Check.str_length(max_value=contract.identifiers.max_length)]
    if contract.identifiers.pattern:
        checks.append(pa.Check.str_matches(contract.identifiers.pattern, raise_warning=True))
    return checks


def contract_for(product: DataProduct) -> pa.DataFrameSchema:
    """The pandera schema of a source-aligned product: its landing format plus its vocabulary."""
    fmt = LANDING_FORMATS.get(product.name)
    if fmt is None:
        raise ValueError(f"{product.name}: no landing format is defined for this source")
    contract = product.contract or Contract()
    unknown = {r.column for r in contract.rules} - set(fmt.columns)
    unknown |= set(contract.defer_after_as_of) - set(fmt.columns)
    if unknown:
        raise ValueError(f"{product.name}: descriptor rules name unknown columns {sorted(unknown)}")
    columns = {}
    for name, (dtype, nullable) in fmt.columns.items():
        checks = [_check(r) for r in contract.rules if r.column == name]
        if name in fmt.identifiers:
            checks = identifier_checks(contract) + checks
        columns[name] = pa.Column(dtype, nullable=nullable, checks=checks)
    metadata = {
        "key": fmt.key,
        "newest_by": fmt.newest_by,
        "identifiers": list(fmt.identifiers),
        "references": {c: list(ref) for c, ref in (fmt.references or {}).items()},
        "defer_after_as_of": list(contract.defer_after_as_of),
        "max_field_length": contract.max_field_length,
        "normalise_country": [r.column for r in contract.rules if r.rule == "country"],
    }
    if contract.price_ceiling:
        ceiling = contract.price_ceiling
        metadata["price_ceiling"] = {
            "column": ceiling.column,
            "reference": ["product", "product_id", "product_id", "price"],
            "ratio": ceiling.ratio,
            "on_fail": ceiling.on_fail,
        }
    return pa.DataFrameSchema(name=product.name, columns=columns, metadata=metadata, strict=True)


def build_contracts(catalog: Catalog) -> dict[str, pa.DataFrameSchema]:
    """Every source-aligned product's contract, in the order their references need."""
    sources = [p for p in catalog.products.values() if p.kind == "source-aligned"]
    contracts = {p.name: contract_for(p) for p in sources}
    return {name: contracts[name] for name in _load_order(contracts)}


def _load_order(contracts: dict[str, pa.DataFrameSchema]) -> list[str]:
    ordered: list[str] = []
    pending = sorted(contracts)
    while pending:
        ready = [n for n in pending if set(upstream_sources(contracts[n])) <= set(ordered)]
        if not ready:
            raise ValueError(f"the sources' references form a cycle: {pending}")
        ordered += ready
        pending = [n for n in pending if n not in ready]
    return ordered


def upstream_sources(schema: pa.DataFrameSchema) -> list[str]:
    """The sources whose accepted rows this source's rules look up."""
    refs = {src for src, _ in schema.metadata.get("references", {}).values()}
    ceiling = schema.metadata.get("price_ceiling")
    if ceiling:
        refs.add(ceiling["reference"][0])
    return sorted(refs)


def normalise_countries(values: pd.Series) -> pd.Series:
    """Alpha-2 for every recognised spelling; anything else as written (for pandera samples)."""
    spellings = country_spellings()
    return values.map(lambda v: spellings.get(str(v).strip().upper(), v) if pd.notna(v) else v)
