"""The shapes of sample data the generator can write, one frozen dataclass each.

`grocery` is a loyalty-card grocery chain with planted category affinities and a full BG/NBD +
Gamma-Gamma process. `marketplace` has the shape of a real online marketplace (think Olist):
hashed ids, no contact details, unnamed products in about 70 categories, long-tailed prices,
countries typed every which way and hardly any repeat buyers. `sequential` plants adoption
chains: customers who buy X first buy Y 30-120 days later, and one-time buyers can drop out.

The manifest records the chosen profile with all its parameters.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from itertools import pairwise
from typing import Literal

from retail_dp.generator import names
from retail_dp.generator.simulate import CATEGORIES, TrueParameters

CustomerValidityDefect = Literal["malformed_email", "unrecognised_country"]


@dataclass(frozen=True)
class Profile:
    """What every profile decides: the look of the landing files and the common simulation."""

    name: str
    categories: tuple[str, ...]
    never_bought_share: float
    # Dirichlet weights of the purchase descriptor's channels, in its order
    channel_weights: tuple[float, ...]
    # a bad unit price of this many times the list price must exceed the contract's ceiling
    overpriced_factor: float
    countries: tuple[tuple[str, float], ...]  # (spelling, weight)
    unrecognised_countries: tuple[str, ...]
    hex_ids: bool  # 32-character md5 ids instead of prefixed counters
    contact_details: bool  # first and last name, email, phone
    product_names: bool
    # the kept (validity-only) defect planted in customer_info
    customer_validity_defect: CustomerValidityDefect
    # its rate; None: the request's defect rate
    customer_validity_rate: float | None

    def describe(self) -> dict:
        return {"name": self.name, "parameters": asdict(self)}

    def true_parameters(self) -> dict:
        raise NotImplementedError

    def planted_affinities(self) -> dict:
        return {"strong": [], "independent": []}


@dataclass(frozen=True)
class GroceryProfile(Profile):
    name: str = "grocery"
    categories: tuple[str, ...] = CATEGORIES
    never_bought_share: float = 0.05
    channel_weights: tuple[float, ...] = (5.0, 3.0, 2.0)
    overpriced_factor: float = 20.0
    countries: tuple[tuple[str, float], ...] = names.COUNTRIES
    unrecognised_countries: tuple[str, ...] = ()
    hex_ids: bool = False
    contact_details: bool = True
    product_names: bool = True
    customer_validity_defect: CustomerValidityDefect = "malformed_email"
    customer_validity_rate: float | None = None
    parameters: TrueParameters = field(default_factory=TrueParameters)

    def true_parameters(self) -> dict:
        params = self.parameters
        return {
            "bg_nbd": {k: getattr(params, k) for k in ("r", "alpha", "a", "b")},
            "gamma_gamma": {k: getattr(params, k) for k in ("p", "q", "gamma")},
            "time_unit": "weeks",
            "all": params.as_dict(),
        }

    def planted_affinities(self) -> dict:
        return {"strong": [["Wines", "Meats"], ["Fish", "Fruits"]], "independent": ["Gold"]}


@dataclass(frozen=True)
class BgNbd:
    """Purchase rate lambda ~ Gamma(r, alpha) per week, dropout p ~ Beta(a, b)."""

    r: float
    alpha: float
    a: float
    b: float


@dataclass(frozen=True)
class MarketplaceProfile(Profile):
    name: str = "marketplace"
    categories: tuple[str, ...] = names.MARKETPLACE_CATEGORIES
    never_bought_share: float = 0.08
    channel_weights: tuple[float, ...] = (8.0, 1.0, 1.0)
    overpriced_factor: float = 20.0
    countries: tuple[tuple[str, float], ...] = names.MARKETPLACE_COUNTRIES
    unrecognised_countries: tuple[str, ...] = names.UNRECOGNISED_COUNTRIES
    hex_ids: bool = True
    contact_details: bool = False
    product_names: bool = False
    customer_validity_defect: CustomerValidityDefect = "unrecognised_country"
    customer_validity_rate: float | None = 0.005
    # about 3% of buyers order twice: mean rate r/alpha of 0.03 orders a year
    purchase_process: BgNbd = BgNbd(r=0.25, alpha=400.0, a=1.0, b=3.0)
    products_per_customer: float = 0.33
    category_popularity_exponent: float = 0.9
    median_price: float = 75.0
    category_price_sigma: float = 0.7
    product_price_sigma: float = 0.8
    price_bounds: tuple[float, float] = (0.85, 6800.0)
    mean_extra_lines_per_order: float = 0.12
    multi_unit_share: float = 0.04
    deal_share: float = 0.08
    deal_discount: float = 0.15

    def true_parameters(self) -> dict:
        # order values follow the products' list prices, not a Gamma-Gamma process
        return {
            "bg_nbd": asdict(self.purchase_process),
            "gamma_gamma": None,
            "time_unit": "weeks",
            "all": asdict(self.purchase_process),
        }


@dataclass(frozen=True)
class BgNbdGammaGamma:
    """Purchase rate lambda ~ Gamma(r, alpha) per week, dropout p ~ Beta(a, b) after every
    purchase (the first included), order value z ~ Gamma(p, nu) with nu ~ Gamma(q, gamma)."""

    r: float
    alpha: float
    a: float
    b: float
    p: float
    q: float
    gamma: float


ADOPTION_CHAINS = (
    ("Tents", "Sleeping Bags", "Camping Stoves"),
    ("Cameras", "Lenses", "Tripods"),
    ("Coffee Machines", "Coffee Beans", "Milk Frothers"),
    ("Strollers", "Car Seats", "Toddler Toys"),
)
STAPLES = ("Batteries", "Gift Cards")


@dataclass(frozen=True)
class SequentialProfile(Profile):
    name: str = "sequential"
    categories: tuple[str, ...] = tuple(c for chain in ADOPTION_CHAINS for c in chain) + STAPLES
    never_bought_share: float = 0.05
    channel_weights: tuple[float, ...] = (6.0, 2.0, 2.0)
    overpriced_factor: float = 20.0
    countries: tuple[tuple[str, float], ...] = names.COUNTRIES
    unrecognised_countries: tuple[str, ...] = ()
    hex_ids: bool = False
    contact_details: bool = True
    product_names: bool = False
    customer_validity_defect: CustomerValidityDefect = "malformed_email"
    customer_validity_rate: float | None = None
    chains: tuple[tuple[str, ...], ...] = ADOPTION_CHAINS
    chain_weights: tuple[float, ...] = (0.35, 0.30, 0.20, 0.15)
    staples: tuple[str, ...] = STAPLES
    # each next category of a chain is adopted with this probability, this many days later
    step_probability: float = 0.75
    lag_days: tuple[float, float] = (30.0, 120.0)
    second_chain_share: float = 0.25
    staple_share: float = 0.25
    mean_repeat_lines_per_order: float = 0.6
    exploration_share: float = 0.01
    deal_share: float = 0.1
    price_range: tuple[float, float] = (5.0, 300.0)
    purchase_process: BgNbdGammaGamma = BgNbdGammaGamma(
        r=1.1, alpha=4.5, a=0.6, b=6.0, p=3.0, q=4.0, gamma=120.0
    )

    def true_parameters(self) -> dict:
        process = asdict(self.purchase_process)
        return {
            "bg_nbd": {k: process[k] for k in ("r", "alpha", "a", "b")},
            "gamma_gamma": {k: process[k] for k in ("p", "q", "gamma")},
            "dropout_at_first_purchase": True,
            "time_unit": "weeks",
            "all": process,
        }

    def planted_affinities(self) -> dict:
        chains = [list(pair) for chain in self.chains for pair in pairwise(chain)]
        return {
            "strong": [],
            "independent": list(self.staples),
            "adoption_chains": chains,
            "lag_days": list(self.lag_days),
        }


PROFILES: dict[str, Profile] = {
    p.name: p for p in (GroceryProfile(), MarketplaceProfile(), SequentialProfile())
}
