"""A shop where customers adopt categories in sequence: buying X makes a first purchase of Y
likely 30-120 days later (a tent, then a sleeping bag, then a stove).

Every buyer enters one chain at its first category on their first order; each next category
of the chain is adopted, with the profile's step probability, a uniform 30-120 days after the
previous one: it is first bought on the customer's first order on or after that day, if they
still order by then. Some customers start a second chain later, and staple categories are
adopted at any time, independently of the chains. Every other line of an order repeats a
category the customer already adopted. Order times follow the BG/NBD process with dropout
possible after the first purchase too (the MBG/NBD variant), and order values Gamma-Gamma.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from retail_dp.generator.simulate import (
    DEAL_DISCOUNT,
    PRODUCTS_PER_CATEGORY,
    ProductTable,
    order_lines,
    split_order_value,
)

if TYPE_CHECKING:
    from retail_dp.generator.profiles import SequentialProfile

NEVER = np.inf
# order keys: customer index x KEY_SCALE + day; every scheduled day stays below it
KEY_SCALE = 1e5


def simulate_catalogue(rng: np.random.Generator, profile: SequentialProfile) -> ProductTable:
    n_categories = len(profile.categories)
    category = np.repeat(np.arange(n_categories), PRODUCTS_PER_CATEGORY)
    low, high = profile.price_range
    level = np.exp(rng.uniform(np.log(low), np.log(high), n_categories))
    price = np.round(level[category] * np.exp(rng.uniform(-0.4, 0.4, category.size)), 2)
    return ProductTable(category=category, price=price)


def adoption_schedule(rng: np.random.Generator, profile: SequentialProfile, first_day: np.ndarray):
    """(customers, categories) matrix of the day each category is due to be adopted (inf:
    never), from each customer's first order day (NaN for never-buyers)."""
    n, chains = first_day.size, profile.chains
    schedule = np.full((n, len(profile.categories)), NEVER)
    weights = np.asarray(profile.chain_weights) / np.sum(profile.chain_weights)
    first_chain = rng.choice(len(chains), n, p=weights)
    second = rng.random(n) < profile.second_chain_share
    # a second chain, different from the first, starting within the first year
    other = (first_chain + 1 + rng.integers(0, len(chains) - 1, n)) % len(chains)
    second_start = first_day + rng.uniform(0, 365, n)
    for chain_of, start, who in (
        (first_chain, first_day, np.ones(n, bool)),
        (other, second_start, second),
    ):
        day = np.where(who, start, NEVER)
        for step in range(len(chains[0])):
            if step > 0:
                gone = rng.random(n) >= profile.step_probability
                day = np.where(gone, NEVER, day + rng.uniform(*profile.lag_days, n))
            column = np.array([profile.categories.index(c[step]) for c in chains])[chain_of]
            schedule[np.arange(n), column] = np.minimum(schedule[np.arange(n), column], day)
    for staple in profile.staples:
        k = profile.categories.index(staple)
        takes = rng.random(n) < profile.staple_share
        schedule[:, k] = np.where(takes, first_day + rng.uniform(0, 540, n), NEVER)
    return np.where(np.isnan(schedule), NEVER, schedule)


def simulate_lines(
    rng: np.random.Generator,
    order_customer: np.ndarray,
    order_day: np.ndarray,
    products: ProductTable,
    profile: SequentialProfile,
    channel_weights: list[float],
) -> dict[str, np.ndarray]:
    """Expand orders into lines: each category's first line on the customer's first order on
    or after its adoption day, then repeat lines of categories already adopted."""
    n_customers = int(order_customer.max()) + 1 if order_customer.size else 0
    n_orders = order_customer.size
    first_day = np.full(n_customers, np.nan)
    if n_orders:
        starts = np.r_[True, order_customer[1:] != order_customer[:-1]]
        first_day[order_customer[starts]] = order_day[starts]
    schedule = adoption_schedule(rng, profile, first_day)
    # the order that first holds each category: the customer's first order on or after its day
    keys = order_customer * KEY_SCALE + order_day
    owner, category = np.nonzero(np.isfinite(schedule))
    target = owner * KEY_SCALE + schedule[owner, category]
    first_order = np.searchsorted(keys, target - 1e-9, side="left")
    found = first_order < n_orders
    found[found] &= order_customer[first_order[found]] == owner[found]
    first_order, category = first_order[found], category[found]
    adopted_at = np.full((n_customers, len(profile.categories)), n_orders + 1)
    adopted_at[owner[found], category] = first_order
    # repeat lines: uniform among the categories adopted by that order
    extra = rng.poisson(profile.mean_repeat_lines_per_order, n_orders)
    extra[np.bincount(first_order, minlength=n_orders) == 0] += 1  # no order is empty
    repeat_order = np.repeat(np.arange(n_orders), extra)
    held = adopted_at[order_customer[repeat_order]] <= repeat_order[:, None]
    cum = np.cumsum(held, axis=1)
    pick = np.floor(rng.random(repeat_order.size) * cum[:, -1]).astype(np.int64)
    repeat_category = (cum <= pick[:, None]).sum(axis=1)
    line_order = np.concatenate([first_order, repeat_order])
    line_category = np.concatenate([category, repeat_category])
    keep = np.lexsort((line_category, line_order))
    line_order, line_category = line_order[keep], line_category[keep]
    explore = rng.random(line_order.size) < profile.exploration_share
    n_categories = len(profile.categories)
    line_category = np.where(explore, rng.integers(0, n_categories, line_order.size), line_category)
    return _priced_lines(
        rng,
        order_customer,
        order_day,
        line_order,
        line_category,
        products,
        profile,
        channel_weights,
    )


def _priced_lines(
    rng, order_customer, order_day, line_order, line_category, products, profile, channel_weights
) -> dict[str, np.ndarray]:
    n_orders = order_customer.size
    n_customers = int(order_customer.max()) + 1 if n_orders else 0
    params = profile.purchase_process
    nu = rng.gamma(params.q, 1.0 / params.gamma, n_customers)
    order_value = rng.gamma(params.p, 1.0 / nu[order_customer]) if n_orders else np.zeros(0)
    channel_pref = rng.dirichlet(channel_weights, n_customers).cumsum(axis=1)
    order_channel = (rng.random(n_orders)[:, None] > channel_pref[order_customer]).sum(axis=1)
    order_channel = np.minimum(order_channel, len(channel_weights) - 1)
    order_deal = rng.random(n_orders) < profile.deal_share
    product = line_category * PRODUCTS_PER_CATEGORY + rng.integers(
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
