"""The planted structure of the sample data, simulated with vectorised NumPy.

Customers buy by the BG/NBD process (Fader, Hardie & Lee 2005): while alive, a customer makes
repeat purchases at a Poisson rate lambda ~ Gamma(r, alpha) per week and, after each repeat
purchase, drops out with probability p ~ Beta(a, b). The value of each order follows the
Gamma-Gamma model: z ~ Gamma(p, nu) with nu ~ Gamma(q, gamma). Categories are drawn from a
customer's latent interest set, whose structure plants the affinities that the marts must
recover: "foodies" buy Wines and Meats, "fresh" buyers buy Fish and Fruits, and Gold is
independent of everything else.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Protocol

import numpy as np

CATEGORIES = ("Wines", "Meats", "Fish", "Sweets", "Fruits", "Gold")
PRODUCTS_PER_CATEGORY = 10
# List price range per category (currency units), same order as CATEGORIES.
PRICE_RANGES = ((8, 60), (5, 40), (6, 45), (2, 15), (1, 10), (40, 400))
WINDOW_DAYS = 730
DEAL_DISCOUNT = 0.15
EXPLORATION_SHARE = 0.01


@dataclass(frozen=True)
class TrueParameters:
    """Parameters the generator draws from; the manifest records them."""

    # BG/NBD, time in weeks
    r: float = 1.1
    alpha: float = 4.5
    a: float = 0.8
    b: float = 10.0
    # Gamma-Gamma spend per order
    p: float = 3.0
    q: float = 4.0
    gamma: float = 120.0
    # latent segments behind the category affinities
    foodie_share: float = 0.30
    fresh_share: float = 0.30
    interest_if_segment: dict[str, float] = field(
        default_factory=lambda: {"Wines": 0.85, "Meats": 0.85, "Fish": 0.80, "Fruits": 0.80}
    )
    interest_otherwise: dict[str, float] = field(
        default_factory=lambda: {"Wines": 0.04, "Meats": 0.04, "Fish": 0.04, "Fruits": 0.04}
    )
    sweets_interest: float = 0.30
    gold_interest: float = 0.30
    # Gold is bought on top of an order, never instead of the other categories
    gold_line_share: float = 0.35
    mean_extra_lines_per_order: float = 1.5
    exploration_share: float = EXPLORATION_SHARE

    def as_dict(self) -> dict:
        return asdict(self)


class PurchaseProcess(Protocol):
    """BG/NBD parameters, time in weeks."""

    r: float
    alpha: float
    a: float
    b: float


@dataclass
class ProductTable:
    category: np.ndarray  # index into the profile's categories
    price: np.ndarray
    # relative chance of each product on a line; None: the grocery's interest model picks
    popularity: np.ndarray | None = None


def channel_concentration(weights: tuple[float, ...], channels: int) -> list[float]:
    """Dirichlet weights for the descriptor's channels, in its order; channels beyond the
    profile's list share its last weight."""
    return [weights[min(i, len(weights) - 1)] for i in range(channels)]


def simulate_products(rng: np.random.Generator) -> ProductTable:
    category = np.repeat(np.arange(len(CATEGORIES)), PRODUCTS_PER_CATEGORY)
    low = np.array([lo for lo, _ in PRICE_RANGES])[category]
    high = np.array([hi for _, hi in PRICE_RANGES])[category]
    # log-uniform prices within the category's range, rounded to cents
    price = np.round(np.exp(rng.uniform(np.log(low), np.log(high))), 2)
    return ProductTable(category=category, price=price)


def interest_sets(rng: np.random.Generator, n: int, params: TrueParameters) -> np.ndarray:
    """Boolean (n, 6) matrix: which categories each customer is interested in."""
    foodie = rng.random(n) < params.foodie_share
    fresh = rng.random(n) < params.fresh_share
    seg, other = params.interest_if_segment, params.interest_otherwise

    def draw(name: str, in_segment: np.ndarray) -> np.ndarray:
        return rng.random(n) < np.where(in_segment, seg[name], other[name])

    interest = np.column_stack(
        [
            draw("Wines", foodie),
            draw("Meats", foodie),
            draw("Fish", fresh),
            rng.random(n) < params.sweets_interest,
            draw("Fruits", fresh),
            rng.random(n) < params.gold_interest,
        ]
    )
    # Everyone has at least one non-Gold interest; choosing it without looking at Gold keeps
    # Gold independent of the rest.
    empty = ~interest[:, :5].any(axis=1)
    interest[np.flatnonzero(empty), rng.integers(0, 5, empty.sum())] = True
    return interest


def _group_cumsum(values: np.ndarray, counts: np.ndarray) -> np.ndarray:
    """Cumulative sum restarting at each group of `counts` consecutive values."""
    total = np.cumsum(values)
    starts = np.repeat(np.cumsum(counts) - counts, counts)
    before = np.concatenate([[0.0], total])[starts]
    return total - before


def simulate_orders(
    rng: np.random.Generator,
    n: int,
    params: PurchaseProcess,
    never_bought_share: float,
    dropout_at_first: bool = False,
) -> tuple[np.ndarray, np.ndarray]:
    """Order times by the BG/NBD process: (customer index, days since window start), sorted.
    With `dropout_at_first`, a customer may also drop out right after the first purchase
    (the MBG/NBD variant), so one-time buyers can be gone."""
    buyer = rng.random(n) >= never_bought_share
    first_day = rng.uniform(0, WINDOW_DAYS, n)
    lam = rng.gamma(params.r, 1.0 / params.alpha, n)  # purchases per week
    drop = rng.beta(params.a, params.b, n)
    span_weeks = (WINDOW_DAYS - first_day) / 7.0
    poisson_count = rng.poisson(lam * span_weeks)
    life = rng.geometric(drop)  # repeat purchases before dropping out
    if dropout_at_first:
        life = life - 1
    repeats = np.where(buyer, np.minimum(life, poisson_count), 0)
    # The first k of m uniform arrival times: exponential spacings, scaled by the
    # spacings' total including the m - k arrivals that death prevented.
    owner = np.repeat(np.arange(n), repeats)
    spacing = rng.exponential(size=int(repeats.sum()))
    partial = _group_cumsum(spacing, repeats)
    rest = rng.gamma(np.maximum(poisson_count - repeats, 0) + 1.0)
    total = np.bincount(owner, weights=spacing, minlength=n) + rest
    repeat_day = first_day[owner] + span_weeks[owner] * 7.0 * partial / total[owner]
    customers = np.concatenate([np.flatnonzero(buyer), owner])
    days = np.concatenate([first_day[buyer], repeat_day])
    order = np.lexsort((days, customers))
    return customers[order], days[order]


def simulate_lines(
    rng: np.random.Generator,
    order_customer: np.ndarray,
    order_day: np.ndarray,
    interest: np.ndarray,
    products: ProductTable,
    params: TrueParameters,
    channel_weights: list[float],
) -> dict[str, np.ndarray]:
    """Expand orders into lines with products, quantities, prices, channel and deal flag."""
    n_customers = interest.shape[0]
    n_orders = order_customer.size
    # customer-level preferences over the five non-Gold categories
    gold = len(CATEGORIES) - 1
    weights = rng.gamma(2.0, size=interest.shape) * interest
    weights[:, gold] = 0.0
    weights /= weights.sum(axis=1, keepdims=True)
    cum_weights = np.cumsum(weights, axis=1).astype(np.float32)
    channel_pref = rng.dirichlet(channel_weights, n_customers).cumsum(axis=1)
    deal_pref = rng.beta(1.5, 8.0, n_customers)
    nu = rng.gamma(params.q, 1.0 / params.gamma, n_customers)
    # order level
    order_value = rng.gamma(params.p, 1.0 / nu[order_customer])
    order_channel = (rng.random(n_orders)[:, None] > channel_pref[order_customer]).sum(axis=1)
    order_channel = np.minimum(order_channel, len(channel_weights) - 1)
    order_deal = rng.random(n_orders) < deal_pref[order_customer]
    lines_per_order = 1 + rng.poisson(params.mean_extra_lines_per_order, n_orders)
    # line level: lines from the customer's preferences, then Gold add-on lines
    base_order = np.repeat(np.arange(n_orders), lines_per_order)
    u = rng.random(base_order.size).astype(np.float32)
    base_category = (u[:, None] > cum_weights[order_customer[base_order]]).sum(axis=1)
    base_category = np.minimum(base_category, gold - 1)
    gold_order = np.flatnonzero(
        interest[order_customer, gold] & (rng.random(n_orders) < params.gold_line_share)
    )
    line_order = np.concatenate([base_order, gold_order])
    category = np.concatenate([base_category, np.full(gold_order.size, gold)])
    keep = np.argsort(line_order, kind="stable")
    line_order, category = line_order[keep], category[keep]
    explore = rng.random(line_order.size) < params.exploration_share
    category = np.where(explore, rng.integers(0, len(CATEGORIES), line_order.size), category)
    product = category * PRODUCTS_PER_CATEGORY + rng.integers(
        0, PRODUCTS_PER_CATEGORY, line_order.size
    )
    unit_price = products.price[product] * np.where(order_deal[line_order], 1 - DEAL_DISCOUNT, 1)
    unit_price = np.round(unit_price, 2)
    quantity = split_order_value(rng, line_order, unit_price, order_value)
    return order_lines(
        line_order,
        order_customer,
        order_day,
        order_channel,
        order_deal,
        product,
        quantity,
        unit_price,
    )


def split_order_value(
    rng: np.random.Generator, line_order: np.ndarray, unit_price: np.ndarray, order_value
) -> np.ndarray:
    """Each line's quantity: the order's value shared across its lines, more to the dearer
    items, at least one unit each."""
    share = rng.gamma(1.0, size=line_order.size) * unit_price
    share /= np.bincount(line_order, weights=share, minlength=len(order_value))[line_order]
    return np.maximum(1, np.rint(order_value[line_order] * share / unit_price)).astype(np.int64)


def order_lines(
    line_order: np.ndarray,
    order_customer: np.ndarray,
    order_day: np.ndarray,
    order_channel: np.ndarray,
    order_deal: np.ndarray,
    product: np.ndarray,
    quantity: np.ndarray,
    unit_price: np.ndarray,
) -> dict[str, np.ndarray]:
    """Purchase lines as every profile writes them: each line takes its order's customer, time
    (seconds into the window), channel and deal flag; products are numbered from 1."""
    seconds = (order_day * 86400).astype(np.int64)
    return {
        "line_order": line_order,
        "customer": order_customer[line_order],
        "product": product + 1,
        "ts": seconds[line_order],
        "quantity": quantity,
        "unit_price": unit_price,
        "channel": order_channel[line_order],
        "is_deal": order_deal[line_order],
    }
