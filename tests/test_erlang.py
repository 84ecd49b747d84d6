"""Erlang C / Erlang A core: DESIGN §4 vectors, independent oracles, properties, limits."""

from __future__ import annotations

import math
import time
from fractions import Fraction

import pytest
from hypothesis import assume, example, given, settings
from hypothesis import strategies as st

from stream.kpi.erlang import (
    ERLANG_A_MAX_SCALE,
    ErlangADomainError,
    QueueLoad,
    StaffingInputError,
    Targets,
    erlang_b,
    erlang_c,
    evaluate,
    log_gamma_inc,
    positions_for,
    required_agents,
)


def close_to(actual: float, expected: str) -> bool:
    """True when ``actual`` rounds to ``expected`` at the digits given (half a last unit)."""
    decimals = len(expected.split(".")[1]) if "." in expected else 0
    return abs(actual - float(expected)) <= 0.5 * 10.0 ** -decimals + 1e-12


DESIGN_LOAD = QueueLoad.per_interval(100, 30, 180)  # 100 contacts / 30 min, AHT 3 min
DESIGN_TARGETS = Targets(sl_target=0.8, threshold_s=20, max_occupancy=0.85, shrinkage=0.3)


# ------------------------------------------------------------------- DESIGN §4 vectors


def test_design_load_is_ten_erlangs():
    assert DESIGN_LOAD.arrivals_per_h == 200
    assert DESIGN_LOAD.offered_erlangs == pytest.approx(10.0, abs=1e-12)


def test_erlang_c_vector_required():
    r = required_agents(DESIGN_LOAD, DESIGN_TARGETS)
    assert (r.agents, r.positions) == (14, 20)
    m = r.metrics
    assert m.model == "erlang_c"
    assert close_to(m.service_level, "0.888")
    assert close_to(m.occupancy, "0.714")
    assert close_to(m.p_wait, "0.174")


def test_erlang_c_vector_max_occupancy_07():
    r = required_agents(DESIGN_LOAD, Targets(0.8, 20, 0.7, 0.3))
    assert (r.agents, r.positions) == (15, 22)
    assert close_to(r.metrics.service_level, "0.941")
    assert r.metrics.occupancy <= 0.7


def test_erlang_c_vector_13_agents():
    m = evaluate(DESIGN_LOAD, 13, threshold_s=20)
    assert abs(m.service_level - 0.7956) <= 1e-4 and close_to(m.service_level, "0.7956")
    assert abs(m.p_wait - 0.2853) <= 1e-4 and close_to(m.p_wait, "0.2853")
    assert close_to(m.asa_s, "17.1")
    assert m.asa_s == m.mean_wait_s  # nobody abandons in Erlang C


def test_erlang_a_vector_14_agents_patience_5_min():
    load = QueueLoad.per_interval(100, 30, 180, patience_s=300)
    m = evaluate(load, 14, threshold_s=20)
    assert m.model == "erlang_a"
    for actual, expected in (
        (m.p_wait, "0.14526"),
        (m.p_abandon, "0.013984"),
        (m.occupancy, "0.704297"),
        (m.mean_wait_s / 60, "0.069919"),
        (m.service_level, "0.916792"),
    ):
        assert abs(actual - float(expected)) <= 1e-4
        assert close_to(actual, expected), (actual, expected)
    assert close_to(m.mean_wait_s, "4.195")
    assert close_to(m.asa_s, "3.878")


def test_required_agents_is_minimal_for_both_models():
    for patience in (None, 300.0):
        load = QueueLoad.per_interval(100, 30, 180, patience_s=patience)
        r = required_agents(load, DESIGN_TARGETS)
        below = evaluate(load, r.agents - 1, 20)
        assert below.service_level < 0.8 or below.occupancy > 0.85
    assert required_agents(QueueLoad.per_interval(100, 30, 180, patience_s=300), DESIGN_TARGETS).agents == 13


# ---------------------------------------------------------------- independent oracles


def _erlang_c_exact(s: int, a: Fraction) -> Fraction:
    """Textbook Erlang C with exact rationals and factorials (small s only)."""
    top = a**s / math.factorial(s) * Fraction(s) / (s - a)
    return top / (sum(a**k / math.factorial(k) for k in range(s)) + top)


@pytest.mark.parametrize("s,a", [(1, "0.5"), (3, "2.5"), (14, "10"), (13, "10"), (30, "21.7"), (60, "55")])
def test_erlang_c_matches_exact_rational_formula(s, a):
    exact = _erlang_c_exact(s, Fraction(a))
    assert erlang_c(s, float(Fraction(a))) == pytest.approx(float(exact), rel=1e-11)


def test_erlang_b_log_space_matches_recursion():
    for a in (0.01, 1.0, 7.5, 100.0, 1234.5):
        b = 1.0
        for s in range(1, 1600):
            b = a * b / (s + a * b)
            if s % 37 == 0 or s < 5:
                assert erlang_b(s, a) == pytest.approx(b, rel=1e-10, abs=1e-300), (s, a)


def _poisson_cdf(k: int, lam: float) -> float:
    return math.fsum(math.exp(-lam + j * math.log(lam) - math.lgamma(j + 1)) for j in range(k + 1))


@pytest.mark.parametrize("a,z", [(1, 0.3), (1, 40.0), (5, 2.0), (5, 9.0), (50, 45.0), (50, 60.0),
                                 (1000, 1000.0), (1000, 950.0), (1000, 1070.0)])
def test_incomplete_gamma_matches_poisson_sums(a, z):
    log_p, log_q = log_gamma_inc(a, z)
    q = _poisson_cdf(a - 1, z)  # Q(a, z) = P(Poisson(z) ≤ a − 1) for integer a
    assert math.exp(log_q) == pytest.approx(q, rel=1e-9)
    assert math.exp(log_p) == pytest.approx(1 - q, rel=1e-9, abs=1e-15)


@pytest.mark.parametrize("z", [1e-6, 0.2, 1.0, 3.0, 30.0])
def test_incomplete_gamma_half_is_erf(z):
    log_p, log_q = log_gamma_inc(0.5, z)
    assert math.exp(log_p) == pytest.approx(math.erf(math.sqrt(z)), rel=1e-12)
    assert math.exp(log_q) == pytest.approx(math.erfc(math.sqrt(z)), rel=1e-10)


def test_incomplete_gamma_far_tails_stay_finite_in_log_space():
    log_p, log_q = log_gamma_inc(5000.0, 2000.0)  # P underflows as a float; its log does not
    assert math.isfinite(log_p) and log_p < -700 and log_q == pytest.approx(0.0, abs=1e-300)
    log_p, log_q = log_gamma_inc(10.0, 5000.0)
    assert math.isfinite(log_q) and log_q < -4000 and log_p == 0.0


def _erlang_a_oracle(lam: float, mu: float, theta: float, s: int, t: float, jmax: int = 160,
                     steps: int = 800) -> dict[str, float]:
    """Erlang A straight from its Markov chain: birth–death stationary law, the tagged
    customer's absorbing chain for answered waits, and RK4 for answered-within-T."""
    n_max = s + jmax
    w = [1.0]
    for n in range(1, n_max + 1):
        w.append(w[-1] * lam / (min(n, s) * mu + max(n - s, 0) * theta))
    total = math.fsum(w)
    pi = [v / total for v in w]
    p_wait = math.fsum(pi[s:])
    queue = math.fsum((n - s) * pi[n] for n in range(s, n_max + 1))
    p_ab = theta * queue / lam
    busy = math.fsum(min(n, s) * pi[n] for n in range(n_max + 1))
    # answered wait of a customer with k ahead: absorbing chain, first-step analysis
    g_prev, e_prev, e = 1.0, 0.0, []
    for k in range(jmax):
        r = s * mu + k * theta + theta
        p = (s * mu + k * theta) / r
        e_k = p * (g_prev / r + e_prev)
        g_prev, e_prev = p * g_prev, e_k
        e.append(e_k)
    # u_k(t) = P(answered within t | k ahead): u_k' = (sμ + kθ)(u_{k-1} − u_k) − θ u_k
    u = [0.0] * jmax

    def deriv(v):
        return [(s * mu + k * theta) * ((v[k - 1] if k else 1.0) - v[k]) - theta * v[k] for k in range(jmax)]

    dt = t / steps
    for _ in range(steps):
        k1 = deriv(u)
        k2 = deriv([x + dt / 2 * d for x, d in zip(u, k1)])
        k3 = deriv([x + dt / 2 * d for x, d in zip(u, k2)])
        k4 = deriv([x + dt * d for x, d in zip(u, k3)])
        u = [x + dt / 6 * (a + 2 * b + 2 * c + d) for x, a, b, c, d in zip(u, k1, k2, k3, k4)]
    sl = math.fsum(pi[:s]) + math.fsum(pi[s + j] * u[j] for j in range(jmax))
    asa = math.fsum(pi[s + j] * e[j] for j in range(jmax)) / (1 - p_ab)
    return {"p_wait": p_wait, "p_abandon": p_ab, "occupancy": busy / s, "mean_wait_s": queue / lam,
            "service_level": sl, "asa_s": asa}


@pytest.mark.parametrize("contacts_per_h,aht,patience,agents,concurrency,t", [
    (200, 180, 300, 14, 1, 20),    # the DESIGN load
    (200, 180, 60, 8, 1, 20),      # overloaded: only abandonment keeps it stable
    (90, 240, 120, 2, 3, 60),      # chat: 2 agents × 3 concurrent = 6 servers
    (1200, 30, 45, 9, 1, 10),      # short calls, impatient callers
])
def test_erlang_a_matches_markov_chain_oracle(contacts_per_h, aht, patience, agents, concurrency, t):
    load = QueueLoad(contacts_per_h, aht, concurrency, patience)
    m = evaluate(load, agents, t)
    o = _erlang_a_oracle(contacts_per_h / 3600, 1 / aht, 1 / patience, agents * concurrency, t)
    for key in ("p_wait", "p_abandon", "occupancy", "service_level"):
        assert getattr(m, key) == pytest.approx(o[key], abs=2e-7), key
    for key in ("mean_wait_s", "asa_s"):
        assert getattr(m, key) == pytest.approx(o[key], rel=1e-6), key


# ------------------------------------------------------------------------- properties

loads = st.builds(
    QueueLoad,
    arrivals_per_h=st.floats(1, 4000),
    aht_s=st.floats(15, 1800),
    concurrency=st.integers(1, 3),
)


@settings(max_examples=200, deadline=None)
@given(load=loads, n=st.integers(1, 400), t=st.floats(0, 300))
def test_erlang_c_more_agents_never_hurt(load, n, t):
    assume(load.offered_erlangs < 500)
    m0, m1 = evaluate(load, n, t), evaluate(load, n + 1, t)
    assert m1.service_level >= m0.service_level - 1e-12
    assert m1.p_wait <= m0.p_wait + 1e-12
    assert m1.asa_s <= m0.asa_s * (1 + 1e-12) + 1e-12
    for m in (m0, m1):
        assert 0 <= m.p_wait <= 1 and 0 <= m.service_level <= 1 and 0 <= m.occupancy <= 1
        assert not math.isnan(m.asa_s)


@settings(max_examples=150, deadline=None)
@given(load=loads, patience=st.floats(5, 3600), n=st.integers(1, 300), t=st.floats(0, 300))
def test_erlang_a_more_agents_never_hurt(load, patience, n, t):
    assume(load.offered_erlangs < 400)
    load = QueueLoad(load.arrivals_per_h, load.aht_s, load.concurrency, patience)
    m0, m1 = evaluate(load, n, t), evaluate(load, n + 1, t)
    assert m1.service_level >= m0.service_level - 1e-12
    assert m1.p_wait <= m0.p_wait + 1e-12
    assert m1.asa_s <= m0.asa_s * (1 + 1e-9) + 1e-12
    assert m1.p_abandon <= m0.p_abandon + 1e-12
    assert m1.occupancy <= m0.occupancy + 1e-12  # what lets required_agents bisect
    for m in (m0, m1):
        for v in (m.p_wait, m.p_abandon, m.service_level, m.occupancy):
            assert 0 <= v <= 1
        assert math.isfinite(m.asa_s) and math.isfinite(m.mean_wait_s)
        assert m.service_level <= 1 - m.p_abandon + 1e-12  # SL counts abandons as misses


@settings(max_examples=150, deadline=None)
@given(load=loads, p1=st.floats(5, 3600), factor=st.floats(1.01, 20), n=st.integers(1, 200))
def test_erlang_a_more_patience_fewer_abandons(load, p1, factor, n):
    assume(load.offered_erlangs < 300)
    short = evaluate(QueueLoad(load.arrivals_per_h, load.aht_s, load.concurrency, p1), n, 20)
    long = evaluate(QueueLoad(load.arrivals_per_h, load.aht_s, load.concurrency, p1 * factor), n, 20)
    assert long.p_abandon <= short.p_abandon + 1e-12


@st.composite
def loads_below(draw, max_agents: int, max_rho: float) -> tuple[QueueLoad, int]:
    """(load, agents) with utilisation at most max_rho by construction, from the same
    ranges as `loads`: an assume() on ρ threw away most draws, and hypothesis's
    filter_too_much health check failed a CI run (9 draws kept of 59)."""
    n = draw(st.integers(1, max_agents))
    aht_s = draw(st.floats(15, 1800))
    concurrency = draw(st.integers(1, 3))
    rho = draw(st.floats(0.0, max_rho))
    arrivals = min(4000.0, max(1.0, rho * n * concurrency * 3600 / aht_s))
    return QueueLoad(arrivals, aht_s, concurrency), n


@settings(max_examples=60, deadline=None)
@given(case=loads_below(60, 0.95), t=st.floats(0, 120))
@example(case=(QueueLoad(52.0, 65.0, 1), 1), t=0.0)  # ρ = 0.94 on one agent: failed at 10⁵ AHT
def test_erlang_a_tends_to_erlang_c_as_patience_grows(case, t):
    load, n = case
    servers = n * load.concurrency
    assume(load.offered_erlangs / servers <= 0.95)
    c = evaluate(load, n, t)
    # Erlang A's gap to Erlang C shrinks like 1 / ((1 − ρ)² · servers · patience/AHT): at
    # ρ = 0.94 on one agent a patience of 10⁵ AHT still leaves 0.5 % on ASA (the chain oracle
    # agrees). So take the longest patience the numeric domain allows, which keeps that gap
    # below ~1e-5 for every load drawn here.
    ratio = 0.5 * ERLANG_A_MAX_SCALE / max(servers, load.offered_erlangs)
    a = evaluate(QueueLoad(load.arrivals_per_h, load.aht_s, load.concurrency, load.aht_s * ratio), n, t)
    assert a.p_abandon < 1e-3
    assert a.p_wait == pytest.approx(c.p_wait, abs=1e-3)
    assert a.service_level == pytest.approx(c.service_level, abs=1e-3)
    assert a.asa_s == pytest.approx(c.asa_s, rel=5e-3, abs=1e-6)


def test_erlang_a_error_to_erlang_c_shrinks_with_patience():
    c = evaluate(DESIGN_LOAD, 13, 20)
    errors = []
    for patience in (60, 600, 6_000, 60_000, 600_000, 6_000_000):
        a = evaluate(QueueLoad(200, 180, 1, patience), 13, 20)
        errors.append(abs(a.service_level - c.service_level) + abs(a.p_wait - c.p_wait) + abs(a.asa_s - c.asa_s) / 100)
    assert errors == sorted(errors, reverse=True)
    assert errors[-1] < 1e-4


@settings(max_examples=100, deadline=None)
@given(load=loads, patience=st.none() | st.floats(10, 1800), sl=st.floats(0.5, 0.95),
       occ=st.floats(0.6, 1.0), t=st.floats(5, 120))
def test_required_agents_meets_targets_and_is_minimal(load, patience, sl, occ, t):
    assume(load.offered_erlangs < 300)
    load = QueueLoad(load.arrivals_per_h, load.aht_s, load.concurrency, patience)
    targets = Targets(sl, t, occ, 0.3)
    r = required_agents(load, targets)
    assert r.metrics.service_level >= sl - 1e-12 and r.metrics.occupancy <= occ + 1e-12
    assert r.positions == math.ceil(round(r.agents / 0.7, 9))
    if r.agents > 1:
        below = evaluate(load, r.agents - 1, t)
        assert not (below.stable and below.service_level >= sl - 1e-12 and below.occupancy <= occ + 1e-12)


def test_concurrency_means_agents_times_concurrency_servers():
    chat = QueueLoad(120, 600, concurrency=3)
    one = QueueLoad(120, 600, concurrency=1)
    for n in (7, 8, 10):
        a, b = evaluate(chat, n, 60), evaluate(one, 3 * n, 60)
        assert a.servers == b.servers == 3 * n
        assert (a.p_wait, a.service_level, a.asa_s) == pytest.approx((b.p_wait, b.service_level, b.asa_s))
        assert a.occupancy == pytest.approx(20 / (3 * n))
    r = required_agents(chat, Targets(0.8, 60, 0.85, 0.3))
    assert r.metrics.servers == 3 * r.agents
    ok, short = evaluate(one, 3 * r.agents, 60), evaluate(one, 3 * (r.agents - 1), 60)
    assert ok.service_level >= 0.8 and ok.occupancy <= 0.85
    assert short.service_level < 0.8 or short.occupancy > 0.85


# --------------------------------------------------------------------- large loads


@pytest.mark.parametrize("patience", [None, 300.0, 30.0])
def test_five_thousand_erlangs_is_finite_sensible_and_quick(patience):
    load = QueueLoad(5000 * 3600 / 180, 180, patience_s=patience)  # 5,000 Erlangs
    start = time.perf_counter()
    r = required_agents(load, Targets(0.8, 20, 1.0, 0.3))
    r85 = required_agents(load, Targets(0.8, 20, 0.85, 0.3))
    elapsed = time.perf_counter() - start
    assert elapsed < 0.5
    m = r.metrics
    for v in (m.p_wait, m.service_level, m.asa_s, m.occupancy, m.p_abandon, m.mean_wait_s):
        assert math.isfinite(v)
    assert m.service_level >= 0.8
    if patience is None:
        assert 5000 < r.agents < 5100  # square-root staffing: a + O(sqrt(a))
    else:
        erlang_c_agents = required_agents(QueueLoad(load.arrivals_per_h, 180), Targets(0.8, 20, 1.0, 0.3)).agents
        assert 3500 < r.agents <= erlang_c_agents
    assert r85.agents == math.ceil(5000 / 0.85)  # occupancy binds at this size
    assert r85.positions == math.ceil(round(r85.agents / 0.7, 9))


def test_huge_and_overloaded_systems_stay_finite():
    assert 0 < erlang_b(10_000, 9_000) < 1e-20
    assert erlang_b(10_000, 20_000) == pytest.approx(0.5, abs=1e-3)  # ≈ 1 − s/a when overloaded
    assert 0 < erlang_c(100_000, 99_000) < 1e-2
    assert erlang_c(5_000, 5_000) == 1.0
    over = evaluate(QueueLoad(5000 * 20, 180, patience_s=300), 4000, 20)
    assert over.p_abandon == pytest.approx(0.2, abs=1e-6)  # fluid limit 1 − s/a
    assert over.occupancy == pytest.approx(1.0, abs=1e-6)
    assert math.isfinite(over.asa_s) and over.asa_s > 0
    unstable = evaluate(QueueLoad(5000 * 20, 180), 4000, 20)
    assert not unstable.stable and unstable.asa_s == math.inf and unstable.service_level == 0.0
    big = required_agents(QueueLoad(50_000 * 20, 180), Targets(0.8, 20, 1.0, 0.3))
    assert 50_000 < big.agents < 50_300


def test_no_load_needs_no_agents():
    r = required_agents(QueueLoad(0, 180), DESIGN_TARGETS)
    assert (r.agents, r.positions) == (0, 0)
    m = evaluate(QueueLoad(0, 180, patience_s=60), 3, 20)
    assert m.p_wait == 0 and m.service_level == 1 and m.occupancy == 0


# ----------------------------------------------------------------------- positions


def test_positions_round_up_but_not_on_float_noise():
    assert 21 / (1 - 0.3) > 30  # the trap: binary floating point
    assert positions_for(21, 0.3) == 30
    assert positions_for(14, 0.3) == 20
    assert positions_for(15, 0.3) == 22
    assert positions_for(14, 0.0) == 14
    assert positions_for(1, 0.5) == 2
    assert positions_for(3, 0.5) == 6


# --------------------------------------------------------------------- bad inputs


@pytest.mark.parametrize("kwargs,field", [
    ({"arrivals_per_h": -1, "aht_s": 180}, "arrivals_per_h"),
    ({"arrivals_per_h": math.nan, "aht_s": 180}, "arrivals_per_h"),
    ({"arrivals_per_h": math.inf, "aht_s": 180}, "arrivals_per_h"),
    ({"arrivals_per_h": "10", "aht_s": 180}, "arrivals_per_h"),
    ({"arrivals_per_h": 10, "aht_s": 0}, "aht_s"),
    ({"arrivals_per_h": 10, "aht_s": -3}, "aht_s"),
    ({"arrivals_per_h": 10, "aht_s": 180, "concurrency": 0}, "concurrency"),
    ({"arrivals_per_h": 10, "aht_s": 180, "concurrency": 1.5}, "concurrency"),
    ({"arrivals_per_h": 10, "aht_s": 180, "concurrency": True}, "concurrency"),
    ({"arrivals_per_h": 10, "aht_s": 180, "patience_s": 0}, "patience_s"),
    ({"arrivals_per_h": 10, "aht_s": 180, "patience_s": -5}, "patience_s"),
])
def test_bad_load_raises_clear_error(kwargs, field):
    with pytest.raises(StaffingInputError, match=field):
        QueueLoad(**kwargs)


@pytest.mark.parametrize("kwargs,field", [
    ({"sl_target": 0}, "sl_target"),
    ({"sl_target": 1}, "sl_target"),
    ({"sl_target": 1.2}, "sl_target"),
    ({"sl_target": -0.1}, "sl_target"),
    ({"threshold_s": -1}, "threshold_s"),
    ({"max_occupancy": 0}, "max_occupancy"),
    ({"max_occupancy": 1.01}, "max_occupancy"),
    ({"shrinkage": -0.1}, "shrinkage"),
    ({"shrinkage": 1.0}, "shrinkage"),
    ({"shrinkage": math.nan}, "shrinkage"),
])
def test_bad_targets_raise_clear_error(kwargs, field):
    with pytest.raises(StaffingInputError, match=field) as exc:
        Targets(**kwargs)
    assert isinstance(exc.value, ValueError)


def test_bad_evaluation_arguments():
    with pytest.raises(StaffingInputError, match="agents"):
        evaluate(DESIGN_LOAD, 0, 20)
    with pytest.raises(StaffingInputError, match="threshold_s"):
        evaluate(DESIGN_LOAD, 3, -1)
    with pytest.raises(StaffingInputError, match="contacts"):
        QueueLoad.per_interval(-1, 30, 180)
    with pytest.raises(StaffingInputError, match="interval_min"):
        QueueLoad.per_interval(10, 0, 180)
    with pytest.raises(StaffingInputError, match="load"):
        erlang_b(3, -1.0)


def test_erlang_a_outside_numeric_domain_says_use_erlang_c():
    with pytest.raises(ErlangADomainError, match="Erlang C"):
        evaluate(QueueLoad(200, 1, patience_s=1e9), 14, 20)


@pytest.mark.parametrize("x,y", [(5.0, 3.0), (800.0, 790.0), (1000.0, 3500.0), (20_000.0, 26_000.0)])
def test_answered_wait_series_from_the_mode_matches_plain_sum(x, y):
    """The mode-outwards summation (digamma start when the mode is far out) equals the
    plain sum from j = 0, done here in log space term by term."""
    from stream.kpi.erlang import _erlang_a_answered_wait_sum

    log_w, h, logs, vals = 0.0, 0.0, [], []
    for j in range(int(y - x) + 40 * int(math.sqrt(y)) + 200):
        if j:
            log_w += math.log(y) - math.log(x + j)
        h += 1.0 / (x + j + 1.0)
        logs.append(log_w)
        vals.append(x / (x + j + 1.0) * h)
    top = max(logs)
    weights = [math.exp(v - top) for v in logs]
    expected = math.fsum(w * v for w, v in zip(weights, vals)) / math.fsum(weights)
    assert _erlang_a_answered_wait_sum(x, y) == pytest.approx(expected, rel=1e-9)
