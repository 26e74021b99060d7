"""The marketplace's catalogue and order lines: many products in about 70 categories of very
unequal size, long-tailed prices, and orders that are nearly always one line of one unit.

Order times come from the same BG/NBD process as the grocery's (`simulate.simulate_orders`),
with a purchase rate so low that only about 3% of buyers ever order twice.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from retail_dp.generator.simulate import ProductTable, order_lines

if TYPE_CHECKING:
    from retail_dp.generator.profiles import MarketplaceProfile


def catalogue_size(profile: MarketplaceProfile, customers: int, categories: int) -> int:
    # every category holds a product, even in a tiny sample
    return max(2 * categories, round(customers * profile.products_per_customer))


def simulate_catalogue(
    rng: np.random.Generator, profile: MarketplaceProfile, customers: int
) -> ProductTable:
    n_categories = len(profile.categories)
    n = catalogue_size(profile, customers, n_categories)
    share = _zipf(n_categories, profile.category_popularity_exponent)
    category = np.concatenate(
        [np.arange(n_categories), rng.choice(n_categories, n - n_categories, p=share)]
    )
    # each category has its own price level; products spread around it (lognormal: long tail)
    level = rng.lognormal(np.log(profile.median_price), profile.category_price_sigma, n_categories)
    price = rng.lognormal(np.log(level[category]), profile.product_price_sigma)
    price = np.round(np.clip(price, *profile.price_bounds), 2)
    # a category's sales follow its popularity, shared unevenly among its products
    per_category = np.bincount(category, minlength=n_categories)
    popularity = share[category] / per_category[category] * rng.lognormal(0.0, 1.0, n)
    return ProductTable(category=category, price=price, popularity=popularity / popularity.sum())


def _zipf(n: int, exponent: float) -> np.ndarray:
    weights = 1.0 / np.arange(1, n + 1) ** exponent
    return weights / weights.sum()


def simulate_lines(
    rng: np.random.Generator,
    order_customer: np.ndarray,
    order_day: np.ndarray,
    products: ProductTable,
    profile: MarketplaceProfile,
    channel_weights: list[float],
) -> dict[str, np.ndarray]:
    """Expand orders into lines: products by popularity, mostly one unit at list price."""
    n_orders = order_customer.size
    channel_share = np.asarray(channel_weights) / np.sum(channel_weights)
    order_channel = rng.choice(channel_share.size, n_orders, p=channel_share)
    order_deal = rng.random(n_orders) < profile.deal_share
    lines_per_order = 1 + rng.poisson(profile.mean_extra_lines_per_order, n_orders)
    line_order = np.repeat(np.arange(n_orders), lines_per_order)
    size = line_order.size
    product = rng.choice(products.price.size, size, p=products.popularity)
    extra_units = rng.geometric(0.6, size) * (rng.random(size) < profile.multi_unit_share)
    unit_price = products.price[product] * np.where(
        order_deal[line_order], 1 - profile.deal_discount, 1
    )
    quantity = (1 + extra_units).astype(np.int64)
    return order_lines(
        line_order,
        order_customer,
        order_day,
        order_channel,
        order_deal,
        product,
        quantity,
        np.round(unit_price, 2),
    )
