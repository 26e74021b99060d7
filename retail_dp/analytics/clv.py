"""Predictive customer lifetime value: BG/NBD for the number of transactions (Fader, Hardie &
Lee 2005, "Counting your customers the easy way") and Gamma-Gamma for the value per
transaction (Fader, Hardie & Lee 2005, "RFM and CLV"). Both fitted by maximum likelihood.

Inputs per customer, as in the paper: `x` repeat transactions (calendar days with a purchase,
after the first), `t_x` the time of the last one and `T` the time since the first, in weeks;
`m` the mean value of the repeat transactions.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
from scipy.optimize import minimize
from scipy.special import betaln, gammaln, hyp2f1

WEEKS_PER_YEAR = 365.0 / 7.0


@dataclass(frozen=True)
class BgNbd:
    r: float
    alpha: float
    a: float
    b: float
    log_likelihood: float = float("nan")

    def as_dict(self) -> dict[str, float]:
        return asdict(self)


@dataclass(frozen=True)
class GammaGamma:
    p: float
    q: float
    gamma: float
    log_likelihood: float = float("nan")

    def as_dict(self) -> dict[str, float]:
        return asdict(self)


def bgnbd_log_likelihood(
    r: float, alpha: float, a: float, b: float, x: np.ndarray, t_x: np.ndarray, T: np.ndarray
) -> np.ndarray:
    """Each customer's log-likelihood under BG/NBD (paper, eq. 6)."""
    common = gammaln(r + x) - gammaln(r) + r * np.log(alpha) + betaln(a, b + x) - betaln(a, b)
    alive = -(r + x) * np.log(alpha + T)
    repeat = x > 0
    dropped = np.full(x.shape, -np.inf)
    xr = x[repeat]
    dropped[repeat] = np.log(a) - np.log(b + xr - 1) - (r + xr) * np.log(alpha + t_x[repeat])
    return common + np.logaddexp(alive, dropped)


def _fit(negative_ll, start: np.ndarray) -> tuple[np.ndarray, float]:
    """Minimise over log-parameters, so every parameter stays positive."""
    result = minimize(
        negative_ll,
        np.log(start),
        method="Nelder-Mead",
        options={"maxiter": 4000, "xatol": 1e-6, "fatol": 1e-6},
    )
    result = minimize(negative_ll, result.x, method="L-BFGS-B")
    return np.exp(result.x), -float(result.fun)


def fit_bgnbd(x: np.ndarray, t_x: np.ndarray, T: np.ndarray) -> BgNbd:
    x, t_x, T = (np.asarray(v, dtype=float) for v in (x, t_x, T))
    if x.size == 0:
        raise ValueError("BG/NBD needs at least one customer with a first purchase")

    def negative_ll(log_params: np.ndarray) -> float:
        r, alpha, a, b = np.exp(log_params)
        return -float(bgnbd_log_likelihood(r, alpha, a, b, x, t_x, T).sum()) / x.size

    params, mean_ll = _fit(negative_ll, np.array([1.0, max(T.mean(), 1.0), 1.0, 1.0]))
    return BgNbd(*params, log_likelihood=mean_ll * x.size)


def gamma_gamma_log_likelihood(
    p: float, q: float, gamma: float, x: np.ndarray, m: np.ndarray
) -> np.ndarray:
    """Each repeat customer's log-likelihood of their mean transaction value m over x."""
    px = p * x
    return (
        gammaln(px + q)
        - gammaln(px)
        - gammaln(q)
        + q * np.log(gamma)
        + (px - 1) * np.log(m)
        + px * np.log(x)
        - (px + q) * np.log(gamma + x * m)
    )


def fit_gamma_gamma(x: np.ndarray, m: np.ndarray) -> GammaGamma:
    """Fit on repeat customers only (x > 0, m > 0)."""
    x, m = np.asarray(x, dtype=float), np.asarray(m, dtype=float)
    keep = (x > 0) & (m > 0)
    x, m = x[keep], m[keep]
    if x.size < 2:
        raise ValueError("Gamma-Gamma needs at least two customers with repeat purchases")

    def negative_ll(log_params: np.ndarray) -> float:
        p, q, gamma = np.exp(log_params)
        return -float(gamma_gamma_log_likelihood(p, q, gamma, x, m).sum()) / x.size

    params, mean_ll = _fit(negative_ll, np.array([2.0, 3.0, float(np.mean(m))]))
    return GammaGamma(*params, log_likelihood=mean_ll * x.size)


def probability_alive(model: BgNbd, x: np.ndarray, t_x: np.ndarray, T: np.ndarray) -> np.ndarray:
    r, alpha, a, b = model.r, model.alpha, model.a, model.b
    odds = np.zeros_like(x, dtype=float)
    repeat = x > 0
    xr = x[repeat]
    odds[repeat] = np.exp(
        np.log(a)
        - np.log(b + xr - 1)
        + (r + xr) * np.log((alpha + T[repeat]) / (alpha + t_x[repeat]))
    )
    return 1.0 / (1.0 + odds)


def expected_purchases(
    model: BgNbd, t: float, x: np.ndarray, t_x: np.ndarray, T: np.ndarray
) -> np.ndarray:
    """E[transactions in (T, T + t] | x, t_x, T] (paper, eq. 10)."""
    r, alpha, a, b = model.r, model.alpha, model.a, model.b
    c = a + b + x - 1
    z = t / (alpha + T + t)
    # 2F1(r+x, b+x; c; z) by Euler's transformation, which converges for z < 1 at any x
    hyp = hyp2f1(c - r - x, c - b - x, c, z) * (1 - z) ** (c - r - b - 2 * x)
    growth = 1.0 - ((alpha + T) / (alpha + T + t)) ** (r + x) * hyp
    return (a + b + x - 1) / (a - 1) * growth * probability_alive(model, x, t_x, T)


def expected_transaction_value(model: GammaGamma, x: np.ndarray, m: np.ndarray) -> np.ndarray:
    """E[value of a transaction | x, m]; the population mean for customers with x = 0."""
    p, q, gamma = model.p, model.q, model.gamma
    m = np.where(x > 0, np.nan_to_num(m), 0.0)
    return p * (gamma + x * m) / (p * x + q - 1)
