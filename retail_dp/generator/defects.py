"""The defects the generator plants, what the landing contract does with each, and how many
to plant so that a defect rate the SLOs allow never breaks them by chance.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

import numpy as np

from retail_dp.generator.terms import ContractTerms

Fate = Literal["quarantined", "kept", "deferred"]


@dataclass(frozen=True)
class DefectKind:
    name: str
    source: str  # the landing file it is planted in
    fate: Fate  # what the landing contract does with the row
    slo: str | None  # the SLO category that counts it; a deferred row is counted by none


KINDS = {
    k.name: k
    for k in (
        DefectKind("duplicate_customer_id", "customer_info", "quarantined", "uniqueness"),
        DefectKind("missing_customer_id", "customer_info", "quarantined", "completeness"),
        DefectKind("malformed_email", "customer_info", "kept", "validity"),
        DefectKind("unrecognised_country", "customer_info", "kept", "validity"),
        DefectKind("nonpositive_quantity", "purchase", "quarantined", "validity"),
        DefectKind("orphan_customer_id", "purchase", "quarantined", "validity"),
        DefectKind("orphan_product_id", "purchase", "quarantined", "validity"),
        DefectKind("future_purchase_ts", "purchase", "deferred", None),
        DefectKind("bad_unit_price", "purchase", "quarantined", "validity"),
    )
}


def by_fate(defects: dict[str, int], fate: Fate) -> dict[str, int]:
    return {name: n for name, n in defects.items() if KINDS[name].fate == fate}


def _allowances(kinds: list[DefectKind], terms: ContractTerms) -> list[float | None]:
    """Each kind's share of the judged rows: its SLO's slack, split evenly among the kinds
    planted here that the same SLO counts."""
    shares: list[float | None] = []
    for kind in kinds:
        if kind.slo is None:
            shares.append(None)
            continue
        sharing = sum(k.source == kind.source and k.slo == kind.slo for k in kinds)
        shares.append(terms.allowance(kind.source, kind.slo) / sharing)
    return shares


def plant(
    rng: np.random.Generator,
    size: int,
    kinds: list[DefectKind],
    rates: list[float],
    terms: ContractTerms,
) -> list[np.ndarray]:
    """Disjoint random row indices among `size` rows for each kind, about `rate` of the rows.

    A kind whose rate lies within its SLO's allowance is capped at that allowance: small
    samples then plant none rather than fail the SLO by chance. A rate beyond it asks for a
    failing SLO (the quality tests plant 6%) and is left to chance."""
    counts = rng.binomial(size, np.asarray(rates, dtype=float))
    counts = np.minimum(counts, size // (len(kinds) + 1))
    # deferred rows leave every SLO's denominator
    judged = size - sum(int(c) for c, k in zip(counts, kinds, strict=True) if k.fate == "deferred")
    for i, (share, rate) in enumerate(zip(_allowances(kinds, terms), rates, strict=True)):
        if share is not None and rate <= share:
            counts[i] = min(counts[i], math.floor(share * judged + 1e-9))
    chosen = rng.choice(size, int(counts.sum()), replace=False)
    return np.split(chosen, np.cumsum(counts)[:-1])
