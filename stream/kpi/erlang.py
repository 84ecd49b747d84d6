"""Erlang C and Erlang A (Palm/M/M/n+M) staffing: the pure core, no I/O.

Owns the queueing formulas behind ``required_agents`` (DESIGN §4). Everything is computed
in log space or by stable recursions so that thousands of agents and thousands of Erlangs
neither overflow nor return NaN: a result is finite and sensible, or an error is raised.

Model and notation (per queue):
    λ  arrivals per second, AHT = 1/μ mean handle time, a = λ/μ offered load (Erlangs),
    s  servers = agents × concurrency, T service-level threshold,
    θ = 1/patience  (Erlang A only: exponential patience; abandon when the wait exceeds it).

Concurrency is an approximation: an agent handling c chats at once is treated as c
independent servers, each with the observed per-contact handle time. It ignores that
handle time grows with concurrency, so feed it the AHT measured under that concurrency.

Erlang A follows Garnett–Mandelbaum–Reiman (2002) and Mandelbaum–Zeltyn (2004/2007), with
x = sμ/θ, y = λ/θ, A(x, y) = x e^y y^-x γ(x, y) and E = Erlang B(s, a):
    P(wait)            = A E / (1 + (A − 1) E)
    P(abandon | wait)  = 1 − (1 − 1/A) / ρ,    ρ = a / s
    mean wait (all)    = P(abandon) / θ                         (Little's law on abandons)
    occupancy          = ρ (1 − P(abandon))
    P(offered wait > t | wait) = γ(x, y e^-θt) / γ(x, y)
and, integrating that against the patience law,
    P(answered within T | wait) = (P(x+1, y) − P(x+1, y e^-θT)) / (ρ P(x, y))
with P the regularized lower incomplete gamma. SL = answered within T / all arrivals.
ASA of answered contacts has no closed form in γ alone; it is the exact series over the
queue position an arrival finds (see ``_erlang_a_answered_wait_sum``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

__all__ = [
    "StaffingInputError",
    "StaffingNumericalError",
    "ErlangADomainError",
    "ERLANG_A_MAX_SCALE",
    "QueueLoad",
    "Targets",
    "QueueMetrics",
    "StaffingResult",
    "erlang_b",
    "erlang_c",
    "log_gamma_inc",
    "positions_for",
    "evaluate",
    "required_agents",
]

Model = Literal["erlang_c", "erlang_a"]

_EPS = 2.220446049250313e-16
_TINY = 1e-300
_TOL = 1e-12  # comparisons against targets: a float hair must not change the answer
# Erlang A cost grows as sqrt(x), sqrt(y); beyond this the patience is so long relative
# to the handle time that Erlang C is the right model anyway.
ERLANG_A_MAX_SCALE = 1e8
_MAX_AGENTS = 10_000_000


class StaffingInputError(ValueError):
    """Bad staffing parameters (or inputs outside the model's numeric domain)."""


class StaffingNumericalError(StaffingInputError):
    """A series or continued fraction did not converge: raised instead of a silent NaN."""


class ErlangADomainError(StaffingInputError):
    """Patience so long relative to handle time that Erlang A is impractical: use Erlang C."""


# --------------------------------------------------------------------------- inputs


def _check_real(name: str, value: object) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise StaffingInputError(f"{name} must be a number, got {value!r}")
    v = float(value)
    if not math.isfinite(v):
        raise StaffingInputError(f"{name} must be finite, got {value!r}")
    return v


def _check_int(name: str, value: object, minimum: int) -> int:
    if isinstance(value, bool):
        raise StaffingInputError(f"{name} must be an integer, got {value!r}")
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    if not isinstance(value, int):
        raise StaffingInputError(f"{name} must be an integer, got {value!r}")
    if value < minimum:
        raise StaffingInputError(f"{name} must be >= {minimum}, got {value}")
    return value


@dataclass(frozen=True, slots=True)
class QueueLoad:
    """What arrives at a queue: rate, handle time, concurrency and (optional) patience.

    ``patience_s`` None means customers never abandon (Erlang C); a value selects Erlang A.
    """

    arrivals_per_h: float
    aht_s: float
    concurrency: int = 1
    patience_s: float | None = None

    def __post_init__(self) -> None:
        rate = _check_real("arrivals_per_h", self.arrivals_per_h)
        if rate < 0:
            raise StaffingInputError(f"arrivals_per_h must be >= 0, got {self.arrivals_per_h!r}")
        aht = _check_real("aht_s", self.aht_s)
        if aht <= 0:
            raise StaffingInputError(f"aht_s must be > 0, got {self.aht_s!r}")
        conc = _check_int("concurrency", self.concurrency, 1)
        object.__setattr__(self, "arrivals_per_h", rate)
        object.__setattr__(self, "aht_s", aht)
        object.__setattr__(self, "concurrency", conc)
        if self.patience_s is not None:
            pat = _check_real("patience_s", self.patience_s)
            if pat <= 0:
                raise StaffingInputError(f"patience_s must be > 0, got {self.patience_s!r}")
            object.__setattr__(self, "patience_s", pat)

    @classmethod
    def per_interval(
        cls,
        contacts: float,
        interval_min: float,
        aht_s: float,
        concurrency: int = 1,
        patience_s: float | None = None,
    ) -> QueueLoad:
        """Load from a count of contacts in an interval of ``interval_min`` minutes."""
        n = _check_real("contacts", contacts)
        minutes = _check_real("interval_min", interval_min)
        if n < 0:
            raise StaffingInputError(f"contacts must be >= 0, got {contacts!r}")
        if minutes <= 0:
            raise StaffingInputError(f"interval_min must be > 0, got {interval_min!r}")
        return cls(n * 60.0 / minutes, aht_s, concurrency, patience_s)

    @property
    def offered_erlangs(self) -> float:
        """a = λ × AHT, in Erlangs (contacts in progress at once, were none to wait)."""
        return self.arrivals_per_h * self.aht_s / 3600.0

    @property
    def model(self) -> Model:
        return "erlang_c" if self.patience_s is None else "erlang_a"


@dataclass(frozen=True, slots=True)
class Targets:
    """Service goals: SL ≥ ``sl_target`` within ``threshold_s``, occupancy ≤ max."""

    sl_target: float = 0.8
    threshold_s: float = 20.0
    max_occupancy: float = 0.85
    shrinkage: float = 0.30

    def __post_init__(self) -> None:
        sl = _check_real("sl_target", self.sl_target)
        if not 0.0 < sl < 1.0:
            raise StaffingInputError(f"sl_target must be between 0 and 1 (exclusive), got {self.sl_target!r}")
        t = _check_real("threshold_s", self.threshold_s)
        if t < 0:
            raise StaffingInputError(f"threshold_s must be >= 0, got {self.threshold_s!r}")
        occ = _check_real("max_occupancy", self.max_occupancy)
        if not 0.0 < occ <= 1.0:
            raise StaffingInputError(f"max_occupancy must be in (0, 1], got {self.max_occupancy!r}")
        shr = _check_real("shrinkage", self.shrinkage)
        if not 0.0 <= shr < 1.0:
            raise StaffingInputError(f"shrinkage must be in [0, 1), got {self.shrinkage!r}")
        for name, v in (("sl_target", sl), ("threshold_s", t), ("max_occupancy", occ), ("shrinkage", shr)):
            object.__setattr__(self, name, v)


@dataclass(frozen=True, slots=True)
class QueueMetrics:
    """Steady-state figures for ``agents`` agents. Times in seconds, ratios 0–1.

    ``asa_s`` is the mean wait of answered contacts; ``mean_wait_s`` that of all arrivals
    (abandoned included). Both are ``inf`` for an unstable Erlang C queue (s ≤ a), where
    the queue grows without bound; Erlang A is always stable.
    """

    model: Model
    agents: int
    servers: int
    offered_erlangs: float
    p_wait: float
    service_level: float
    asa_s: float
    mean_wait_s: float
    occupancy: float
    p_abandon: float
    stable: bool


@dataclass(frozen=True, slots=True)
class StaffingResult:
    """The fewest agents meeting the targets, the positions to roster, and their figures."""

    agents: int
    positions: int
    metrics: QueueMetrics


# ------------------------------------------------------------------ special functions


def _digamma(z: float) -> float:
    """ψ(z) for z > 0: recurrence up to 6, then the asymptotic series."""
    r = 0.0
    while z < 6.0:
        r -= 1.0 / z
        z += 1.0
    f = 1.0 / (z * z)
    return r + math.log(z) - 0.5 / z - f * (
        1.0 / 12 - f * (1.0 / 120 - f * (1.0 / 252 - f * (1.0 / 240 - f / 132)))
    )


def _max_iter(a: float) -> int:
    # Both the series and the continued fraction need O(sqrt(a)) terms near z ≈ a.
    return int(200 + 40 * math.sqrt(a))


def _gamma_kernel(a: float, z: float) -> tuple[float, float, float]:
    """(log P(a, z), log Q(a, z), log S(a, z)) with S = e^z z^-a Γ(a+1) P(a, z).

    S(a, z) = Σ_{n≥0} z^n / ((a+1)…(a+n)) is the Erlang-A function A(a, z). Series for
    z < a + 1, Lentz continued fraction for Q otherwise (Numerical Recipes §6.2), all in
    log space so no factorial or power is ever formed.
    """
    if a <= 0 or z < 0 or not (math.isfinite(a) and math.isfinite(z)):
        raise StaffingNumericalError(f"incomplete gamma undefined for a={a!r}, z={z!r}")
    if z == 0.0:
        return -math.inf, 0.0, 0.0
    log_pref = -z + a * math.log(z) - math.lgamma(a + 1.0)  # log(z^a e^-z / Γ(a+1))
    limit = _max_iter(a)
    if z < a + 1.0:
        total = term = 1.0
        ap = a
        for _ in range(limit):
            ap += 1.0
            term *= z / ap
            total += term
            if term < total * _EPS:
                break
        else:
            raise StaffingNumericalError(f"incomplete gamma series did not converge (a={a}, z={z})")
        log_s = math.log(total)
        log_p = log_pref + log_s
        log_q = math.log1p(-math.exp(log_p)) if log_p < -1e-17 else -math.inf
        return log_p, log_q, log_s
    # Continued fraction for Q(a, z) = e^-z z^a / Γ(a) · h
    b = z + 1.0 - a
    c = 1.0 / _TINY
    d = 1.0 / b
    h = d
    for i in range(1, limit):
        an = -i * (i - a)
        b += 2.0
        d = an * d + b
        if abs(d) < _TINY:
            d = _TINY
        c = b + an / c
        if abs(c) < _TINY:
            c = _TINY
        d = 1.0 / d
        delta = d * c
        h *= delta
        if abs(delta - 1.0) < _EPS:
            break
    else:
        raise StaffingNumericalError(f"incomplete gamma fraction did not converge (a={a}, z={z})")
    log_q = log_pref + math.log(a) + math.log(h)  # Γ(a+1) = a Γ(a)
    log_p = math.log1p(-math.exp(log_q))
    log_s = log_p - log_pref
    return log_p, log_q, log_s


def log_gamma_inc(a: float, z: float) -> tuple[float, float]:
    """(log P(a, z), log Q(a, z)): regularized lower/upper incomplete gamma, in logs."""
    log_p, log_q, _ = _gamma_kernel(float(a), float(z))
    return log_p, log_q


def _log_erlang_b(servers: float, load: float) -> float:
    """log Erlang B = log(Poisson pmf(s; a) / Poisson cdf(s; a)), via Q(s+1, a)."""
    if load == 0.0:
        return -math.inf
    log_pmf = -load + servers * math.log(load) - math.lgamma(servers + 1.0)
    _, log_q, _ = _gamma_kernel(servers + 1.0, load)
    return min(0.0, log_pmf - log_q)


def erlang_b(servers: int, load: float) -> float:
    """Blocking probability of M/M/s/s; stable for any size (log space, no factorials)."""
    s = _check_int("servers", servers, 0)
    a = _check_real("load", load)
    if a < 0:
        raise StaffingInputError(f"load must be >= 0, got {load!r}")
    if s == 0:
        return 1.0
    return math.exp(_log_erlang_b(s, a))


def _erlang_c_from_b(b: float, s: int, a: float) -> float:
    if s <= a:
        return 1.0
    return min(1.0, s * b / (s - a * (1.0 - b)))


def erlang_c(servers: int, load: float) -> float:
    """Probability an arrival waits in M/M/s (1 when s ≤ a: the queue is unstable)."""
    s = _check_int("servers", servers, 1)
    a = _check_real("load", load)
    if a < 0:
        raise StaffingInputError(f"load must be >= 0, got {load!r}")
    return _erlang_c_from_b(erlang_b(s, a), s, a)


def positions_for(agents: int, shrinkage: float) -> int:
    """Positions to roster so ``agents`` are on the phones after shrinkage.

    Rounded to 9 decimals first: 21 / (1 - 0.3) is 30.000000000000004 in binary floating point.
    """
    if shrinkage == 0:
        return agents
    return math.ceil(round(agents / (1.0 - shrinkage), 9))


# ------------------------------------------------------------------------- Erlang C


def _erlang_c_metrics(load: QueueLoad, agents: int, b: float, threshold_s: float) -> QueueMetrics:
    a = load.offered_erlangs
    s = agents * load.concurrency
    if s <= a:
        return QueueMetrics("erlang_c", agents, s, a, 1.0, 0.0, math.inf, math.inf, 1.0, 0.0, False)
    c = _erlang_c_from_b(b, s, a)
    gap = s - a
    sl = 1.0 - c * math.exp(-gap * threshold_s / load.aht_s)
    asa = c * load.aht_s / gap
    return QueueMetrics("erlang_c", agents, s, a, c, sl, asa, asa, a / s, 0.0, True)


# ------------------------------------------------------------------------- Erlang A


@dataclass(frozen=True, slots=True)
class _ACore:
    p_wait: float
    p_abandon: float
    service_level: float
    occupancy: float
    log_a: float


def _patience(load: QueueLoad) -> float:
    if load.patience_s is None:
        raise StaffingInputError("Erlang A needs patience_s")
    return load.patience_s


def _erlang_a_core(load: QueueLoad, servers: int, threshold_s: float) -> _ACore:
    """SL, P(wait), P(abandon), occupancy of Erlang A: two incomplete gammas and Erlang B."""
    patience = _patience(load)
    a = load.offered_erlangs
    ratio = patience / load.aht_s  # μ/θ
    x = servers * ratio
    y = a * ratio
    if x > ERLANG_A_MAX_SCALE or y > ERLANG_A_MAX_SCALE:
        raise ErlangADomainError(
            "patience_s is too long relative to aht_s at this load for Erlang A "
            f"(x={x:.3g}, y={y:.3g} > {ERLANG_A_MAX_SCALE:.0g}); omit patience to use Erlang C"
        )
    rho = a / servers
    log_e = _log_erlang_b(servers, a)
    log_p, _, log_a = _gamma_kernel(x, y)
    # P(wait) = A E / (1 + (A - 1) E) = 1 / (1 + (1 - E) / (A E))
    log_ae = log_a + log_e
    one_minus_e = -math.expm1(log_e)
    if -log_ae > 700.0:
        p_wait = math.exp(log_ae) / one_minus_e if one_minus_e > 0 else 1.0
        p_wait = min(p_wait, 1.0)
    else:
        p_wait = 1.0 / (1.0 + one_minus_e * math.exp(-log_ae))
    served_if_wait = -math.expm1(-log_a) / rho  # P(answered | wait) = (1 − 1/A)/ρ
    p_ab_if_wait = min(1.0, max(0.0, 1.0 - served_if_wait))
    p_abandon = p_wait * p_ab_if_wait
    # P(answered within T | wait) = [(1 − 1/A) − R (1 − 1/A')] / ρ, R = P(x, y')/P(x, y)
    y_t = y * math.exp(-threshold_s / patience)
    if y_t > 0.0:
        log_p_t, _, log_a_t = _gamma_kernel(x, y_t)
        late = math.exp(log_p_t - log_p) * -math.expm1(-log_a_t) / rho
    else:
        late = 0.0
    within_if_wait = min(1.0, max(0.0, served_if_wait - late))
    sl = (1.0 - p_wait) + p_wait * within_if_wait
    occupancy = min(1.0, rho * (1.0 - p_abandon))
    return _ACore(p_wait, p_abandon, sl, occupancy, log_a)


def _erlang_a_answered_wait_sum(x: float, y: float) -> float:
    """E[wait · 1{answered} | wait] × θ, exactly, as a ratio of two series.

    An arrival finding j already waiting is answered with probability x/(x+j+1), after a
    mean θ-scaled wait H_j = Σ_{k=0..j} 1/(x+k+1) given that it is answered; it finds j
    with weight w_j = y^j / Π_{i=1..j}(x+i). Summed from the mode outwards (w = 1 there) so
    heavily loaded queues cost O(sqrt(y)), not O(y − x), and nothing overflows.
    """
    m = max(0, int(y - x))
    if m == 0:
        h_m = 1.0 / (x + 1.0)
    elif m < 2000:
        h_m = math.fsum(1.0 / (x + k + 1.0) for k in range(m + 1))
    else:
        h_m = _digamma(x + m + 2.0) - _digamma(x + 1.0)
    limit = 4 * _max_iter(max(x, y))  # the terms that matter lie within ~10 sqrt(y) of the mode
    num = den = 0.0
    # upwards from the mode
    w, h, j = 1.0, h_m, m
    for _ in range(limit):
        num += w * x / (x + j + 1.0) * h
        den += w
        j += 1
        w *= y / (x + j)
        h += 1.0 / (x + j + 1.0)
        if w < den * _EPS * 1e-2:
            break
    else:
        raise StaffingNumericalError(f"Erlang A wait series did not converge (x={x}, y={y})")
    # downwards from the mode
    w, h, j = 1.0, h_m, m
    for _ in range(limit):
        if j == 0:
            break
        w *= (x + j) / y
        h -= 1.0 / (x + j + 1.0)
        j -= 1
        num += w * x / (x + j + 1.0) * h
        den += w
        if w < den * _EPS * 1e-2:
            break
    else:
        raise StaffingNumericalError(f"Erlang A wait series did not converge (x={x}, y={y})")
    return num / den


def _erlang_a_metrics(load: QueueLoad, agents: int, threshold_s: float) -> QueueMetrics:
    patience = _patience(load)
    a = load.offered_erlangs
    s = agents * load.concurrency
    core = _erlang_a_core(load, s, threshold_s)
    theta = 1.0 / patience
    ratio = patience / load.aht_s
    mean_wait = core.p_abandon / theta
    p_answered = 1.0 - core.p_abandon
    if core.p_wait > 0.0 and p_answered > 0.0:
        per_wait = _erlang_a_answered_wait_sum(s * ratio, a * ratio)
        asa = core.p_wait * per_wait / theta / p_answered
    else:
        asa = 0.0
    return QueueMetrics(
        "erlang_a", agents, s, a, core.p_wait, core.service_level, asa, mean_wait,
        core.occupancy, core.p_abandon, True,
    )


# ------------------------------------------------------------------------ public API


def _check_agents(agents: int) -> int:
    n = _check_int("agents", agents, 1)
    if n > _MAX_AGENTS:
        raise StaffingInputError(f"agents must be <= {_MAX_AGENTS}, got {n}")
    return n


def _empty_metrics(load: QueueLoad, agents: int) -> QueueMetrics:
    return QueueMetrics(load.model, agents, agents * load.concurrency, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 0.0, True)


def evaluate(load: QueueLoad, agents: int, threshold_s: float = 20.0) -> QueueMetrics:
    """Figures for a given number of agents (Erlang C, or Erlang A when patience is set)."""
    n = _check_agents(agents)
    t = _check_real("threshold_s", threshold_s)
    if t < 0:
        raise StaffingInputError(f"threshold_s must be >= 0, got {threshold_s!r}")
    if load.arrivals_per_h == 0.0:
        return _empty_metrics(load, n)
    if load.patience_s is None:
        s = n * load.concurrency
        return _erlang_c_metrics(load, n, math.exp(_log_erlang_b(s, load.offered_erlangs)), t)
    return _erlang_a_metrics(load, n, t)


def _meets(sl: float, occupancy: float, targets: Targets) -> bool:
    return sl >= targets.sl_target - _TOL and occupancy <= targets.max_occupancy + _TOL


def _search_erlang_c(load: QueueLoad, targets: Targets) -> tuple[int, float]:
    """Fewest agents for Erlang C: start at the stability/occupancy floor, step up.

    Erlang B is computed once in log space at the start and then continued with the
    recursion B(s+1) = a B / (s + 1 + a B), so each step costs O(concurrency).
    """
    a = load.offered_erlangs
    c = load.concurrency
    n = max(1, math.floor(a / c) + 1, math.ceil(a / (targets.max_occupancy * c) - _TOL))
    s = n * c
    b = math.exp(_log_erlang_b(s, a))
    decay = targets.threshold_s / load.aht_s
    while n <= _MAX_AGENTS:
        if s > a:
            pw = _erlang_c_from_b(b, s, a)
            sl = 1.0 - pw * math.exp(-(s - a) * decay)
            if _meets(sl, a / s, targets):
                return n, b
        for _ in range(c):
            s += 1
            b = a * b / (s + a * b)
        n += 1
    raise StaffingInputError(f"no staffing up to {_MAX_AGENTS} agents meets the targets")


def _search_erlang_a(load: QueueLoad, targets: Targets, start: int) -> int:
    """Fewest agents for Erlang A: gallop from the Erlang C answer, then bisect.

    SL rises and occupancy falls with agents, so the feasible set is {n ≥ n*}.
    """
    cache: dict[int, bool] = {}

    def ok(n: int) -> bool:
        if n not in cache:
            core = _erlang_a_core(load, n * load.concurrency, targets.threshold_s)
            cache[n] = _meets(core.service_level, core.occupancy, targets)
        return cache[n]

    if ok(start):
        hi, step = start, 1
        lo = start - step
        while lo >= 1 and ok(lo):
            hi, step = lo, step * 2
            lo = hi - step
        lo = max(lo, 0)  # lo fails (or is 0, below any feasible n)
    else:
        lo, step = start, 1
        hi = start + step
        while not ok(hi):
            lo, step = hi, step * 2
            hi = lo + step
            if hi > _MAX_AGENTS:
                raise StaffingInputError(f"no staffing up to {_MAX_AGENTS} agents meets the targets")
    while hi - lo > 1:
        mid = (lo + hi) // 2
        if ok(mid):
            hi = mid
        else:
            lo = mid
    return hi


def required_agents(load: QueueLoad, targets: Targets = Targets()) -> StaffingResult:
    """Fewest agents N with SL ≥ target and occupancy ≤ max; positions = ⌈N / (1 − shrinkage)⌉.

    No arrivals means no agents (figures of an empty queue).
    """
    if load.arrivals_per_h == 0.0:
        return StaffingResult(0, 0, _empty_metrics(load, 0))
    n_c, b = _search_erlang_c(load, targets)
    if load.patience_s is None:
        metrics = _erlang_c_metrics(load, n_c, b, targets.threshold_s)
    else:
        n = _search_erlang_a(load, targets, n_c)
        metrics = _erlang_a_metrics(load, n, targets.threshold_s)
    return StaffingResult(metrics.agents, positions_for(metrics.agents, targets.shrinkage), metrics)
