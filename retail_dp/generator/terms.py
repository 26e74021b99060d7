"""What the generator takes from the data product descriptors: the landing vocabulary it must
speak (channels, the price ceiling) and the SLO targets its planted defects must respect.

The descriptors are the one source of truth; production code never reads the generator.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from retail_dp.descriptors import Catalog, DataProduct, SloCategory

# the SLOs whose measure a planted defect can move; each is a ratio with `>=`
RATIO_SLOS = (SloCategory.completeness, SloCategory.uniqueness, SloCategory.validity)


@dataclass(frozen=True)
class ContractTerms:
    channels: tuple[str, ...]
    # None when the purchase descriptor sets no ceiling: no unit price is then too dear
    price_ceiling_ratio: float | None
    # (source, SLO category) -> the share of rows that may fail it (1 - target)
    slack: dict[tuple[str, str], float]

    def allowance(self, source: str, slo: str) -> float:
        return self.slack.get((source, slo), 0.0)


def load_terms(descriptors_dir: Path) -> ContractTerms:
    catalog = Catalog.load(descriptors_dir)
    purchase = catalog["purchase"]
    contract = purchase.contract
    channels = contract.allowed_values("channel") if contract else None
    if not channels:
        raise ValueError(
            f"{descriptors_dir}: the purchase descriptor lists no channels "
            "(a contract rule `{column: channel, rule: in, value: [...]}`)"
        )
    ceiling = contract.price_ceiling if contract else None
    return ContractTerms(
        channels=tuple(channels),
        price_ceiling_ratio=ceiling.ratio if ceiling else None,
        slack={
            (name, slo.value): target
            for name, product in catalog.products.items()
            if product.kind == "source-aligned"
            for slo, target in _slack(product).items()
        },
    )


def _slack(product: DataProduct) -> dict[SloCategory, float]:
    return {
        category: 1.0 - slo.target
        for category, slo in product.slos.items()
        if category in RATIO_SLOS and slo.comparison == ">=" and slo.unit == "ratio"
    }
