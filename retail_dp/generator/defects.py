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
    dates: np.ndarray,
) -> list[np.ndarray]:
    """Disjoint random row indices among `size` rows for each kind, about `rate` of the rows.

    A kind whose rate lies within its SLO's allowance is capped at that allowance: small
    samples then plant none rather than fail the SLO by chance. Its rows are also spread over
    `dates` (what dates a row for as_of: a signup, a purchase) so that the cap holds at every
    as_of, not only at the last day: a backtest builds the product at an earlier as_of, where
    a random draw could crowd the early rows (on 2,240 sequential customers two seeds in five
    broke customer_info's uniqueness SLO at a year before the end). A rate beyond the allowance
    asks for a failing SLO (the quality tests plant 6%) and is left to chance."""
    counts = rng.binomial(size, np.asarray(rates, dtype=float))
    counts = np.minimum(counts, size // (len(kinds) + 1))
    # deferred rows leave every SLO's denominator
    judged = size - sum(int(c) for c, k in zip(counts, kinds, strict=True) if k.fate == "deferred")
    capped: dict[int, float] = {}
    for i, (share, rate) in enumerate(zip(_allowances(kinds, terms), rates, strict=True)):
        if share is not None and rate <= share:
            counts[i] = min(counts[i], math.floor(share * judged + 1e-9))
            capped[i] = share
    free = np.ones(size, dtype=bool)
    chosen: list[np.ndarray] = [np.empty(0, dtype=np.int64)] * len(kinds)
    for i in (i for i in range(len(kinds)) if i not in capped):
        chosen[i] = rng.choice(np.flatnonzero(free), int(counts[i]), replace=False)
        free[chosen[i]] = False
    by_date = np.argsort(dates, kind="stable")
    for i, share in capped.items():
        chosen[i] = _spread(rng, by_date[free[by_date]], int(counts[i]), share)
        free[chosen[i]] = False
    return chosen


def _spread(rng: np.random.Generator, rows: np.ndarray, count: int, share: float) -> np.ndarray:
    """`count` of `rows` (in date order) such that any first m of them hold at most
    floor(share * m): the k-th chosen (from 1) sits at position ceil(k / share) - 1 or later,
    each pushed on by a sorted uniform draw so they spread over all the dates."""
    count = min(count, math.floor(share * rows.size + 1e-9))
    if count == 0:
        return np.empty(0, dtype=np.int64)
    earliest = np.ceil(np.arange(1, count + 1) / share - 1e-9).astype(np.int64) - 1
    slack = rows.size - 1 - earliest[-1]
    return rows[earliest + np.sort(rng.integers(0, slack + 1, count))]
