"""pairstream configuration: one TOML file plus environment overrides, checked at start.

``pairstream.toml`` at the repository root is the default, ``PAIRSTREAM_CONFIG`` names another
file, ``QDB_CLIENT_CONF`` overrides ``[questdb] conf`` and ``GRAFANA_URL`` ``[grafana] url``.
Unknown keys and wrong types raise :class:`ConfigError` whose message is one line naming the key
and why.
"""

from __future__ import annotations

import math
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field, fields, replace
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any, Optional

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10: the same parser, published as tomli
    import tomli as tomllib

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_PATH = ROOT / "pairstream.toml"


class ConfigError(ValueError):
    """A user-caused configuration problem; ``str(err)`` is the one-line message."""


class ScanError(ValueError):
    """Bad arguments or inputs of ``pairstream scan`` (a bad file...); a one-line message."""


_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d)\s*$")
_UNIT_S = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}


def parse_duration(text: str, key: str = "duration") -> timedelta:
    """``"500ms"``, ``"1s"``, ``"5m"``, ``"1h"`` → timedelta; anything else is a ConfigError."""
    m = _DURATION.match(text) if isinstance(text, str) else None
    if not m:
        raise ConfigError(f"{key}: expected a duration like '500ms', '1s', '5m', got {text!r}")
    return timedelta(seconds=float(m.group(1)) * _UNIT_S[m.group(2)])


def tf_seconds(tf: str) -> int:
    """Length of a timeframe label (``"1s"``, ``"1m"``, ``"5m"``, ``"1h"``) in whole seconds."""
    secs = parse_duration(tf, "timeframes").total_seconds()
    if secs < 1 or secs != int(secs) or tf.strip().endswith("ms"):
        raise ConfigError(f"timeframes: {tf!r} is not a whole number of seconds")
    return int(secs)


DEFAULT_PRESET = "default"  # the preset of the base [analytics] set in every table


@dataclass(frozen=True)
class PairConfig:
    y: str
    x: str

    @property
    def id(self) -> str:
        """The pair id stored in the tables: ``"Y/X"``."""
        return f"{self.y}/{self.x}"


@dataclass(frozen=True)
class SourceConfig:
    kind: str = "binance"
    paths: tuple[str, ...] = ()
    speed: float = 0.0
    rebase_to_now: bool = False
    stream: str = "aggTrade"
    ws_url: str = "wss://fstream.binance.com/market/stream"
    rest_url: str = "https://fapi.binance.com"
    # binance: also subscribe <symbol>@markPrice@1s (table marks, live funding, a heartbeat of
    # exchange time so bars close without waiting for the next trade)
    marks: bool = True
    # binance: end the run once every symbol has traded at or after this UTC time (ISO 8601);
    # ticks from it on are not emitted and every bar is flushed. "" = run forever.
    until: str = ""
    # binance: before going live, fill the estimator windows from stored bars, then klines
    warmup: bool = True
    # binance: a stored resume point older than this is not backfilled (start cold instead)
    max_gap: str = "2h"

    @property
    def max_gap_td(self) -> timedelta:
        return parse_duration(self.max_gap, "source.max_gap")
    # binance: the environment variable holding the API key (historicalTrades needs one for the
    # backfill of stream = "trade"); the key itself is never read from the file.
    api_key_env: str = "BINANCE_API_KEY"
    # binance: records the feed may hold while the flow is back-pressured (QuestDB down); beyond
    # it the feed drops its socket and later catches up over REST. Also the cap on live ticks
    # held during backfills.
    high_water: int = 100_000

    def api_key(self) -> Optional[str]:
        """The API key from the environment variable ``api_key_env``, or None."""
        return os.environ.get(self.api_key_env) or None

    @property
    def until_dt(self) -> Optional[datetime]:
        """``until`` as an aware UTC datetime (a time without offset is UTC), or None."""
        if not self.until:
            return None
        try:
            t = datetime.fromisoformat(self.until.strip().replace("Z", "+00:00"))
        except ValueError:
            raise ConfigError(
                f"source.until: expected an ISO time like '2024-07-19T00:05:00Z', "
                f"got {self.until!r}"
            ) from None
        return t.replace(tzinfo=timezone.utc) if t.tzinfo is None else t.astimezone(timezone.utc)


@dataclass(frozen=True)
class QuestDBConfig:
    conf: str = "http::addr=127.0.0.1:9000;"
    flush_rows: int = 50_000  # flush when this many rows are buffered
    flush_interval: str = "250ms"  # ... or when the oldest buffered row is this old
    buffer_rows: int = 1_000_000  # while QuestDB is down; beyond it the flow waits
    dead_letter: str = ""  # rows QuestDB refuses ("" = var/dead_letter.jsonl in the checkout)

    @property
    def flush_interval_s(self) -> float:
        return parse_duration(self.flush_interval, "questdb.flush_interval").total_seconds()


@dataclass(frozen=True)
class BarsConfig:
    lateness: str = "500ms"

    @property
    def lateness_td(self) -> timedelta:
        return parse_duration(self.lateness, "bars.lateness")


@dataclass(frozen=True)
class AnalyticsConfig:
    prices: str = "raw"
    window: int = 60
    z_window: int = 60
    corr_window: int = 60
    adf_window: int = 120
    adf_every: int = 10
    kalman_delta: float = 1e-4
    kalman_obs_var: float = 1e-3
    kalman_p0: float = 1.0


@dataclass(frozen=True)
class SignalsConfig:
    entry: float = 2.0
    exit: float = 0.5
    stop: Optional[float] = None  # |z| at or beyond which an open position is stopped out
    fee_bps: float = 4.0  # per leg, per side, in basis points of notional
    use: str = "zscore"  # or "z_kf": which z drives the state machine


@dataclass(frozen=True)
class GrafanaConfig:
    """``pairstream grafana sync`` and alert annotations; credentials come from the environment."""

    url: str = ""  # GRAFANA_URL overrides it; never credentials in it
    folder: str = ""  # uid of an existing folder to sync into; "" = pairstream's own folder
    questdb_server: str = ""  # QuestDB's PG-wire host as Grafana sees it; "" = [questdb] host
    questdb_port: int = 8812
    annotations: bool = False  # post each FIRING/RESOLVED event as a Grafana annotation
    annotation_queue: int = 1000  # events waiting for Grafana; beyond it they are dropped
    timeout: str = "5s"  # per request

    @property
    def timeout_s(self) -> float:
        return parse_duration(self.timeout, "grafana.timeout").total_seconds()


def _check_grafana(g: GrafanaConfig) -> GrafanaConfig:
    env_url = os.environ.get("GRAFANA_URL")
    if env_url:
        g = replace(g, url=env_url)
    elif g.url and re.match(r"^https?://[^/]*@", g.url):
        raise ConfigError(
            "grafana.url: must not hold credentials (set GRAFANA_TOKEN or "
            "GRAFANA_USER/GRAFANA_PASSWORD in the environment)"
        )
    if g.url and not re.match(r"^https?://[^/\s]+", g.url):
        raise ConfigError(f"grafana.url: expected http(s)://HOST[:PORT], got {g.url!r}")
    if g.folder and not re.fullmatch(r"[A-Za-z0-9_-]{1,40}", g.folder):
        raise ConfigError(f"grafana.folder: expected a folder uid, got {g.folder!r}")
    if not 0 < g.questdb_port < 65536:
        raise ConfigError(f"grafana.questdb_port: expected a TCP port, got {g.questdb_port}")
    _positive("grafana.annotation_queue", g.annotation_queue)
    if g.timeout_s <= 0:
        raise ConfigError(f"grafana.timeout: must be > 0, got {g.timeout!r}")
    if g.annotations and not g.url:
        raise ConfigError("grafana.annotations: needs a Grafana URL ([grafana] url or GRAFANA_URL)")
    return g


MIN_SCAN_BARS = 200  # the Hurst exponent uses lags up to 100 bars


@dataclass(frozen=True)
class ScanConfig:
    """``[scan]``: the pair scanner's universe; the flow rescans it on bar time (``every``)."""

    symbols: tuple[str, ...] = ()  # empty: no live scan (``pairstream scan`` uses ``symbols``)
    tf: str = "1m"
    window: int = 1440  # bars per sample (the last ``window`` aligned bars)
    every: str = "1h"  # rescan when the bars reach a multiple of this (UTC epoch)

    @property
    def every_s(self) -> int:
        return int(parse_duration(self.every, "scan.every").total_seconds())


def _check_scan(sc: ScanConfig, symbols: tuple[str, ...], tfs: tuple[str, ...]) -> ScanConfig:
    sc = replace(sc, symbols=tuple(s.upper() for s in sc.symbols))
    for s in sc.symbols:
        if s not in symbols:
            raise ConfigError(f"scan.symbols: {s!r} is not in symbols (the flow builds its bars)")
    if len(set(sc.symbols)) != len(sc.symbols):
        raise ConfigError("scan.symbols: a symbol is listed twice")
    if len(sc.symbols) == 1:
        raise ConfigError("scan.symbols: a scan needs at least two symbols (or none: off)")
    if not sc.symbols:  # off: the CLI checks its own --tf
        sc.every_s  # noqa: B018 - validates the duration
        return sc
    if sc.tf not in tfs:
        raise ConfigError(f"scan.tf: {sc.tf!r} is not in timeframes ({', '.join(tfs)})")
    if sc.window < MIN_SCAN_BARS:
        raise ConfigError(f"scan.window: must be at least {MIN_SCAN_BARS} bars, got {sc.window}")
    every = sc.every_s
    if every <= 0 or every % tf_seconds(sc.tf):
        raise ConfigError(f"scan.every: must be a multiple of scan.tf ({sc.tf}), got {sc.every!r}")
    return sc


@dataclass(frozen=True)
class Config:
    symbols: tuple[str, ...] = ("BTCUSDT", "ETHUSDT")
    timeframes: tuple[str, ...] = ("1s", "1m", "5m")
    pairs: tuple[PairConfig, ...] = (PairConfig("BTCUSDT", "ETHUSDT"),)
    source: SourceConfig = field(default_factory=SourceConfig)
    questdb: QuestDBConfig = field(default_factory=QuestDBConfig)
    bars: BarsConfig = field(default_factory=BarsConfig)
    analytics: AnalyticsConfig = field(default_factory=AnalyticsConfig)
    analytics_by_tf: Mapping[str, AnalyticsConfig] = field(default_factory=dict)
    # [analytics.presets]: name → the keys it sets over [analytics] (and [analytics.<tf>])
    presets: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    signals: SignalsConfig = field(default_factory=SignalsConfig)
    grafana: GrafanaConfig = field(default_factory=GrafanaConfig)
    # raw [[alerts]] tables; pairstream.alerts.load_rules checks them
    alerts: tuple[Mapping[str, Any], ...] = ()
    path: Optional[str] = None
    scan: ScanConfig = field(default_factory=ScanConfig)

    def analytics_for(self, tf: str, preset: str = DEFAULT_PRESET) -> AnalyticsConfig:
        """Settings of one timeframe and preset: the preset's keys over ``[analytics.<tf>]``
        over ``[analytics]`` (the ``"default"`` preset is the base set)."""
        base = self.analytics_by_tf.get(tf, self.analytics)
        if preset == DEFAULT_PRESET:
            return base
        return replace(base, **self.presets[preset])

    @property
    def preset_names(self) -> tuple[str, ...]:
        """``"default"`` first, then the configured presets in file order."""
        return (DEFAULT_PRESET, *self.presets)

    @property
    def pair_ids(self) -> tuple[str, ...]:
        return tuple(p.id for p in self.pairs)


# ---------------------------------------------------------------------------------------------
# loading and checking


def _type_name(t: Any) -> str:
    return {str: "a string", int: "an integer", float: "a number", bool: "true or false"}.get(
        t, str(t)
    )


def _coerce(key: str, value: Any, default: Any, annotation: str) -> Any:
    """Check ``value`` against the type of the field's default / annotation."""
    if "tuple[str" in annotation:
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            raise ConfigError(f"{key}: expected a list of strings, got {value!r}")
        return tuple(value)
    if "float" in annotation:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            if value is None and "Optional" in annotation:
                return None
            raise ConfigError(f"{key}: expected a number, got {value!r}")
        if not math.isfinite(value):
            raise ConfigError(f"{key}: expected a finite number, got {value!r}")
        return float(value)
    expected = type(default)
    if expected is int and (isinstance(value, bool) or not isinstance(value, int)):
        raise ConfigError(f"{key}: expected an integer, got {value!r}")
    if expected in (str, bool) and not isinstance(value, expected):
        raise ConfigError(f"{key}: expected {_type_name(expected)}, got {value!r}")
    return value


def _section(cls: type, data: Any, prefix: str, base: Any = None) -> Any:
    if not isinstance(data, dict):
        raise ConfigError(f"{prefix}: expected a table, got {data!r}")
    base = base if base is not None else cls()
    known = {f.name: f for f in fields(cls)}
    values = {}
    for k, v in data.items():
        if k not in known:
            raise ConfigError(
                f"{prefix}.{k}: unknown key (known: {', '.join(sorted(known))})"
            )
        f = known[k]
        values[k] = _coerce(f"{prefix}.{k}", v, getattr(base, k), str(f.type))
    return replace(base, **values)


def _positive(key: str, value: float, allow_zero: bool = False) -> None:
    if value < 0 or (value == 0 and not allow_zero):
        raise ConfigError(f"{key}: must be {'≥' if allow_zero else '>'} 0, got {value!r}")


def _check_analytics(prefix: str, a: AnalyticsConfig) -> None:
    if a.prices not in ("raw", "log"):
        raise ConfigError(f"{prefix}.prices: expected 'raw' or 'log', got {a.prices!r}")
    for k in ("window", "z_window", "corr_window", "adf_window"):
        if getattr(a, k) < 3:
            raise ConfigError(f"{prefix}.{k}: must be at least 3 bars, got {getattr(a, k)}")
    if a.adf_window < 10:
        raise ConfigError(f"{prefix}.adf_window: ADF needs at least 10 spreads, got {a.adf_window}")
    if a.adf_every < 1:
        raise ConfigError(f"{prefix}.adf_every: must be ≥ 1, got {a.adf_every}")
    if not 0 < a.kalman_delta < 1:
        raise ConfigError(f"{prefix}.kalman_delta: must be in (0, 1), got {a.kalman_delta}")
    _positive(f"{prefix}.kalman_obs_var", a.kalman_obs_var)
    _positive(f"{prefix}.kalman_p0", a.kalman_p0)


_PRESET_NAME = re.compile(r"^[A-Za-z0-9_-]{1,32}$")


def _presets(raw: Any, base: AnalyticsConfig) -> dict[str, dict[str, Any]]:
    """``[analytics.presets]`` → name → checked keys (types as in ``[analytics]``)."""
    if not isinstance(raw, dict):
        raise ConfigError(
            f"analytics.presets: expected a table like {{ fast = {{ window = 30 }} }}, got {raw!r}"
        )
    out: dict[str, dict[str, Any]] = {}
    for name, sub in raw.items():
        key = f"analytics.presets.{name}"
        if not _PRESET_NAME.match(name) or name == DEFAULT_PRESET:
            raise ConfigError(
                f"{key}: a preset name is 1-32 letters, digits, '_' or '-', and not "
                f"{DEFAULT_PRESET!r} (the name of [analytics] itself)"
            )
        checked = _section(AnalyticsConfig, sub, key, base=base)
        out[name] = {k: getattr(checked, k) for k in sub}
    return out


_TOP = {
    "symbols",
    "timeframes",
    "pairs",
    "source",
    "questdb",
    "bars",
    "analytics",
    "signals",
    "alerts",
    "grafana",
    "scan",
}


def parse(data: Mapping[str, Any], path: Optional[str] = None) -> Config:
    """Build and check a :class:`Config` from a parsed TOML document."""
    for k in data:
        if k not in _TOP:
            raise ConfigError(f"{k}: unknown key (known: {', '.join(sorted(_TOP))})")
    d = Config()
    symbols = _coerce("symbols", data.get("symbols", list(d.symbols)), (), "tuple[str")
    symbols = tuple(s.upper() for s in symbols)
    if not symbols:
        raise ConfigError("symbols: at least one symbol is needed")
    for s in symbols:
        if not re.fullmatch(r"[A-Z0-9]{2,30}", s):
            raise ConfigError(f"symbols: {s!r} is not a Binance symbol")
    if len(set(symbols)) != len(symbols):
        raise ConfigError("symbols: a symbol is listed twice")
    tfs = _coerce("timeframes", data.get("timeframes", list(d.timeframes)), (), "tuple[str")
    if not tfs:
        raise ConfigError("timeframes: at least one timeframe is needed")
    secs = [tf_seconds(tf) for tf in tfs]
    if secs != sorted(set(secs)):
        raise ConfigError("timeframes: list each once, shortest first (e.g. ['1s', '1m', '5m'])")
    for small, big in zip(secs, secs[1:]):
        if big % small:
            raise ConfigError(f"timeframes: {big}s is not a multiple of {small}s")
    raw_pairs = data.get("pairs", [{"y": p.y, "x": p.x} for p in d.pairs])
    if not isinstance(raw_pairs, list):
        raise ConfigError("pairs: expected a list of tables like { y = 'BTCUSDT', x = 'ETHUSDT' }")
    pairs = []
    for i, p in enumerate(raw_pairs):
        if not isinstance(p, dict) or set(p) != {"y", "x"}:
            raise ConfigError(f"pairs[{i}]: expected {{ y = 'SYM', x = 'SYM' }}, got {p!r}")
        y, x = str(p["y"]).upper(), str(p["x"]).upper()
        for leg in (y, x):
            if leg not in symbols:
                raise ConfigError(f"pairs[{i}]: {leg!r} is not in symbols")
        if y == x:
            raise ConfigError(f"pairs[{i}]: y and x must differ")
        pairs.append(PairConfig(y, x))
    source = _section(SourceConfig, data.get("source", {}), "source")
    if source.kind not in ("binance", "replay"):
        raise ConfigError(f"source.kind: expected 'binance' or 'replay', got {source.kind!r}")
    if source.stream not in ("aggTrade", "trade"):
        raise ConfigError(f"source.stream: expected 'aggTrade' or 'trade', got {source.stream!r}")
    _positive("source.speed", source.speed, allow_zero=True)
    _positive("source.high_water", source.high_water)
    if source.kind == "replay" and not source.paths:
        raise ConfigError("source.paths: a replay needs at least one file or glob")
    for k in ("ws_url", "rest_url"):
        url = getattr(source, k)
        if not re.match(r"^(wss?|https?)://", url):
            raise ConfigError(f"source.{k}: expected a ws(s):// or http(s):// URL, got {url!r}")
    source.max_gap_td  # noqa: B018 - validates the duration
    if source.until_dt is not None and source.kind != "binance":
        raise ConfigError("source.until: only for kind = 'binance' (a replay ends with its files)")
    questdb = _section(QuestDBConfig, data.get("questdb", {}), "questdb")
    env_conf = os.environ.get("QDB_CLIENT_CONF")
    if env_conf:
        questdb = replace(questdb, conf=env_conf)
    env_dead = os.environ.get("PAIRSTREAM_DEAD_LETTER")  # e.g. a container's writable volume
    if env_dead:
        questdb = replace(questdb, dead_letter=env_dead)
    if not re.match(r"^(http|https|tcp|tcps)::", questdb.conf):
        raise ConfigError(f"questdb.conf: expected 'http::addr=HOST:PORT;', got {questdb.conf!r}")
    _positive("questdb.flush_rows", questdb.flush_rows)
    _positive("questdb.buffer_rows", questdb.buffer_rows)
    questdb.flush_interval_s  # noqa: B018 - validates the duration
    bars = _section(BarsConfig, data.get("bars", {}), "bars")
    bars.lateness_td  # noqa: B018 - validates the duration
    raw_an = dict(data.get("analytics", {}))
    raw_presets = raw_an.pop("presets", {})
    per_tf_raw = {k: raw_an.pop(k) for k in list(raw_an) if k in tfs}
    analytics = _section(AnalyticsConfig, raw_an, "analytics")
    _check_analytics("analytics", analytics)
    by_tf = {}
    for tf, sub in per_tf_raw.items():
        by_tf[tf] = _section(AnalyticsConfig, sub, f"analytics.{tf}", base=analytics)
        _check_analytics(f"analytics.{tf}", by_tf[tf])
    presets = _presets(raw_presets, analytics)
    probe = Config(analytics=analytics, analytics_by_tf=by_tf, presets=presets)
    for name in presets:
        for tf in tfs:
            _check_analytics(f"analytics.presets.{name}", probe.analytics_for(tf, name))
    signals = _section(SignalsConfig, data.get("signals", {}), "signals")
    if not signals.entry > signals.exit >= 0:
        raise ConfigError(
            f"signals.exit: must be ≥ 0 and below signals.entry ({signals.entry}), "
            f"got {signals.exit}"
        )
    if signals.stop is not None and signals.stop <= signals.entry:
        raise ConfigError(f"signals.stop: must be above signals.entry, got {signals.stop}")
    _positive("signals.fee_bps", signals.fee_bps, allow_zero=True)
    if signals.use not in ("zscore", "z_kf"):
        raise ConfigError(f"signals.use: expected 'zscore' or 'z_kf', got {signals.use!r}")
    grafana = _check_grafana(_section(GrafanaConfig, data.get("grafana", {}), "grafana"))
    alerts = data.get("alerts", [])
    if not isinstance(alerts, list) or not all(isinstance(a, dict) for a in alerts):
        raise ConfigError("alerts: expected [[alerts]] tables")
    scan = _check_scan(_section(ScanConfig, data.get("scan", {}), "scan"), symbols, tuple(tfs))
    return Config(
        symbols=symbols,
        timeframes=tuple(tfs),
        pairs=tuple(pairs),
        source=source,
        questdb=questdb,
        bars=bars,
        analytics=analytics,
        analytics_by_tf=by_tf,
        presets=presets,
        signals=signals,
        grafana=grafana,
        alerts=tuple(alerts),
        path=path,
        scan=scan,
    )


def load(path: Optional[str | os.PathLike] = None) -> Config:
    """Read the configuration: ``path``, else ``$PAIRSTREAM_CONFIG``, else ``pairstream.toml``."""
    chosen = Path(path or os.environ.get("PAIRSTREAM_CONFIG") or DEFAULT_PATH)
    try:
        with open(chosen, "rb") as fh:
            data = tomllib.load(fh)
    except FileNotFoundError:
        raise ConfigError(f"config file {chosen} does not exist") from None
    except tomllib.TOMLDecodeError as e:
        raise ConfigError(f"{chosen}: not valid TOML ({e})") from None
    cfg = parse(data, str(chosen))
    # Relative paths (replay files, dead letters) are relative to the config file, like every
    # tool users know.
    if cfg.source.paths:
        base = chosen.resolve().parent
        paths = tuple(p if os.path.isabs(p) else str(base / p) for p in cfg.source.paths)
        cfg = replace(cfg, source=replace(cfg.source, paths=paths))
    dl = cfg.questdb.dead_letter
    if dl and not os.path.isabs(dl):
        cfg = replace(
            cfg, questdb=replace(cfg.questdb, dead_letter=str(chosen.resolve().parent / dl))
        )
    return cfg
