"""Generate the provisioned Grafana dashboards from ``pairstream.toml``.

The dashboards are plain JSON under ``grafana/dashboards/`` (what Grafana provisions); this
module writes them so that the symbols, pairs, timeframes, signal thresholds and windows on
the panels always match the configuration. ``tests/grafana`` checks that the committed JSON
equals this module's output and runs every query against a real QuestDB.

    python -m grafana.generate            # rewrite grafana/dashboards/*.json
    python -m grafana.generate --check    # exit 1 if the committed JSON is stale

Query conventions (they follow the QuestDB datasource plugin; see README.md, Grafana):
``$__timeFilter(ts)`` on the designated timestamp, ``SAMPLE BY $__sampleByInterval`` so a
zoomed-out range is down-sampled inside QuestDB, ``format`` 0 (time series) or 1 (table),
long results ordered by time (the plugin pivots long to wide and needs ascending time).
A paren-less macro (``$__sampleByInterval``, ``$__fromTime``) must never be followed by a
``(`` before a ``)``: the plugin's macro scanner would swallow the text up to that bracket.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any, Optional

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:  # ``python grafana/generate.py`` as well as ``-m``
    sys.path.insert(0, str(ROOT))

from pairstream.config import DEFAULT_PRESET, Config, load  # noqa: E402

OUT = ROOT / "grafana" / "dashboards"
DS_TYPE = "questdb-questdb-datasource"
DS_UID = "pairstream-questdb"
DS = {"type": DS_TYPE, "uid": DS_UID}
TIMESERIES, TABLE = 0, 1  # the plugin's ``Format`` enum (src/types.ts)
MIN_INTERVAL = "1s"  # the finest bar and the feed_health reporting period
SCHEMA_VERSION = 41

Json = dict[str, Any]


# ---------------------------------------------------------------------------------------------
# building blocks


def target(sql: str, fmt: int = TIMESERIES, ref: str = "A") -> Json:
    return {
        "refId": ref,
        "datasource": dict(DS),
        "queryType": "sql",
        "rawSql": " ".join(sql.split()),
        "format": fmt,
        "selectedFormat": fmt,
    }


def thresholds(*steps: tuple[Optional[float], str]) -> Json:
    return {"mode": "absolute", "steps": [{"value": v, "color": c} for v, c in steps]}


def override(name: str, **props: Any) -> Json:
    return {
        "matcher": {"id": "byName", "options": name},
        "properties": [{"id": k.replace("__", "."), "value": v} for k, v in props.items()],
    }


class Layout:
    """Panels flow left to right in a 24-column grid; ``row`` starts a titled row."""

    def __init__(self) -> None:
        self.panels: list[Json] = []
        self.x = self.y = self.h = 0
        self.next_id = 1

    def _id(self) -> int:
        self.next_id += 1
        return self.next_id - 1

    def row(self, title: str) -> None:
        self.y += self.h
        self.x = self.h = 0
        self.panels.append(
            {
                "type": "row",
                "id": self._id(),
                "title": title,
                "collapsed": False,
                "panels": [],
                "gridPos": {"h": 1, "w": 24, "x": 0, "y": self.y},
            }
        )
        self.y += 1

    def add(
        self,
        kind: str,
        title: str,
        targets: list[Json],
        w: int,
        h: int,
        *,
        description: str = "",
        defaults: Optional[Json] = None,
        overrides: Optional[list[Json]] = None,
        options: Optional[Json] = None,
        transformations: Optional[list[Json]] = None,
    ) -> Json:
        if self.x + w > 24:
            self.y += self.h
            self.x = self.h = 0
        panel: Json = {
            "type": kind,
            "id": self._id(),
            "title": title,
            "datasource": dict(DS),
            "gridPos": {"h": h, "w": w, "x": self.x, "y": self.y},
            "interval": MIN_INTERVAL,
            "targets": targets,
            "fieldConfig": {"defaults": defaults or {}, "overrides": overrides or []},
            "options": options or {},
        }
        if description:
            panel["description"] = description
        if transformations:
            panel["transformations"] = transformations
        self.x += w
        self.h = max(self.h, h)
        self.panels.append(panel)
        return panel


def ts_defaults(unit: str = "short", **custom: Any) -> Json:
    return {
        "unit": unit,
        "custom": {"drawStyle": "line", "lineWidth": 1, "fillOpacity": 0, "spanNulls": False}
        | custom,
    }


def custom_variable(name: str, label: str, values: list[str], default: str) -> Json:
    return {
        "type": "custom",
        "name": name,
        "label": label,
        "query": ",".join(values),
        "current": {"selected": True, "text": default, "value": default},
        "options": [{"selected": v == default, "text": v, "value": v} for v in values],
        "multi": False,
        "includeAll": False,
    }


def query_variable(name: str, label: str, sql: str, default: str) -> Json:
    return {
        "type": "query",
        "name": name,
        "label": label,
        "datasource": dict(DS),
        "query": sql,
        "definition": sql,
        "current": {"selected": True, "text": default, "value": default},
        "options": [],
        "refresh": 1,
        "sort": 1,
        "multi": False,
        "includeAll": False,
    }


def dashboard(
    uid: str,
    title: str,
    description: str,
    panels: list[Json],
    variables: list[Json],
    annotations: Optional[list[Json]] = None,
) -> Json:
    builtin = {
        "builtIn": 1,
        "datasource": {"type": "grafana", "uid": "-- Grafana --"},
        "enable": True,
        "hide": True,
        "iconColor": "rgba(0, 211, 255, 1)",
        "name": "Annotations & Alerts",
        "type": "dashboard",
    }
    return {
        "uid": uid,
        "title": title,
        "description": description,
        "tags": ["pairstream"],
        "timezone": "utc",
        "editable": True,
        "graphTooltip": 1,
        "liveNow": False,
        "refresh": "5s",
        "time": {"from": "now-15m", "to": "now"},
        "timepicker": {"refresh_intervals": ["1s", "5s", "10s", "30s", "1m", "5m"]},
        "schemaVersion": SCHEMA_VERSION,
        "version": 1,
        "templating": {"list": variables},
        "annotations": {"list": [builtin, *(annotations or [])]},
        "panels": panels,
        "links": [
            {
                "title": "pairstream",
                "type": "dashboards",
                "tags": ["pairstream"],
                "asDropdown": True,
                "icon": "external link",
                "includeVars": False,
                "keepTime": True,
                "targetBlank": False,
                "tooltip": "",
                "url": "",
            }
        ],
    }


def sql_list(values: tuple[str, ...] | list[str]) -> str:
    return ", ".join(f"'{v}'" for v in values)


# ---------------------------------------------------------------------------------------------
# 1. Pair monitor

Y = "split_part('$pair', '/', 1)"
X = "split_part('$pair', '/', 2)"
PAIR_TF = "pair = '$pair' AND tf = '$tf' AND preset = '$preset'"


def tf_seconds_sql(cfg: Config) -> str:
    """The bar length of ``$tf`` in seconds, as a SQL expression."""
    from pairstream.config import tf_seconds

    whens = " ".join(f"WHEN '{tf}' THEN {tf_seconds(tf)}" for tf in cfg.timeframes)
    return f"CASE '$tf' {whens} END"


def pair_monitor(cfg: Config) -> Json:
    zw = cfg.analytics_for(cfg.timeframes[0]).z_window
    TF_SECONDS = tf_seconds_sql(cfg)  # noqa: N806
    entry, exit_ = cfg.signals.entry, cfg.signals.exit
    lo = Layout()

    lo.row("Status")
    lo.add(
        "stat",
        "Estimators",
        [
            target(
                f"""SELECT ts AS time, CASE WHEN warm THEN 1 ELSE 0 END AS warm
                FROM pair_analytics WHERE {PAIR_TF} AND $__timeFilter(ts)
                LATEST ON ts PARTITION BY pair""",
                TABLE,
            )
        ],
        w=4,
        h=4,
        description="WARMING UP while the rolling windows fill (estimators are NULL until then).",
        defaults={
            "mappings": [
                {
                    "type": "value",
                    "options": {
                        "0": {"text": "WARMING UP", "color": "orange"},
                        "1": {"text": "WARM", "color": "green"},
                    },
                }
            ],
            "thresholds": thresholds((None, "orange"), (1, "green")),
            "noValue": "no data",
        },
        options={
            "colorMode": "background",
            "reduceOptions": {"calcs": ["lastNotNull"], "fields": "/^warm$/"},
        },
    )
    lo.add(
        "stat",
        "Bars in range",
        [
            target(
                f"""SELECT count() AS bars, sum(CASE WHEN warm THEN 0 ELSE 1 END) AS warming
                FROM pair_analytics WHERE {PAIR_TF} AND $__timeFilter(ts)""",
                TABLE,
            )
        ],
        w=4,
        h=4,
        description=f"Pair bars in the range; the first {zw}+ of a fresh start are warm-up.",
        defaults={"unit": "short"},
    )
    lo.add(
        "stat",
        "Latest prices",
        [
            target(
                f"""SELECT symbol, price FROM ticks WHERE symbol IN ({Y}, {X})
                AND $__timeFilter(ts) LATEST ON ts PARTITION BY symbol""",
                TABLE,
            )
        ],
        w=6,
        h=4,
        defaults={"unit": "currencyUSD", "decimals": 2},
        options={
            "reduceOptions": {"calcs": ["lastNotNull"], "values": True, "fields": "/^price$/"},
            "textMode": "value_and_name",
        },
    )
    lo.add(
        "stat",
        "Ticks (live counter)",
        [
            target(
                f"""SELECT count() AS ticks FROM ticks
                WHERE symbol IN ({Y}, {X}) AND $__timeFilter(ts)""",
                TABLE,
            )
        ],
        w=4,
        h=4,
        defaults={"unit": "short"},
        options={"graphMode": "none"},
    )
    lo.add(
        "stat",
        "Now",
        [
            target(
                f"""SELECT ts AS time, zscore, beta, corr, adf_p, half_life
                FROM pair_analytics WHERE {PAIR_TF} AND $__timeFilter(ts)
                LATEST ON ts PARTITION BY pair""",
                TABLE,
            )
        ],
        w=6,
        h=4,
        defaults={"decimals": 3},
        options={
            "reduceOptions": {"calcs": ["lastNotNull"], "fields": ""},
            "textMode": "value_and_name",
            "graphMode": "none",
        },
    )

    lo.row("Legs")
    for leg, expr in (("y", Y), ("x", X)):
        lo.add(
            "candlestick",
            f"Leg {leg}: ${{pair}} {leg.upper()} (tf $tf)",
            [
                target(
                    f"""SELECT ts AS time, first(open) AS open, max(high) AS high,
                    min(low) AS low, last(close) AS close, sum(volume) AS volume
                    FROM bars WHERE symbol = {expr} AND tf = '$tf' AND $__timeFilter(ts)
                    SAMPLE BY $__sampleByInterval ALIGN TO CALENDAR""",
                    TIMESERIES,
                )
            ],
            w=12,
            h=9,
            defaults={"unit": "currencyUSD"},
            options={
                "mode": "candles+volume",
                "candleStyle": "candles",
                "colorStrategy": "open-close",
                "includeAllFields": False,
            },
        )

    lo.row("Spread and z-score")
    lo.add(
        "timeseries",
        f"Spread with rolling mean ±2σ ({zw} bars)",
        [
            target(
                f"""SELECT time, last(spread) AS spread, last(mean) AS mean,
                last(mean + 2 * sd) AS upper, last(mean - 2 * sd) AS lower FROM (
                  SELECT time, spread, mean,
                  sqrt(greatest(m2 - mean * mean, 0) * {zw} / {zw - 1}) AS sd FROM (
                    SELECT ts AS time, spread,
                    avg(spread) OVER (ORDER BY ts ROWS BETWEEN {zw - 1} PRECEDING
                      AND CURRENT ROW) AS mean,
                    avg(spread * spread) OVER (ORDER BY ts ROWS BETWEEN {zw - 1} PRECEDING
                      AND CURRENT ROW) AS m2
                    FROM pair_analytics WHERE {PAIR_TF}
                    AND ts > dateadd('s', -{zw} * {TF_SECONDS}, $__fromTime) AND ts <= ($__toTime)
                  )
                ) timestamp(time) WHERE $__timeFilter(time) SAMPLE BY $__sampleByInterval""",
            )
        ],
        w=12,
        h=8,
        description="spread = y − β·x. Band: rolling mean ± 2 standard deviations of the stored "
        "spreads over the z-score window (the window reaches back before the range start).",
        defaults=ts_defaults(),
        overrides=[
            override(
                "upper",
                **{
                    "custom__lineStyle": {"fill": "dash", "dash": [10, 10]},
                    "color": {"mode": "fixed", "fixedColor": "red"},
                },
            ),
            override(
                "lower",
                **{
                    "custom__lineStyle": {"fill": "dash", "dash": [10, 10]},
                    "color": {"mode": "fixed", "fixedColor": "red"},
                },
            ),
            override("mean", color={"mode": "fixed", "fixedColor": "yellow"}),
        ],
    )
    lo.add(
        "timeseries",
        f"z-score (entry ±{entry:g}, exit ±{exit_:g})",
        [
            target(
                f"""SELECT ts AS time, last(zscore) AS zscore, last(z_kf) AS z_kf
                FROM pair_analytics WHERE {PAIR_TF} AND $__timeFilter(ts)
                SAMPLE BY $__sampleByInterval""",
            )
        ],
        w=12,
        h=8,
        defaults=ts_defaults(thresholdsStyle={"mode": "line+area"})
        | {
            "thresholds": thresholds(
                (None, "transparent"),
                (-entry, "red"),
                (-exit_, "transparent"),
                (exit_, "transparent"),
                (entry, "red"),
            )
        },
    )

    lo.row("Hedge ratio and stationarity")
    lo.add(
        "timeseries",
        "Hedge ratio: OLS vs Kalman",
        [
            target(
                f"""SELECT ts AS time, last(beta) AS beta_ols, last(beta_kf) AS beta_kalman
                FROM pair_analytics WHERE {PAIR_TF} AND $__timeFilter(ts)
                SAMPLE BY $__sampleByInterval""",
            )
        ],
        w=12,
        h=8,
        defaults=ts_defaults(),
    )
    lo.add(
        "timeseries",
        "Rolling correlation of log returns",
        [
            target(
                f"""SELECT ts AS time, last(corr) AS corr FROM pair_analytics
                WHERE {PAIR_TF} AND $__timeFilter(ts) SAMPLE BY $__sampleByInterval""",
            )
        ],
        w=12,
        h=8,
        defaults=ts_defaults() | {"min": -1, "max": 1},
    )
    lo.add(
        "timeseries",
        "ADF p-value (0.05 line)",
        [
            target(
                f"""SELECT ts AS time, last(adf_p) AS adf_p FROM pair_analytics
                WHERE {PAIR_TF} AND $__timeFilter(ts) SAMPLE BY $__sampleByInterval""",
            )
        ],
        w=12,
        h=8,
        description="Below 0.05: the spread looks stationary (cointegrated pair).",
        defaults=ts_defaults(thresholdsStyle={"mode": "line"})
        | {"min": 0, "max": 1, "thresholds": thresholds((None, "green"), (0.05, "red"))},
    )
    lo.add(
        "timeseries",
        "Half-life of mean reversion (bars)",
        [
            target(
                f"""SELECT ts AS time, last(half_life) AS half_life FROM pair_analytics
                WHERE {PAIR_TF} AND $__timeFilter(ts) SAMPLE BY $__sampleByInterval""",
            )
        ],
        w=12,
        h=8,
        description="NULL when the spread does not mean-revert (λ ≥ 0).",
        defaults=ts_defaults(),
    )

    lo.row("Signals and paper PnL")
    lo.add(
        "timeseries",
        "Position, cumulative paper PnL and funding",
        [
            target(
                f"""SELECT ts AS time, last(position) AS position, last(cum_pnl) AS cum_pnl,
                last(cum_funding) AS cum_funding
                FROM signals WHERE {PAIR_TF} AND $__timeFilter(ts)
                SAMPLE BY $__sampleByInterval""",
            )
        ],
        w=12,
        h=8,
        defaults=ts_defaults(unit="currencyUSD"),
        overrides=[
            override(
                "position",
                unit="short",
                custom__lineInterpolation="stepAfter",
                custom__axisPlacement="right",
                min=-1,
                max=1,
            ),
        ],
    )
    lo.add(
        "table",
        "Signal events",
        [
            target(
                f"""SELECT ts AS time, action, position, zscore, beta, y, x, pnl, fees, cum_pnl
                FROM signals WHERE {PAIR_TF} AND action != 'hold' AND $__timeFilter(ts)
                ORDER BY ts DESC LIMIT 500""",
                TABLE,
            )
        ],
        w=12,
        h=8,
        defaults={"decimals": 4},
        overrides=[override("position", decimals=0)],
    )

    lo.row("Alerts")
    lo.add(
        "table",
        "Alert events (all timeframes of the pair)",
        [
            target(
                """SELECT ts AS time, rule_id, tf, state, severity, expr, value, message
                FROM alerts WHERE pair = '$pair' AND $__timeFilter(ts)
                ORDER BY ts DESC LIMIT 500""",
                TABLE,
            )
        ],
        w=24,
        h=8,
        overrides=[
            override(
                "state",
                mappings=[
                    {
                        "type": "value",
                        "options": {
                            "FIRING": {"text": "FIRING", "color": "red"},
                            "RESOLVED": {"text": "RESOLVED", "color": "green"},
                        },
                    }
                ],
                custom__cellOptions={"type": "color-text"},
            )
        ],
    )
    alerts_annotation = {
        "name": "pairstream alerts",
        "datasource": dict(DS),
        "enable": True,
        "hide": False,
        "iconColor": "red",
        "target": target(
            """SELECT ts AS time, concat(rule_id, ' ', state, ' (', tf, '): ', message) AS text,
            state AS tags FROM alerts WHERE pair = '$pair' AND $__timeFilter(ts)
            ORDER BY ts""",
            TABLE,
            ref="Anno",
        ),
    }

    pairs = list(cfg.pair_ids)
    variables = [
        query_variable(
            "pair", "Pair", "SELECT DISTINCT pair FROM pair_analytics ORDER BY pair", pairs[0]
        ),
        custom_variable(
            "tf",
            "Timeframe",
            list(cfg.timeframes),
            "1m" if "1m" in cfg.timeframes else cfg.timeframes[0],
        ),
        # [analytics.presets]: every window set has its own rows ("default" = [analytics])
        query_variable(
            "preset",
            "Preset",
            "SELECT DISTINCT preset FROM pair_analytics ORDER BY preset",
            DEFAULT_PRESET,
        ),
    ]
    return dashboard(
        "pairstream-pair",
        "pairstream · Pair monitor",
        "One pair on one timeframe: legs, spread, z-score, hedge ratios, stationarity, "
        "signals, paper PnL and alerts.",
        lo.panels,
        variables,
        [alerts_annotation],
    )


# ---------------------------------------------------------------------------------------------
# 2. Market overview


def market_overview(cfg: Config) -> Json:
    syms = sql_list(cfg.symbols)
    lo = Layout()
    lo.row("Symbols")
    lo.add(
        "table",
        "Latest price, change and tick rate",
        [
            target(
                f"""SELECT symbol, last(price) AS price,
                (last(price) - first(price)) / first(price) * 100 AS change_pct,
                count() AS ticks,
                count() / (datediff('s', min(ts), max(ts)) + 1.0) AS ticks_per_s
                FROM ticks WHERE symbol IN ({syms}) AND $__timeFilter(ts)
                GROUP BY symbol ORDER BY symbol""",
                TABLE,
            )
        ],
        w=12,
        h=8,
        description="Change: last vs first trade in the range. Tick rate: trades per second "
        "between the first and last trade in the range.",
        overrides=[
            override("price", unit="currencyUSD", decimals=2),
            override(
                "change_pct",
                unit="percent",
                decimals=3,
                custom__cellOptions={"type": "color-text"},
                thresholds=thresholds((None, "red"), (0, "green")),
            ),
            override("ticks_per_s", unit="short", decimals=1),
        ],
    )
    lo.add(
        "table",
        "Correlation of $tf log returns (heatmap)",
        [
            target(
                f"""WITH r AS (SELECT ts, symbol, ln(close / open) AS ret FROM bars
                WHERE tf = '$tf' AND symbol IN ({syms}) AND $__timeFilter(ts))
                SELECT a.symbol AS sym_a, b.symbol AS sym_b, corr(a.ret, b.ret) AS corr
                FROM r a JOIN r b ON a.ts = b.ts
                GROUP BY a.symbol, b.symbol ORDER BY sym_a, sym_b""",
                TABLE,
            )
        ],
        w=12,
        h=8,
        description="Pearson correlation of per-bar log returns ln(close/open) across the "
        "configured symbols, computed in QuestDB.",
        defaults={
            "decimals": 3,
            "min": -1,
            "max": 1,
            "color": {"mode": "continuous-RdYlGr"},
            "custom": {"cellOptions": {"type": "color-background"}},
        },
        transformations=[
            {
                "id": "groupingToMatrix",
                "options": {"columnField": "sym_b", "rowField": "sym_a", "valueField": "corr"},
            }
        ],
    )
    lo.row("Activity")
    lo.add(
        "timeseries",
        "Tick rate per symbol (ticks/s)",
        [
            target(
                f"""SELECT ts AS time, symbol, count() * 1000.0 / $__interval_ms AS ticks_per_s
                FROM ticks WHERE symbol IN ({syms}) AND $__timeFilter(ts)
                SAMPLE BY $__sampleByInterval ALIGN TO CALENDAR ORDER BY time""",
            )
        ],
        w=12,
        h=8,
        defaults=ts_defaults(),
    )
    lo.add(
        "timeseries",
        "Quote volume per symbol ($tf bars)",
        [
            target(
                f"""SELECT ts AS time, symbol, sum(quote_volume) AS quote_volume FROM bars
                WHERE tf = '$tf' AND symbol IN ({syms}) AND $__timeFilter(ts)
                SAMPLE BY $__sampleByInterval ALIGN TO CALENDAR ORDER BY time""",
            )
        ],
        w=12,
        h=8,
        defaults=ts_defaults(unit="currencyUSD", drawStyle="bars", fillOpacity=60),
    )
    lo.add(
        "timeseries",
        "Close, rebased to 100 at the start of the range",
        [
            target(
                f"""SELECT b.ts AS time, b.symbol, b.close / f.first_close * 100 AS rebased
                FROM (SELECT ts, symbol, last(close) AS close FROM bars
                  WHERE tf = '$tf' AND symbol IN ({syms}) AND $__timeFilter(ts)
                  SAMPLE BY $__sampleByInterval ALIGN TO CALENDAR) b
                JOIN (SELECT symbol, first(close) AS first_close FROM bars
                  WHERE tf = '$tf' AND symbol IN ({syms}) AND $__timeFilter(ts)
                  GROUP BY symbol) f ON b.symbol = f.symbol
                ORDER BY time""",
            )
        ],
        w=24,
        h=8,
        defaults=ts_defaults(),
    )
    variables = [
        custom_variable(
            "tf",
            "Timeframe",
            list(cfg.timeframes),
            "1m" if "1m" in cfg.timeframes else cfg.timeframes[0],
        ),
    ]
    return dashboard(
        "pairstream-market",
        "pairstream · Market overview",
        "Every configured symbol: latest price, change, tick rate, return correlations, volume.",
        lo.panels,
        variables,
    )


# ---------------------------------------------------------------------------------------------
# 3. Pipeline health

COUNTERS = ("reconnects", "gaps", "backfilled", "malformed", "late_ticks", "rejected_rows")


def pipeline_health(cfg: Config) -> Json:
    lo = Layout()
    lo.row("Feed")
    lo.add(
        "timeseries",
        "Ticks/s per symbol (feed)",
        [
            target(
                """SELECT ts AS time, symbol, sum(value) * 1000.0 / $__interval_ms AS ticks_per_s
                FROM feed_health WHERE metric = 'ticks' AND $__timeFilter(ts)
                SAMPLE BY $__sampleByInterval ALIGN TO CALENDAR ORDER BY time""",
            )
        ],
        w=12,
        h=8,
        description="feed_health counts per 1 s report; summed per sample and divided by its "
        "length (the panel's minimum interval is 1 s).",
        defaults=ts_defaults(),
    )
    lo.add(
        "timeseries",
        "Feed lag (exchange event time → flow), max",
        [
            target(
                """SELECT ts AS time, symbol, max(value) AS lag_ms
                FROM feed_health WHERE metric = 'lag_ms' AND $__timeFilter(ts)
                SAMPLE BY $__sampleByInterval ALIGN TO CALENDAR ORDER BY time""",
            )
        ],
        w=12,
        h=8,
        defaults=ts_defaults(unit="ms"),
    )
    lo.add(
        "timeseries",
        "Reconnects, gaps, backfilled, malformed, late ticks",
        [
            target(
                f"""SELECT ts AS time, concat(symbol, ' ', metric) AS series,
                sum(value) AS count FROM feed_health
                WHERE metric IN ({sql_list(COUNTERS)}) AND $__timeFilter(ts)
                SAMPLE BY $__sampleByInterval ALIGN TO CALENDAR ORDER BY time""",
            )
        ],
        w=16,
        h=8,
        defaults=ts_defaults(drawStyle="bars", fillOpacity=80),
    )
    lo.add(
        "stat",
        "Totals in range",
        [
            target(
                f"""SELECT metric, sum(value) AS total FROM feed_health
                WHERE metric IN ({sql_list(COUNTERS)}) AND $__timeFilter(ts)
                GROUP BY metric ORDER BY metric""",
                TABLE,
            )
        ],
        w=8,
        h=8,
        defaults={"unit": "short", "thresholds": thresholds((None, "green"), (1, "orange"))},
        options={
            "reduceOptions": {"calcs": ["lastNotNull"], "values": True, "fields": "/^total$/"},
            "textMode": "value_and_name",
            "colorMode": "background",
        },
    )
    lo.row("QuestDB")
    tables = ("ticks", "bars", "pair_analytics", "signals", "alerts", "feed_health")
    union = " UNION ALL ".join(
        f"SELECT '{t}' AS table_name, count() AS rows FROM {t} WHERE $__timeFilter(ts)"
        for t in tables
    )
    lo.add(
        "bargauge",
        "Rows written per table (in range)",
        [target(union, TABLE)],
        w=12,
        h=8,
        defaults={"unit": "short"},
        options={
            "reduceOptions": {"calcs": ["lastNotNull"], "values": True, "fields": "/^rows$/"},
            "orientation": "horizontal",
            "displayMode": "gradient",
        },
    )
    lo.add(
        "timeseries",
        "Rows written per second",
        [
            target(
                f"""SELECT ts AS time, count() * 1000.0 / $__interval_ms AS {t}
                FROM {t} WHERE $__timeFilter(ts) SAMPLE BY $__sampleByInterval
                ALIGN TO CALENDAR""",
                ref=chr(ord("A") + i),
            )
            for i, t in enumerate(tables)
        ],
        w=12,
        h=8,
        defaults=ts_defaults(),
    )
    return dashboard(
        "pairstream-health",
        "pairstream · Pipeline health",
        "Feed rate, lag and faults per symbol (feed_health) and rows written per table.",
        lo.panels,
        [],
    )


# ---------------------------------------------------------------------------------------------

# ---------------------------------------------------------------------------------------------
# 4. Pair scanner

SCAN_Y = "split_part('$scan_pair', '/', 1)"
SCAN_X = "split_part('$scan_pair', '/', 2)"
LATEST_SCAN = """(SELECT * FROM pair_scan WHERE tf = '$scan_tf' AND $__timeFilter(ts)
    LATEST ON ts PARTITION BY y, x)"""


def pair_scanner(cfg: Config) -> Json:
    """The ranked universe (``pair_scan``, from ``pairstream scan --store`` or ``[scan]``)."""
    lo = Layout()
    lo.row("Latest scan in the range")
    lo.add(
        "table",
        "Pairs ranked by cointegration (Engle-Granger p, then half-life)",
        [
            target(
                f"""SELECT y, x, coint_p, half_life, johansen_trace, johansen_crit95, hurst, corr,
                beta, alpha, n, ts AS sample_end FROM {LATEST_SCAN}
                ORDER BY coint_p, half_life""",
                TABLE,
            )
        ],
        w=24,
        h=10,
        description="Per ordered pair (y on x) the newest scan in the range. coint_p: "
        "statsmodels coint (trend c, AIC lags); trace vs crit95: Johansen (rank 0, 95%); "
        "half-life in bars of the scan timeframe; Hurst of the spread (< 0.5 mean-reverting); "
        "corr of log returns; n bars. ts = end of the sample.",
        overrides=[
            override(
                "coint_p",
                decimals=4,
                custom__cellOptions={"type": "color-text"},
                thresholds=thresholds((None, "green"), (0.05, "orange"), (0.1, "red")),
            ),
            override("half_life", unit="short", decimals=1),
            override("johansen_trace", decimals=2),
            override("hurst", decimals=3),
            override("corr", decimals=3),
        ],
    )
    lo.add(
        "table",
        "Engle-Granger p-value, y (rows) on x (columns)",
        [
            target(
                f"""SELECT y, x, coint_p FROM {LATEST_SCAN} ORDER BY y, x""",
                TABLE,
            )
        ],
        w=12,
        h=9,
        description="Heatmap of coint_p of the newest scan in the range: green = cointegrated.",
        defaults={
            "decimals": 3,
            "min": 0,
            "max": 1,
            "color": {"mode": "continuous-GrYlRd"},
            "custom": {"cellOptions": {"type": "color-background"}},
        },
        transformations=[
            {
                "id": "groupingToMatrix",
                "options": {"columnField": "x", "rowField": "y", "valueField": "coint_p"},
            }
        ],
    )
    lo.add(
        "timeseries",
        "coint_p and Hurst of $scan_pair, scan by scan",
        [
            target(
                f"""SELECT ts AS time, last(coint_p) AS coint_p, last(hurst) AS hurst
                FROM pair_scan
                WHERE y = {SCAN_Y} AND x = {SCAN_X} AND tf = '$scan_tf' AND $__timeFilter(ts)
                SAMPLE BY $__sampleByInterval ALIGN TO CALENDAR ORDER BY time""",
            )
        ],
        w=12,
        h=9,
        defaults=ts_defaults(drawStyle="line", showPoints="always"),
    )
    lo.row("$scan_pair: spread with the newest scan's hedge ratio")
    spread = f"""WITH s AS (SELECT beta, alpha FROM pair_scan
        WHERE y = {SCAN_Y} AND x = {SCAN_X} AND tf = '$scan_tf' AND $__timeFilter(ts)
        LATEST ON ts PARTITION BY y, x),
      a AS (SELECT ts, last(close) AS close FROM bars WHERE symbol = {SCAN_Y}
        AND tf = '$scan_tf' AND $__timeFilter(ts) SAMPLE BY $__sampleByInterval ALIGN TO CALENDAR),
      b AS (SELECT ts, last(close) AS close FROM bars WHERE symbol = {SCAN_X}
        AND tf = '$scan_tf' AND $__timeFilter(ts) SAMPLE BY $__sampleByInterval ALIGN TO CALENDAR),
      sp AS (SELECT a.ts AS ts, a.close - s.beta * b.close - s.alpha AS spread
        FROM a JOIN b ON a.ts = b.ts CROSS JOIN s)"""
    lo.add(
        "timeseries",
        "Spread y − β·x − α",
        [target(f"{spread} SELECT ts AS time, spread FROM sp ORDER BY time")],
        w=12,
        h=9,
        description="Closes of both legs at the scan timeframe (last close per sample when "
        "zoomed out) with β, α of the newest scan of the pair in the range.",
        defaults=ts_defaults(),
    )
    lo.add(
        "timeseries",
        "z-score of the spread over the range",
        [
            target(
                f"""{spread}, m AS (SELECT avg(spread) AS mu, stddev_samp(spread) AS sd FROM sp)
                SELECT sp.ts AS time, (sp.spread - m.mu) / m.sd AS zscore
                FROM sp CROSS JOIN m ORDER BY time"""
            )
        ],
        w=12,
        h=9,
        defaults=ts_defaults(),
    )
    tfs = list(cfg.timeframes)
    scan_tf = cfg.scan.tf if cfg.scan.symbols else ("1m" if "1m" in tfs else tfs[0])
    pair = cfg.pairs[0]
    variables = [
        query_variable(
            "scan_tf", "Scan timeframe", "SELECT DISTINCT tf FROM pair_scan ORDER BY tf", scan_tf
        ),
        query_variable(
            "scan_pair",
            "Pair (y/x)",
            "SELECT DISTINCT concat(y, '/', x) AS pair FROM pair_scan ORDER BY pair",
            f"{pair.y}/{pair.x}",
        ),
    ]
    return dashboard(
        "pairstream-scanner",
        "pairstream · Pair scanner",
        "Every ordered pair of the scan universe ranked by cointegration; the chosen pair's "
        "spread and z-score.",
        lo.panels,
        variables,
    )


BUILDERS = {
    "pair-monitor.json": pair_monitor,
    "market-overview.json": market_overview,
    "pipeline-health.json": pipeline_health,
    "pair-scanner.json": pair_scanner,
}


def render(cfg: Optional[Config] = None) -> dict[str, str]:
    """File name → JSON text of every dashboard (stable: sorted keys, 2-space indent)."""
    cfg = cfg or load(ROOT / "pairstream.toml")
    return {
        name: json.dumps(build(cfg), indent=2, sort_keys=True, ensure_ascii=False) + "\n"
        for name, build in BUILDERS.items()
    }


def main(argv: Optional[list[str]] = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m grafana.generate", description=__doc__)
    ap.add_argument("--check", action="store_true", help="fail if the committed JSON is stale")
    args = ap.parse_args(argv)
    stale = []
    for name, text in render().items():
        path = OUT / name
        if args.check:
            if not path.exists() or path.read_text() != text:
                stale.append(name)
        else:
            OUT.mkdir(parents=True, exist_ok=True)
            path.write_text(text)
    if stale:
        print(f"stale dashboards (run python -m grafana.generate): {', '.join(stale)}")
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
