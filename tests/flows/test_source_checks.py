"""Live start-up refuses what would stall silently: unknown or non-perpetual symbols, no API key.

The flow (``python -m bytewax.run flows.pairs``) asks the fake exchange's ``exchangeInfo`` (a real
response, trimmed) before it touches QuestDB: here QuestDB is a refused port, so reaching the
QuestDB check would be a different error line.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from connectors.binance_info import SymbolError, check_symbols
from tests.conftest import REPO
from tests.fakes.exchange import EXCHANGE_INFO, FakeBinance, refused_port

START_TIMEOUT = 30.0  # seconds; the check answers in ~1-3 s (interpreter and imports included)

CONFIG = """\
symbols    = {symbols}
timeframes = ["1s"]
pairs      = [{{ y = "{y}", x = "ETHUSDT" }}]

[source]
kind     = "binance"
stream   = "{stream}"
ws_url   = "{ws_url}"
rest_url = "{rest_url}"

[questdb]
conf = "http::addr=127.0.0.1:{qdb_port};"
"""


def start(tmp_path: Path, fake: FakeBinance, symbols: list[str], stream: str = "aggTrade",
          env_drop: tuple[str, ...] = ()) -> subprocess.CompletedProcess:
    cfg = tmp_path / "live.toml"
    cfg.write_text(CONFIG.format(symbols=str(symbols).replace("'", '"'), y=symbols[0],
                                 stream=stream, ws_url=fake.ws_url, rest_url=fake.rest_url,
                                 qdb_port=refused_port()))
    env = {k: v for k, v in os.environ.items() if k not in env_drop and k != "QDB_CLIENT_CONF"}
    env["PAIRSTREAM_CONFIG"] = str(cfg)
    return subprocess.run([sys.executable, "-m", "bytewax.run", "flows.pairs"], cwd=REPO,
                          env=env, capture_output=True, text=True, timeout=START_TIMEOUT)


def error_lines(proc: subprocess.CompletedProcess) -> list[str]:
    return [ln for ln in proc.stderr.splitlines() if ln.startswith("pairstream: error:")]


def test_unknown_symbol_stops_start_up_with_one_line_naming_it(tmp_path):
    with FakeBinance() as fake:
        proc = start(tmp_path, fake, ["BTCUSD", "ETHUSDT"])
        asked = [p for p, _ in fake.stats.rest]
    assert proc.returncode != 0
    [line] = error_lines(proc)
    assert line.startswith("pairstream: error: symbols: BTCUSD: not listed on Binance USD-M "
                           "futures (closest: BTCUSDT, ")
    assert "ETHUSDT" not in line  # the listed symbol is not reported
    assert "Traceback" not in proc.stderr
    assert asked == ["/fapi/v1/exchangeInfo"]  # one request of weight 1, then out


def test_quarterly_and_pending_symbols_are_refused():
    info = __import__("json").loads(EXCHANGE_INFO.read_text())
    pending = next(d["symbol"] for d in info["symbols"] if d["status"] != "TRADING")
    with pytest.raises(SymbolError) as e:
        check_symbols(info, ["BTCUSDT", "BTCUSDT_210924", pending])
    msg = str(e.value)
    assert "\n" not in msg and "BTCUSDT:" not in msg.replace("BTCUSDT_210924", "")
    assert "BTCUSDT_210924: contract type 'CURRENT_QUARTER', not a perpetual (closest: BTCUSDT" \
        in msg
    assert f"{pending}: status 'PENDING_TRADING', not 'TRADING'" in msg
    check_symbols(info, ["BTCUSDT", "ETHUSDT"])  # listed perpetuals pass


def test_trade_stream_without_api_key_names_the_variable(tmp_path):
    with FakeBinance() as fake:
        proc = start(tmp_path, fake, ["BTCUSDT", "ETHUSDT"], stream="trade",
                     env_drop=("BINANCE_API_KEY",))
    assert proc.returncode != 0
    [line] = error_lines(proc)
    assert "BINANCE_API_KEY" in line and "source.api_key_env" in line
    assert "Traceback" not in proc.stderr


def test_pairstream_run_checks_the_symbols_before_starting_questdb(tmp_path, monkeypatch, capsys):
    from flows import cli

    started = []
    monkeypatch.setattr(cli, "questdb_for", lambda *a, **k: started.append(a))
    with FakeBinance() as fake:
        cfg = tmp_path / "live.toml"
        cfg.write_text(CONFIG.format(symbols='["ETHUSDZ", "ETHUSDT"]', y="ETHUSDZ",
                                     stream="aggTrade", ws_url=fake.ws_url,
                                     rest_url=fake.rest_url, qdb_port=refused_port()))
        with pytest.raises(SystemExit) as e:
            cli.main(["run", "--config", str(cfg)])
    assert e.value.code != 0 and not started
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith(
        "pairstream: error: symbols: ETHUSDZ: not listed on Binance USD-M futures (closest: "
        "ETHUSDT")


def test_an_unreachable_exchange_is_retried_with_backoff_until_it_answers(caplog):
    """Connection errors and 5xx at start-up are waited out (logged), not fatal: a flow restarted
    during a Binance outage starts once the exchange is back."""
    import http.server
    import threading

    from connectors.binance_info import verify_symbols

    answers = [503, 503, 502]  # then the real exchangeInfo

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 (http.server's name)
            body = EXCHANGE_INFO.read_bytes()
            status = answers.pop(0) if answers else 200
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body) if status == 200 else 0))
            self.end_headers()
            if status == 200:
                self.wfile.write(body)

        def log_message(self, *args) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        with caplog.at_level("WARNING", logger="pairstream.binance"):
            verify_symbols(f"http://127.0.0.1:{server.server_address[1]}", ["BTCUSDT"],
                           retry_base=0.01)
    finally:
        server.shutdown()
        server.server_close()
    assert not answers  # every failure was retried
    retries = [r.getMessage() for r in caplog.records if "exchangeInfo failed" in r.getMessage()]
    assert len(retries) == 3 and all("retry" in m for m in retries)
    with pytest.raises(SymbolError):  # a definite answer still stops start-up
        verify_symbols(f"http://127.0.0.1:{refused_port()}", ["BTCUSDT"], attempts=2,
                       retry_base=0.01)
