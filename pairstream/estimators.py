"""Incremental rolling pair estimators for one pair and timeframe (no Bytewax here).

:class:`PairEstimator` turns a stream of aligned closes into :class:`~pairstream.records.Analytics`
rows whose every column is pinned to a reference library (see DESIGN.md "Semantics →
Estimators"); ``tests/flows/reference.py`` rebuilds them with statsmodels, pandas and pykalman.

Why recompute over the window instead of running sums: at BTC price levels (y ≈ 60000,
x ≈ 3400) the textbook ``Σx² − n·x̄²`` loses ~10 of the 16 significant digits, and add/remove
running sums drift over a week of bars. Each bar therefore re-centres its O(window) ring buffer
(two compiled passes: the mean, then centred sums), which is exact to a few ulps and costs
about a microsecond. ADF (compiled least squares) runs every ``adf_every`` bars. Kalman is a
closed-form 2-state filter in plain floats.

Definitions, with ``p_y, p_x`` the fed series (raw closes, or their natural log when
``prices = "log"``):

- ``beta, alpha``: OLS of ``p_y`` on ``[1, p_x]`` over the last ``window`` bars.
- ``spread_t = p_y_t − beta_t·p_x_t`` (``beta_t`` of the window ending at t); spreads are
  stored from the first bar with a beta.
- ``zscore``: ``(spread_t − mean) / std`` over the last ``z_window`` stored spreads, ddof = 1.
- ``corr``: Pearson correlation of the log returns ``ln c_t − ln c_{t−1}`` of the closes over
  the last ``corr_window`` returns (``corr_window + 1`` bars). Log returns are the differences of
  the log series, so ``prices`` does not change this column.
- ``adf_p``: ``adfuller(spreads, regression="c", autolag="AIC")[1]`` over the last
  ``adf_window`` stored spreads, evaluated when the spread count reaches ``adf_window`` and
  every ``adf_every`` spreads after that, carried forward in between.
- ``half_life = −ln 2 / λ``, λ the slope of OLS of Δspread on ``[1, spread_{t−1}]`` over the
  same window at the same bars; None when λ ≥ 0.
- Kalman: state ``[beta, alpha]``, random-walk transition with covariance
  ``delta/(1−delta)·I``, observation ``p_y = beta·p_x + alpha`` with variance ``obs_var``,
  prior ``N([0, 0], p0·I)`` for the first bar (pykalman's convention: no transition before the
  first bar). ``beta_kf, alpha_kf`` are the filtered means after bar t, ``z_kf`` the innovation
  of bar t over the square root of its predicted variance.
- ``warm`` is ``zscore is not None``. A column is None while its window is not full, or when it
  is undefined (a constant window: zero variance).
"""

from __future__ import annotations

import math
from datetime import datetime
from typing import Optional

import numpy as np

from pairstream.config import AnalyticsConfig
from pairstream.jit import compiled
from pairstream.mackinnon import mackinnon_p_c
from pairstream.records import Analytics

_LN2 = math.log(2.0)
_LOG_2PI = math.log(2.0 * math.pi)


class Ring:
    """Fixed-size ring buffer of floats backed by one numpy array (picklable, O(size))."""

    __slots__ = ("buf", "pos", "count")

    def __init__(self, size: int) -> None:
        self.buf = np.zeros(size)
        self.pos = 0
        self.count = 0

    def push(self, v: float) -> None:
        self.buf[self.pos] = v
        self.pos = (self.pos + 1) % self.buf.shape[0]
        self.count += 1

    @property
    def full(self) -> bool:
        return self.count >= self.buf.shape[0]

    def ordered(self) -> np.ndarray:
        """The values oldest first (a copy); only needed where order matters (ADF)."""
        return np.concatenate((self.buf[self.pos :], self.buf[: self.pos]))

    def __getstate__(self) -> tuple:
        return (self.buf, self.pos, self.count)

    def __setstate__(self, state: tuple) -> None:
        self.buf, self.pos, self.count = state


def _finite(v: float) -> Optional[float]:
    return v if math.isfinite(v) else None


# The per-bar window statistics are compiled (numba): as numpy calls they were ~15 vector
# operations of length ≤ window per bar, ~25 µs of call overhead for ~1 µs of arithmetic.
# Both passes over the window are plain loops: the mean, then sums of centred products. A
# constant window is caught exactly (min == max): the sequentially summed mean of n equal
# values can be off by an ulp, which would leave a spurious tiny variance.


@compiled
def _ols(x: np.ndarray, y: np.ndarray) -> tuple[float, float]:
    n = x.shape[0]
    mx = my = 0.0
    lo = hi = x[0]
    for i in range(n):
        mx += x[i]
        my += y[i]
        lo = min(lo, x[i])
        hi = max(hi, x[i])
    if lo == hi:  # constant x: no slope (its rounded mean need not equal the value)
        return np.nan, np.nan
    mx /= n
    my /= n
    sxx = sxy = 0.0
    for i in range(n):
        dx = x[i] - mx
        sxx += dx * dx
        sxy += dx * (y[i] - my)
    if not sxx > 0.0:
        return np.nan, np.nan
    beta = sxy / sxx
    return beta, my - beta * mx


@compiled
def _pearson(a: np.ndarray, b: np.ndarray) -> float:
    n = a.shape[0]
    ma = mb = 0.0
    a_lo = a_hi = a[0]
    b_lo = b_hi = b[0]
    for i in range(n):
        ma += a[i]
        mb += b[i]
        a_lo, a_hi = min(a_lo, a[i]), max(a_hi, a[i])
        b_lo, b_hi = min(b_lo, b[i]), max(b_hi, b[i])
    if a_lo == a_hi or b_lo == b_hi:
        return np.nan
    ma /= n
    mb /= n
    saa = sbb = sab = 0.0
    for i in range(n):
        da = a[i] - ma
        db = b[i] - mb
        saa += da * da
        sbb += db * db
        sab += da * db
    if not (saa > 0.0 and sbb > 0.0):
        return np.nan
    return sab / math.sqrt(saa * sbb)


@compiled
def _zscore(s: np.ndarray, v: float) -> float:
    n = s.shape[0]
    m = 0.0
    lo = hi = s[0]
    for i in range(n):
        m += s[i]
        lo = min(lo, s[i])
        hi = max(hi, s[i])
    if lo == hi:
        return np.nan
    m /= n
    ss = 0.0
    for i in range(n):
        d = s[i] - m
        ss += d * d
    var = ss / (n - 1)
    if not var > 0.0:
        return np.nan
    return (v - m) / math.sqrt(var)


def ols_beta_alpha(x: np.ndarray, y: np.ndarray) -> tuple[Optional[float], Optional[float]]:
    """Slope and intercept of OLS of ``y`` on ``[1, x]``, computed on centred data."""
    beta, alpha = _ols(x, y)
    if math.isnan(beta):
        return None, None
    return beta, alpha


def pearson(a: np.ndarray, b: np.ndarray) -> Optional[float]:
    """Pearson correlation on centred data; None when either side has no variance."""
    return _finite(_pearson(a, b))


def zscore(s: np.ndarray, v: float) -> Optional[float]:
    """``(v − mean(s)) / std(s)`` with ddof = 1; None when ``s`` has no variance."""
    return _finite(_zscore(s, v))


def half_life(spreads: np.ndarray) -> Optional[float]:
    """``−ln 2 / λ`` with λ the OLS slope of Δs_t on ``[1, s_{t−1}]``; None when λ ≥ 0."""
    lam, _ = ols_beta_alpha(spreads[:-1], np.diff(spreads))
    if lam is None or not lam < 0.0:
        return None
    return -_LN2 / lam


@compiled
def _lag_design(s: np.ndarray, lags: int, const: bool) -> tuple[np.ndarray, np.ndarray]:
    """ADF regression with ``lags`` lagged differences, as statsmodels builds it.

    Returns ``(ds, X)`` with rows t = lags+1 .. n−1 and columns
    ``[1, s_{t−1}, Δs_{t−1}, ..., Δs_{t−lags}]`` (without the leading 1 unless ``const``).
    """
    ds = np.diff(s)
    m = ds.shape[0] - lags
    c0 = 1 if const else 0
    x = np.empty((m, lags + 1 + c0))
    for i in range(m):
        if const:
            x[i, 0] = 1.0
        x[i, c0] = s[lags + i]
        for j in range(1, lags + 1):
            x[i, c0 + j] = ds[lags - j + i]
    return ds[lags:].copy(), x


@compiled
def _adf_t(spreads: np.ndarray, const: bool) -> float:
    """The t-value of ``adfuller(spreads, regression="c" or "n", autolag="AIC")``; NaN if none.

    ``const`` picks ``regression="c"`` (the live ADF of the spread) or ``"n"`` (Engle–Granger:
    the ADF of cointegrating residuals, which have mean zero by construction).
    """
    n = spreads.shape[0]
    c0 = 1 if const else 0
    maxlag = min(n // 2 - c0 - 1, int(math.ceil(12.0 * (n / 100.0) ** 0.25)))
    if maxlag < 0:
        return np.nan
    y, x = _lag_design(spreads, maxlag, const)
    nobs = y.shape[0]
    # Nested models share the AIC sample: one QR gives every SSR as a sum of squares
    # (no cancellation): ssr_k = ||y − Q·Qᵀy||² + Σ_{j ≥ k} (Qᵀy)_j².
    q, _ = np.linalg.qr(x)
    q = np.ascontiguousarray(q)
    c = y @ q
    r = y - q @ c
    base = r @ r
    tail = 0.0  # Σ_{j ≥ k} c_j², built from the last column down
    best_aic, best_lag = np.inf, 0
    ssr = np.empty(maxlag + 1)
    for lag in range(maxlag, -1, -1):
        ssr[lag] = base + tail
        tail += c[lag + c0] * c[lag + c0]
    for lag in range(maxlag + 1):
        if not ssr[lag] > 0.0:  # an exact fit: no likelihood, no test
            return np.nan
        llf = -nobs / 2.0 * (_LOG_2PI + math.log(ssr[lag] / nobs) + 1.0)
        aic = -2.0 * llf + 2.0 * (lag + 1 + c0)
        if aic < best_aic:  # ties keep the smaller lag, like statsmodels' min over (aic, lag)
            best_aic, best_lag = aic, lag
    y, x = _lag_design(spreads, best_lag, const)
    dof = x.shape[0] - x.shape[1]
    if dof <= 0:
        return np.nan
    # The chosen model on its own (longer) sample, by QR as well: statsmodels' pinv (an SVD)
    # gives the same numbers to rounding and costs ~10x as much on a 20,000-bar scan.
    q, rr = np.linalg.qr(x)
    q = np.ascontiguousarray(q)
    d = np.abs(np.diag(rr))
    if not d.min() > 1e-12 * d.max():  # rank deficient: statsmodels' pinv gives NaN too
        return np.nan
    coef = np.linalg.solve(rr, y @ q)
    r = y - x @ coef
    rinv = np.linalg.inv(rr)  # (XᵀX)⁻¹ = R⁻¹R⁻ᵀ: its diagonal is the rows' sums of squares
    row = rinv[c0].copy()
    se = math.sqrt((r @ r) / dof * (row @ row))
    if not se > 0.0:
        return np.nan
    return coef[c0] / se


def adf_tvalue(s: np.ndarray, const: bool = True) -> float:
    """The ADF t-value of ``adfuller(s, regression="c" if const else "n", autolag="AIC")``.

    NaN when there is no test (too short, or the lags fit exactly). ``const=False`` is the
    Engle–Granger step of :mod:`pairstream.scan` (residuals of a fit with a constant).
    """
    return float(_adf_t(np.ascontiguousarray(s, dtype=float), const))


def adf_pvalue(spreads: np.ndarray) -> Optional[float]:
    """``statsmodels.tsa.stattools.adfuller(spreads, regression="c", autolag="AIC")[1]``.

    Re-implemented (compiled) so that one evaluation costs tens of µs (statsmodels fits ~13
    full OLS models). Same maxlag rule (Schwert), same common sample for the AIC search, same
    AIC (``−2·llf + 2·k``) and the same ``(aic, lag)`` tie break, then the t-value of the lagged
    level with the chosen lag on its own sample (QR; statsmodels' pinv to rounding), and MacKinnon's
    p-value. None for a constant or non-finite window, or one the lags fit exactly.
    """
    if not np.all(np.isfinite(spreads)) or spreads.max() == spreads.min():
        return None
    t = _adf_t(spreads, True)
    if math.isnan(t):
        return None
    return _finite(mackinnon_p_c(t))


class Kalman2:
    """Kalman filter of ``y = beta·x + alpha`` with a random-walk state ``[beta, alpha]``.

    Written out for two states in plain floats, following pykalman's predict/correct equations
    literally (``P − K·H·P`` covariance update) so the filtered means agree with
    ``pykalman.KalmanFilter.filter`` to rounding.
    """

    __slots__ = ("q", "r", "b", "a", "p00", "p01", "p10", "p11", "started")

    def __init__(self, delta: float, obs_var: float, p0: float) -> None:
        self.q = delta / (1.0 - delta)
        self.r = obs_var
        self.b = self.a = 0.0
        self.p00, self.p01, self.p10, self.p11 = p0, 0.0, 0.0, p0
        self.started = False

    def update(self, x: float, y: float) -> tuple[float, float, Optional[float]]:
        """Filter one observation; returns ``(beta, alpha, z)``."""
        if self.started:  # pykalman: the prior is the first bar's prediction
            self.p00 += self.q
            self.p11 += self.q
        self.started = True
        p00, p01, p10, p11 = self.p00, self.p01, self.p10, self.p11
        ph0 = p00 * x + p01  # P·Hᵀ
        ph1 = p10 * x + p11
        s = x * ph0 + ph1 + self.r  # H·P·Hᵀ + R
        e = y - (self.b * x + self.a)
        k0 = ph0 / s
        k1 = ph1 / s
        self.b += k0 * e
        self.a += k1 * e
        hp0 = x * p00 + p10  # H·P
        hp1 = x * p01 + p11
        self.p00 = p00 - k0 * hp0
        self.p01 = p01 - k0 * hp1
        self.p10 = p10 - k1 * hp0
        self.p11 = p11 - k1 * hp1
        z = e / math.sqrt(s) if s > 0.0 else None
        return self.b, self.a, z


class PairEstimator:
    """All rolling estimators of one pair and timeframe; state is picklable and O(window)."""

    def __init__(
        self, cfg: AnalyticsConfig, pair: str = "", tf: str = "", preset: str = "default"
    ) -> None:
        if cfg.prices not in ("raw", "log"):
            raise ValueError(f"prices must be 'raw' or 'log', got {cfg.prices!r}")
        self.cfg = cfg
        self.pair = pair
        self.tf = tf
        self.preset = preset
        self._log = cfg.prices == "log"
        self._py = Ring(cfg.window)
        self._px = Ring(cfg.window)
        self._sz = Ring(cfg.z_window)
        self._sadf = Ring(cfg.adf_window)
        self._ry = Ring(cfg.corr_window)
        self._rx = Ring(cfg.corr_window)
        self._prev_ly: Optional[float] = None
        self._prev_lx: Optional[float] = None
        self._adf_p: Optional[float] = None
        self._half_life: Optional[float] = None
        self._kf = Kalman2(cfg.kalman_delta, cfg.kalman_obs_var, cfg.kalman_p0)

    def update(self, ts: datetime, y: float, x: float) -> Analytics:
        """Feed the closes of bar ``ts`` (raw prices) and return the row after it."""
        cfg = self.cfg
        ly, lx = math.log(y), math.log(x)
        py, px = (ly, lx) if self._log else (y, x)

        # correlation of log returns
        corr = None
        if self._prev_ly is not None:
            self._ry.push(ly - self._prev_ly)
            self._rx.push(lx - self._prev_lx)
            if self._ry.full:
                corr = pearson(self._ry.buf, self._rx.buf)
        self._prev_ly, self._prev_lx = ly, lx

        # OLS hedge ratio, spread, z-score, ADF and half-life
        self._py.push(py)
        self._px.push(px)
        beta = alpha = spread = z = None
        if self._py.full:
            beta, alpha = ols_beta_alpha(self._px.buf, self._py.buf)
        if beta is not None:
            spread = py - beta * px
            self._sz.push(spread)
            if self._sz.full:
                z = zscore(self._sz.buf, spread)
            self._sadf.push(spread)
            n = self._sadf.count
            if n >= cfg.adf_window and (n - cfg.adf_window) % cfg.adf_every == 0:
                w = self._sadf.ordered()
                self._adf_p = adf_pvalue(w)
                self._half_life = half_life(w)

        beta_kf, alpha_kf, z_kf = self._kf.update(px, py)
        return Analytics(
            pair=self.pair,
            tf=self.tf,
            ts=ts,
            y=y,
            x=x,
            beta=beta,
            alpha=alpha,
            spread=spread,
            zscore=z,
            corr=corr,
            adf_p=self._adf_p,
            beta_kf=beta_kf,
            alpha_kf=alpha_kf,
            z_kf=z_kf,
            half_life=self._half_life,
            warm=z is not None,
            preset=self.preset,
        )
