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
    """Fixed-size ring buffer of floats backed by one numpy array (picklable, O(size)).

    :class:`PairEstimator` keeps its rings in one array now; this class stays so that its
    snapshots of the previous layout unpickle.
    """

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


# The per-bar step of :class:`PairEstimator`, compiled as one call: the six ring buffers and
# the Kalman state live in one float array, the ring positions/counts and window sizes in one
# int array, so a bar costs one numba dispatch (~1 µs) instead of four plus ~20 µs of Python
# glue. Every operation is the one the separate kernels above (and Kalman2) perform, in the
# same order: the rows are bit for bit those of the per-statistic version.

# int state: window sizes, then ring positions and counts, then flags
_WIN, _ZW, _AW, _CW, _AE = 0, 1, 2, 3, 4
_P_POS, _P_CNT, _Z_POS, _Z_CNT, _A_POS, _A_CNT, _R_POS, _R_CNT = 5, 6, 7, 8, 9, 10, 11, 12
_HAS_PREV, _KF_STARTED = 13, 14
_N_INT = 15
# float state: previous logs, Kalman (q, r, beta, alpha, P), then the ring buffers
_PREV_LY, _PREV_LX, _KQ, _KR, _KB, _KA, _P00, _P01, _P10, _P11 = range(10)
_N_SCALARS = 10
# flags of the step's result: which columns have a value, whether ADF/half-life ran
_HAS_BETA, _HAS_Z, _HAS_CORR, _ADF_RAN, _HAS_T, _HAS_HL, _HAS_ZKF = 1, 2, 4, 8, 16, 32, 64


@compiled
def _bar(
    f: np.ndarray, iv: np.ndarray, py: float, px: float, ly: float, lx: float
) -> tuple[float, float, float, float, float, float, float, float, float, float, int]:
    """One bar: push, OLS, spread, z-score, corr, ADF t / half-life (on cadence), Kalman.

    Returns ``(beta, alpha, spread, z, corr, beta_kf, alpha_kf, z_kf, adf_t, half_life,
    flags)``; a column whose flag is clear is None.
    """
    win, zw, aw, cw = iv[_WIN], iv[_ZW], iv[_AW], iv[_CW]
    o_py = _N_SCALARS
    o_px = o_py + win
    o_sz = o_px + win
    o_sa = o_sz + zw
    o_ry = o_sa + aw
    o_rx = o_ry + cw
    flags = 0

    # correlation of log returns
    corr = np.nan
    if iv[_HAS_PREV]:
        p = iv[_R_POS]
        f[o_ry + p] = ly - f[_PREV_LY]
        f[o_rx + p] = lx - f[_PREV_LX]
        iv[_R_POS] = (p + 1) % cw
        iv[_R_CNT] += 1
        if iv[_R_CNT] >= cw:
            corr = _pearson(f[o_ry : o_ry + cw], f[o_rx : o_rx + cw])
            if math.isfinite(corr):
                flags |= _HAS_CORR
    f[_PREV_LY] = ly
    f[_PREV_LX] = lx
    iv[_HAS_PREV] = 1

    # OLS hedge ratio, spread, z-score, ADF and half-life
    p = iv[_P_POS]
    f[o_py + p] = py
    f[o_px + p] = px
    iv[_P_POS] = (p + 1) % win
    iv[_P_CNT] += 1
    beta = alpha = spread = z = t = hl = np.nan
    if iv[_P_CNT] >= win:
        beta, alpha = _ols(f[o_px : o_px + win], f[o_py : o_py + win])
    if not math.isnan(beta):
        flags |= _HAS_BETA
        spread = py - beta * px
        p = iv[_Z_POS]
        f[o_sz + p] = spread
        iv[_Z_POS] = (p + 1) % zw
        iv[_Z_CNT] += 1
        if iv[_Z_CNT] >= zw:
            z = _zscore(f[o_sz : o_sz + zw], spread)
            if math.isfinite(z):
                flags |= _HAS_Z
        p = iv[_A_POS]
        f[o_sa + p] = spread
        iv[_A_POS] = (p + 1) % aw
        iv[_A_CNT] += 1
        n = iv[_A_CNT]
        if n >= aw and (n - aw) % iv[_AE] == 0:
            flags |= _ADF_RAN
            pos = iv[_A_POS]
            w = np.concatenate((f[o_sa + pos : o_sa + aw], f[o_sa : o_sa + pos]))
            finite = True  # adf_pvalue: None for a non-finite or constant window
            lo = hi = w[0]
            for i in range(aw):
                finite = finite and math.isfinite(w[i])
                lo = min(lo, w[i])
                hi = max(hi, w[i])
            if finite and lo != hi:
                t = _adf_t(w, True)
                if not math.isnan(t):
                    flags |= _HAS_T
            lam, _ = _ols(w[:-1], np.diff(w))  # half_life
            if lam < 0.0:
                hl = -_LN2 / lam
                flags |= _HAS_HL

    # Kalman filter (Kalman2.update)
    if iv[_KF_STARTED]:
        f[_P00] += f[_KQ]
        f[_P11] += f[_KQ]
    iv[_KF_STARTED] = 1
    p00, p01, p10, p11 = f[_P00], f[_P01], f[_P10], f[_P11]
    ph0 = p00 * px + p01
    ph1 = p10 * px + p11
    s = px * ph0 + ph1 + f[_KR]
    e = py - (f[_KB] * px + f[_KA])
    k0 = ph0 / s
    k1 = ph1 / s
    f[_KB] += k0 * e
    f[_KA] += k1 * e
    hp0 = px * p00 + p10
    hp1 = px * p01 + p11
    f[_P00] = p00 - k0 * hp0
    f[_P01] = p01 - k0 * hp1
    f[_P10] = p10 - k1 * hp0
    f[_P11] = p11 - k1 * hp1
    z_kf = np.nan
    if s > 0.0:
        z_kf = e / math.sqrt(s)
        flags |= _HAS_ZKF
    return beta, alpha, spread, z, corr, f[_KB], f[_KA], z_kf, t, hl, flags


class PairEstimator:
    """All rolling estimators of one pair and timeframe; state is picklable and O(window).

    The state is two numpy arrays (see :func:`_bar`) plus the carried ADF p-value and
    half-life; snapshots of the previous layout (:class:`Ring` and :class:`Kalman2` objects)
    still load (:meth:`__setstate__`).
    """

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
        win, zw, aw, cw = cfg.window, cfg.z_window, cfg.adf_window, cfg.corr_window
        self._i = np.zeros(_N_INT, dtype=np.int64)
        self._i[[_WIN, _ZW, _AW, _CW, _AE]] = win, zw, aw, cw, cfg.adf_every
        self._f = np.zeros(_N_SCALARS + 2 * win + zw + aw + 2 * cw)
        kf = Kalman2(cfg.kalman_delta, cfg.kalman_obs_var, cfg.kalman_p0)
        self._f[[_KQ, _KR, _P00, _P11]] = kf.q, kf.r, kf.p00, kf.p11
        self._adf_p: Optional[float] = None
        self._half_life: Optional[float] = None

    def __setstate__(self, state: dict) -> None:
        if "_py" not in state:
            self.__dict__.update(state)
            return
        # a snapshot of the previous layout: one Ring per series, a Kalman2 object
        self.__init__(state["cfg"], state["pair"], state["tf"], state.get("preset", "default"))
        self._adf_p, self._half_life = state["_adf_p"], state["_half_life"]
        f, iv = self._f, self._i
        at = _N_SCALARS
        for name, pos, cnt in (("_py", _P_POS, _P_CNT), ("_px", _P_POS, _P_CNT),
                               ("_sz", _Z_POS, _Z_CNT), ("_sadf", _A_POS, _A_CNT),
                               ("_ry", _R_POS, _R_CNT), ("_rx", _R_POS, _R_CNT)):  # fmt: skip
            ring = state[name]
            f[at : at + ring.buf.shape[0]] = ring.buf
            at += ring.buf.shape[0]
            iv[pos], iv[cnt] = ring.pos, ring.count
        if state["_prev_ly"] is not None:
            f[_PREV_LY], f[_PREV_LX], iv[_HAS_PREV] = state["_prev_ly"], state["_prev_lx"], 1
        kf = state["_kf"]
        f[[_KQ, _KR, _KB, _KA, _P00, _P01, _P10, _P11]] = (
            kf.q, kf.r, kf.b, kf.a, kf.p00, kf.p01, kf.p10, kf.p11)  # fmt: skip
        iv[_KF_STARTED] = kf.started

    def adf_window_values(self) -> np.ndarray:
        """The last ``adf_window`` stored spreads, oldest first (a copy)."""
        aw, pos = int(self._i[_AW]), int(self._i[_A_POS])
        o = _N_SCALARS + 2 * int(self._i[_WIN]) + int(self._i[_ZW])
        return np.concatenate((self._f[o + pos : o + aw], self._f[o : o + pos]))

    def update(self, ts: datetime, y: float, x: float) -> Analytics:
        """Feed the closes of bar ``ts`` (raw prices) and return the row after it."""
        ly, lx = math.log(y), math.log(x)
        if self._log:
            r = _bar(self._f, self._i, ly, lx, ly, lx)
        else:
            r = _bar(self._f, self._i, float(y), float(x), ly, lx)
        beta, alpha, spread, z, corr, beta_kf, alpha_kf, z_kf, t, hl, fl = r
        if not fl & _HAS_BETA:
            beta = alpha = spread = None
        if not fl & _HAS_Z:
            z = None
        if not fl & _HAS_CORR:
            corr = None
        if not fl & _HAS_ZKF:
            z_kf = None
        if fl & _ADF_RAN:
            self._adf_p = _finite(mackinnon_p_c(t)) if fl & _HAS_T else None
            self._half_life = hl if fl & _HAS_HL else None
        return Analytics(
            self.pair, self.tf, ts, y, x, beta, alpha, spread, z, corr, self._adf_p, beta_kf,
            alpha_kf, z_kf, self._half_life, z is not None, self.preset,
        )  # fmt: skip
