"""Configuration: defaults that run, one-line errors naming the key, environment overrides."""

from __future__ import annotations

from pathlib import Path

import pytest

from pairstream.config import Config, ConfigError, load, parse
from tests.conftest import REPO


def test_repository_configs_load():
    live = load(REPO / "pairstream.toml")
    assert live.source.kind == "binance" and live.pair_ids == ("BTCUSDT/ETHUSDT",)
    demo = load(REPO / "config" / "demo.toml")
    assert demo.source.kind == "replay"
    assert all(Path(p).is_absolute() for p in demo.source.paths)


def test_defaults_match_the_design_contract():
    c = parse({})
    assert c.symbols == ("BTCUSDT", "ETHUSDT") and c.timeframes == ("1s", "1m", "5m")
    a = c.analytics
    assert (a.prices, a.window, a.z_window, a.corr_window, a.adf_window, a.adf_every) == (
        "raw",
        60,
        60,
        60,
        120,
        10,
    )
    assert (a.kalman_delta, a.kalman_obs_var, a.kalman_p0) == (1e-4, 1e-3, 1.0)
    assert c.bars.lateness_td.total_seconds() == 0.5
    assert c.questdb.conf == "http::addr=127.0.0.1:9000;"


def test_per_timeframe_analytics_override():
    c = parse({"analytics": {"window": 30, "1m": {"window": 90, "prices": "log"}}})
    assert c.analytics_for("1s").window == 30 and c.analytics_for("1s").prices == "raw"
    assert c.analytics_for("1m").window == 90 and c.analytics_for("1m").prices == "log"
    assert c.analytics_for("1m").z_window == 60


@pytest.mark.parametrize(
    "data, message",
    [
        ({"symbolz": []}, r"^symbolz: unknown key \(known: .*symbols"),
        ({"symbols": "BTCUSDT"}, r"^symbols: expected a list of strings, got 'BTCUSDT'$"),
        ({"analytics": {"window": "60"}}, r"^analytics\.window: expected an integer, got '60'$"),
        ({"analytics": {"window": 2}}, r"^analytics\.window: must be at least 3 bars"),
        ({"analytics": {"windw": 2}}, r"^analytics\.windw: unknown key"),
        ({"analytics": {"1m": {"prices": "sqrt"}}}, r"^analytics\.1m\.prices: expected 'raw'"),
        ({"analytics": {"kalman_delta": 1.5}}, r"^analytics\.kalman_delta: must be in \(0, 1\)"),
        ({"bars": {"lateness": "soon"}}, r"^bars\.lateness: expected a duration"),
        ({"source": {"kind": "kafka"}}, r"^source\.kind: expected 'binance' or 'replay'"),
        ({"source": {"kind": "replay"}}, r"^source\.paths: a replay needs at least one file"),
        ({"source": {"speed": -1}}, r"^source\.speed: must be ≥ 0"),
        ({"source": {"ws_url": "ftp://x"}}, r"^source\.ws_url: expected a ws"),
        ({"pairs": [{"y": "BTCUSDT", "x": "SOL"}]}, r"^pairs\[0\]: 'SOL' is not in symbols"),
        ({"pairs": [{"y": "BTCUSDT"}]}, r"^pairs\[0\]: expected"),
        ({"timeframes": ["1m", "1s"]}, r"^timeframes: list each once, shortest first"),
        ({"timeframes": ["1s", "7s", "1m"]}, r"^timeframes: 60s is not a multiple of 7s"),
        ({"questdb": {"conf": "localhost:9000"}}, r"^questdb\.conf: expected 'http::addr"),
        ({"signals": {"entry": 1, "exit": 2}}, r"^signals\.exit: must be ≥ 0 and below"),
        ({"signals": {"stop": 1.0}}, r"^signals\.stop: must be above signals\.entry"),
        ({"alerts": {"id": "x"}}, r"^alerts: expected \[\[alerts\]\] tables"),
    ],
)
def test_bad_configuration_is_one_line_naming_the_key(data, message):
    with pytest.raises(ConfigError, match=message) as e:
        parse(data)
    assert "\n" not in str(e.value)


def test_environment_overrides(tmp_path: Path, monkeypatch):
    cfg = tmp_path / "other.toml"
    cfg.write_text('symbols = ["SOLUSDT", "ETHUSDT"]\npairs = [{ y = "SOLUSDT", x = "ETHUSDT" }]\n')
    monkeypatch.setenv("PAIRSTREAM_CONFIG", str(cfg))
    monkeypatch.setenv("QDB_CLIENT_CONF", "http::addr=10.1.2.3:9000;")
    c = load()
    assert c.symbols == ("SOLUSDT", "ETHUSDT") and c.pair_ids == ("SOLUSDT/ETHUSDT",)
    assert c.questdb.conf == "http::addr=10.1.2.3:9000;"
    assert isinstance(c, Config)


def test_unreadable_files_are_one_line(tmp_path: Path):
    with pytest.raises(ConfigError, match="does not exist"):
        load(tmp_path / "missing.toml")
    bad = tmp_path / "bad.toml"
    bad.write_text("symbols = [\n")
    with pytest.raises(ConfigError, match="not valid TOML"):
        load(bad)


def test_dead_letter_path_is_relative_to_the_config_file(tmp_path: Path, monkeypatch):
    monkeypatch.delenv("PAIRSTREAM_DEAD_LETTER", raising=False)
    (tmp_path / "c.toml").write_text('[questdb]\ndead_letter = "var/refused.jsonl"\n')
    assert load(tmp_path / "c.toml").questdb.dead_letter == str(tmp_path / "var/refused.jsonl")
    monkeypatch.setenv("PAIRSTREAM_DEAD_LETTER", "/data/dl.jsonl")
    assert load(tmp_path / "c.toml").questdb.dead_letter == "/data/dl.jsonl"


@pytest.mark.parametrize(
    "grafana, message",
    [
        ({"annotation": True}, "grafana.annotation: unknown key (known: annotation_queue, "),
        ({"annotations": "yes"}, "grafana.annotations: expected true or false, got 'yes'"),
        ({"url": "http://admin:pw@g:3000"}, "grafana.url: must not hold credentials"),
        ({"url": "grafana:3000"}, "grafana.url: expected http(s)://HOST[:PORT]"),
        ({"annotations": True}, "grafana.annotations: needs a Grafana URL"),
        ({"annotation_queue": 0}, "grafana.annotation_queue: must be > 0"),
        ({"questdb_port": 70000}, "grafana.questdb_port: expected a TCP port"),
        ({"folder": "a b"}, "grafana.folder: expected a folder uid"),
        ({"timeout": "soon"}, "grafana.timeout: expected a duration"),
    ],
)
def test_bad_grafana_table_is_one_line_naming_the_key(grafana, message, monkeypatch):
    monkeypatch.delenv("GRAFANA_URL", raising=False)
    with pytest.raises(ConfigError) as e:
        parse({"grafana": grafana})
    assert str(e.value).startswith(message) and "\n" not in str(e.value)


def test_grafana_url_from_the_environment(monkeypatch):
    monkeypatch.setenv("GRAFANA_URL", "https://grafana.example.com")
    g = parse({"grafana": {"annotations": True, "url": "http://127.0.0.1:3000"}}).grafana
    assert g.url == "https://grafana.example.com" and g.annotations and g.timeout_s == 5.0


_U = {"symbols": ["AUSDT", "BUSDT", "CUSDT"], "pairs": [{"y": "AUSDT", "x": "BUSDT"}]}


@pytest.mark.parametrize(
    "scan, message",
    [
        ({"symbols": ["AUSDT", "ZUSDT"]}, "scan.symbols: 'ZUSDT' is not in symbols"),
        ({"symbols": ["AUSDT"]}, "scan.symbols: a scan needs at least two symbols"),
        ({"symbols": ["AUSDT", "AUSDT"]}, "scan.symbols: a symbol is listed twice"),
        ({"symbols": ["AUSDT", "BUSDT"], "tf": "15m"}, "scan.tf: '15m' is not in timeframes"),
        ({"symbols": ["AUSDT", "BUSDT"], "window": 50}, "scan.window: must be at least 200"),
        ({"symbols": ["AUSDT", "BUSDT"], "every": "90s"}, "scan.every: must be a multiple"),
        ({"every": "soon"}, "scan.every: expected a duration"),
        ({"windows": 3}, "scan.windows: unknown key"),
    ],
)
def test_bad_scan_table_is_one_line_naming_the_key(scan, message):
    with pytest.raises(ConfigError) as e:
        parse({**_U, "scan": scan})
    assert message in str(e.value) and "\n" not in str(e.value)


def test_scan_defaults_and_values():
    assert parse(_U).scan.symbols == ()  # off unless configured
    assert parse({**_U, "timeframes": ["1s"]}).scan.tf == "1m"  # off: tf not checked
    sc = parse({**_U, "scan": {"symbols": ["cusdt", "AUSDT"], "window": 300, "every": "2h"}}).scan
    assert sc.symbols == ("CUSDT", "AUSDT") and sc.every_s == 7200 and sc.tf == "1m"
