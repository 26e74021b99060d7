"""Predictive customer lifetime value: BG/NBD for the number of transactions (Fader, Hardie &
Lee 2005, "Counting your customers the easy way") or its MBG/NBD variant (Batislam, Denizel &
Filiztekin 2007), in which a customer can also drop out right after the first purchase, so a
one-time buyer is not certain to be alive; and Gamma-Gamma for the value per transaction
(Fader, Hardie & Lee 2005, "RFM and CLV"). All fitted by maximum likelihood; the purchase
model is chosen by the log-likelihood of held-out customers (`choose_purchase_model`).

Inputs per customer, as in the paper: `x` repeat transactions (calendar days with a purchase,
after the first), `t_x` the time of the last one and `T` the time since the first, in weeks;
`m` the mean value of the repeat transactions.

Everything is evaluated in log space (gammaln, betaln, logaddexp), so no finite parameters give
inf or NaN: marketplace data with 1-3% repeat buyers drives a and b into the thousands, where
the textbook formulas overflow. Every fit returns a `FitReport` saying how it went.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field, replace
from functools import cache

import numpy as np
import pandas as pd
from scipy.optimize import minimize
from scipy.special import betaincinv, betaln, digamma, expit, gammaln, hyp2f1

WEEKS_PER_YEAR = 365.0 / 7.0
# published precision: outputs are rounded so that summation noise never reaches the marts
PROBABILITY_DECIMALS = 9  # P(alive), expected purchases, scores
CURRENCY_DECIMALS = 6  # expected order value, predicted CLV
# fit-status rules (see FitReport)
LOG_BOUNDS = (np.log(1e-8), np.log(1e8))
BOUND_MARGIN = 1e-3  # in log units: a parameter this close to a bound has run to it
LARGE_SHAPE = 1e3  # a shape this large means the mixing distribution collapsed to a point
MIN_REPEAT_BUYERS = 20  # fewer repeat buyers than this cannot pin Gamma-Gamma's p, q, gamma
CONVERGENCE_GTOL = 1e-6  # projected gradient of the mean log-likelihood, per log-parameter
# value tiers by predicted CLV among buyers: cumulative shares (top 10%, next 20%, next 30%)
VALUE_TIERS = ((0.10, "platinum"), (0.30, "gold"), (0.60, "silver"), (1.00, "bronze"))
PROSPECT = "prospect"
RFM_SUMMARY = ("frequency", "recency_weeks", "age_weeks", "monetary_value")

Objective = Callable[[np.ndarray], tuple[float, np.ndarray]]


@dataclass(frozen=True)
class FitReport:
    """How a fit went. `fit_status`:

    - "failed": nothing usable came out: no data to fit on, or a non-finite log-likelihood or
      parameter at the end. Its numbers must not be published.
    - "degenerate": finite and usable, but not to be trusted blindly: the optimiser stopped
      before its tolerance; a parameter ran to within BOUND_MARGIN of its bound (1e-8, 1e8) or a
      shape parameter exceeded LARGE_SHAPE (the mixing distribution collapsed to a point, so the
      data do not identify it); no repeat buyers at all; for Gamma-Gamma fewer than
      MIN_REPEAT_BUYERS repeat buyers or q <= 1 (the expected value p*gamma/(q-1) is then
      undefined), in which case predictions use a documented fallback.
    - "ok": none of the above.

    `reasons` lists every rule that fired.
    """

    fit_status: str
    converged: bool
    iterations: int
    log_likelihood: float | None
    n: int  # customers (or training rows) fitted on
    repeat_share: float  # share of them with a repeat purchase
    reasons: tuple[str, ...] = ()

    def as_metadata(self) -> dict:
        return {**asdict(self), "reasons": list(self.reasons)}


PURCHASE_MODELS = ("bgnbd", "mbgnbd")
# held-out customers for choosing the purchase model: md5(customer_id) starts with one of these
HOLDOUT_SQL = "substr(md5(customer_id), 1, 1) IN ('0', '1', '2')"
# each customer's draw: md5(customer_id)'s first 15 hex digits as a number, so the customers
# with the smallest draws are those with the smallest md5, on any engine
DRAW_SQL = "('0x' || substr(md5(customer_id), 1, 15))::BIGINT"
# the candidates of the choice learn from at most this many of the other customers (the
# smallest draws): at 1M customers, fitting both on all 770,000 of them cost 3 s, and the
# draw moved their held-out log-likelihoods by 1e-5 per customer, where the two models'
# differ by 0.015
MAX_CHOICE_CUSTOMERS = 250_000


@dataclass(frozen=True)
class BgNbd:
    """BG/NBD (`model` "bgnbd"): dropout only after a repeat purchase; MBG/NBD ("mbgnbd"):
    after every purchase, the first included. Same parameters, same meaning."""

    r: float
    alpha: float
    a: float
    b: float
    log_likelihood: float = float("nan")
    report: FitReport | None = field(default=None, compare=False)
    model: str = "bgnbd"

    @property
    def dropout_at_first(self) -> bool:
        return self.model == "mbgnbd"

    def as_dict(self) -> dict[str, float]:
        return {k: getattr(self, k) for k in ("r", "alpha", "a", "b", "log_likelihood")}


@dataclass(frozen=True)
class GammaGamma:
    """`fallback_value`, when set, replaces the model's expected value for every customer:
    the pooled mean value per purchase day of all buyers (see `pooled_order_value`).
    `prior_mean`, when set, replaces the model's population mean p gamma / (q - 1) towards
    which each customer's mean value is shrunk (spend model "pooled_shrinkage")."""

    p: float
    q: float
    gamma: float
    log_likelihood: float = float("nan")
    report: FitReport | None = field(default=None, compare=False)
    fallback_value: float | None = None
    prior_mean: float | None = None

    def as_dict(self) -> dict[str, float]:
        return {k: getattr(self, k) for k in ("p", "q", "gamma", "log_likelihood")}


# --- distinct rows, and terms on both cores --------------------------------------------------


def distinct_rows(*columns: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The distinct rows of the columns in sorted order, each input row's index into them,
    and their counts: what `np.unique(axis=0)` returns, found by hashing (pandas) rather than
    by sorting every row, about twice as fast at 1M customers."""
    frame = pd.DataFrame(dict(enumerate(np.asarray(c, dtype=float) for c in columns)))
    groups = frame.groupby(list(frame.columns), sort=True, dropna=False)
    sizes = groups.size()
    rows = np.column_stack(
        [sizes.index.get_level_values(i).to_numpy(float) for i in range(len(columns))]
    )
    return rows, groups.ngroup().to_numpy(), sizes.to_numpy()


# below this many rows a thread pool costs more than it saves
_PARALLEL_ROWS = 100_000


@cache
def _pool() -> ThreadPoolExecutor:
    return ThreadPoolExecutor(max_workers=os.cpu_count() or 1, thread_name_prefix="clv")


def _in_parallel(terms: Callable, n: int, *columns: np.ndarray):
    """`terms` over contiguous slices of the columns on every core (numpy and scipy's
    ufuncs release the GIL), concatenated: the same arrays, element for element, as one call
    over all rows. `terms` returns a per-row array, or a tuple of per-row arrays whose last
    axis is the row."""
    parts = min(os.cpu_count() or 1, n // _PARALLEL_ROWS)
    if parts <= 1:
        return terms(*columns)
    bounds = np.linspace(0, n, parts + 1).astype(int)
    slices = [slice(lo, hi) for lo, hi in zip(bounds[:-1], bounds[1:], strict=True)]
    done = list(_pool().map(lambda part: terms(*(c[part] for c in columns)), slices))
    if isinstance(done[0], tuple):
        return tuple(np.concatenate(arrays, axis=-1) for arrays in zip(*done, strict=True))
    return np.concatenate(done, axis=-1)


# --- BG/NBD -------------------------------------------------------------------------------


def _purchase_terms(params: np.ndarray, x: np.ndarray, dropout_at_first: bool) -> dict:
    """The parts of each customer's BG/NBD terms that depend on their purchases x alone (and
    the parameters): the special functions, which cost most. x takes few distinct values, so
    the objective evaluates these once per value and looks them up per customer."""
    r, _, a, b = params
    k = x + 1 if dropout_at_first else x
    repeat = k > 0
    b_last = np.where(repeat, b + k - 1, 1.0)  # b + k - 1 > 0 whenever k >= 1
    return {
        "repeat": repeat,
        "b_last": b_last,
        "log_b_last": np.log(b_last),
        "gammaln_rx": gammaln(r + x),
        "digamma_rx": digamma(r + x),
        "betaln_abk": betaln(a, b + k),
        "digamma_abk": digamma(a + b + k),
        "digamma_bk": digamma(b + k),
    }


def _bgnbd_terms(
    params: np.ndarray,
    x: np.ndarray,
    t_x: np.ndarray,
    T: np.ndarray,
    dropout_at_first=False,
    by_purchases: tuple[dict, np.ndarray] | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Each customer's log-likelihood (paper, eq. 6) and its gradient in (r, alpha, a, b).
    MBG/NBD is the same with k = x + 1 dropout opportunities instead of x (every purchase,
    the first included, may be the last), so the beta terms use k while the gamma terms keep x.
    `by_purchases`: `_purchase_terms` over the distinct values of x and each row's index into
    them (the same numbers as computing them per row)."""
    r, alpha, a, b = params
    if by_purchases is None:
        per_x = _purchase_terms(params, x, dropout_at_first)
    else:
        table, codes = by_purchases
        per_x = {name: values[codes] for name, values in table.items()}
    repeat, b_last = per_x["repeat"], per_x["b_last"]
    common = (
        per_x["gammaln_rx"] - gammaln(r) + r * np.log(alpha) + per_x["betaln_abk"] - betaln(a, b)
    )
    alive = -(r + x) * np.log(alpha + T)
    dropped = np.where(
        repeat, np.log(a) - per_x["log_b_last"] - (r + x) * np.log(alpha + t_x), -np.inf
    )
    mix = np.logaddexp(alive, dropped)
    w_alive, w_dropped = np.exp(alive - mix), np.exp(dropped - mix)
    psi_abx = per_x["digamma_abk"]
    grad = np.stack(
        [
            per_x["digamma_rx"]
            - digamma(r)
            + np.log(alpha)
            - w_alive * np.log(alpha + T)
            - w_dropped * np.log(alpha + t_x),
            r / alpha - (r + x) * (w_alive / (alpha + T) + w_dropped / (alpha + t_x)),
            digamma(a + b) - psi_abx + w_dropped / a,
            per_x["digamma_bk"] - digamma(b) + digamma(a + b) - psi_abx - w_dropped / b_last,
        ]
    )
    return common + mix, grad


def bgnbd_log_likelihood(
    r: float,
    alpha: float,
    a: float,
    b: float,
    x: np.ndarray,
    t_x: np.ndarray,
    T: np.ndarray,
    model: str = "bgnbd",
) -> np.ndarray:
    """Each customer's log-likelihood under BG/NBD (paper, eq. 6) or MBG/NBD."""
    x, t_x, T = (np.asarray(v, dtype=float) for v in (x, t_x, T))
    return _bgnbd_terms(np.array([r, alpha, a, b]), x, t_x, T, model == "mbgnbd")[0]


def bgnbd_objective(
    x: np.ndarray, t_x: np.ndarray, T: np.ndarray, weights: np.ndarray, model: str = "bgnbd"
) -> Objective:
    """The mean negative log-likelihood over log-parameters and its analytic gradient."""
    total = weights.sum()
    dropout_at_first = model == "mbgnbd"
    levels, codes = np.unique(x, return_inverse=True)

    def terms(params, x, t_x, T, codes, table):
        return _bgnbd_terms(params, x, t_x, T, dropout_at_first, (table, codes))

    def objective(log_params: np.ndarray) -> tuple[float, np.ndarray]:
        params = np.exp(log_params)
        table = _purchase_terms(params, levels, dropout_at_first)
        ll, grad = _in_parallel(lambda *rows: terms(params, *rows, table), x.size, x, t_x, T, codes)
        return -float(weights @ ll) / total, -(grad @ weights) * params / total

    return objective


def fit_bgnbd(
    x: np.ndarray,
    t_x: np.ndarray,
    T: np.ndarray,
    model: str = "bgnbd",
    start: BgNbd | None = None,
) -> BgNbd:
    """Fit BG/NBD (or MBG/NBD) on the distinct (x, t_x, T) triples weighted by their counts:
    the same likelihood, summed in a fixed (sorted) order whatever the input order, and far
    fewer terms. `start`: a fit on similar data to start from (fewer iterations)."""
    if model not in PURCHASE_MODELS:
        raise ValueError(f"no purchase model {model!r}; choose one of {PURCHASE_MODELS}")
    x, t_x, T = (np.asarray(v, dtype=float) for v in (x, t_x, T))
    if x.size == 0:
        nan = float("nan")
        report = _empty_report("no customers with a purchase")
        return BgNbd(nan, nan, nan, nan, report=report, model=model)
    triples, _, counts = distinct_rows(x, t_x, T)
    weights = counts.astype(float)
    objective = bgnbd_objective(*triples.T, weights, model)
    mean_age = float(weights @ triples[:, 2]) / weights.sum()  # summed in the sorted order
    initial = np.log([1.0, max(mean_age, 1.0), 1.0, 1.0])
    if start is not None:
        warm = np.log([start.r, start.alpha, start.a, start.b])
        initial = np.clip(warm, *LOG_BOUNDS) if np.isfinite(warm).all() else initial
    log_params, mean_ll, converged, iterations = _fit(objective, initial)
    params = np.exp(log_params)
    repeat_share = float((x > 0).mean())
    reasons = _bound_reasons(("r", "alpha", "a", "b"), log_params, shapes=("r", "a", "b"))
    if repeat_share == 0:
        reasons.append("no repeat buyers: the dropout process is not identified")
    report = _report(converged, iterations, mean_ll * x.size, x.size, repeat_share, reasons, params)
    return BgNbd(*map(float, params), log_likelihood=mean_ll * x.size, report=report, model=model)


@dataclass(frozen=True)
class ModelChoice:
    """The purchase model chosen by the mean log-likelihood of held-out customers under
    each candidate fitted on the others; `chosen` is refitted on every customer."""

    chosen: BgNbd
    holdout_log_likelihood: dict[str, float | None]  # per customer, by model
    holdout_customers: int
    training_customers: int | None = None  # the candidates' customers (None: every other one)

    def as_metadata(self) -> dict:
        return {
            "purchase_model": self.chosen.model,
            "holdout_log_likelihood_per_customer": self.holdout_log_likelihood,
            "holdout_customers": self.holdout_customers,
            "training_customers": self.training_customers,
        }


def choice_training(holdout: np.ndarray, draw: np.ndarray | None) -> np.ndarray:
    """The customers the candidates learn from: those outside `holdout`, at most
    MAX_CHOICE_CUSTOMERS of them by the smallest `draw` (DRAW_SQL) when it is given."""
    training = ~np.asarray(holdout, dtype=bool)
    if draw is None or training.sum() <= MAX_CHOICE_CUSTOMERS:
        return training
    others = np.flatnonzero(training)
    kept = others[np.argsort(np.asarray(draw)[others], kind="stable")[:MAX_CHOICE_CUSTOMERS]]
    training = np.zeros_like(training)
    training[kept] = True
    return training


def choose_purchase_model(
    x: np.ndarray,
    t_x: np.ndarray,
    T: np.ndarray,
    holdout: np.ndarray,
    draw: np.ndarray | None = None,
) -> ModelChoice:
    """Fit BG/NBD and MBG/NBD on the customers outside `holdout` (`choice_training`: a
    bounded draw of them when `draw` is given), keep the one whose mean log-likelihood of the
    held-out customers is higher (BG/NBD on a tie or when nothing can be compared), and refit
    it on everyone."""
    x, t_x, T = (np.asarray(v, dtype=float) for v in (x, t_x, T))
    holdout = np.asarray(holdout, dtype=bool)
    training = choice_training(holdout, draw)
    scores: dict[str, float | None] = {}
    fits: dict[str, BgNbd] = {}
    for model in PURCHASE_MODELS:
        fitted = fits[model] = fit_bgnbd(x[training], t_x[training], T[training], model)
        usable = fitted.report is not None and fitted.report.fit_status != "failed"
        ll = (
            bgnbd_log_likelihood(
                fitted.r, fitted.alpha, fitted.a, fitted.b,
                x[holdout], t_x[holdout], T[holdout], model,
            )
            if usable and holdout.any()
            else np.zeros(0)
        )  # fmt: skip
        scores[model] = float(ll.mean()) if ll.size and np.isfinite(ll).all() else None
    best = "bgnbd"
    if scores["mbgnbd"] is not None and (
        scores["bgnbd"] is None or scores["mbgnbd"] > scores["bgnbd"]
    ):
        best = "mbgnbd"
    # the refit on everyone starts from the fit on the others: the same optimum, sooner
    return ModelChoice(
        fit_bgnbd(x, t_x, T, best, start=fits[best]),
        scores,
        int(holdout.sum()),
        None if training.sum() == (~holdout).sum() else int(training.sum()),
    )


def probability_alive(model: BgNbd, x: np.ndarray, t_x: np.ndarray, T: np.ndarray) -> np.ndarray:
    """P(alive at T | x, t_x, T) = 1 / (1 + odds of having dropped), from the log odds. Under
    BG/NBD a customer with no repeat purchase is alive; under MBG/NBD not for certain."""
    x, t_x, T = (np.asarray(v, dtype=float) for v in (x, t_x, T))
    r, alpha, a, b = model.r, model.alpha, model.a, model.b
    k = x + 1 if model.dropout_at_first else x
    repeat = k > 0
    b_last = np.where(repeat, b + k - 1, 1.0)
    log_odds = np.log(a) - np.log(b_last) + (r + x) * (np.log(alpha + T) - np.log(alpha + t_x))
    return np.where(repeat, expit(-log_odds), 1.0)


def expected_purchases(
    model: BgNbd, t: float, x: np.ndarray, t_x: np.ndarray, T: np.ndarray
) -> np.ndarray:
    """E[transactions in (T, T + t] | x, t_x, T] (paper, eq. 10): P(alive) times the
    purchases expected of a customer alive at T, computed once per distinct (x, T). Under
    MBG/NBD an alive customer has survived x + 1 dropout draws: the posterior of the dropout
    probability is Beta(a, b + x + 1), i.e. BG/NBD's with b + 1."""
    x, t_x, T = (np.asarray(v, dtype=float) for v in (x, t_x, T))
    if x.size == 0:
        return np.zeros(0)
    pairs, inverse, _ = distinct_rows(x, T)
    posterior = replace(model, b=model.b + 1) if model.dropout_at_first else model
    if_alive = _in_parallel(
        lambda *columns: _expected_if_alive(posterior, t, *columns),
        len(pairs),
        pairs[:, 0],
        pairs[:, 1],
    )
    return probability_alive(model, x, t_x, T) * if_alive[inverse.ravel()]


def _expected_if_alive(model: BgNbd, t: float, x: np.ndarray, T: np.ndarray) -> np.ndarray:
    """E[X(t)] under the posterior of an alive customer: lambda ~ Gamma(r + x, alpha + T),
    p ~ Beta(a, b + x). The closed form is c / (a - 1) * (1 - G) with
    G = (1 - z)^(a-1) 2F1(c - r', a - 1; c; z) (Euler's transformation of eq. 10's 2F1, which
    converges for z < 1 at any x). Where it is not trustworthy (hyp2f1 inf/NaN, a close to 1,
    or a value outside the bounds every customer obeys) the integral is done by quadrature."""
    r1, alpha1, a, b1 = model.r + x, model.alpha + T, model.a, model.b + x
    c = a + b1 - 1
    z = t / (alpha1 + t)
    upper = r1 * t / alpha1  # E[X(t)] <= E[lambda] t: every dropout rate only lowers it
    lower = -np.expm1(-r1 * np.log1p(t / alpha1))  # P(at least one purchase) <= E[X(t)]
    with np.errstate(all="ignore"):
        h = hyp2f1(c - r1, a - 1, c, z)
        log_g = (a - 1) * np.log1p(-z) + np.log(h)
        closed = c / (a - 1) * -np.expm1(log_g)
    valid = (
        np.isfinite(closed)
        & (h > 0)
        & (abs(a - 1) > 1e-6)
        & (closed <= upper * (1 + 1e-9))
        & (closed >= lower * (1 - 1e-9))
    )
    if valid.all():
        return closed
    result = closed.copy()
    result[~valid] = _expected_if_alive_by_quadrature(model, t, x[~valid], T[~valid])
    return result


# tanh-sinh nodes on (0, 1): exact to double precision for integrands with endpoint singularities
_TS_STEP = 1.0 / 16.0
_TS_T = np.arange(-64, 65) * _TS_STEP
_TS_U = expit(np.pi * np.sinh(_TS_T))
_TS_W = _TS_STEP * np.pi * np.cosh(_TS_T) * _TS_U * expit(-np.pi * np.sinh(_TS_T))


def _expected_if_alive_by_quadrature(
    model: BgNbd, t: float, x: np.ndarray, T: np.ndarray
) -> np.ndarray:
    """E_p[(1 - (1 + p t / alpha')^-r') / p] over p ~ Beta(a, b + x), integrated over the
    beta quantile u in (0, 1): the integrand is bounded by r' t / alpha', so nothing overflows
    whatever the parameters, and concentrated posteriors cost no more than flat ones."""
    r1 = (model.r + x)[:, None]
    alpha1 = (model.alpha + T)[:, None]
    # the posterior of p depends on x alone: one row of quantiles per distinct x
    distinct_x, row = np.unique(x, return_inverse=True)
    p = betaincinv(model.a, (model.b + distinct_x)[:, None], _TS_U[None, :])[row.ravel()]
    safe = np.where(p > 0, p, 1.0)
    per_p = np.where(p > 0, -np.expm1(-r1 * np.log1p(safe * t / alpha1)) / safe, r1 * t / alpha1)
    return (per_p * _TS_W).sum(axis=1) / _TS_W.sum()


# --- Gamma-Gamma --------------------------------------------------------------------------


def _spend_terms(params: np.ndarray, x: np.ndarray) -> dict:
    """The parts of each repeat customer's Gamma-Gamma terms that depend on their purchases x
    alone (and the parameters): every special function. As for BG/NBD, the objective evaluates
    them once per distinct x and looks them up per customer."""
    p, q, _ = params
    px = p * x
    return {
        "gammaln_pxq": gammaln(px + q),
        "gammaln_px": gammaln(px),
        "digamma_pxq": digamma(px + q),
        "digamma_px": digamma(px),
        "log_x": np.log(x),
    }


def _gamma_gamma_terms(
    params: np.ndarray,
    x: np.ndarray,
    m: np.ndarray,
    by_purchases: tuple[dict, np.ndarray] | None = None,
    log_m: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Each repeat customer's log-likelihood of their mean value m over x transactions, and
    its gradient in (p, q, gamma). `by_purchases`: `_spend_terms` over the distinct values of
    x and each row's index into them; `log_m`: log(m), which no parameter changes (the same
    numbers as computing them here)."""
    p, q, gamma = params
    if by_purchases is None:
        per_x = _spend_terms(params, x)
    else:
        table, codes = by_purchases
        per_x = {name: values[codes] for name, values in table.items()}
    if log_m is None:
        log_m = np.log(m)
    px = p * x
    scale = gamma + x * m
    log_scale = np.log(scale)
    ll = (
        per_x["gammaln_pxq"]
        - per_x["gammaln_px"]
        - gammaln(q)
        + q * np.log(gamma)
        + (px - 1) * log_m
        + px * per_x["log_x"]
        - (px + q) * log_scale
    )
    psi = per_x["digamma_pxq"]
    grad = np.stack(
        [
            x * (psi - per_x["digamma_px"] + log_m + per_x["log_x"] - log_scale),
            psi - digamma(q) + np.log(gamma) - log_scale,
            q / gamma - (px + q) / scale,
        ]
    )
    return ll, grad


def gamma_gamma_log_likelihood(
    p: float, q: float, gamma: float, x: np.ndarray, m: np.ndarray
) -> np.ndarray:
    """Each repeat customer's log-likelihood of their mean transaction value m over x."""
    x, m = np.asarray(x, dtype=float), np.asarray(m, dtype=float)
    return _gamma_gamma_terms(np.array([p, q, gamma]), x, m)[0]


def gamma_gamma_objective(x: np.ndarray, m: np.ndarray, weights: np.ndarray) -> Objective:
    total = weights.sum()
    levels, codes = np.unique(x, return_inverse=True)
    log_m = np.log(m)

    def terms(params, x, m, log_m, codes, table):
        return _gamma_gamma_terms(params, x, m, (table, codes), log_m)

    def objective(log_params: np.ndarray) -> tuple[float, np.ndarray]:
        params = np.exp(log_params)
        table = _spend_terms(params, levels)
        ll, grad = _in_parallel(
            lambda *rows: terms(params, *rows, table), x.size, x, m, log_m, codes
        )
        return -float(weights @ ll) / total, -(grad @ weights) * params / total

    return objective


def pooled_order_value(total_spend: np.ndarray, x: np.ndarray) -> float:
    """All buyers' spend over all their purchase days: Gamma-Gamma's documented fallback for
    the expected value per purchase day (0 when nobody bought)."""
    days = float(np.sum(np.asarray(x, dtype=float) + 1))
    return float(np.nansum(total_spend)) / days if days > 0 else 0.0


def fit_gamma_gamma(
    x: np.ndarray, m: np.ndarray, fallback_value: float = 0.0, prior_mean: float | None = None
) -> GammaGamma:
    """Fit on repeat customers only (x > 0, m > 0), on the distinct (x, m) pairs weighted by
    their counts. With fewer than MIN_REPEAT_BUYERS of them, q <= 1, or a failed fit, the
    expected value per purchase is `fallback_value` for everyone (see `pooled_order_value`).
    `prior_mean`: see GammaGamma."""
    x, m = np.asarray(x, dtype=float), np.nan_to_num(np.asarray(m, dtype=float))
    buyers = x.size
    keep = (x > 0) & (m > 0)
    x, m = x[keep], m[keep]
    repeat_share = x.size / buyers if buyers else 0.0
    if x.size == 0:  # nothing to fit: the fallback, and no parameters to publish
        reason = "no repeat buyers with a positive order value: pooled fallback"
        report = FitReport("degenerate", False, 0, None, buyers, 0.0, (reason,))
        nan = float("nan")
        return GammaGamma(nan, nan, nan, report=report, fallback_value=fallback_value)
    pairs, _, counts = distinct_rows(x, m)
    objective = gamma_gamma_objective(*pairs.T, counts.astype(float))
    start = np.log([2.0, 3.0, float(np.mean(m))])
    log_params, mean_ll, converged, iterations = _fit(objective, start)
    params = np.exp(log_params)
    reasons = _bound_reasons(("p", "q", "gamma"), log_params, shapes=("p", "q"))
    if x.size < MIN_REPEAT_BUYERS:
        reasons.append(f"{x.size} repeat buyers, fewer than {MIN_REPEAT_BUYERS}: pooled fallback")
    if params[1] <= 1:
        reasons.append("q <= 1: the expected value is undefined; pooled fallback")
    ll = mean_ll * x.size
    report = _report(converged, iterations, ll, x.size, repeat_share, reasons, params)
    use_fallback = report.fit_status == "failed" or x.size < MIN_REPEAT_BUYERS or params[1] <= 1
    return GammaGamma(
        *map(float, params),
        log_likelihood=ll,
        report=report,
        fallback_value=fallback_value if use_fallback else None,
        prior_mean=prior_mean,
    )


def expected_transaction_value(model: GammaGamma, x: np.ndarray, m: np.ndarray) -> np.ndarray:
    """E[value of a transaction | x, m]: the customer's mean m weighted p x / (p x + q - 1)
    against the population mean p gamma / (q - 1) (or the model's prior_mean), so the
    population mean for customers with x = 0; the model's fallback value for everyone when it
    has one."""
    x = np.asarray(x, dtype=float)
    if model.fallback_value is not None:
        return np.full(x.shape, model.fallback_value)
    p, q, gamma = model.p, model.q, model.gamma
    m = np.where(x > 0, np.nan_to_num(np.asarray(m, dtype=float)), 0.0)
    if model.prior_mean is None:
        return p * (gamma + x * m) / (p * x + q - 1)
    return ((q - 1) * model.prior_mean + p * x * m) / (p * x + q - 1)


# --- which spend model --------------------------------------------------------------------

SPEND_MODELS = ("gamma_gamma", "pooled_shrinkage")
MAX_SPEND_HOLDOUT_DAYS = 365
# purchase days per customer, split at a cutoff before as_of: the summary up to the cutoff
# (as int_customer_rfm's) and the purchase days and spend after it
SPEND_HOLDOUT_SQL = """
WITH days AS (
    SELECT customer_id, order_date, sum(order_amount) AS amount
    FROM intermediate.int_orders GROUP BY customer_id, order_date
)
SELECT customer_id,
    count(*) FILTER (WHERE order_date <= $cutoff) - 1 AS frequency,
    -- the repeat days' mean: all days' up to the cutoff but the first (a numbering window
    -- over every purchase day cost a third of the query)
    round(
        (sum(amount) FILTER (WHERE order_date <= $cutoff) - arg_min(amount, order_date))
        / nullif(count(*) FILTER (WHERE order_date <= $cutoff) - 1, 0),
        6
    ) AS monetary_value,
    round(sum(amount) FILTER (WHERE order_date <= $cutoff), 6) AS total_spend,
    count(*) FILTER (WHERE order_date > $cutoff) AS holdout_days,
    round(coalesce(sum(amount) FILTER (WHERE order_date > $cutoff), 0), 6) AS holdout_spend
FROM days
GROUP BY customer_id
HAVING count(*) FILTER (WHERE order_date <= $cutoff) > 0
ORDER BY customer_id
"""


@dataclass(frozen=True)
class SpendChoice:
    """The spend model chosen by its error on the purchases after a cutoff before as_of: each
    candidate fitted on the history up to the cutoff predicts the value of every purchase day
    after it (the purchase days as they happened), and the smaller |log(predicted / actual)| of
    the total spend wins: pooled_shrinkage on a tie, gamma_gamma (Fader, Hardie & Lee's
    conditional expectation) when nothing can be compared."""

    chosen: str
    holdout_error: dict[str, float | None]
    holdout_customers: int = 0
    holdout_purchase_days: int = 0
    holdout_days: int = 0  # how long before as_of the cutoff is

    def as_metadata(self) -> dict:
        return asdict(self)


def spend_holdout(con, as_of) -> dict:
    """The spend holdout's inputs from the warehouse: the cutoff lies half the history before
    as_of, at most MAX_SPEND_HOLDOUT_DAYS; per customer who had bought by then, the summary up
    to it and the purchase days and spend after it."""
    first = con.execute("SELECT min(order_date) FROM intermediate.int_orders").fetchall()[0][0]
    end = pd.Timestamp(as_of).normalize()
    span = (end - pd.Timestamp(first)).days if first is not None else 0
    days = min(MAX_SPEND_HOLDOUT_DAYS, span // 2)
    cutoff = (end - pd.Timedelta(days=days)).date()
    frame = con.execute(SPEND_HOLDOUT_SQL, {"cutoff": cutoff}).df()
    return {"frame": frame, "holdout_days": int(days)}


def choose_spend_model(frame: pd.DataFrame, holdout_days: int) -> SpendChoice:
    """See SpendChoice; `frame` is `spend_holdout`'s."""
    x = frame["frequency"].to_numpy(float)
    m = pd.to_numeric(frame["monetary_value"], errors="coerce").to_numpy(float)
    n = frame["holdout_days"].to_numpy(float)
    actual = float(frame["holdout_spend"].astype(float).sum())
    errors: dict[str, float | None] = dict.fromkeys(SPEND_MODELS)
    if n.sum() > 0 and actual > 0:
        pooled = pooled_order_value(frame["total_spend"].to_numpy(float), x)
        for model in SPEND_MODELS:
            prior = pooled if model == "pooled_shrinkage" else None
            fitted = fit_gamma_gamma(x, m, pooled, prior_mean=prior)
            predicted = float(n @ expected_transaction_value(fitted, x, m))
            errors[model] = abs(float(np.log(predicted / actual))) if predicted > 0 else None
    best = "gamma_gamma"
    shrunk, own = errors["pooled_shrinkage"], errors["gamma_gamma"]
    # a tie: Gamma-Gamma could not be fitted at the cutoff (too few repeat buyers), so its
    # population mean is no better supported than the pooled one, which uses every purchase day
    if shrunk is not None and (own is None or shrunk <= own):
        best = "pooled_shrinkage"
    return SpendChoice(
        best,
        {k: None if v is None else round(v, 6) for k, v in errors.items()},
        int((n > 0).sum()),
        int(n.sum()),
        holdout_days,
    )


# --- the published outputs ----------------------------------------------------------------


def predict_customers(
    rfm: pd.DataFrame, bgnbd: BgNbd, gamma_gamma: GammaGamma, horizon_weeks: float
) -> pd.DataFrame:
    """Per buyer (one row of int_customer_rfm each): expected purchases, P(alive), expected
    value per purchase, predicted CLV (purchases x value, undiscounted) and the value tier,
    rounded to PROBABILITY_DECIMALS and CURRENCY_DECIMALS so summation noise never shows."""
    x, t_x, T, m = (rfm[c].to_numpy(float) for c in RFM_SUMMARY)
    expected = np.round(expected_purchases(bgnbd, horizon_weeks, x, t_x, T), PROBABILITY_DECIMALS)
    value = np.round(expected_transaction_value(gamma_gamma, x, m), CURRENCY_DECIMALS)
    out = rfm.assign(
        expected_purchases_365d=expected,
        probability_alive=np.round(probability_alive(bgnbd, x, t_x, T), PROBABILITY_DECIMALS),
        expected_avg_order_value=value,
        predicted_clv_365d=np.round(expected * value, CURRENCY_DECIMALS),
    )
    buyer = np.ones(len(out), dtype=bool)
    return out.assign(value_tier=value_tiers(out["customer_id"], out["predicted_clv_365d"], buyer))


def overall_status(*reports: FitReport | None) -> str:
    """The worst of the fits' statuses: failed, then degenerate, then ok."""
    severity = ("ok", "degenerate", "failed")
    return max((r.fit_status if r else "failed" for r in reports), key=severity.index)


def parameters_row(
    bgnbd: BgNbd, gamma_gamma: GammaGamma, x: np.ndarray, choice: ModelChoice | None = None
) -> dict:
    """marts/clv_model_parameters' row, without as_of; non-finite numbers become None."""
    bg, gg = bgnbd.report, gamma_gamma.report
    held_out = choice.holdout_log_likelihood if choice else {}
    row = {
        "purchase_model": bgnbd.model,
        "bgnbd_holdout_log_likelihood": held_out.get("bgnbd"),
        "mbgnbd_holdout_log_likelihood": held_out.get("mbgnbd"),
        "holdout_customers": choice.holdout_customers if choice else 0,
        **{k: v for k, v in bgnbd.as_dict().items() if k != "log_likelihood"},
        **{k: v for k, v in gamma_gamma.as_dict().items() if k != "log_likelihood"},
        "bgnbd_log_likelihood": bgnbd.log_likelihood,
        "gamma_gamma_log_likelihood": gamma_gamma.log_likelihood,
        "customers": int(np.size(x)),
        "repeat_customers": int((np.asarray(x) > 0).sum()),
        "time_unit": "weeks",
        "fit_status": overall_status(bg, gg),
        "converged": bool(bg and gg and bg.converged and gg.converged),
        "repeat_share": bg.repeat_share if bg else 0.0,
        "bgnbd_fit_status": bg.fit_status if bg else "failed",
        "gamma_gamma_fit_status": gg.fit_status if gg else "failed",
        "fit_notes": "; ".join([*(bg.reasons if bg else ()), *(gg.reasons if gg else ())]),
    }
    return {k: None if isinstance(v, float) and not np.isfinite(v) else v for k, v in row.items()}


# --- value tiers --------------------------------------------------------------------------


def value_tiers(
    customer_id: np.ndarray, predicted_clv: np.ndarray, buyer: np.ndarray
) -> np.ndarray:
    """Tiers ranked among buyers only, by predicted CLV descending and then customer_id, so
    ties fall in a stable order and the tiers hold exactly round(share x buyers) customers;
    never-buyers are prospects and move nobody."""
    customer_id = np.asarray(customer_id).astype(str)
    buyer = np.asarray(buyer, dtype=bool)
    clv = np.nan_to_num(np.asarray(predicted_clv, dtype=float))
    tiers = np.full(customer_id.shape, PROSPECT, dtype=object)
    index = np.flatnonzero(buyer)
    order = index[np.lexsort((customer_id[index], -clv[index]))]
    start = 0
    for share, name in VALUE_TIERS:
        end = int(np.floor(share * len(order) + 0.5))  # round half up, the same on any engine
        tiers[order[start:end]] = name
        start = max(start, end)
    return tiers


# --- fitting ------------------------------------------------------------------------------


def _fit(objective: Objective, start: np.ndarray) -> tuple[np.ndarray, float, bool, int]:
    """L-BFGS-B over log-parameters (every parameter stays positive), with the analytic
    gradient. Returns the log-parameters, the mean log-likelihood, convergence, iterations."""
    bounds = [LOG_BOUNDS] * start.size
    result = minimize(
        objective,
        start,
        jac=True,
        method="L-BFGS-B",
        bounds=bounds,
        options={"maxiter": 2000, "ftol": 1e-15, "gtol": 1e-10},
    )
    _, grad = objective(result.x)
    # at a bound only the inward component of the gradient has to vanish
    at_low, at_high = result.x <= LOG_BOUNDS[0], result.x >= LOG_BOUNDS[1]
    projected = np.where((at_low & (grad > 0)) | (at_high & (grad < 0)), 0.0, grad)
    converged = bool(result.success) or float(np.max(np.abs(projected))) <= CONVERGENCE_GTOL
    return result.x, -float(result.fun), converged, int(result.nit)


def _bound_reasons(names: tuple[str, ...], log_params: np.ndarray, shapes: tuple[str, ...]):
    reasons = []
    for name, value in zip(names, log_params, strict=True):
        if value <= LOG_BOUNDS[0] + BOUND_MARGIN or value >= LOG_BOUNDS[1] - BOUND_MARGIN:
            reasons.append(f"{name} = {np.exp(value):.4g} ran to its bound")
        elif name in shapes and np.exp(value) > LARGE_SHAPE:
            reasons.append(f"{name} = {np.exp(value):.4g} > {LARGE_SHAPE:g}: collapsed mixture")
    return reasons


def _report(
    converged: bool,
    iterations: int,
    log_likelihood: float,
    n: int,
    repeat_share: float,
    reasons: list[str],
    params: np.ndarray,
) -> FitReport:
    if not (np.isfinite(log_likelihood) and np.isfinite(params).all()):
        status, reasons = "failed", ["non-finite log-likelihood or parameters", *reasons]
    else:
        if not converged:
            reasons = ["the optimiser stopped before its tolerance", *reasons]
        status = "degenerate" if reasons else "ok"
    ll = float(log_likelihood) if np.isfinite(log_likelihood) else None
    return FitReport(status, converged, iterations, ll, int(n), float(repeat_share), tuple(reasons))


def _empty_report(reason: str, n: int = 0) -> FitReport:
    return FitReport("failed", False, 0, None, n, 0.0, (reason,))
