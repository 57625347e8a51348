"""Incremental rolling pair estimators for one pair and timeframe (no Bytewax here).

:class:`PairEstimator` turns a stream of aligned closes into :class:`~flows.records.Analytics`
rows whose every column is pinned to a reference library (see DESIGN.md "Semantics →
Estimators"); ``tests/flows/reference.py`` rebuilds them with statsmodels, pandas and pykalman.

Why recompute over the window instead of running sums: at BTC price levels (y ≈ 60000,
x ≈ 3400) the textbook ``Σx² − n·x̄²`` loses ~10 of the 16 significant digits, and add/remove
running sums drift over a week of bars. Each bar therefore re-centres its O(window) ring buffer
with numpy (a few vector operations of length ≤ window), which is exact to a few ulps and still
costs only tens of µs. Kalman is a closed-form 2-state filter in plain floats.

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
from scipy.special import ndtr
from statsmodels.tsa.adfvalues import _tau_largeps, _tau_maxs, _tau_mins, _tau_smallps, _tau_stars

from flows.config import AnalyticsConfig
from flows.records import Analytics

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


def _mean(a: np.ndarray) -> float:
    """``a.mean()`` bit for bit (the same pairwise sum and division) without its Python wrapper,
    which costs more than the sum on windows this small."""
    return a.sum() / a.shape[0]


def ols_beta_alpha(x: np.ndarray, y: np.ndarray) -> tuple[Optional[float], Optional[float]]:
    """Slope and intercept of OLS of ``y`` on ``[1, x]``, computed on centred data."""
    mx = _mean(x)
    my = _mean(y)
    dx = x - mx
    sxx = float(dx @ dx)
    if not sxx > 0.0:
        return None, None
    beta = float(dx @ (y - my)) / sxx
    return beta, float(my - beta * mx)


def pearson(a: np.ndarray, b: np.ndarray) -> Optional[float]:
    """Pearson correlation on centred data; None when either side has no variance."""
    da = a - _mean(a)
    db = b - _mean(b)
    saa = float(da @ da)
    sbb = float(db @ db)
    if not (saa > 0.0 and sbb > 0.0):
        return None
    return _finite(float(da @ db) / math.sqrt(saa * sbb))


def half_life(spreads: np.ndarray) -> Optional[float]:
    """``−ln 2 / λ`` with λ the OLS slope of Δs_t on ``[1, s_{t−1}]``; None when λ ≥ 0."""
    lam, _ = ols_beta_alpha(spreads[:-1], np.diff(spreads))
    if lam is None or not lam < 0.0:
        return None
    return -_LN2 / lam


def _lag_design(s: np.ndarray, lags: int) -> tuple[np.ndarray, np.ndarray]:
    """ADF regression with ``lags`` lagged differences, as statsmodels builds it.

    Returns ``(ds, X)`` with rows t = lags+1 .. n−1 and columns
    ``[1, s_{t−1}, Δs_{t−1}, ..., Δs_{t−lags}]``.
    """
    ds = np.diff(s)
    m = ds.shape[0] - lags
    cols = [np.ones(m), s[lags : lags + m]]
    cols += [ds[lags - j : lags - j + m] for j in range(1, lags + 1)]
    return ds[lags:], np.column_stack(cols)


def adf_pvalue(spreads: np.ndarray) -> Optional[float]:
    """``statsmodels.tsa.stattools.adfuller(spreads, regression="c", autolag="AIC")[1]``.

    Re-implemented with numpy least squares so that one evaluation costs well under a
    millisecond (statsmodels fits ~13 full OLS models). Same maxlag rule (Schwert), same common
    sample for the AIC search, same AIC (``−2·llf + 2·k``) and the same ``(aic, lag)`` tie break,
    then the t-value of the lagged level with the chosen lag on its own sample, and MacKinnon's
    p-value. None for a constant or non-finite window.
    """
    n = spreads.shape[0]
    if not np.all(np.isfinite(spreads)) or spreads.max() == spreads.min():
        return None
    maxlag = min(n // 2 - 2, int(math.ceil(12.0 * (n / 100.0) ** 0.25)))
    if maxlag < 0:
        return None
    y, X = _lag_design(spreads, maxlag)
    nobs = y.shape[0]
    # Nested models share the AIC sample: one QR gives every SSR as a sum of squares
    # (no cancellation): ssr_k = ||y − Q·Qᵀy||² + Σ_{j ≥ k} (Qᵀy)_j².
    q, _ = np.linalg.qr(X)
    c = q.T @ y
    r = y - q @ c
    tail = np.cumsum((c * c)[::-1])[::-1]  # tail[j] = Σ_{i ≥ j} c_i²
    base = float(r @ r)
    best: Optional[tuple[float, int]] = None
    for lag in range(maxlag + 1):
        k = lag + 2
        ssr = base + (float(tail[k]) if k < tail.shape[0] else 0.0)
        llf = -nobs / 2.0 * (_LOG_2PI + math.log(ssr / nobs) + 1.0)
        cand = (-2.0 * llf + 2.0 * k, lag)
        if best is None or cand < best:
            best = cand
    assert best is not None
    y, X = _lag_design(spreads, best[1])
    pinv = np.linalg.pinv(X)
    coef = pinv @ y
    r = y - X @ coef
    dof = X.shape[0] - X.shape[1]
    if dof <= 0:
        return None
    scale = float(r @ r) / dof
    se = math.sqrt(scale * float(pinv[1] @ pinv[1]))
    if not se > 0.0:
        return None
    return _finite(mackinnon_p_c(float(coef[1]) / se))


def mackinnon_p_c(t: float) -> float:
    """``statsmodels.tsa.adfvalues.mackinnonp(t, regression="c", N=1)``, bit for bit.

    The same tables and polynomial; ``ndtr`` is what ``scipy.stats.norm.cdf`` evaluates, without
    the ~100 µs of argument handling around it (once per ADF, every few bars).
    """
    if t > _tau_maxs["c"][0]:
        return 1.0
    if t < _tau_mins["c"][0]:
        return 0.0
    coef = _tau_smallps["c"][0] if t <= _tau_stars["c"][0] else _tau_largeps["c"][0]
    return float(ndtr(np.polyval(coef[::-1], t)))


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

    def __init__(self, cfg: AnalyticsConfig, pair: str = "", tf: str = "") -> None:
        if cfg.prices not in ("raw", "log"):
            raise ValueError(f"prices must be 'raw' or 'log', got {cfg.prices!r}")
        self.cfg = cfg
        self.pair = pair
        self.tf = tf
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
                s = self._sz.buf
                m = _mean(s)
                d = s - m
                var = float(d @ d) / (s.shape[0] - 1)
                if var > 0.0:
                    z = _finite((spread - m) / math.sqrt(var))
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
        )
