"""The pair scanner's statistics of one ordered pair ``(y, x)`` over a whole sample of closes.

Every column is pinned to a reference nobody here wrote (``tests/pairstream/test_scan.py``
compares them over the real universe in ``../shared/data/binance/universe``):

- ``beta, alpha``: OLS of y on ``[1, x]`` (:func:`pairstream.estimators.ols_beta_alpha`).
- ``coint_p``: Engle–Granger, ``statsmodels.tsa.stattools.coint(y, x, trend="c",
  autolag="aic")[1]``: the ADF (no constant, AIC lag search, Schwert's maxlag) of the OLS
  residuals ``y − alpha − beta·x`` and MacKinnon's p-value for N = 2 series. As statsmodels
  does, a fit with R² ≥ 1 − 100·√eps has t = −∞ (p = 0).
- ``johansen_trace``: ``coint_johansen(column_stack([y, x]), det_order=0,
  k_ar_diff=1).lr1[0]`` (the trace statistic for rank 0) and ``johansen_crit95`` its 95%
  critical value (``cvt[0, 1]``, Osterwald-Lenum's table for 2 series, constant term).
- ``half_life = −ln 2/λ``, λ from OLS of Δspread on ``[1, spread₋₁]``, ``spread = y − beta·x``;
  None when λ ≥ 0 (:func:`pairstream.estimators.half_life`).
- ``hurst``: of the spread, the OLS slope of ``log std(spread[t+τ] − spread[t])`` (numpy's std,
  ddof 0) on ``log τ`` for τ = 2, ..., 100 — i.e. half the slope of the log *variance*, twice
  that of ``log √std`` (the usual ``polyfit`` recipe): 0.5 for a random walk, < 0.5 when the
  spread mean-reverts.
- ``corr``: Pearson correlation of the log returns of the closes; ``n``: the bars used.

Why the trace needs no eigenvectors: with ``a_i`` the eigenvalues of ``S_kk⁻¹·S_k0·S_00⁻¹·S_0k``,
``lr1[0] = −T·Σ ln(1 − a_i) = −T·ln(det S / (det S_00 · det S_kk))`` where ``S`` is the 4×4
moment matrix of the residuals ``[R_0, R_k]`` — three Cholesky log-determinants of a centred
6×6 moment matrix built in one pass (O(n), no eig, no complex roundoff).
"""

from __future__ import annotations

import itertools
import math
import os
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass
from datetime import timedelta
from multiprocessing import get_context
from typing import NamedTuple, Optional

import numpy as np

from pairstream.align import align_closes
from pairstream.config import MIN_SCAN_BARS
from pairstream.estimators import adf_tvalue, half_life, ols_beta_alpha, pearson
from pairstream.jit import compiled
from pairstream.mackinnon import mackinnon_p_c
from pairstream.records import EPOCH, PairScan

HURST_LAGS = (2, 100)  # τ from 2 to 100 inclusive
# statsmodels.tsa.coint_tables.c_sjt(2, 0)[1]: the 95% trace critical value for 2 series with a
# constant (det_order=0), from Osterwald-Lenum (1992), Table 1*; held equal to statsmodels' table
# by the tests.
JOHANSEN_CRIT95 = 15.4943
_R2_LIMIT = 1.0 - 100.0 * math.sqrt(np.finfo(float).eps)  # statsmodels' "perfectly colinear"


class ScanStats(NamedTuple):
    beta: Optional[float]
    alpha: Optional[float]
    coint_p: Optional[float]
    johansen_trace: Optional[float]
    johansen_crit95: float
    half_life: Optional[float]
    hurst: Optional[float]
    corr: Optional[float]
    n: int


def _finite(v: float) -> Optional[float]:
    return float(v) if math.isfinite(v) else None


@compiled
def _logdet_spd(a: np.ndarray) -> float:
    """``ln det a`` of a symmetric positive definite matrix (Cholesky); NaN when it is not."""
    k = a.shape[0]
    lo = np.zeros((k, k))
    out = 0.0
    for j in range(k):
        d = a[j, j]
        for p in range(j):
            d -= lo[j, p] * lo[j, p]
        if not d > 0.0:
            return np.nan
        lo[j, j] = math.sqrt(d)
        out += math.log(d)
        for i in range(j + 1, k):
            v = a[i, j]
            for p in range(j):
                v -= lo[i, p] * lo[j, p]
            lo[i, j] = v / lo[j, j]
    return out


@compiled
def _johansen_trace(y: np.ndarray, x: np.ndarray) -> float:
    """``coint_johansen([y, x], det_order=0, k_ar_diff=1).lr1[0]`` (see the module docstring)."""
    n = y.shape[0]
    m = n - 2  # rows t = 2 .. n−1
    if m < 8:
        return np.nan
    cols = np.empty((m, 6))  # Δy₋₁, Δx₋₁ | Δy, Δx | y₋₁, x₋₁
    for i in range(m):
        t = i + 2
        cols[i, 0] = y[t - 1] - y[t - 2]
        cols[i, 1] = x[t - 1] - x[t - 2]
        cols[i, 2] = y[t] - y[t - 1]
        cols[i, 3] = x[t] - x[t - 1]
        cols[i, 4] = y[t - 1]
        cols[i, 5] = x[t - 1]
    mean = np.zeros(6)
    for i in range(m):
        for j in range(6):
            mean[j] += cols[i, j]
    mean /= m
    g = np.zeros((6, 6))
    for i in range(m):
        for j in range(6):
            dj = cols[i, j] - mean[j]
            for k in range(j, 6):
                g[j, k] += dj * (cols[i, k] - mean[k])
    for j in range(6):
        for k in range(j):
            g[j, k] = g[k, j]
    # moments of the residuals on the (centred) lagged differences: a Schur complement
    gzz = g[:2, :2].copy()
    if math.isnan(_logdet_spd(gzz)):  # constant differences: no regression on them
        return np.nan
    gza = np.ascontiguousarray(g[:2, 2:])
    s = g[2:, 2:] - gza.T @ np.linalg.solve(gzz, gza)
    ld = _logdet_spd(s)
    ld0 = _logdet_spd(np.ascontiguousarray(s[:2, :2]))
    ldk = _logdet_spd(np.ascontiguousarray(s[2:, 2:]))
    return -m * (ld - ld0 - ldk)


@compiled
def _hurst(s: np.ndarray, lo: int, hi: int) -> float:
    """Slope of ``log std(s[t+τ] − s[t])`` on ``log τ``, τ = lo..hi; NaN if a std is 0."""
    n = s.shape[0]
    if n <= hi + 1:
        return np.nan
    k = hi - lo + 1
    lt = np.empty(k)
    ls = np.empty(k)
    for j in range(k):
        tau = lo + j
        cnt = n - tau
        mu = 0.0
        for i in range(cnt):
            mu += s[i + tau] - s[i]
        mu /= cnt
        ss = 0.0
        for i in range(cnt):
            d = s[i + tau] - s[i] - mu
            ss += d * d
        if not ss > 0.0:
            return np.nan
        lt[j] = math.log(tau)
        ls[j] = 0.5 * math.log(ss / cnt)
    mt = lt.mean()
    ml = ls.mean()
    sxx = sxy = 0.0
    for j in range(k):
        sxx += (lt[j] - mt) * (lt[j] - mt)
        sxy += (lt[j] - mt) * (ls[j] - ml)
    return sxy / sxx


def johansen_trace(y: np.ndarray, x: np.ndarray) -> Optional[float]:
    """The Johansen trace statistic for rank 0 (``lr1[0]``); None when undefined."""
    return _finite(_johansen_trace(np.ascontiguousarray(y, float), np.ascontiguousarray(x, float)))


def hurst(spread: np.ndarray) -> Optional[float]:
    """The Hurst exponent of ``spread`` as defined in the module docstring; None if undefined."""
    return _finite(_hurst(np.ascontiguousarray(spread, float), *HURST_LAGS))


def coint_pvalue(y: np.ndarray, x: np.ndarray, beta: float, alpha: float) -> Optional[float]:
    """Engle–Granger p-value of ``y`` on ``x`` given their OLS fit (module docstring)."""
    resid = y - alpha - beta * x
    ym = y - y.mean()
    if 1.0 - (resid @ resid) / (ym @ ym) >= _R2_LIMIT:
        return 0.0  # statsmodels: t = −inf
    if resid.max() == resid.min():
        return None
    t = adf_tvalue(resid, False)
    return None if math.isnan(t) else _finite(mackinnon_p_c(t, 2))


def scan_pair(y: np.ndarray, x: np.ndarray) -> ScanStats:
    """Every statistic of the ordered pair ``(y, x)`` over aligned closes (positive prices)."""
    y = np.ascontiguousarray(y, dtype=float)
    x = np.ascontiguousarray(x, dtype=float)
    n = int(y.shape[0])
    beta, alpha = ols_beta_alpha(x, y)
    corr = pearson(np.diff(np.log(y)), np.diff(np.log(x))) if n > 2 else None
    trace = johansen_trace(y, x)
    if beta is None or alpha is None:  # x constant: no hedge ratio, no spread
        return ScanStats(None, None, None, trace, JOHANSEN_CRIT95, None, None, corr, n)
    spread = y - beta * x
    return ScanStats(
        beta=beta,
        alpha=alpha,
        coint_p=coint_pvalue(y, x, beta, alpha),
        johansen_trace=trace,
        johansen_crit95=JOHANSEN_CRIT95,
        half_life=half_life(spread),
        hurst=hurst(spread),
        corr=corr,
        n=n,
    )


# ---------------------------------------------------------------------------------------------
# a universe: every ordered pair, aligned as the flow aligns pairs, spread over processes

Series = dict[str, tuple[np.ndarray, np.ndarray]]  # symbol → (bar starts in ms, closes)
_SERIES: Series = {}  # a pool worker's copy of the universe (set once by its initializer)


def ordered_pairs(symbols: Sequence[str]) -> list[tuple[str, str]]:
    """Every ordered pair ``(y, x)`` of distinct symbols, in the symbols' order."""
    return list(itertools.permutations(symbols, 2))


def scan_one(
    series: Series, y: str, x: str, tf: str, tf_ms: int, window: Optional[int] = None
) -> Optional[PairScan]:
    """The ``pair_scan`` row of ``(y, x)``: aligned (forward fill, :func:`align_closes`), the
    last ``window`` bars if given; None with fewer than :data:`MIN_SCAN_BARS` (or ``window``)."""
    ts, cy, cx = align_closes(*series[y], *series[x])
    if window is not None:
        ts, cy, cx = ts[-window:], cy[-window:], cx[-window:]
    if ts.size < max(MIN_SCAN_BARS, window or 0):
        return None
    st = scan_pair(cy, cx)
    end = EPOCH + timedelta(milliseconds=int(ts[-1]) + tf_ms)
    return PairScan(ts=end, y=y, x=x, tf=tf, **st._asdict())


def _init_worker(series: Series) -> None:
    global _SERIES
    _SERIES = series


def _scan_job(y: str, x: str, tf: str, tf_ms: int, window: Optional[int]) -> Optional[PairScan]:
    return scan_one(_SERIES, y, x, tf, tf_ms, window)


def scan_universe(
    series: Series,
    tf: str,
    tf_ms: int,
    window: Optional[int] = None,
    workers: int = 1,
    on_done: Optional[Callable[[int, int], None]] = None,
) -> list[PairScan]:
    """Rows of every ordered pair with enough bars, ranked by :func:`rank`.

    With ``workers`` > 1 the pairs run in that many spawned processes (spawn: the parent may
    hold threads), each given the universe once and one BLAS thread (the pool is the
    parallelism; OpenBLAS threads on top of it would only contend for the same cores).
    ``on_done(done, total)`` is called as pairs finish (a progress bar).
    """
    pairs = ordered_pairs(list(series))
    rows: list[PairScan] = []
    if workers <= 1 or len(pairs) < 2:
        for i, (y, x) in enumerate(pairs, 1):
            r = scan_one(series, y, x, tf, tf_ms, window)
            if r is not None:
                rows.append(r)
            if on_done:
                on_done(i, len(pairs))
        return rank(rows)
    for var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ.setdefault(var, "1")  # read by the spawned workers' numpy at import
    with ProcessPoolExecutor(
        min(workers, len(pairs)),
        mp_context=get_context("spawn"),
        initializer=_init_worker,
        initargs=(series,),
    ) as pool:
        futures = [pool.submit(_scan_job, y, x, tf, tf_ms, window) for y, x in pairs]
        for i, f in enumerate(as_completed(futures), 1):
            r = f.result()
            if r is not None:
                rows.append(r)
            if on_done:
                on_done(i, len(pairs))
    return rank(rows)


def rank(rows: Sequence[PairScan]) -> list[PairScan]:
    """Most cointegrated first: ``coint_p``, then ``half_life`` (undefined values last)."""

    def key(r: PairScan) -> tuple[float, float, str, str]:
        p = math.inf if r.coint_p is None else r.coint_p
        h = math.inf if r.half_life is None else r.half_life
        return (p, h, r.y, r.x)

    return sorted(rows, key=key)


# ---------------------------------------------------------------------------------------------
# the live scan: a schedule on bar time over the flow's own bars


@dataclass(frozen=True)
class ScanJob:
    """The pairs ``(y, x)`` for every other symbol ``x``, over the universe's bars before ``ts``."""

    ts_ms: int  # the boundary: every bar of the sample starts before it
    y: str
    tf: str
    tf_ms: int
    window: int
    series: Series

    def rows(self) -> list[PairScan]:
        out = []
        for x in self.series:
            if x != self.y:
                r = scan_one(self.series, self.y, x, self.tf, self.tf_ms, self.window)
                if r is not None:
                    out.append(r)
        return out


class ScanSchedule:
    """Collects the closes of the scan universe and says when to rescan (picklable state).

    Boundaries are the multiples of ``every`` on the UTC epoch. Boundary ``B`` fires once every
    symbol's newest bar ends at or after ``B`` (so no bar before ``B`` can still come from any
    worker): one :class:`ScanJob` per symbol over the bars that start before ``B``. Bars are
    kept for the last ``window`` intervals (and the one close before them, for the forward
    fill). A bar at or before a symbol's newest one is ignored, as the aligner does.
    """

    def __init__(self, symbols: Sequence[str], tf: str, tf_ms: int, window: int, every_ms: int):
        self.symbols = tuple(symbols)
        self.tf, self.tf_ms, self.window, self.every_ms = tf, tf_ms, window, every_ms
        self.ms: dict[str, list[int]] = {s: [] for s in self.symbols}
        self.close: dict[str, list[float]] = {s: [] for s in self.symbols}
        self.next_ms: Optional[int] = None

    def push(self, symbol: str, ts_ms: int, close: float) -> list[ScanJob]:
        ms = self.ms.get(symbol)
        if ms is None or (ms and ts_ms <= ms[-1]):
            return []
        ms.append(ts_ms)
        self.close[symbol].append(close)
        if self.next_ms is None:
            self.next_ms = (ts_ms // self.every_ms + 1) * self.every_ms
        jobs: list[ScanJob] = []
        while all(m and m[-1] + self.tf_ms >= self.next_ms for m in self.ms.values()):
            b = self.next_ms
            series = {}
            for s in self.symbols:
                t = np.asarray(self.ms[s], dtype=np.int64)
                k = int(np.searchsorted(t, b))
                series[s] = (t[:k], np.asarray(self.close[s][:k], dtype=float))
            jobs += [ScanJob(b, y, self.tf, self.tf_ms, self.window, series) for y in self.symbols]
            self.next_ms = b + self.every_ms
            self._prune()
        return jobs

    def _prune(self) -> None:
        keep_from = self.next_ms - (self.window + 1) * self.tf_ms
        for s in self.symbols:
            t = self.ms[s]
            k = max(0, int(np.searchsorted(np.asarray(t), keep_from)) - 1)  # one close before
            if k:
                del t[:k]
                del self.close[s][:k]
