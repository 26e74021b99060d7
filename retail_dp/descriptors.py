"""Data product descriptors: one YAML per data product in `data_products/`.

They play the part of DataOS's data product spec. The code location reads them to put owners,
tags, descriptions and groups on the assets, and the quality checks read their SLO targets.
"""

from __future__ import annotations

from enum import StrEnum
from functools import cached_property
from pathlib import Path
from typing import Annotated, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

IDENTIFIER = r"^[a-z][a-z0-9_]*$"
# Dagster tag values: letters, digits, '-', '_', '.'; at most 63 characters.
TAG_VALUE = r"^[A-Za-z0-9_.-]{1,63}$"


class DescriptorError(ValueError):
    """A descriptor file is missing, unreadable or breaks the schema."""


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Person(Strict):
    name: str
    email: Annotated[str, Field(pattern=r"^[^@\s]+@[^@\s]+\.[^@\s]+$")]
    role: str | None = None


class Tags(Strict):
    domain: Annotated[str, Field(pattern=TAG_VALUE)]
    use_case: Annotated[str, Field(pattern=TAG_VALUE)]
    tier: Annotated[str, Field(pattern=TAG_VALUE)]


class UseCase(Strict):
    name: str
    description: str


class Metric(Strict):
    name: Annotated[str, Field(pattern=IDENTIFIER)]
    label: str
    definition: str
    unit: str | None = None


class SloCategory(StrEnum):
    completeness = "completeness"
    uniqueness = "uniqueness"
    freshness = "freshness"
    validity = "validity"
    schema = "schema"
    accuracy = "accuracy"


REQUIRED_SLOS = {
    SloCategory.completeness,
    SloCategory.uniqueness,
    SloCategory.freshness,
    SloCategory.validity,
    SloCategory.schema,
}


class Slo(Strict):
    """A numeric objective. `comparison` says how a measured value meets `target`."""

    objective: str
    target: float
    comparison: Literal[">=", "<="]
    unit: Literal["ratio", "hours"]
    severity: Literal["ERROR", "WARN"] = "ERROR"
    blocking: bool = True
    # share of this category's check evaluations that must pass over recent runs (`retail-dp slo`)
    attainment: Annotated[float, Field(ge=0, le=1)] = 0.95
    # freshness only: the timestamp column that dates the data (else: when the files landed)
    column: Annotated[str, Field(pattern=IDENTIFIER)] | None = None

    @model_validator(mode="after")
    def _check_target(self) -> Slo:
        if self.unit == "ratio" and not 0.0 <= self.target <= 1.0:
            raise ValueError(f"a ratio target must lie in [0, 1], got {self.target}")
        if self.unit == "hours" and self.target <= 0:
            raise ValueError(f"an hours target must be positive, got {self.target}")
        if self.blocking and self.severity != "ERROR":
            raise ValueError("only ERROR-severity SLOs can block downstream work")
        return self


class LandingInput(Strict):
    """Where a source-aligned product's files land."""

    location: str  # file stem or folder name inside the landing zone
    formats: list[Literal["csv", "parquet"]]


class ProductInput(Strict):
    """A source-aligned data product that a consumer-aligned product reuses."""

    data_product: Annotated[str, Field(pattern=IDENTIFIER)]


class Output(Strict):
    table: Annotated[str, Field(pattern=IDENTIFIER)]
    description: str


class Refresh(Strict):
    cron: str
    timezone: str = "UTC"
    # the models are refitted when their last fit is this many days old; the runs between
    # re-score every customer with the last fit
    refit_every_days: int = Field(default=7, ge=1)

    @field_validator("cron")
    @classmethod
    def _five_fields(cls, value: str) -> str:
        if len(value.split()) != 5:
            raise ValueError(f"expected a five-field cron expression, got {value!r}")
        return value


class Alerts(Strict):
    """Where incidents are posted. RETAIL_DP_WEBHOOK_URL in the environment overrides it."""

    webhook_url: Annotated[str, Field(pattern=r"^https?://")] | None = None
    timeout_seconds: Annotated[float, Field(gt=0, le=60)] = 5.0


class ArchitectureSlos(Strict):
    """The delivery service's own service levels, measured from its audit log over the last
    `window_days`: availability (share of answers that are not 5xx) and p95 latency per
    endpoint (`latency_p95_ms`: endpoint -> milliseconds; "*" for any other endpoint)."""

    window_days: Annotated[int, Field(ge=1, le=366)] = 28
    availability: Annotated[float, Field(ge=0, le=1)] = 0.995
    latency_p95_ms: dict[str, Annotated[float, Field(gt=0)]] = {}


class GovernanceSlos(Strict):
    """Governance service levels: PII masking coverage (every PII member has a masking rule for
    every group that can see it), audit coverage (every request audited) and the age of the
    last access review."""

    pii_masking_coverage: Annotated[float, Field(ge=0, le=1)] = 1.0
    audit_coverage: Annotated[float, Field(ge=0, le=1)] = 1.0
    access_review_max_age_days: Annotated[int, Field(ge=1, le=3660)] = 90


class ValueRule(Strict):
    """A rule on one landing column, as data. `on_fail: warn` keeps the row and counts it
    against the validity SLO; `reject` quarantines it. Reject only rows that cannot be used."""

    column: Annotated[str, Field(pattern=IDENTIFIER)]
    rule: Literal[">", ">=", "<", "<=", "between", "in", "matches", "country"]
    # a number (comparisons), [low, high] (between), an allow-list (in), a regex (matches)
    value: float | list[float] | list[str] | str | None = None
    on_fail: Literal["reject", "warn"] = "warn"

    @model_validator(mode="after")
    def _check_value(self) -> ValueRule:
        expected = {
            ">": float,
            ">=": float,
            "<": float,
            "<=": float,
            "between": list,
            "in": list,
            "matches": str,
            "country": type(None),
        }[self.rule]
        if not isinstance(self.value, expected) or isinstance(self.value, bool):
            raise ValueError(f"rule {self.rule!r} takes a {expected.__name__} value")
        if self.rule == "between" and len(self.value) != 2:
            raise ValueError("rule 'between' takes [low, high]")
        if self.rule == "in" and not self.value:
            raise ValueError("rule 'in' takes a non-empty allow-list")
        return self


class Identifiers(Strict):
    """What a key or reference value may be: any non-blank text or number once trimmed, at
    most `max_length` characters. `pattern` is an optional house rule (a warning)."""

    max_length: Annotated[int, Field(ge=1, le=4096)] = 128
    pattern: str | None = None


class PriceCeiling(Strict):
    """`column` may not exceed `ratio` times the referenced list price (when that is > 0)."""

    column: Annotated[str, Field(pattern=IDENTIFIER)]
    ratio: Annotated[float, Field(gt=1)]
    on_fail: Literal["reject", "warn"] = "warn"


class Contract(Strict):
    """A source's landing rules that are vocabulary, not code: the column types and keys live
    in `retail_dp/sources/contracts.py`, these in the descriptor."""

    identifiers: Identifiers = Identifiers()
    rules: list[ValueRule] = []
    price_ceiling: PriceCeiling | None = None
    # rows whose value here lies after as_of do not exist yet for the run: deferred, not loaded
    defer_after_as_of: list[Annotated[str, Field(pattern=IDENTIFIER)]] = []
    # a field longer than this quarantines its row (reason oversized_field)
    max_field_length: Annotated[int, Field(ge=16)] = 1_000_000

    def allowed_values(self, column: str) -> list[str] | None:
        return next((r.value for r in self.rules if r.column == column and r.rule == "in"), None)


class DataProduct(Strict):
    name: Annotated[str, Field(pattern=IDENTIFIER)]
    title: str
    version: Annotated[str, Field(pattern=r"^\d+\.\d+\.\d+$")]
    domain: str
    kind: Literal["source-aligned", "consumer-aligned"]
    description: str
    owner: Person
    collaborators: list[Person] = []
    tags: Tags
    use_cases: Annotated[list[UseCase], Field(min_length=1)]
    metrics: Annotated[list[Metric], Field(min_length=1)]
    inputs: Annotated[list[LandingInput | ProductInput], Field(min_length=1)]
    outputs: Annotated[list[Output], Field(min_length=1)]
    slos: dict[SloCategory, Slo]
    refresh: Refresh
    alerts: Alerts = Alerts()
    # source-aligned products: the landing rules that are data (vocabularies, ranges, ids)
    contract: Contract | None = None
    # the consumer-aligned product: the delivery service's architecture and governance SLOs
    architecture_slos: ArchitectureSlos | None = None
    governance_slos: GovernanceSlos | None = None

    @model_validator(mode="after")
    def _check_shape(self) -> DataProduct:
        missing = REQUIRED_SLOS - set(self.slos)
        if missing:
            raise ValueError(f"slos lacks {sorted(m.value for m in missing)}")
        wanted = LandingInput if self.kind == "source-aligned" else ProductInput
        wrong = [i for i in self.inputs if not isinstance(i, wanted)]
        if wrong:
            raise ValueError(f"a {self.kind} product takes inputs of the form {wanted.__name__}")
        if self.contract is not None and self.kind != "source-aligned":
            raise ValueError("only a source-aligned product declares a landing contract")
        return self

    @property
    def dagster_tags(self) -> dict[str, str]:
        return {
            "domain": self.tags.domain,
            "use_case": self.tags.use_case,
            "tier": self.tags.tier,
            "data_product": self.name,
        }

    @property
    def owners(self) -> list[str]:
        return [self.owner.email]

    @property
    def output_tables(self) -> list[str]:
        return [o.table for o in self.outputs]


def load_descriptor(path: Path) -> DataProduct:
    try:
        raw = yaml.safe_load(path.read_text())
    except (OSError, yaml.YAMLError) as exc:
        raise DescriptorError(f"{path}: cannot read descriptor: {exc}") from exc
    if not isinstance(raw, dict):
        raise DescriptorError(f"{path}: a descriptor must be a YAML mapping")
    try:
        return DataProduct.model_validate(raw)
    except ValidationError as exc:
        problems = "; ".join(
            f"field '{'.'.join(str(p) for p in err['loc']) or '<root>'}': {err['msg']}"
            + (f" (got {err['input']!r})" if not isinstance(err["input"], dict | list) else "")
            for err in exc.errors()
        )
        raise DescriptorError(f"{path}: {problems}") from exc


class Catalog(BaseModel):
    """All data products declared in one folder, checked against each other."""

    model_config = ConfigDict(frozen=True)

    products: dict[str, DataProduct]

    @classmethod
    def load(cls, folder: Path) -> Catalog:
        files = sorted(folder.glob("*.yaml"))
        if not files:
            raise DescriptorError(f"{folder}: no data product descriptors (*.yaml) found")
        products: dict[str, DataProduct] = {}
        for path in files:
            product = load_descriptor(path)
            if path.stem != product.name:
                raise DescriptorError(
                    f"{path}: field 'name' is {product.name!r} but the file is named {path.stem!r}"
                )
            products[product.name] = product
        for product in products.values():
            for item in product.inputs:
                if isinstance(item, ProductInput) and item.data_product not in products:
                    raise DescriptorError(
                        f"{folder / (product.name + '.yaml')}: field 'inputs.data_product' names "
                        f"{item.data_product!r}, which no descriptor declares"
                    )
        return cls(products=products)

    @cached_property
    def consumer(self) -> DataProduct:
        consumers = [p for p in self.products.values() if p.kind == "consumer-aligned"]
        if len(consumers) != 1:
            raise DescriptorError(f"expected one consumer-aligned product, found {len(consumers)}")
        return consumers[0]

    def __getitem__(self, name: str) -> DataProduct:
        return self.products[name]
