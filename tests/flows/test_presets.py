"""Two window presets on window A: every preset's pair_analytics rows equal the
statsmodels/pandas/pykalman reference computed with its own windows (tolerances of
tests/reference.py), and its signals equal the vectorised signal reference."""

from __future__ import annotations

import numpy as np
import pytest

from connectors.questdb_sink import drop_tables
from pairstream.config import load
from tests.conftest import REPO, run_flow
from tests.flows.test_pairs import _rows, table
from tests.reference import assert_analytics_equal, reference_analytics, reference_signals

DEMO = REPO / "config" / "demo.toml"
PRESETS = """
[analytics.presets]
fast = { window = 30, z_window = 30, corr_window = 20 }
slow = { window = 90, z_window = 90, adf_window = 150, prices = "log" }
"""


@pytest.fixture(scope="module")
def presets_run(questdb, tmp_path_factory):
    text = DEMO.read_text().replace("../data/", f"{REPO}/data/")
    text += PRESETS  # demo.toml ends with [analytics]
    path = tmp_path_factory.mktemp("presets") / "presets.toml"
    path.write_text(text)
    drop_tables(questdb.http)
    run_flow(questdb, path)
    return questdb, load(path)


@pytest.mark.parametrize("preset", ["default", "fast", "slow"])
def test_every_preset_equals_the_reference_with_its_windows(presets_run, preset):
    questdb, cfg = presets_run
    where = f"WHERE tf = '1s' AND preset = '{preset}'"
    got = table(questdb.http, "pair_analytics", where)
    sig = table(questdb.http, "signals", where)
    assert len(got) == len(sig) > 400
    a = cfg.analytics_for("1s", preset)
    ref = reference_analytics(got["y"].to_numpy(float), got["x"].to_numpy(float), a)
    assert_analytics_equal(_rows(got), ref, a.prices)
    assert got["warm"].sum() == len(got) - (a.window + a.z_window - 2)
    z = got["zscore"].astype(float).to_numpy()
    beta = got["beta"].astype(float).to_numpy()
    rs = reference_signals(z, beta, got["y"].to_numpy(float), got["x"].to_numpy(float),
                           cfg.signals, a.prices)  # fmt: skip
    assert (sig["position"].to_numpy() == rs["position"].to_numpy()).all()
    scale = np.abs(got["y"].to_numpy(float)).max()
    np.testing.assert_allclose(sig["cum_pnl"], rs["cum_pnl"], rtol=0, atol=1e-9 * scale)


def test_alerts_follow_the_default_preset_only(presets_run):
    questdb, _ = presets_run
    n = questdb.http.query("SELECT count() n FROM pair_analytics WHERE tf = '1s'")[0]["n"]
    per = questdb.http.query(
        "SELECT preset, count() n FROM pair_analytics WHERE tf = '1s' ORDER BY preset"
    )
    assert [r["preset"] for r in per] == ["default", "fast", "slow"]
    assert len({r["n"] for r in per}) == 1 and n == 3 * per[0]["n"]
