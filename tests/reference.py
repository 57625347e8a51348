"""Independent, vectorised references for the pair analytics and the signal machine.

Built only from the libraries DESIGN.md pins the definitions to — statsmodels (RollingOLS,
OLS, adfuller), pandas (rolling mean/std/corr) and pykalman — over whole series at once, so
that the incremental code in :mod:`pairstream.estimators` and :mod:`pairstream.signals` is checked
against something that shares none of its code. Also used by the backtest and alerts tests.
"""

from __future__ import annotations

import math
import warnings
from datetime import datetime, timedelta
from pathlib import Path

import numpy as np
import pandas as pd
import statsmodels.api as sm
from pykalman import KalmanFilter
from statsmodels.regression.rolling import RollingOLS
from statsmodels.tsa.stattools import adfuller

from pairstream.config import AnalyticsConfig, SignalsConfig

ROOT = Path(__file__).resolve().parents[1]
KLINES = ROOT / "data" / "klines"
KLINE_COLUMNS = [
    "open_time", "open", "high", "low", "close", "volume", "close_time", "quote_volume",
    "count", "taker_buy_volume", "taker_buy_quote_volume", "ignore",
]  # fmt: skip


def load_klines(symbol: str) -> pd.DataFrame:
    """The 7 days of official 1m USD-M klines of ``symbol`` copied into ``data/klines``."""
    path = KLINES / f"futures-um-klines-1m-{symbol}-2024-07-01_2024-07-07.csv"
    df = pd.read_csv(path)
    assert list(df.columns) == KLINE_COLUMNS
    df["ts"] = pd.to_datetime(df["open_time"], unit="ms", utc=True)
    return df


def load_pair_closes(y: str = "BTCUSDT", x: str = "ETHUSDT") -> pd.DataFrame:
    """Closes of both legs joined on the bar start: columns ts, y, x."""
    a = load_klines(y)[["ts", "close"]].rename(columns={"close": "y"})
    b = load_klines(x)[["ts", "close"]].rename(columns={"close": "x"})
    df = a.merge(b, on="ts", how="inner").sort_values("ts").reset_index(drop=True)
    return df


def _adf_p(w: np.ndarray) -> float:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return float(adfuller(w, regression="c", autolag="AIC")[1])


def _half_life(w: np.ndarray) -> float:
    res = sm.OLS(np.diff(w), sm.add_constant(w[:-1])).fit()
    lam = float(res.params[1])
    return -math.log(2.0) / lam if lam < 0 else float("nan")


def reference_analytics(
    y: np.ndarray, x: np.ndarray, cfg: AnalyticsConfig, adf: bool = True
) -> pd.DataFrame:
    """Every Analytics column for raw closes ``y``, ``x`` (NaN where the row holds None)."""
    y = np.asarray(y, dtype=float)
    x = np.asarray(x, dtype=float)
    n = y.shape[0]
    py, px = (np.log(y), np.log(x)) if cfg.prices == "log" else (y, x)
    out = pd.DataFrame({"y": y, "x": x})

    params = (
        RollingOLS(py, sm.add_constant(px), window=cfg.window)
        .fit(method="pinv", params_only=True)
        .params
    )
    out["alpha"] = params[:, 0]
    out["beta"] = params[:, 1]
    spread = pd.Series(py - out["beta"].to_numpy() * px)
    out["spread"] = spread
    roll = spread.rolling(cfg.z_window)
    out["zscore"] = (spread - roll.mean()) / roll.std(ddof=1)

    ry = pd.Series(np.log(y)).diff()
    rx = pd.Series(np.log(x)).diff()
    out["corr"] = ry.rolling(cfg.corr_window).corr(rx)

    adf_p = np.full(n, np.nan)
    hl = np.full(n, np.nan)
    if adf:
        s = spread.to_numpy()
        first = cfg.window - 1 + cfg.adf_window - 1  # row holding the adf_window-th spread
        for i in range(first, n, cfg.adf_every):
            w = s[i - cfg.adf_window + 1 : i + 1]
            adf_p[i] = _adf_p(w)
            hl[i] = _half_life(w)
        # carry forward from each evaluation; NaN half-lives (λ ≥ 0) are carried as NaN too
        eval_rows = np.zeros(n, dtype=bool)
        eval_rows[first :: cfg.adf_every] = True
        idx = pd.Series(np.where(eval_rows, np.arange(n), np.nan)).ffill()
        valid = idx.notna().to_numpy()
        j = idx.to_numpy()[valid].astype(int)
        adf_p[valid] = adf_p[j]
        hl[valid] = hl[j]
    out["adf_p"] = adf_p
    out["half_life"] = hl

    q = cfg.kalman_delta / (1.0 - cfg.kalman_delta)
    H = np.stack([px, np.ones(n)], axis=1)[:, None, :]
    kf = KalmanFilter(
        transition_matrices=np.eye(2),
        observation_matrices=H,
        transition_covariance=q * np.eye(2),
        observation_covariance=np.array([[cfg.kalman_obs_var]]),
        initial_state_mean=np.zeros(2),
        initial_state_covariance=cfg.kalman_p0 * np.eye(2),
    )
    means, covs = kf.filter(py[:, None])
    out["beta_kf"] = means[:, 0]
    out["alpha_kf"] = means[:, 1]
    # predicted state of bar t: the prior for t = 0, else the filtered state of t-1 plus Q
    pm = np.vstack([np.zeros((1, 2)), means[:-1]])
    pc = np.concatenate([cfg.kalman_p0 * np.eye(2)[None], covs[:-1] + q * np.eye(2)[None]])
    h = H[:, 0, :]
    innov = py - np.einsum("ij,ij->i", h, pm)
    s_var = np.einsum("ij,ijk,ik->i", h, pc, h) + cfg.kalman_obs_var
    out["z_kf"] = innov / np.sqrt(s_var)
    out["warm"] = out["zscore"].notna()
    return out


def reference_signals(
    z: np.ndarray,
    beta: np.ndarray,
    y: np.ndarray,
    x: np.ndarray,
    cfg: SignalsConfig,
    prices: str = "raw",
) -> pd.DataFrame:
    """Positions, actions, fees and PnL of the signal rules over whole arrays.

    Rules: enter short at ``z ≥ entry``, long at ``z ≤ −entry`` (needs a beta); a short exits
    when z falls to ``exit`` or below, a long when z rises to ``−exit`` or above (a crossing);
    a short is stopped at ``z ≥ stop``, a long at ``z ≤ −stop``, after which no entry happens
    until z crosses the exit level on the stopped side (short: ``z ≤ exit``, long:
    ``z ≥ −exit``); the bar of an exit, stop or release never enters.

    The position path is a scan (hysteresis is inherently sequential) over numpy arrays;
    PnL and fees are then computed vectorised from the position path: the PnL of bar t is
    ``pos_{t−1}·((y_t − y_{t−1}) − b_{t−1}·(x_t − x_{t−1}))`` with ``b`` the hedge ratio of the
    open position, and each entry/exit pays ``fee_bps·(|y_t| + |b|·|x_t|)/1e4``.

    ``beta`` is the estimate the hedge is sized from (OLS beta, or beta_kf for ``use =
    "z_kf"``); with ``prices = "log"`` it is an elasticity and the hedge held is the notional
    one, ``b = beta_entry · y_entry / x_entry`` units of x per unit of y.
    """
    n = len(z)
    z = np.asarray(z, dtype=float)
    beta = np.asarray(beta, dtype=float)
    y = np.asarray(y, dtype=float)
    x = np.asarray(x, dtype=float)
    units = beta * y / x if prices == "log" else beta  # the hedge an entry at t would hold
    pos = np.zeros(n, dtype=int)
    hedge = np.full(n, np.nan)
    action = np.array(["hold"] * n, dtype=object)
    stop = np.inf if cfg.stop is None else cfg.stop
    p, b, waiting = 0, np.nan, 0  # waiting: side stopped out, flat until its exit crossing
    for t in range(n):
        zt = z[t]
        if not np.isnan(zt):
            if p == -1 and zt >= stop or p == 1 and zt <= -stop:
                action[t], waiting, p = "stop", p, 0
            elif p == -1 and zt <= cfg.exit or p == 1 and zt >= -cfg.exit:
                action[t], p = "exit", 0
            elif p != 0:
                pass
            elif waiting == -1:
                waiting = -1 if zt > cfg.exit else 0
            elif waiting == 1:
                waiting = 1 if zt < -cfg.exit else 0
            elif not np.isnan(beta[t]) and zt >= cfg.entry:
                action[t], p, b = "enter_short", -1, units[t]
            elif not np.isnan(beta[t]) and zt <= -cfg.entry:
                action[t], p, b = "enter_long", 1, units[t]
        pos[t] = p
        hedge[t] = b if (p != 0 or action[t] in ("exit", "stop")) else np.nan
    prev_pos = np.concatenate([[0], pos[:-1]])
    prev_hedge = np.concatenate([[np.nan], hedge[:-1]])
    dy = np.concatenate([[0.0], np.diff(y)])
    dx = np.concatenate([[0.0], np.diff(x)])
    mtm = np.where(prev_pos != 0, prev_pos * (dy - np.nan_to_num(prev_hedge) * dx), 0.0)
    traded = np.isin(action, ["enter_long", "enter_short", "exit", "stop"])
    notional = np.abs(y) + np.abs(np.nan_to_num(hedge)) * np.abs(x)
    fees = np.where(traded, cfg.fee_bps / 1e4 * notional, 0.0)
    pnl = mtm - fees
    return pd.DataFrame({
        "position": pos, "action": action, "hedge": hedge, "pnl": pnl, "fees": fees,
        "cum_pnl": np.cumsum(pnl),
    })  # fmt: skip


# ---------------------------------------------------------------------------------------------
# comparing incremental rows with the reference

ANALYTICS_COLUMNS = [
    "y", "x", "beta", "alpha", "spread", "zscore", "corr", "adf_p",
    "beta_kf", "alpha_kf", "z_kf", "half_life",
]  # fmt: skip
REL = 1e-9  # OLS, spread, z, corr, ADF p-value, half-life
KALMAN = 1e-8  # Kalman filtered means and z_kf


def rows_frame(rows: list) -> pd.DataFrame:
    """Analytics records → DataFrame with None as NaN."""
    data = {c: [getattr(r, c) for r in rows] for c in ANALYTICS_COLUMNS}
    df = pd.DataFrame({c: np.array([np.nan if v is None else v for v in vs], dtype=float)
                       for c, vs in data.items()})  # fmt: skip
    df["warm"] = [r.warm for r in rows]
    return df


def column_tolerance(ref: pd.DataFrame, col: str, prices: str) -> np.ndarray:
    """Per-row absolute tolerance: ``tol · max(|ref|, scale)``.

    "Relative 1e-9" is meaningless where a column crosses zero, so each column gets the scale it
    is computed at: alpha and the spread are differences of terms as large as the fed y series
    (``|p_y|``), so their rounding is relative to ``|p_y|``; beta is a ratio of the two series'
    variations, scale ``|p_y / p_x|``; dimensionless columns (z, corr, p-value, z_kf) and the
    Kalman state use scale 1. The half-life is compared separately through λ.
    """
    py, px = ref["y"].to_numpy(), ref["x"].to_numpy()
    if prices == "log":
        py, px = np.log(py), np.log(px)
    r = np.abs(ref[col].to_numpy())
    scale = {"alpha": np.abs(py), "spread": np.abs(py), "beta": np.abs(py / px)}.get(
        col, np.ones_like(r)
    )
    tol = KALMAN if col in ("beta_kf", "alpha_kf", "z_kf") else REL
    return tol * np.maximum(r, scale)


def assert_analytics_equal(rows: list, ref: pd.DataFrame, prices: str = "raw") -> None:
    """Every row equals the reference: same NULL pattern, values within the tolerances.

    The half-life ``−ln 2/λ`` blows up as λ → 0 (a half-life of 30 000 bars has λ ≈ 2e-5, known
    only to ~1e-14 absolute), so it is compared as λ with tolerance ``1e-9·max(|λ|, 1e-3)``.
    """
    got = rows_frame(rows)
    assert len(got) == len(ref)
    assert (got["warm"].to_numpy() == ref["warm"].to_numpy()).all(), "warm differs"
    for col in ANALYTICS_COLUMNS:
        a, b = got[col].to_numpy(), ref[col].to_numpy()
        na, nb = np.isnan(a), np.isnan(b)
        bad = np.flatnonzero(na != nb)
        assert bad.size == 0, f"{col}: NULL pattern differs first at row {bad[:5]}"
        m = ~nb
        if col == "half_life":
            la, lb = -np.log(2) / a[m], -np.log(2) / b[m]
            err, tol = np.abs(la - lb), REL * np.maximum(np.abs(lb), 1e-3)
        else:
            err, tol = np.abs(a[m] - b[m]), column_tolerance(ref, col, prices)[m]
        worst = np.argmax(err / tol) if err.size else 0
        assert (err <= tol).all(), (
            f"{col}: row {np.flatnonzero(m)[worst]} differs by {err[worst]:.3e} "
            f"(tolerance {tol[worst]:.3e}, reference {b[m][worst]!r})"
        )


def reference_edges(
    ts: pd.Series,
    when: pd.api.extensions.ExtensionArray,
    clear,
    hold: timedelta,
    cooldown: timedelta,
) -> list[tuple[datetime, str]]:
    """FIRING/RESOLVED edges of one rule from whole columns (``when``/``clear``: boolean arrays)."""
    ts = pd.Series(pd.to_datetime(ts, utc=True)).reset_index(drop=True)
    w = pd.Series(when).fillna(False).to_numpy(bool)  # unknown is not true
    c = pd.Series(clear).fillna(False).to_numpy(bool)
    run_id = np.cumsum(~w)
    run_start = ts.where(w).groupby(run_id).transform("min")
    held = w & (ts - run_start >= hold).to_numpy(bool)
    out: list[tuple[datetime, str]] = []
    pos, n = 0, len(ts)
    last_fire = None
    while pos < n:
        ok = held.copy()
        ok[:pos] = False
        if last_fire is not None:
            ok &= (ts >= last_fire + cooldown).to_numpy(bool)
        fire = np.flatnonzero(ok)
        if not fire.size:
            break
        f = int(fire[0])
        last_fire = ts[f]
        out.append((ts[f].to_pydatetime(), "FIRING"))
        res = np.flatnonzero(c[f + 1 :])
        if not res.size:
            break
        r = f + 1 + int(res[0])
        out.append((ts[r].to_pydatetime(), "RESOLVED"))
        pos = r + 1
    return out
