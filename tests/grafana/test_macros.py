"""The Python replay of Grafana's and the QuestDB plugin's query rewriting."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest

from tests.grafana.macros import (
    MacroError,
    TimeRange,
    apply_conditional_all,
    calculate_interval_ms,
    expand_macros,
    render_query,
    substitute_variables,
)

# the plugin README's example bounds: 1706263425598000 .. 1706285057560000 µs
RNG = TimeRange(
    datetime.fromtimestamp(1706263425.598, tz=timezone.utc),
    datetime.fromtimestamp(1706285057.560, tz=timezone.utc),
)


def test_time_macros_match_the_plugin_readme():
    assert expand_macros("$__timeFilter(timestamp)", RNG, 1000) == (
        "timestamp >= cast(1706263425598000 as timestamp) AND "
        "timestamp <= cast(1706285057560000 as timestamp)"
    )
    assert expand_macros("$__fromTime", RNG, 1000) == "cast(1706263425598000 as timestamp)"
    assert expand_macros("$__toTime", RNG, 1000) == "cast(1706285057560000 as timestamp)"


@pytest.mark.parametrize(
    "ms,text",
    [
        (1, "1T"),
        (500, "500T"),
        (1000, "1s"),
        (20_000, "20s"),
        (120_000, "120s"),
        (3_600_000, "1h"),
        (5 * 3_600_000, "5h"),
        (86_400_000, "1d"),
        (604_800_000, "7d"),
        (36 * 3_600_000, "1d"),
    ],  # sic: the plugin divides whole hours by 24 (Grafana's
    # rounded intervals never produce 36h)
)
def test_sample_by_interval_units(ms, text):
    # README: "d, h, s or T (millisecond). Example: 1d, 5h, 20s, 1T"
    assert expand_macros("SAMPLE BY $__sampleByInterval", RNG, ms) == f"SAMPLE BY {text}"


def test_paren_less_macro_swallows_text_up_to_a_bracket_like_the_plugin():
    sql = "SAMPLE BY $__sampleByInterval FILL(PREV)"
    assert expand_macros(sql, RNG, 1000, strict=False) == "SAMPLE BY 1s"  # FILL lost
    with pytest.raises(MacroError, match="swallows"):
        expand_macros(sql, RNG, 1000)
    # a ')' first stops the scan: safe
    assert (
        expand_macros("(x < $__toTime)", RNG, 1000) == "(x < cast(1706285057560000 as timestamp))"
    )


def test_time_filter_needs_one_argument():
    with pytest.raises(MacroError):
        expand_macros("$__timeFilter(a, b)", RNG, 1000)


def test_variables_single_multi_and_formats():
    v = {"pair": "BTCUSDT/ETHUSDT", "sym": ["BTCUSDT", "ETHUSDT"]}
    assert (
        substitute_variables("p = '$pair' AND s IN ($sym)", v)
        == "p = 'BTCUSDT/ETHUSDT' AND s IN ('BTCUSDT','ETHUSDT')"
    )
    assert (
        substitute_variables("${pair} [[pair]] ${sym:csv}", v)
        == "BTCUSDT/ETHUSDT BTCUSDT/ETHUSDT BTCUSDT,ETHUSDT"
    )
    assert (
        substitute_variables("$__timeFilter(ts) $__fromTime", v) == "$__timeFilter(ts) $__fromTime"
    )


def test_conditional_all():
    sql = "WHERE $__conditionalAll(symbol IN ($sym), $sym)"
    assert apply_conditional_all(sql, {"sym": "$__all"}) == "WHERE 1=1"
    assert apply_conditional_all(sql, {"sym": ["A"]}) == "WHERE symbol IN ($sym)"


def test_interval_follows_grafana_rounding_and_min_interval():
    start = datetime(2024, 7, 1, tzinfo=timezone.utc)
    week = TimeRange(start, start + timedelta(days=7))
    assert calculate_interval_ms(week, 1000) == 600_000  # 604.8 s → 10m
    eight_min = TimeRange(start, start + timedelta(minutes=8))
    assert calculate_interval_ms(eight_min, 1000) == 500
    assert calculate_interval_ms(eight_min, 1000, "1s") == 1000


def test_render_rejects_unknown_variables():
    with pytest.raises(MacroError, match="unknown template variables"):
        render_query("SELECT 1 FROM t WHERE a = '$nope'", RNG, {})
    out = render_query(
        "SELECT count() * 1000.0 / $__interval_ms FROM t WHERE $__timeFilter(ts)",
        RNG,
        {},
        interval_ms=2000,
    )
    assert "/ 2000 FROM" in out and "$" not in out
