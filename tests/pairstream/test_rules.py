"""The alert grammar: hostile input gives one clear line, valid input evaluates like Python/SQL.

References: Python's own operator precedence (the grammar is a subset of Python expressions,
evaluated by the interpreter on trusted test strings only) and pandas' nullable ``boolean``
dtype for three-valued (Kleene/SQL) logic.
"""

from __future__ import annotations

import builtins
import math
import pickle
import random
from dataclasses import replace
from datetime import datetime, timezone

import pandas as pd
import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from pairstream.alerts import load_rules
from pairstream.config import Config, ConfigError, PairConfig
from pairstream.records import Analytics
from pairstream.rules import MAX_DEPTH, MAX_LENGTH, METRICS, Condition, RuleError, parse_condition

LEGS = ("BTCUSDT", "ETHUSDT")
CFG = Config(
    symbols=("BTCUSDT", "ETHUSDT", "SOLUSDT"),
    pairs=(PairConfig("BTCUSDT", "ETHUSDT"), PairConfig("SOLUSDT", "ETHUSDT")),
)
TS = datetime(2024, 7, 1, tzinfo=timezone.utc)


def row(**values: float | None) -> Analytics:
    base = {m: 1.0 for m in METRICS}
    base.update(values)
    return Analytics(pair="BTCUSDT/ETHUSDT", tf="1m", ts=TS, warm=True, **base)


def rule_error(when, key: str = "when", **extra) -> str:
    """load_rules on one rule; returns the ConfigError text (any other exception fails)."""
    raw = {"id": "r1", "pair": "BTCUSDT/ETHUSDT", "tf": "1m", "when": "zscore > 2", **extra}
    raw[key] = when
    with pytest.raises(ConfigError) as info:
        load_rules(replace(CFG, alerts=(raw,)))
    assert info.type is ConfigError
    return str(info.value)


# (expression, column, gist of the message)
HOSTILE = [
    ("zscor > 2", 1, "unknown metric 'zscor' (did you mean 'zscore'? known: adf_p, alpha,"),
    ("ZSCORE > 2", 1, "did you mean 'zscore'"),
    ("zscore > 2 and corrr < 0.5", 16, "unknown metric 'corrr'"),
    ("True", 1, "unknown metric 'True'"),
    ("(zscore > 2", 12, "expected ')' to close the '(' at column 1, found end of expression"),
    ("abs(zscore) > 2)", 16, "unbalanced ')'"),
    ("abs(zscore > 2", 5, "abs() takes a number, not a condition"),
    ("abs(zscore + 2 > 1", 5, "abs() takes a number, not a condition"),
    ("__import__('os')", 1, "unknown function '__import__' (known: abs, price)"),
    ("__import__('os').system('touch /tmp/x')", 1, "unknown function '__import__'"),
    ("exec('zscore') > 1", 1, "unknown function 'exec'"),
    ("os.system('ls')", 3, "'.' (attribute access is not supported)"),
    ("zscore.__class__ > 1", 7, "attribute access is not supported"),
    ("lambda: zscore > 1", 7, "unexpected character ':'"),
    ("'abc' > zscore", 1, "strings are not supported"),
    ('zscore == "2"', 11, "strings are not supported"),
    ("price(DOGEUSDT) > 1", 7, "price(DOGEUSDT): not a leg of this pair (expected BTCUSDT or"),
    ("price() > 1", 7, "price() needs a symbol of the pair"),
    ("price(BTCUSDT, ETHUSDT) > 1", 14, "price() takes one symbol"),
    ("zscore > 1e999", 10, "number '1e999' is out of range"),
    ("zscore > 1e16", 10, "out of range (at most 1e+15)"),
    ("zscore > " + "9" * 40, 10, "is too long (at most 32 characters)"),
    ("zscore > " + "9" * 10_000, MAX_LENGTH + 1, f"longer than {MAX_LENGTH} characters"),
    ("zscore > 0x10", 10, "malformed number '0x10'"),
    ("zscore > 2abc", 10, "malformed number '2abc'"),
    ("zscore > 1.2.3", 10, "malformed number '1.2.3'"),
    ("", 1, "empty expression"),
    ("  \t \n ", 1, "empty expression"),
    ("zscore >", 9, "unexpected end of expression; expected a number, a metric"),
    ("zscore > 2 and", 15, "unexpected end of expression"),
    ("zscore > 2 or not", 18, "unexpected end of expression"),
    ("zscore > 2; corr < 1", 11, "unexpected character ';'"),
    ("`zscore` > 2", 1, "backticks are not supported"),
    ("zs\u0441ore > 2", 3, "CYRILLIC SMALL LETTER ES); rules are plain ASCII"),
    ("zscore > \u22122", 10, "(MINUS SIGN); rules are plain ASCII"),
    ("zscore\uff1e2", 7, "FULLWIDTH GREATER-THAN SIGN"),
    ("zscore\u00a0> 2", 7, "NO-BREAK SPACE"),
    ("(" * 100 + "zscore > 1" + ")" * 100, MAX_DEPTH + 1, "nested too deeply (at most 20 levels)"),
    ("not " * 50 + "zscore > 1", 4 * MAX_DEPTH + 1, "nested too deeply"),
    ("-" * 50 + "zscore > 1", MAX_DEPTH + 1, "nested too deeply"),
    ("zscore > 1 or " * 100 + "corr < 0", MAX_LENGTH + 1, "longer than 1000 characters"),
    ("zscore", 1, "expected a condition such as 'zscore > 2', got a number"),
    ("abs(zscore) * 2", 1, "expected a condition"),
    ("zscore = 2", 8, "'=' (use '==' to compare)"),
    ("zscore > 2 && corr < 1", 12, "'&&' (use 'and')"),
    ("zscore > 2 || corr < 1", 12, "'||' (use 'or')"),
    ("!(zscore > 2)", 1, "use 'not'"),
    ("1 < zscore < 2", 12, "comparisons cannot be chained; combine them with 'and'"),
    ("zscore > 2 and 3", 16, "'and' needs a condition such as 'zscore > 2', got a number"),
    ("corr or zscore > 2", 1, "'or' needs a condition"),
    ("not zscore", 5, "'not' needs a condition"),
    ("(zscore > 1) + 1 > 0", 1, "'+' needs a number, got a condition"),
    ("(zscore > 1) > 0", 1, "'>' needs a number, got a condition"),
    ("1 > 0", 1, "the condition reads no metric"),
    ("zscore() > 1", 7, "zscore is a metric, not a function"),
    ("zscore[0] > 1", 7, "indexing is not supported"),
    ("{zscore} > 1", 1, "braces are not supported"),
    ("zscore ** 2 > 1", 8, "'**'"),
    ("zscore % 2 > 1", 8, "the operators are + - * /"),
    ("abs(zscore, 2) > 1", 11, "abs() takes one argument"),
    ("zscore > 2 zscore", 12, "expected an operator or the end, found 'zscore'"),
    ("() > 1", 2, "empty parentheses"),
    ("zscore > 2\x00", 11, "unexpected character '\\x00'"),
    ("zscore > 2 # comment", 12, "comments are not supported"),
    ("zscore > 2 and and corr < 1", 16, "found keyword 'and'"),
    ("$zscore > 2", 1, "variables are not supported"),
    ("a" * 500 + " > 1", 1, "unknown metric 'aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa...'"),
]


def test_at_least_thirty_hostile_rules() -> None:
    assert len(HOSTILE) >= 30


@pytest.mark.parametrize(
    ("when", "column", "gist"), HOSTILE, ids=[repr(h[0])[:30] for h in HOSTILE]
)
def test_hostile_rule_gives_one_line(when: str, column: int, gist: str) -> None:
    msg = rule_error(when)
    assert msg.startswith(f"alerts[r1].when: column {column}: "), msg
    assert gist in msg, msg
    assert "\n" not in msg and "\r" not in msg
    assert "Traceback" not in msg
    assert len(msg) < 400


@pytest.mark.parametrize(
    ("raw", "key", "gist"),
    [
        ({"when": 5}, "when", "column 1: expected a condition as a string, got int"),
        ({"clear": "abs(zscore <"}, "clear", "column 5: abs() takes a number"),
        ({"clear": ""}, "clear", "column 1: empty expression"),
        ({"clear": "zscor < 1"}, "clear", "column 1: unknown metric 'zscor'"),
    ],
)
def test_expression_keys_name_their_key(raw: dict, key: str, gist: str) -> None:
    ((k, v),) = raw.items()
    msg = rule_error(v, key=k)
    assert msg == f"alerts[r1].{key}: {gist}" or msg.startswith(f"alerts[r1].{key}: {gist}"), msg


@pytest.mark.parametrize(
    ("alerts", "expected"),
    [
        (
            ({"pair": "BTCUSDT/ETHUSDT", "tf": "1m", "when": "zscore > 2"},),
            "alerts[0].id: required",
        ),
        (
            ({"id": "a b", "pair": "BTCUSDT/ETHUSDT", "tf": "1m", "when": "zscore > 2"},),
            "alerts[0].id: expected",
        ),
        (("not a table",), "alerts[0]: expected a table, got str"),
        (
            (
                {"id": "a", "pair": "BTCUSDT/ETHUSDT", "tf": "1m", "when": "zscore > 2"},
                {"id": "a", "pair": "BTCUSDT/ETHUSDT", "tf": "5m", "when": "zscore > 3"},
            ),
            "alerts[a].id: used by another rule",
        ),
        (({"id": "a", "pair": "BTCUSDT/ETHUSDT", "tf": "1m"},), "alerts[a].when: required"),
        (({"id": "a", "tf": "1m", "when": "zscore > 2"},), "alerts[a].pair: required"),
        (({"id": "a", "pair": "BTCUSDT/ETHUSDT", "when": "zscore > 2"},), "alerts[a].tf: required"),
        (
            (
                {
                    "id": "a",
                    "pair": "BTCUSDT/ETHUSDT",
                    "tf": "1m",
                    "when": "zscore > 2",
                    "fro": "1m",
                },
            ),
            "alerts[a].fro: unknown key (known: id, pair, tf, when, clear, for, cooldown,",
        ),
        (
            ({"id": "a", "pair": "ETHUSDT/BTCUSDT", "tf": "1m", "when": "zscore > 2"},),
            "alerts[a].pair: 'ETHUSDT/BTCUSDT' is not a configured pair (known: BTCUSDT/ETHUSDT,",
        ),
        (
            ({"id": "a", "pair": "BTCUSDT/ETHUSDT", "tf": "15m", "when": "zscore > 2"},),
            "alerts[a].tf: '15m' is not a configured timeframe (known: 1s, 1m, 5m)",
        ),
        (
            (
                {
                    "id": "a",
                    "pair": "BTCUSDT/ETHUSDT",
                    "tf": "1m",
                    "when": "z_kf > 2",
                    "for": "5 min",
                },
            ),
            "alerts[a].for: expected a duration like",
        ),
        (
            (
                {
                    "id": "a",
                    "pair": "BTCUSDT/ETHUSDT",
                    "tf": "1m",
                    "when": "z_kf > 2",
                    "cooldown": 5,
                },
            ),
            "alerts[a].cooldown: expected a string, got 5",
        ),
        (
            (
                {
                    "id": "a",
                    "pair": "BTCUSDT/ETHUSDT",
                    "tf": "1m",
                    "when": "z_kf > 2",
                    "severity": "fatal",
                },
            ),
            "alerts[a].severity: expected one of info, warning, critical, got 'fatal'",
        ),
        (
            ({"id": "a", "pair": "SOLUSDT/ETHUSDT", "tf": "1m", "when": "price(BTCUSDT) > 1"},),
            "alerts[a].when: column 7: price(BTCUSDT): not a leg of this pair (expected SOLUSDT or",
        ),
    ],
)
def test_rule_table_errors(alerts: tuple, expected: str) -> None:
    with pytest.raises(ConfigError) as info:
        load_rules(replace(CFG, alerts=alerts))
    msg = str(info.value)
    assert msg.startswith(expected), msg
    assert "\n" not in msg


def test_nothing_is_executed(tmp_path, monkeypatch) -> None:
    """A rule that would run a command in Python creates no file; eval/exec/compile are unused."""
    target = tmp_path / "pwned"

    def forbidden(*args, **kwargs):
        raise AssertionError("user text reached eval/exec/compile")

    monkeypatch.setattr(builtins, "eval", forbidden)
    monkeypatch.setattr(builtins, "exec", forbidden)
    monkeypatch.setattr(builtins, "compile", forbidden)
    for text in (
        f"__import__('os').system('touch {target}')",
        f"zscore > 1 or __import__('os').system('touch {target}') > 0",
        f"zscore > 1 and [__import__('os').system('touch {target}')]",
        "(lambda: __import__('os'))() > 1",
    ):
        msg = rule_error(text)
        assert msg.startswith("alerts[r1].when: column "), msg
    # and valid rules evaluate without them, too
    (rule,) = load_rules(
        replace(
            CFG,
            alerts=(
                {"id": "ok", "pair": "BTCUSDT/ETHUSDT", "tf": "1m", "when": "abs(zscore) > 2"},
            ),
        )
    )
    assert rule.when.evaluate(row(zscore=-3.0)) is True
    assert not target.exists()


# text that is almost a rule: grammar characters, names, and a few unicode/control characters
_ALPHABET = st.sampled_from(
    list("()<>=!+-*/., _'\"`;:[]{}\\\t\n0123456789eE")
    + ["zscore", "corr", "abs", "price", "BTCUSDT", "and", "or", "not", "\u2212", "\u0430", "\x00"]
)


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(_ALPHABET, max_size=40).map("".join) | st.text(max_size=60))
def test_fuzz_only_config_errors(text: str) -> None:
    """Arbitrary text either loads or raises a one-line ConfigError, never anything else."""
    raw = {"id": "f", "pair": "BTCUSDT/ETHUSDT", "tf": "1m", "when": text}
    try:
        (rule,) = load_rules(replace(CFG, alerts=(raw,)))
    except ConfigError as e:
        assert str(e).startswith("alerts[f].when: column ") and "\n" not in str(e)
        col = int(str(e).split("column ")[1].split(":")[0])
        assert 1 <= col <= len(text) + 1
    else:
        assert rule.when.evaluate(row()) in (True, False, None)


# ---------------------------------------------------------------------------------------------
# valid rules


def test_default_config_rule_loads() -> None:
    from pairstream.config import load

    cfg = load()
    rules = load_rules(cfg)
    assert [r.id for r in rules] == [a["id"] for a in cfg.alerts]


def test_rule_defaults_and_values() -> None:
    raw = {"id": "p", "pair": "BTCUSDT/ETHUSDT", "tf": "5m", "when": "price(ethusdt) < 3000"}
    (rule,) = load_rules(replace(CFG, alerts=(raw,)))
    assert (rule.severity, rule.hold.total_seconds(), rule.cooldown.total_seconds()) == (
        "warning",
        0,
        0,
    )
    assert rule.clear.text == "not (price(ethusdt) < 3000)"
    r = row(x=2999.5, y=60000.0)
    assert rule.when.evaluate(r) is True and rule.clear.evaluate(r) is False
    assert rule.when.first_value(r) == 2999.5
    assert rule.when.values(r) == {"price(ETHUSDT)": 2999.5}


def test_price_maps_to_legs_and_symbols_may_start_with_digits() -> None:
    c = parse_condition("price(1000PEPEUSDT) > price ( ETHUSDT ) * 0", ("1000PEPEUSDT", "ETHUSDT"))
    assert c.evaluate(row(y=0.01, x=3000.0)) is True
    assert [m.label() for m in c.metrics] == ["price(1000PEPEUSDT)", "price(ETHUSDT)"]


def test_first_metric_is_the_first_written() -> None:
    c = parse_condition("2 < abs(-spread) and zscore > 1", LEGS)
    assert c.first_value(row(spread=-7.5, zscore=3.0)) == -7.5


def test_tree_is_frozen_and_picklable() -> None:
    c = parse_condition("abs(zscore) > 2 and not (corr < 0.5 or adf_p >= .05)", LEGS)
    assert pickle.loads(pickle.dumps(c)) == c
    with pytest.raises(AttributeError):
        c.root.op = "or"  # type: ignore[misc]


def test_division_by_zero_and_overflow_are_no_value() -> None:
    assert parse_condition("zscore / (corr - corr) > 0", LEGS).evaluate(row()) is None
    assert (
        parse_condition("zscore * 1e15 * 1e15 * 1e15 * 1e15 * 1e15 > 0", LEGS).evaluate(
            row(zscore=1e300)
        )
        is None
    )
    assert parse_condition("zscore > 0", LEGS).evaluate(row(zscore=math.nan)) is None


# ---------------------------------------------------------------------------------------------
# three-valued logic against pandas' nullable boolean (Kleene) arrays

_TRUTH = [True, False, None]


@pytest.mark.parametrize("a", _TRUTH)
@pytest.mark.parametrize("b", _TRUTH)
def test_kleene_logic_matches_pandas(a: bool | None, b: bool | None) -> None:
    # zscore > 0 is a, corr > 0 is b; None = the metric is NULL
    metric = {True: 1.0, False: -1.0, None: None}
    r = row(zscore=metric[a], corr=metric[b])
    pa = pd.array([a], dtype="boolean")
    pb = pd.array([b], dtype="boolean")

    def ref(arr) -> bool | None:
        return None if arr[0] is pd.NA else bool(arr[0])

    assert parse_condition("zscore > 0 and corr > 0", LEGS).evaluate(r) is ref(pa & pb)
    assert parse_condition("zscore > 0 or corr > 0", LEGS).evaluate(r) is ref(pa | pb)
    assert parse_condition("not zscore > 0", LEGS).evaluate(r) is ref(~pa)
    assert parse_condition("not (zscore > 0 or corr > 0)", LEGS).evaluate(r) is ref(~(pa | pb))


# ---------------------------------------------------------------------------------------------
# precedence: random rules in the grammar evaluate like the same text in Python

_NAMES = ("zscore", "spread", "corr", "beta", "z_kf")


def _gen_sum(rng: random.Random, depth: int) -> str:
    terms = [_gen_product(rng, depth) for _ in range(rng.randint(1, 3))]
    out = terms[0]
    for t in terms[1:]:
        out += f" {rng.choice('+-')} {t}"
    return out


def _gen_product(rng: random.Random, depth: int) -> str:
    factors = [_gen_unary(rng, depth) for _ in range(rng.randint(1, 3))]
    out = factors[0]
    for f in factors[1:]:
        out += f" {rng.choice('*/')} {f}"
    return out


def _gen_unary(rng: random.Random, depth: int) -> str:
    k = rng.random()
    if k < 0.15:
        return "-" + _gen_unary(rng, depth)
    if depth > 0 and k < 0.3:
        return f"abs({_gen_sum(rng, depth - 1)})"
    if depth > 0 and k < 0.4:
        return f"({_gen_sum(rng, depth - 1)})"
    if k < 0.7:
        return rng.choice(_NAMES)
    return rng.choice(["2", "0.5", "1e1", ".25", "3.0", "1"])


def _gen_cond(rng: random.Random, depth: int) -> str:
    parts = []
    for _ in range(rng.randint(1, 2)):
        ands = []
        for _ in range(rng.randint(1, 2)):
            if depth > 0 and rng.random() < 0.2:
                atom = f"({_gen_cond(rng, depth - 1)})"
            else:
                op = rng.choice(["<", "<=", ">", ">=", "==", "!="])
                atom = f"{_gen_sum(rng, depth - 1)} {op} {_gen_sum(rng, depth - 1)}"
            ands.append(("not " if rng.random() < 0.25 else "") + atom)
        parts.append(" and ".join(ands))
    return " or ".join(parts)


@settings(max_examples=300, deadline=None)
@given(
    seed=st.integers(0, 2**32 - 1),
    values=st.lists(
        st.floats(-10, 10, allow_nan=False).filter(lambda v: abs(v) > 1e-3), min_size=5, max_size=5
    ),
)
def test_precedence_matches_python(seed: int, values: list[float]) -> None:
    text = _gen_cond(random.Random(seed), depth=2)
    assume(len(text) <= 1000 and any(name in text for name in _NAMES))
    c = parse_condition(text, LEGS)
    env = dict(zip(_NAMES, values, strict=True))
    try:
        # trusted, generated text: Python is the precedence reference here
        expected = eval(text, {"__builtins__": {}, "abs": abs}, dict(env))  # noqa: S307
    except ZeroDivisionError:
        assume(False)
    assert c.evaluate(row(**env)) is bool(expected), text


def test_known_precedence_examples_match_python() -> None:
    env = {"zscore": 3.0, "spread": -4.0, "corr": 0.25, "beta": 2.0, "z_kf": -1.5}
    for text in (
        "zscore - spread * beta > 10",
        "-zscore * -spread / beta < corr - 1",
        "zscore > 1 or corr > 1 and beta < 0",
        "not zscore > 1 or corr < 1",
        "not (zscore > 1 or corr < 1)",
        "abs(spread - z_kf) / 2 >= 1.25",
        "zscore - spread - beta == 5",
        "zscore / beta / corr != 6",
        "--zscore == zscore",
    ):
        expected = eval(text, {"__builtins__": {}, "abs": abs}, dict(env))  # noqa: S307
        assert parse_condition(text, LEGS).evaluate(row(**env)) is bool(expected), text


def test_rule_error_has_column() -> None:
    with pytest.raises(RuleError) as info:
        parse_condition("zscore >> 1", LEGS)
    assert info.value.column == 9
    assert str(info.value).startswith("column 9: expected a number")


def test_condition_type() -> None:
    assert isinstance(parse_condition("corr < 0.5 and adf_p > 0.05", LEGS), Condition)
