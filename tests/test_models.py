"""The model fits: published oracles (CDNOW), overflow-prone parameters, low-repeat data, the
analytic gradients, the weighted fit, value tiers, the cross-sell fallback and the checks."""

from pathlib import Path

import dagster as dg
import duckdb
import numpy as np
import pandas as pd
import pytest
from scipy.optimize import approx_fprime, check_grad

from retail_dp.analytics import assets, checks, clv, cross_sell
from retail_dp.descriptors import Catalog
from retail_dp.resources import Warehouse
from retail_dp.settings import Settings

CDNOW = Path(__file__).parent / "data" / "cdnow"
# Fader, Hardie & Lee (2005), "Counting your customers the easy way", and "RFM and CLV"
PUBLISHED_BGNBD = {"r": 0.243, "alpha": 4.414, "a": 0.793, "b": 2.426}
PUBLISHED_GAMMA_GAMMA = {"p": 6.25, "q": 3.74, "gamma": 15.44}
MARKETPLACE = clv.BgNbd(r=0.3, alpha=20.0, a=2263.0, b=144.0)


@pytest.fixture(scope="module")
def cdnow() -> pd.DataFrame:
    summary = pd.read_csv(CDNOW / "cdnow_customers_summary.csv")
    values = pd.read_csv(CDNOW / "cdnow_customers_summary_with_transactions.csv")
    assert len(summary) == 2357 and (summary["ID"] == values["ID"]).all()
    return summary.assign(zbar=values["zbar"])


def cdnow_arrays(frame: pd.DataFrame) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    return tuple(frame[c].to_numpy(float) for c in ("frequency", "recency", "T"))


def simulate_bgnbd(n: int, model: clv.BgNbd, weeks: float, seed: int):
    """Customers of a BG/NBD world, observed for up to `weeks`, times rounded to days."""
    rng = np.random.default_rng(seed)
    rate = rng.gamma(model.r, 1 / model.alpha, n)
    dropout = rng.beta(model.a, model.b, n)
    T = np.round(rng.uniform(1, weeks, n) * 7) / 7
    x, t_x = np.zeros(n), np.zeros(n)
    for i in range(n):
        t = 0.0
        while rng.random() >= dropout[i]:
            t += rng.exponential(1 / rate[i])
            if t > T[i]:
                break
            x[i] += 1
            t_x[i] = np.round(t * 7) / 7
    return x, t_x, T


# --- oracles --------------------------------------------------------------------------------


def test_bgnbd_reproduces_the_published_cdnow_parameters(cdnow):
    model = clv.fit_bgnbd(*cdnow_arrays(cdnow))
    for name, published in PUBLISHED_BGNBD.items():
        assert getattr(model, name) == pytest.approx(published, rel=0.02), name
    assert model.log_likelihood == pytest.approx(-9582.4, abs=0.1)  # the paper's LL
    assert model.report.fit_status == "ok" and model.report.converged
    assert model.report.n == 2357 and model.report.repeat_share == pytest.approx(946 / 2357)


def test_gamma_gamma_reproduces_the_published_cdnow_parameters(cdnow):
    model = clv.fit_gamma_gamma(cdnow["frequency"], cdnow["zbar"])
    for name, published in PUBLISHED_GAMMA_GAMMA.items():
        assert getattr(model, name) == pytest.approx(published, rel=0.02), name
    assert model.report.fit_status == "ok" and model.report.n == 946
    assert model.fallback_value is None


def test_conditional_expectation_matches_the_papers_example():
    """The paper's customer: x = 2, t_x = 30.43, T = 38.86 expects 1.226 purchases in 39 weeks."""
    model = clv.BgNbd(**PUBLISHED_BGNBD)
    expected = clv.expected_purchases(model, 39, np.array([2.0]), np.array([30.43]), [38.86])
    assert expected[0] == pytest.approx(1.226, abs=5e-4)


def test_quadrature_fallback_agrees_with_the_closed_form(cdnow):
    x, _, T = cdnow_arrays(cdnow)
    for a in (0.3, 0.793, 1.5, 40.0):
        model = clv.BgNbd(r=0.243, alpha=4.414, a=a, b=2.426)
        closed = clv._expected_if_alive(model, 52.0, x, T)
        quadrature = clv._expected_if_alive_by_quadrature(model, 52.0, x, T)
        np.testing.assert_allclose(quadrature, closed, rtol=1e-9)


ORACLE_CUSTOMERS = 300  # the CDNOW customers whose predictions are compared one by one


@pytest.mark.parametrize("model", clv.PURCHASE_MODELS)
def test_purchase_models_match_lifetimes_on_cdnow(cdnow, model):
    """An independent implementation (Lifetimes 0.11.3, test-only): the parameters of both
    fits, and at our parameters the conditional expectation and P(alive), to 1e-6."""
    from lifetimes import BetaGeoFitter, ModifiedBetaGeoFitter

    x, t_x, T = cdnow_arrays(cdnow)
    ours = clv.fit_bgnbd(x, t_x, T, model)
    theirs = {"bgnbd": BetaGeoFitter, "mbgnbd": ModifiedBetaGeoFitter}[model]()
    theirs.fit(cdnow["frequency"], cdnow["recency"], cdnow["T"])
    names = ["r", "alpha", "a", "b"]
    np.testing.assert_allclose(
        [getattr(ours, n) for n in names], theirs.params_[names].to_numpy(), rtol=1e-6
    )
    theirs.params_ = pd.Series({n: getattr(ours, n) for n in names})
    some = slice(0, ORACLE_CUSTOMERS)
    for weeks in (39.0, clv.WEEKS_PER_YEAR):
        np.testing.assert_allclose(
            clv.expected_purchases(ours, weeks, x[some], t_x[some], T[some]),
            theirs.conditional_expected_number_of_purchases_up_to_time(
                weeks, x[some], t_x[some], T[some]
            ),
            rtol=1e-6,
        )
    np.testing.assert_allclose(
        clv.probability_alive(ours, x[some], t_x[some], T[some]),
        theirs.conditional_probability_alive(x[some], t_x[some], T[some]),
        rtol=1e-6,
        atol=1e-12,
    )
    if model == "mbgnbd":  # one-time buyers can be gone
        assert clv.probability_alive(ours, x, t_x, T)[x == 0].max() < 1


def test_gamma_gamma_matches_lifetimes_on_cdnow(cdnow):
    from lifetimes import GammaGammaFitter

    repeat = cdnow[cdnow["frequency"] > 0]
    ours = clv.fit_gamma_gamma(repeat["frequency"], repeat["zbar"])
    theirs = GammaGammaFitter().fit(repeat["frequency"], repeat["zbar"])
    np.testing.assert_allclose(
        [ours.p, ours.q, ours.gamma], theirs.params_[["p", "q", "v"]].to_numpy(), rtol=1e-6
    )
    theirs.params_ = pd.Series({"p": ours.p, "q": ours.q, "v": ours.gamma})
    some = repeat.iloc[:ORACLE_CUSTOMERS]
    np.testing.assert_allclose(
        clv.expected_transaction_value(ours, some["frequency"], some["zbar"]),
        theirs.conditional_expected_average_profit(some["frequency"], some["zbar"]),
        rtol=1e-6,
    )


def simulate_purchases(n: int, model: clv.BgNbd, weeks: float, seed: int):
    """Customers of a BG/NBD world (dropout only after a repeat purchase) or of an MBG/NBD
    one (after every purchase, the first included), observed for up to `weeks`."""
    rng = np.random.default_rng(seed)
    rate, dropout = rng.gamma(model.r, 1 / model.alpha, n), rng.beta(model.a, model.b, n)
    T = np.round(rng.uniform(1, weeks, n) * 7) / 7
    x, t_x = np.zeros(n), np.zeros(n)
    for i in range(n):
        t, alive = 0.0, not (model.dropout_at_first and rng.random() < dropout[i])
        while alive:
            t += rng.exponential(1 / rate[i])
            if t > T[i]:
                break
            x[i] += 1
            t_x[i] = np.round(t * 7) / 7
            alive = rng.random() >= dropout[i]
    return x, t_x, T


@pytest.mark.parametrize("truth", ["bgnbd", "mbgnbd"])
def test_the_held_out_log_likelihood_chooses_the_model_that_made_the_data(truth):
    world = clv.BgNbd(r=0.8, alpha=6.0, a=1.2, b=3.0, model=truth)
    x, t_x, T = simulate_purchases(6000, world, 104, seed=5)
    holdout = np.arange(len(x)) % 5 == 0
    choice = clv.choose_purchase_model(x, t_x, T, holdout)
    assert choice.chosen.model == truth and choice.holdout_customers == holdout.sum()
    scores = choice.holdout_log_likelihood
    assert scores[truth] == max(scores.values())
    row = clv.parameters_row(choice.chosen, clv.fit_gamma_gamma(x, np.where(x > 0, 10.0, 0)), x,
                             choice)  # fmt: skip
    assert row["purchase_model"] == truth and row["holdout_customers"] == holdout.sum()


def test_the_choice_learns_from_a_bounded_draw_of_the_other_customers(monkeypatch):
    world = clv.BgNbd(r=0.8, alpha=6.0, a=1.2, b=3.0, model="mbgnbd")
    x, t_x, T = simulate_purchases(6000, world, 104, seed=6)
    holdout = np.arange(len(x)) % 5 == 0
    draw = np.random.default_rng(6).permutation(len(x))
    everyone = clv.choose_purchase_model(x, t_x, T, holdout, draw)
    assert everyone.training_customers is None  # under the bound: every other customer
    monkeypatch.setattr(clv, "MAX_CHOICE_CUSTOMERS", 2000)
    training = clv.choice_training(holdout, draw)
    # the 2,000 customers outside the holdout with the smallest draws, none held out
    assert training.sum() == 2000 and not (training & holdout).any()
    assert draw[training].max() < draw[~holdout & ~training].min()
    bounded = clv.choose_purchase_model(x, t_x, T, holdout, draw)
    assert bounded.training_customers == 2000 and bounded.chosen.model == "mbgnbd"
    # the choice is refitted on everyone: the same optimum whichever customers it chose on
    for name in ("r", "alpha", "a", "b"):
        assert getattr(bounded.chosen, name) == pytest.approx(getattr(everyone.chosen, name), 1e-5)


def test_cross_sell_matches_scikit_learns_logistic_regression():
    """Same design matrix, same weights, same L2 penalty (C = 1 / (penalty x total weight),
    intercept unpenalised): the same coefficients."""
    from sklearn.linear_model import LogisticRegression

    rows, _ = cross_sell.with_activity(feature_rows(800, label=None, seed=3))
    rows["sample_weight"] = np.where(rows["bought_next_90d"] > 0, 1.0, 3.0)
    model, report = cross_sell.fit(rows)
    assert report.fit_status == "ok"
    ordered = rows.sort_values(["customer_id", "category"], kind="stable")
    z = (cross_sell.feature_matrix(ordered) - model.mean) / model.scale
    w = ordered["sample_weight"].to_numpy()
    theirs = LogisticRegression(C=1 / (cross_sell.L2_PENALTY * w.sum()), tol=1e-12, max_iter=10**5)
    theirs.fit(z, ordered["bought_next_90d"].to_numpy(), sample_weight=w)
    np.testing.assert_allclose(model.coefficients[1:], theirs.coef_[0], atol=1e-6)
    assert model.coefficients[0] == pytest.approx(theirs.intercept_[0], abs=1e-6)


# --- overflow and extremes ------------------------------------------------------------------


EXTREME_X = np.array([0, 0, 1, 1, 5, 1e3, 1e6, 1e6, 0])
EXTREME_T_X = np.array([0, 0, 1e-9, 0.5, 1e6, 1e3, 1e6, 0.5, 0])
EXTREME_T = np.array([1e-9, 1e8, 1e6, 1e6, 1e6, 1e6, 1e6, 1e6, 52.0])


@pytest.mark.parametrize(
    "params",
    [
        (0.3, 20.0, 2263.0, 144.0),  # the marketplace fit that overflowed
        (0.243, 4.414, 0.793, 2.426),
        (1e-8, 1e8, 1e-8, 1e8),
        (1e8, 1e-8, 1e8, 1e-8),
        (1e8, 1e8, 1e8, 1e8),
        (1e-8, 1e-8, 1e-8, 1e-8),
        (0.5, 10.0, 1.0, 2.0),  # a = 1: the closed form's 0/0
    ],
)
def test_no_finite_parameters_give_undefined_outputs(params):
    model = clv.BgNbd(*params)
    ll = clv.bgnbd_log_likelihood(*params, EXTREME_X, EXTREME_T_X, EXTREME_T)
    alive = clv.probability_alive(model, EXTREME_X, EXTREME_T_X, EXTREME_T)
    expected = clv.expected_purchases(model, 52.0, EXTREME_X, EXTREME_T_X, EXTREME_T)
    assert np.isfinite(ll).all()
    assert np.isfinite(alive).all() and ((alive >= 0) & (alive <= 1)).all()
    assert np.isfinite(expected).all() and (expected >= 0).all()


def test_the_marketplace_parameters_no_longer_overflow():
    """The textbook evaluation gave NULL for every customer at a = 2263, b = 144."""
    x, t_x, T = simulate_bgnbd(3000, MARKETPLACE, 150, seed=3)
    expected = clv.expected_purchases(MARKETPLACE, clv.WEEKS_PER_YEAR, x, t_x, T)
    assert np.isfinite(expected).all() and (expected > 0).all()
    # a customer alive at T with no repeat buys about r/alpha per week until dropping out
    assert expected.max() < 0.3 / 20 * clv.WEEKS_PER_YEAR


# --- low repeat (marketplace-like) data ---------------------------------------------------


def test_low_repeat_data_fits_finite_and_records_its_status():
    x, t_x, T = simulate_bgnbd(20_000, MARKETPLACE, 150, seed=1)
    assert 0.01 < (x > 0).mean() < 0.04  # 1-3% repeat buyers, as on a marketplace
    model = clv.fit_bgnbd(x, t_x, T)
    report = model.report
    assert report.fit_status in ("ok", "degenerate") and report.converged
    assert np.isfinite([model.r, model.alpha, model.a, model.b, model.log_likelihood]).all()
    assert report.repeat_share == pytest.approx((x > 0).mean())
    expected = clv.expected_purchases(model, clv.WEEKS_PER_YEAR, x, t_x, T)
    alive = clv.probability_alive(model, x, t_x, T)
    assert np.isfinite(expected).all() and (expected >= 0).all()
    assert ((alive >= 0) & (alive <= 1)).all()
    # dropout after a purchase is near-certain: the fit must say so, not predict 0 or NaN
    assert model.a / (model.a + model.b) > 0.8


def test_too_few_repeat_buyers_fall_back_to_the_pooled_order_value():
    x = np.array([0, 0, 0, 1, 2, 0, 0, 3], dtype=float)
    m = np.array([np.nan, np.nan, np.nan, 40.0, 55.0, np.nan, np.nan, 30.0])
    spend = np.array([10.0, 20.0, 30.0, 80.0, 150.0, 25.0, 35.0, 120.0])
    fallback = clv.pooled_order_value(spend, x)
    assert fallback == pytest.approx(spend.sum() / (x + 1).sum())
    model = clv.fit_gamma_gamma(x, m, fallback)
    assert model.report.fit_status == "degenerate" and model.fallback_value == fallback
    assert any("fewer than" in r for r in model.report.reasons)
    value = clv.expected_transaction_value(model, x, m)
    np.testing.assert_array_equal(value, np.full(len(x), fallback))


def test_no_repeat_buyer_at_all_is_a_degenerate_fit_with_a_fallback():
    x = np.zeros(5)
    model = clv.fit_gamma_gamma(x, np.full(5, np.nan), fallback_value=42.0)
    assert model.report.fit_status == "degenerate" and model.report.repeat_share == 0.0
    assert (clv.expected_transaction_value(model, x, np.zeros(5)) == 42.0).all()
    row = clv.parameters_row(clv.fit_bgnbd(x, x, np.arange(1.0, 6.0)), model, x)
    assert row["p"] is None and row["gamma_gamma_fit_status"] == "degenerate"
    assert row["bgnbd_fit_status"] == "degenerate"  # no repeat buyers: dropout unidentified
    assert all(np.isfinite(row[k]) for k in ("r", "alpha", "a", "b"))


def spend_frame(first: float, repeat: float, later: float, seed: int = 0) -> pd.DataFrame:
    """spend_holdout's frame for 2,000 customers: each one's first purchase day is worth
    about `first`, earlier repeat days about `repeat`; 5% are repeat buyers (2-5 days), and a
    fifth buy once or twice after the cutoff, each day worth about `later`."""
    rng = np.random.default_rng(seed)
    n = 2000
    x = np.where(rng.random(n) < 0.05, rng.integers(1, 5, n), 0).astype(float)
    m = np.where(x > 0, rng.gamma(20.0, repeat / 20.0, n), np.nan)
    firsts = rng.gamma(20.0, first / 20.0, n)
    days = np.where(rng.random(n) < 0.2, rng.integers(1, 3, n), 0)
    return pd.DataFrame(
        {
            "customer_id": [f"c{i:05d}" for i in range(n)],
            "frequency": x,
            "monetary_value": m,
            "total_spend": firsts + np.nan_to_num(m) * x,
            "holdout_days": days,
            "holdout_spend": days * rng.gamma(20.0, later / 20.0, n),
        }
    )


def test_shrinking_towards_the_pooled_order_value():
    """pooled_shrinkage keeps Gamma-Gamma's weight p x / (p x + q - 1) on the customer's own
    mean and replaces its population mean by the pooled one: a one-time buyer gets it."""
    x = np.array([0.0, 1.0, 8.0])
    m = np.array([np.nan, 120.0, 120.0])
    own = clv.GammaGamma(3.0, 4.0, 60.0)
    shrunk = clv.GammaGamma(3.0, 4.0, 60.0, prior_mean=90.0)
    assert clv.expected_transaction_value(own, x, m)[0] == pytest.approx(3.0 * 60.0 / 3.0)
    value = clv.expected_transaction_value(shrunk, x, m)
    weight = 3.0 * x / (3.0 * x + 3.0)
    np.testing.assert_allclose(value, weight * np.nan_to_num(m) + (1 - weight) * 90.0)


def test_the_spend_model_is_chosen_by_its_error_after_the_cutoff():
    # order values do not depend on the customer, but the few repeat buyers' earlier days ran
    # high: Gamma-Gamma's population mean (from them) misses, the pooled one does not
    pooled_right = clv.choose_spend_model(spend_frame(100.0, 160.0, 100.0), 180)
    assert pooled_right.chosen == "pooled_shrinkage"
    errors = pooled_right.holdout_error
    assert errors["pooled_shrinkage"] < errors["gamma_gamma"] / 3
    assert pooled_right.holdout_customers > 300 and pooled_right.holdout_days == 180
    # first purchases are cheap and later ones are like the repeat buyers': Gamma-Gamma,
    # which learns from repeat purchases only, is right
    model_right = clv.choose_spend_model(spend_frame(40.0, 100.0, 100.0), 180)
    assert model_right.chosen == "gamma_gamma"
    assert model_right.holdout_error["gamma_gamma"] < model_right.holdout_error["pooled_shrinkage"]
    # nothing after the cutoff: nothing to compare, the paper's model
    quiet = spend_frame(100.0, 100.0, 100.0).assign(holdout_days=0, holdout_spend=0.0)
    assert clv.choose_spend_model(quiet, 0).chosen == "gamma_gamma"
    # too few repeat buyers for Gamma-Gamma at the cutoff: both are the pooled mean, a tie
    few = spend_frame(100.0, 100.0, 100.0)
    few.loc[few.index[10:], ["frequency", "monetary_value"]] = [0.0, np.nan]
    tie = clv.choose_spend_model(few, 180)
    assert tie.holdout_error["gamma_gamma"] == tie.holdout_error["pooled_shrinkage"]
    assert tie.chosen == "pooled_shrinkage"


def test_an_empty_fit_fails_instead_of_raising():
    model = clv.fit_bgnbd(np.zeros(0), np.zeros(0), np.zeros(0))
    assert model.report.fit_status == "failed" and not model.report.converged


# --- gradients and the weighted fit ---------------------------------------------------------


def central_difference(f, x: np.ndarray, h: float = 1e-6) -> np.ndarray:
    return np.array([(f(x + h * e) - f(x - h * e)) / (2 * h) for e in np.eye(len(x))])


@pytest.mark.parametrize(
    "log_params",
    [np.log(list(PUBLISHED_BGNBD.values())), np.log([0.3, 20.0, 2263.0, 144.0])],
)
def test_bgnbd_analytic_gradient_matches_finite_differences(cdnow, log_params):
    x, t_x, T = cdnow_arrays(cdnow)
    objective = clv.bgnbd_objective(x, t_x, T, np.ones(len(x)))
    value = lambda v: objective(v)[0]  # noqa: E731
    gradient = objective(log_params)[1]
    np.testing.assert_allclose(
        gradient, central_difference(value, log_params), rtol=1e-5, atol=1e-8
    )
    assert check_grad(value, lambda v: objective(v)[1], log_params) < 1e-5


def test_gamma_gamma_analytic_gradient_matches_finite_differences(cdnow):
    repeat = cdnow[cdnow["frequency"] > 0]
    x, m = repeat["frequency"].to_numpy(float), repeat["zbar"].to_numpy(float)
    objective = clv.gamma_gamma_objective(x, m, np.ones(len(x)))
    for log_params in (np.log([6.25, 3.74, 15.44]), np.log([0.5, 50.0, 1e4])):
        value = lambda v: objective(v)[0]  # noqa: E731
        np.testing.assert_allclose(
            objective(log_params)[1], central_difference(value, log_params), rtol=1e-5, atol=1e-8
        )
        assert np.allclose(
            objective(log_params)[1], approx_fprime(log_params, value, 1e-7), atol=1e-4
        )


def test_weighted_fit_on_distinct_triples_equals_the_unweighted_fit(cdnow):
    x, t_x, T = cdnow_arrays(cdnow)
    weighted = clv.fit_bgnbd(x, t_x, T)
    start = np.log([1.0, T.mean(), 1.0, 1.0])  # not the weighted fit's start, to the last bit
    log_params, _, converged, _ = clv._fit(clv.bgnbd_objective(x, t_x, T, np.ones(len(x))), start)
    assert converged
    np.testing.assert_allclose(
        [weighted.r, weighted.alpha, weighted.a, weighted.b], np.exp(log_params), rtol=1e-6
    )
    assert len(np.unique(np.column_stack([x, t_x, T]), axis=0)) < len(x)  # it did collapse


def test_fits_are_bit_identical_whatever_the_input_order(cdnow):
    x, t_x, T = cdnow_arrays(cdnow)
    order = np.random.default_rng(0).permutation(len(x))
    first, second = clv.fit_bgnbd(x, t_x, T), clv.fit_bgnbd(x[order], t_x[order], T[order])
    assert first.as_dict() == second.as_dict()
    gg1 = clv.fit_gamma_gamma(cdnow["frequency"], cdnow["zbar"])
    gg2 = clv.fit_gamma_gamma(cdnow["frequency"].to_numpy()[order], cdnow["zbar"].to_numpy()[order])
    assert gg1.as_dict() == gg2.as_dict()


# --- value tiers --------------------------------------------------------------------------


def test_value_tiers_are_exact_shares_of_buyers_and_stable_for_new_sign_ups():
    rng = np.random.default_rng(7)
    n = 1000
    ids = np.array([f"C{i:05d}" for i in rng.permutation(n)])
    clv_values = np.where(rng.random(n) < 0.4, 0.0, np.round(rng.gamma(1.0, 100.0, n), 2))
    tiers = clv.value_tiers(ids, clv_values, np.ones(n, dtype=bool))
    counts = pd.Series(tiers).value_counts().to_dict()
    assert counts == {"platinum": 100, "gold": 200, "silver": 300, "bronze": 400}
    # ties (40% have CLV 0) are broken by customer_id, so input order does not matter
    order = rng.permutation(n)
    np.testing.assert_array_equal(
        clv.value_tiers(ids[order], clv_values[order], np.ones(n, bool)), tiers[order]
    )
    # a sign-up who never bought is a prospect and moves nobody
    buyer = np.append(np.ones(n, dtype=bool), False)
    more = clv.value_tiers(np.append(ids, "C99999"), np.append(clv_values, 0.0), buyer)
    assert more[-1] == clv.PROSPECT
    np.testing.assert_array_equal(more[:-1], tiers)


def test_value_tiers_round_by_row_counts():
    tiers = clv.value_tiers([f"C{i}" for i in range(7)], np.arange(7.0), np.ones(7, bool))
    # round(0.7) = 1, round(2.1) = 2, round(4.2) = 4 customers by the cumulative shares
    assert list(tiers) == ["bronze"] * 3 + ["silver"] * 2 + ["gold", "platinum"]


def test_predicted_clv_is_rounded_and_never_undefined(cdnow):
    rfm = pd.DataFrame(
        {
            "customer_id": cdnow["ID"].astype(str),
            "frequency": cdnow["frequency"],
            "recency_weeks": cdnow["recency"],
            "age_weeks": cdnow["T"],
            "monetary_value": cdnow["zbar"].where(cdnow["frequency"] > 0),
        }
    )
    x = rfm["frequency"].to_numpy(float)
    bgnbd = clv.fit_bgnbd(x, rfm["recency_weeks"], rfm["age_weeks"])
    gg = clv.fit_gamma_gamma(x, rfm["monetary_value"])
    out = clv.predict_customers(rfm, bgnbd, gg, clv.WEEKS_PER_YEAR)
    outputs = ["expected_purchases_365d", "probability_alive", "expected_avg_order_value"]
    assert np.isfinite(out[[*outputs, "predicted_clv_365d"]].to_numpy()).all()
    np.testing.assert_array_equal(out["predicted_clv_365d"], out["predicted_clv_365d"].round(6))
    np.testing.assert_array_equal(out["probability_alive"], out["probability_alive"].round(9))


# --- cross-sell -----------------------------------------------------------------------------


def feature_rows(n_customers: int, label: float | None, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    categories = ["Wines", "Meats", "Fish", "Gold"]
    rows = pd.DataFrame(
        [(f"C{i:04d}", c) for i in range(n_customers) for c in categories],
        columns=["customer_id", "category"],
    )
    n = len(rows)
    frequency = np.repeat(rng.poisson(1.0, n_customers), len(categories))
    return rows.assign(
        orders=frequency + 1,
        orders_90d=rng.integers(0, 2, n),
        categories_bought=rng.integers(1, 4, n),
        spend=rng.gamma(2, 50, n),
        recency_days=rng.integers(0, 400, n),
        frequency=frequency,
        recency_weeks=np.repeat(rng.uniform(0, 20, n_customers), len(categories)),
        age_weeks=np.repeat(rng.uniform(20, 60, n_customers), len(categories)),
        confidence_max=rng.uniform(0, 1, n),
        confidence_mean=rng.uniform(0, 1, n),
        category_support=np.tile([0.6, 0.5, 0.3, 0.1], n_customers),
        days_since_last_adoption=np.repeat(rng.integers(0, 400, n_customers), len(categories)),
        next_adoption_share=rng.uniform(0, 0.5, n),
        next_adoption_share_due=rng.uniform(0, 0.2, n),
        next_adoption_share_max=rng.uniform(0, 0.6, n),
        next_adoptions_after_last=rng.integers(0, 30, n),
        bought_next_90d=label if label is not None else rng.integers(0, 2, n).astype(float),
    )


def test_cross_sell_without_positives_records_a_failed_fit_and_scores_by_popularity():
    """An as_of long after the data ends: nobody bought in the window. No raise, no NaN."""
    rows, _ = cross_sell.with_activity(feature_rows(200, label=0.0))
    scorer, report = cross_sell.fit(rows)
    assert isinstance(scorer, cross_sell.PopularityBaseline)
    assert report.fit_status == "failed" and "only non-buyers" in report.reasons[0]
    rows.loc[rows.index[:5], ["probability_alive", "recency_days", "category_support"]] = np.nan
    score = scorer.predict(rows)
    assert np.isfinite(score).all() and ((score >= 0) & (score <= 1)).all()
    opportunity = cross_sell.customer_scores(rows, score)
    assert opportunity.notna().all() and opportunity.between(0, 1).all()
    table = cross_sell.fit_rows("fit", report, scorer)
    assert table[0]["detail"].startswith("failed") and table[-1]["value"] == 1.0


def test_cross_sell_with_too_few_rows_fails_without_raising():
    scorer, report = cross_sell.fit(feature_rows(3, label=None))
    assert report.fit_status == "failed" and isinstance(scorer, cross_sell.PopularityBaseline)
    _, empty = cross_sell.fit(feature_rows(0, label=None))
    assert empty.fit_status == "failed" and empty.n == 0


def test_cross_sell_model_never_emits_nan_on_missing_features():
    rows, activity = cross_sell.with_activity(feature_rows(300, label=None, seed=1))
    assert activity.fit_status in ("ok", "degenerate")
    model, report = cross_sell.fit(rows)
    assert isinstance(model, cross_sell.CrossSellModel) and report.fit_status == "ok"
    broken = rows.astype({"recency_days": float})
    broken.loc[broken.index[::3], ["expected_purchases_90d", "confidence_max"]] = np.nan
    broken.loc[broken.index[1], "recency_days"] = np.inf
    score = model.predict(broken)
    assert np.isfinite(score).all() and ((score >= 0) & (score <= 1)).all()


def test_backtest_with_one_class_stores_no_auc_and_says_why():
    snapshots = pd.DataFrame(
        {
            "customer_id": ["A", "B", "C"],
            "dataos_cross_sell_score": [0.2, 0.5, np.nan],
            "bought_new_category_next_90d": [0, 0, 0],
        }
    )
    scored = pd.DataFrame(
        {"customer_id": ["A", "B"], "cross_sell_opportunity_score": [0.1, np.nan]}
    ).assign(recency_days=[10.0, 20.0])
    metrics, undefined = cross_sell.backtest(snapshots, scored)
    # B has no finite score of ours; C none of DataOS's: only A is scored
    assert metrics["backtest_customers"] == 3 and metrics["backtest_customers_scored"] == 1
    assert metrics["auc"] is None and metrics["auc_dataos"] is None
    assert "only non-buyers" in undefined["auc"]


class _Constant:
    """A scorer that gives every row the same probability."""

    def predict(self, rows: pd.DataFrame) -> np.ndarray:
        return np.full(len(rows), 0.5)


def test_a_buyer_with_nothing_left_to_buy_scores_zero_and_a_prospect_has_no_score(monkeypatch):
    # A has two candidate categories, B one; C bought them all (no candidate row); D never bought
    con = duckdb.connect()
    con.execute("CREATE SCHEMA intermediate; CREATE SCHEMA marts")
    con.execute(
        """CREATE TABLE intermediate.int_cross_sell_features AS
        SELECT * FROM (VALUES ('A', 'Fish'), ('A', 'Gold'), ('B', 'Fish'))
            t(customer_id, category),
            (SELECT 0 AS days_before_as_of, 1.0 AS spend, 1 AS frequency,
                1.0 AS recency_weeks, 2.0 AS age_weeks)"""
    )
    con.execute("CREATE TABLE intermediate.int_customer_rfm AS SELECT 'C' AS customer_id")
    con.execute(
        "CREATE TABLE intermediate.int_cross_sell_snapshots AS "
        "SELECT * FROM (VALUES ('A', 0), ('B', 0), ('D', 90)) t(customer_id, days_before_as_of)"
    )
    con.execute(
        "CREATE TABLE marts.dim_customer AS "
        "SELECT * FROM (VALUES ('D'), ('C'), ('B'), ('A')) t(customer_id)"
    )
    activity = pd.DataFrame({"customer_id": ["A", "B"], "probability_alive": [0.9, 0.8]})
    columns = [(n, "", "") for n in ["customer_id", "cross_sell_opportunity_score"]] + [
        (f"next_best_category_{r}{suffix}", "", "") for r in (1, 2, 3) for suffix in ("", "_score")
    ]
    monkeypatch.setattr(assets, "SCORING_CHUNK_VECTORS", 1)
    assets._publish_recommendations(con, _Constant(), activity, "model", columns)
    recs = con.execute("SELECT * FROM marts.cross_sell_recommendations").df()
    assert recs.columns.tolist() == [n for n, _, _ in columns]
    assert recs["customer_id"].tolist() == ["A", "B", "C", "D"]
    by_id = recs.set_index("customer_id")
    assert by_id.loc["A", "cross_sell_opportunity_score"] == pytest.approx(0.75)
    assert by_id.loc["A", "next_best_category_1"] == "Fish"  # ties by category name
    assert by_id.loc["A", "next_best_category_2"] == "Gold"
    assert by_id.loc["B", "cross_sell_opportunity_score"] == pytest.approx(0.5)
    assert by_id.loc["C", "cross_sell_opportunity_score"] == 0.0
    assert pd.isna(by_id.loc["C", "next_best_category_1"])
    assert pd.isna(by_id.loc["D", "cross_sell_opportunity_score"])
    # a scored customer whose score is missing is published without one (for the
    # scores_defined check to fail on), never as a buyer with nothing left to buy
    score_customers = cross_sell.score_customers

    def losing_b(*args, **kwargs):
        out = score_customers(*args, **kwargs)
        return out.assign(
            cross_sell_opportunity_score=out["cross_sell_opportunity_score"].mask(
                out["customer_id"] == "B"
            )
        )

    monkeypatch.setattr(cross_sell, "score_customers", losing_b)
    assets._publish_recommendations(con, _Constant(), activity, "model", columns)
    again = con.execute("SELECT * FROM marts.cross_sell_recommendations").df()
    again = again.set_index("customer_id")["cross_sell_opportunity_score"]
    assert pd.isna(again["B"]) and again["A"] == pytest.approx(0.75) and again["C"] == 0.0


@pytest.mark.parametrize(
    ("label", "ranking"), [(None, "model"), ("bought_next_90d", "model"), (None, "popularity")]
)
def test_scoring_by_codes_gives_what_scoring_the_strings_gives(monkeypatch, label, ranking):
    """The snapshot is scored in chunks on integer codes of customer and category; the same
    rows scored at once on their strings give the same frame. Ids sort as text ("10" before
    "9"), the names by code point ("Zebra" before "apple" before "Épicerie"), candidates vary
    per customer, ties in score go to the name, and chunks of 2,048 rows split customers."""
    rows = feature_rows(1500, label=None, seed=11)
    names = {"Wines": "Zebra", "Meats": "apple", "Fish": "Épicerie", "Gold": "été"}
    rng = np.random.default_rng(5)
    rows = rows.assign(
        customer_id=rows["customer_id"].str[1:].astype(int).astype(str),
        category=rows["category"].map(names),
    ).iloc[rng.random(len(rows)) < 0.7]
    con = duckdb.connect()
    con.execute("CREATE SCHEMA intermediate")
    con.register("rows", rows)
    con.execute(
        "CREATE TABLE intermediate.int_cross_sell_features AS "
        "SELECT 0 AS days_before_as_of, * FROM rows"
    )
    activity, _ = cross_sell.activity(rows)

    class Rounded:  # coarse probabilities: many ties within a customer
        def predict(self, frame: pd.DataFrame) -> np.ndarray:
            return np.round(frame["confidence_max"].to_numpy(float), 1) / 2

    monkeypatch.setattr(assets, "SCORING_CHUNK_VECTORS", 1)
    chunks = list(assets._scored_chunks(con, 0, Rounded(), activity, label, ranking))
    assert len(chunks) > 1
    by_codes = pd.concat(chunks, ignore_index=True)
    whole = rows.merge(activity, on="customer_id").sort_values(["customer_id", "category"])
    by_strings = cross_sell.score_customers(
        whole.reset_index(drop=True), Rounded().predict(whole), label, ranking
    )
    pd.testing.assert_frame_equal(by_codes, by_strings)
    assert by_codes["customer_id"].is_monotonic_increasing and by_codes["customer_id"].is_unique


def test_hits_count_the_top_ranked_categories_of_new_category_buyers():
    rows = pd.DataFrame(
        {
            "customer_id": ["A", "A", "A", "B", "B", "C"],
            "category": ["Fish", "Gold", "Wines", "Fish", "Gold", "Fish"],
            "category_support": [0.9, 0.5, 0.1, 0.9, 0.5, 0.9],
            "next_adoptions_after_last": [0, 7, 3, 1, 0, 0],
            "recency_days": [5, 5, 5, 50, 50, 9],
            "bought_next_90d": [0, 0, 1, 1, 0, 0],
        }
    )
    scored = cross_sell.score_customers(
        rows, np.array([0.1, 0.2, 0.3, 0.5, 0.4, 0.2]), "bought_next_90d"
    ).set_index("customer_id")
    # A bought Wines: ours ranks it first, popularity last, transitions second
    assert scored.loc["A", "hit_at_1_ours"] == 1.0 and scored.loc["A", "hit_at_1_popularity"] == 0
    assert scored.loc["A", "hit_at_1_transitions"] == 0 and scored.loc["A", "hit_at_3_transitions"]
    assert scored.loc["B", "hit_at_1_transitions"] == 1.0
    assert pd.isna(scored.loc["C", "hit_at_1_ours"])  # bought nothing new: no hit figure
    assert scored["new_category_buyer"].tolist() == [1.0, 1.0, 0.0]


def test_the_ranking_is_chosen_on_the_validation_window_and_applied():
    beaten = {"hit_at_1": 0.20, "hit_at_1_popularity": 0.25, "hit_customers": 40}
    tie = {"hit_at_1": 0.135, "hit_at_1_popularity": 0.135, "hit_customers": 37}
    wins = {"hit_at_1": 0.70, "hit_at_1_popularity": 0.05, "hit_customers": 277}
    undefined = {"hit_at_1": None, "hit_at_1_popularity": None, "hit_customers": 0}
    assert cross_sell.choose_ranking(beaten).chosen == "popularity"
    assert cross_sell.choose_ranking(tie).chosen == "popularity"  # no fitted parameter
    assert cross_sell.choose_ranking(wins).chosen == "model"
    assert cross_sell.choose_ranking(undefined).chosen == "model"
    rows = {r["name"]: r for r in cross_sell.choose_ranking(undefined).as_rows()}
    assert rows["choice"]["detail"] == "model: validation hit@1 undefined"
    assert rows["validation_hit_at_1_model"]["value"] is None
    assert rows["validation_hit_at_1_model"]["detail"].startswith("undefined")
    assert rows["validation_customers"]["value"] == 0.0
    # by popularity, the next-best categories follow the share of owners; each keeps its
    # probability, and the opportunity score is the same
    rows = pd.DataFrame(
        {
            "customer_id": ["A", "A", "A"],
            "category": ["Fish", "Gold", "Wines"],
            "category_support": [0.9, 0.5, 0.9],
        }
    )
    p = np.array([0.1, 0.3, 0.2])
    by_model = cross_sell.score_customers(rows, p).iloc[0]
    by_popularity = cross_sell.score_customers(rows, p, ranking="popularity").iloc[0]
    assert [by_model[f"next_best_category_{k}"] for k in (1, 2, 3)] == ["Gold", "Wines", "Fish"]
    assert [by_popularity[f"next_best_category_{k}"] for k in (1, 2, 3)] == [
        "Wines",  # as popular as Fish, and likelier
        "Fish",
        "Gold",
    ]
    assert by_popularity["next_best_category_1_score"] == 0.2
    assert by_popularity["cross_sell_opportunity_score"] == by_model["cross_sell_opportunity_score"]


def test_the_training_sample_is_bounded_stratified_and_weighted(monkeypatch):
    rows = feature_rows(400, label=None).assign(days_before_as_of=90)
    con = duckdb.connect()
    con.register("frame", rows)
    con.execute("CREATE SCHEMA intermediate")
    con.execute("CREATE TABLE intermediate.int_cross_sell_features AS SELECT * FROM frame")
    monkeypatch.setattr(assets, "MAX_TRAINING_ROWS", 500)
    activity, _ = cross_sell.activity(rows)
    sample = assets._training_sample(con, 90, activity)
    positives = int(rows["bought_next_90d"].sum())
    assert len(sample) == 500 and sample["bought_next_90d"].sum() == 250
    # each stratum's weights add up to its size: the weighted sample stands for every row
    weights = sample.groupby("bought_next_90d")["sample_weight"].sum()
    assert weights[1] == pytest.approx(positives) and weights[0] == pytest.approx(
        len(rows) - positives
    )
    again = assets._training_sample(con, 90, activity)
    pd.testing.assert_frame_equal(sample, again)


def test_the_refits_backtest_scores_a_bounded_draw_of_the_snapshots_customers(monkeypatch):
    rows = feature_rows(300, label=None, seed=7).assign(days_before_as_of=90)
    con = duckdb.connect()
    con.register("frame", rows)
    con.execute("CREATE SCHEMA intermediate")
    con.execute("CREATE TABLE intermediate.int_cross_sell_features AS SELECT * FROM frame")
    # the snapshot also holds customers with no candidate row (they bought every category)
    con.execute(
        """CREATE TABLE intermediate.int_cross_sell_snapshots AS
        SELECT DISTINCT 90 AS days_before_as_of, customer_id, 0.5 AS dataos_cross_sell_score,
            1 AS bought_new_category_next_90d FROM frame
        UNION ALL SELECT 90, 'Z' || range, 0.1, 0 FROM range(20)"""
    )
    activity, _ = cross_sell.activity(rows)
    model, _ = cross_sell.fit(cross_sell.with_activity(rows, activity)[0])
    snapshots, total = assets._backtest_customers(con)
    assert len(snapshots) == total == 320  # under the bound: every customer
    monkeypatch.setattr(assets, "MAX_BACKTEST_CUSTOMERS", 100)
    snapshots, total = assets._backtest_customers(con)
    smallest = con.execute(
        "SELECT customer_id FROM intermediate.int_cross_sell_snapshots "
        "ORDER BY md5(customer_id) LIMIT 100"
    ).df()
    assert total == 320 and len(snapshots) == 100
    assert snapshots["customer_id"].is_monotonic_increasing
    assert set(snapshots["customer_id"]) == set(smallest["customer_id"])
    drawn = activity[activity["customer_id"].isin(snapshots["customer_id"])]
    with pytest.raises(dg.Failure, match="without activity features"):
        list(assets._scored_chunks(con, 90, model, drawn, "bought_next_90d"))
    scored = pd.concat(
        assets._scored_chunks(con, 90, model, drawn, "bought_next_90d", only_these_customers=True)
    )
    assert list(scored["customer_id"]) == list(drawn["customer_id"])
    # each drawn customer scores as when every customer is scored
    everyone = pd.concat(assets._scored_chunks(con, 90, model, activity, "bought_next_90d"))
    pd.testing.assert_frame_equal(
        scored.reset_index(drop=True),
        everyone[everyone["customer_id"].isin(drawn["customer_id"])].reset_index(drop=True),
    )


def test_the_within_customer_rank_is_the_same_whatever_the_rows_order():
    """Rows in customer and category order take a shorter sort (ties already in category
    order); shuffled rows the full one: the same rank for every row, ties by category."""
    rows = feature_rows(400, label=None, seed=8).sort_values(["customer_id", "category"])
    rows = rows.reset_index(drop=True)
    score = np.round(np.random.default_rng(8).random(len(rows)), 1)  # many ties
    in_order = cross_sell.within_customer_rank(rows, [score])
    shuffled = np.random.default_rng(9).permutation(len(rows))
    again = cross_sell.within_customer_rank(rows.iloc[shuffled], [score[shuffled]])
    np.testing.assert_array_equal(again, in_order[shuffled])
    first = rows.assign(score=score)[in_order == 1]
    best = rows.assign(score=score).sort_values(
        ["customer_id", "score", "category"], ascending=[True, False, True]
    )
    assert list(first["category"]) == list(best.groupby("customer_id")["category"].first())


def test_chunked_scoring_equals_scoring_everything_at_once(monkeypatch):
    rows = feature_rows(1500, label=None, seed=4).assign(days_before_as_of=0)
    rows = rows.drop(index=rows.index[5::29])  # customers with 3 or 4 rows: chunks split them
    con = duckdb.connect()
    con.register("frame", rows)
    con.execute("CREATE SCHEMA intermediate")
    con.execute("CREATE TABLE intermediate.int_cross_sell_features AS SELECT * FROM frame")
    activity, _ = cross_sell.activity(rows)
    model, _ = cross_sell.fit(cross_sell.with_activity(rows, activity)[0])
    whole = pd.concat(assets._scored_chunks(con, 0, model, activity), ignore_index=True)
    monkeypatch.setattr(assets, "SCORING_CHUNK_VECTORS", 1)  # 2,048 rows: customers split
    parts = list(assets._scored_chunks(con, 0, model, activity))
    chunked = pd.concat(parts, ignore_index=True)
    assert len(parts) > 1
    pd.testing.assert_frame_equal(whole, chunked)
    assert len(whole) == 1500


def test_prefetched_chunks_arrive_in_order_up_to_the_empty_one_and_a_failed_fetch_raises():
    frames = iter([pd.DataFrame({"a": [1]}), pd.DataFrame({"a": [2, 3]}), pd.DataFrame({"a": []})])
    calls = []

    def fetch():
        calls.append(1)
        return next(frames)

    got = list(assets._prefetched(fetch))
    assert [f["a"].tolist() for f in got] == [[1], [2, 3], []]
    assert len(calls) == 3  # nothing fetched after the empty frame

    def broken():
        raise duckdb.IOException("read failed")

    with pytest.raises(duckdb.IOException, match="read failed"):
        list(assets._prefetched(broken))


def test_calibration_recovers_a_planted_hazard_scale_and_keeps_every_ranking():
    """Scores that over-state the hazard by 1 / 0.6: the fit finds k = 0.6, the calibrated
    mean meets the observed rate, the log loss falls, and the ranking (AUC) is unchanged."""
    rng = np.random.default_rng(3)
    score = rng.beta(0.5, 4.0, 40_000).round(6)  # as published: 9 decimals keep them apart
    truth = 1 - (1 - score) ** 0.6
    label = (rng.random(score.size) < truth).astype(float)
    found = cross_sell.fit_calibration(np.r_[score, 0.0], np.r_[label, 0.0])
    assert found.status == "fitted" and found.detail is None
    assert found.hazard_scale == pytest.approx(0.6, abs=0.02)
    assert found.customers == (score > 0).sum()  # a score of 0 tells nothing about k
    assert found.mean_after == pytest.approx(found.observed_rate, abs=0.002)
    assert found.mean_before > found.observed_rate + 0.02
    assert found.log_loss_after < found.log_loss_before
    after = found.apply(score)
    assert cross_sell.roc_auc(label, after) == cross_sell.roc_auc(label, score)
    np.testing.assert_allclose(found.undo(after), score, atol=1e-8)
    # the customer's score is the calibrated per-category probabilities combined
    rows = pd.DataFrame({"customer_id": ["A", "A", "B"], "category": ["x", "y", "x"]})
    p = np.array([0.3, 0.2, 0.1])
    combined = cross_sell.customer_scores(rows, found.apply(p))
    np.testing.assert_allclose(
        combined, found.apply(cross_sell.customer_scores(rows, p)), atol=2e-9
    )


def test_calibration_without_enough_buyers_is_the_identity_and_says_why():
    found = cross_sell.fit_calibration(np.full(100, 0.2), np.r_[np.ones(3), np.zeros(97)])
    assert found.status == "identity" and found.hazard_scale == 1.0
    assert "3 buyers" in found.detail and found.mean_after is None
    rows = {r["name"]: r for r in found.as_rows()}
    assert rows["hazard_scale"]["value"] == 1.0
    assert rows["mean_after"]["value"] is None and rows["mean_after"]["detail"].startswith("not")
    np.testing.assert_array_equal(found.apply(np.array([0.0, 0.25, 1.0])), [0.0, 0.25, 1.0])


# --- checks -----------------------------------------------------------------------------------


def model_marts(con: duckdb.DuckDBPyConnection, clv_nan: bool, status: str = "ok") -> None:
    con.execute("CREATE SCHEMA intermediate; CREATE SCHEMA marts")
    con.execute(
        "CREATE TABLE intermediate.int_customer_rfm AS "
        "SELECT * FROM (VALUES ('A', 1), ('B', 0)) t(customer_id, frequency)"
    )
    value = "'NaN'::DOUBLE" if clv_nan else "1.5"
    con.execute(
        f"""CREATE TABLE marts.customer_lifetime_value AS SELECT * FROM (VALUES
        ('A', 10.0, 1.0, 0.5, 20.0, 20.0), ('B', 5.0, {value}, 1.0, 20.0, 30.0),
        ('P', 0.0, NULL, NULL, NULL, 0.0)) t(customer_id, historical_clv,
        expected_purchases_365d, probability_alive, expected_avg_order_value, predicted_clv_365d)"""
    )
    con.execute(
        "CREATE TABLE marts.cross_sell_recommendations AS SELECT * FROM (VALUES "
        "('A', 0.2, 'Fish', 0.2::DOUBLE, 'Gold', 0.1::DOUBLE, NULL, NULL::DOUBLE), "
        "('B', 0.0, NULL, NULL, NULL, NULL, NULL, NULL), "
        "('P', NULL, NULL, NULL, NULL, NULL, NULL, NULL)) t(customer_id, "
        "cross_sell_opportunity_score, next_best_category_1, next_best_category_1_score, "
        "next_best_category_2, next_best_category_2_score, next_best_category_3, "
        "next_best_category_3_score)"
    )
    ranking = cross_sell.choose_ranking({"hit_at_1": None, "hit_at_1_popularity": None})
    calibration = pd.DataFrame(
        cross_sell.fit_calibration(np.zeros(3), np.zeros(3)).as_rows() + ranking.as_rows()
    )
    con.register("calibration", calibration)
    con.execute("CREATE TABLE marts.cross_sell_model AS SELECT * FROM calibration")
    con.execute(
        f"""CREATE TABLE marts.clv_model_parameters AS SELECT 'mbgnbd' AS purchase_model,
        0.2 AS r, 4.0 AS alpha,
        2263.0 AS a, 144.0 AS b, NULL::DOUBLE AS p, NULL::DOUBLE AS q, NULL::DOUBLE AS gamma,
        '{status}' AS fit_status, 'degenerate' AS gamma_gamma_fit_status"""
    )


def outcome(con, name: str) -> dg.AssetCheckResult:
    return checks.evaluate(next(c for c in checks.CHECKS if c.name == name), con)


def test_model_checks_pass_on_defined_outputs_and_fail_on_nan():
    good, bad = duckdb.connect(), duckdb.connect()
    model_marts(good, clv_nan=False, status="degenerate")
    model_marts(bad, clv_nan=True, status="failed")
    assert outcome(good, "model_outputs_defined").passed
    failed = outcome(bad, "model_outputs_defined")
    assert not failed.passed and failed.metadata["measured"].value == 1
    assert failed.severity == dg.AssetCheckSeverity.ERROR
    assert outcome(good, "scores_defined").passed
    bad.execute("UPDATE marts.cross_sell_recommendations SET cross_sell_opportunity_score = 1.2")
    assert not outcome(bad, "scores_defined").passed
    assert outcome(good, "next_best_scores_defined").passed
    bad.execute(
        "UPDATE marts.cross_sell_recommendations SET next_best_category_2_score = 'NaN' "
        "WHERE customer_id = 'A'"
    )
    assert outcome(bad, "next_best_scores_defined").metadata["measured"].value == 1
    assert outcome(good, "fit_not_failed").passed  # NULL p, q, gamma: a documented fallback
    assert not outcome(bad, "fit_not_failed").passed
    warn = outcome(good, "fit_not_degenerate")
    assert not warn.passed and warn.severity == dg.AssetCheckSeverity.WARN
    good.execute("UPDATE marts.clv_model_parameters SET purchase_model = NULL")
    assert not outcome(good, "fit_not_failed").passed  # the fit must name its model
    assert outcome(good, "calibration_defined").passed  # NULL figures, each with its reason
    bad.execute("UPDATE marts.cross_sell_model SET detail = NULL WHERE name = 'mean_after'")
    assert outcome(bad, "calibration_defined").metadata["measured"].value == 1
    bad.execute("UPDATE marts.cross_sell_model SET value = 'NaN' WHERE name = 'hazard_scale'")
    assert outcome(bad, "calibration_defined").metadata["measured"].value == 2
    good.execute("DELETE FROM marts.cross_sell_model WHERE name = 'hazard_scale'")
    assert not outcome(good, "calibration_defined").passed  # the scale must be recorded
    assert outcome(good, "ranking_defined").passed
    good.execute(
        "UPDATE marts.cross_sell_model SET detail = 'random: why not' WHERE name = 'choice'"
    )
    assert not outcome(good, "ranking_defined").passed  # model or popularity, nothing else
    bad.execute("DELETE FROM marts.cross_sell_model WHERE kind = 'ranking'")
    assert outcome(bad, "ranking_defined").metadata["measured"].value == 1  # none recorded


def test_model_checks_are_blocking_validity_checks_that_run_on_the_warehouse(tmp_path):
    path = tmp_path / "wh.duckdb"
    with duckdb.connect(str(path)) as con:
        model_marts(con, clv_nan=False)
    product = Catalog.load(Settings().descriptors_dir).consumer
    definitions = checks.model_output_checks(product)
    specs = [spec for d in definitions for spec in d.check_specs]
    assert all(s.description.startswith("[validity]") for s in specs)
    assert {s.name for s in specs if s.blocking} == {
        "model_outputs_defined",
        "scores_defined",
        "next_best_scores_defined",
        "calibration_defined",
        "ranking_defined",
        "fit_not_failed",
    }
    result = definitions[0](warehouse=Warehouse(database=str(path)))
    assert result.passed and result.metadata["target"].value == 0
