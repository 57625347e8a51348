"""What Grafana and the QuestDB datasource plugin do to a panel's SQL before QuestDB sees it.

Grafana cannot run here, so the tests replay its query path in Python, step for step:

1. **Interval** (Grafana frontend, ``rangeutil.calculateInterval``): range / max data points,
   rounded by ``kbn.roundInterval``, never below the panel's minimum interval.
2. **$__conditionalAll** (plugin frontend, ``QuestDbDatasource.applyConditionalAll``).
3. **Template variables** (Grafana ``templateSrv.replace`` with the plugin's ``format``: a
   single value as is, a multi-value as ``'a','b'``), plus Grafana's built-ins
   (``$__interval``, ``$__interval_ms``, ``$__from``, ``$__to``, ...).
4. **Macros** (plugin backend: ``sqlutil.Interpolate`` from grafana-plugin-sdk-go with the
   plugin's ``pkg/macros/macros.go``): ``$__timeFilter(col)``, ``$__fromTime``, ``$__toTime``,
   ``$__sampleByInterval``, and the SDK defaults ``$__timeFrom``, ``$__timeTo``,
   ``$__timeGroup``, ``$__table``, ``$__column``. The macro scanner is reproduced exactly,
   including its quirk: a macro written without brackets swallows the text up to the next
   bracket if a ``(`` comes before any ``)``. ``strict=True`` turns that into an error.

Newer plugin versions bind the time bounds as ``$1``/``$2`` parameters (``timeparam.go``) when
they can; the SQL is the same with the values inlined, which is what this module produces
(the plugin's own fallback path, ``LiteralMacros``).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Optional, Union

VarValue = Union[str, Sequence[str]]


class MacroError(ValueError):
    """The query would fail (or silently change meaning) in the plugin."""


@dataclass(frozen=True)
class TimeRange:
    """A dashboard time range (Grafana keeps millisecond precision)."""

    start: datetime
    end: datetime

    @property
    def from_ms(self) -> int:
        return int(self.start.timestamp() * 1000)

    @property
    def to_ms(self) -> int:
        return int(self.end.timestamp() * 1000)


# --------------------------------------------------------------------------------------------
# 1. interval (Grafana: public/app/core/utils/kbn.ts roundInterval, rangeutil.calculateInterval)

_ROUND = (  # (upper bound exclusive, rounded interval), both in ms
    (10, 1),
    (15, 10),
    (35, 20),
    (75, 50),
    (150, 100),
    (350, 200),
    (750, 500),
    (1_500, 1_000),
    (3_500, 2_000),
    (7_500, 5_000),
    (12_500, 10_000),
    (17_500, 15_000),
    (25_000, 20_000),
    (45_000, 30_000),
    (90_000, 60_000),
    (210_000, 120_000),
    (450_000, 300_000),
    (750_000, 600_000),
    (1_050_000, 900_000),
    (1_500_000, 1_200_000),
    (2_700_000, 1_800_000),
    (5_400_000, 3_600_000),
    (9_000_000, 7_200_000),
    (16_200_000, 10_800_000),
    (32_400_000, 21_600_000),
    (86_400_000, 43_200_000),
    (604_800_000, 86_400_000),
    (1_814_400_000, 604_800_000),
    (3_628_800_000, 2_592_000_000),
)
_UNITS_MS = {
    "ms": 1,
    "s": 1000,
    "m": 60_000,
    "h": 3_600_000,
    "d": 86_400_000,
    "w": 604_800_000,
    "y": 31_536_000_000,
}


def round_interval(ms: float) -> int:
    for bound, value in _ROUND:
        if ms < bound:
            return value
    return 31_536_000_000


def interval_to_ms(text: str) -> int:
    m = re.fullmatch(r"(\d+)(ms|s|m|h|d|w|y)", text.strip().lstrip(">"))
    if not m:
        raise MacroError(f"not a Grafana interval: {text!r}")
    return int(m.group(1)) * _UNITS_MS[m.group(2)]


def calculate_interval_ms(
    rng: TimeRange, max_data_points: int, min_interval: Optional[str] = None
) -> int:
    low = interval_to_ms(min_interval) if min_interval else 1
    return max(round_interval((rng.to_ms - rng.from_ms) / max_data_points), low)


def interval_text(ms: int) -> str:
    """Grafana's ``secondsToHms`` rendering of ``$__interval``."""
    for unit, size in (
        ("y", 31_536_000_000),
        ("w", 604_800_000),
        ("d", 86_400_000),
        ("h", 3_600_000),
        ("m", 60_000),
        ("s", 1000),
    ):
        if ms >= size and ms % size == 0:
            return f"{ms // size}{unit}"
    return f"{ms}ms"


# --------------------------------------------------------------------------------------------
# 2. $__conditionalAll (plugin frontend)


def _macro_args(query: str, args_index: int) -> list[str]:
    out: list[str] = []
    depth, last = 0, 1
    sub = query[args_index:]
    for m in re.finditer(r"[(),]", sub):
        c, end = m.group(), m.end()
        if c == "(":
            depth += 1
        elif c == ")":
            depth -= 1
        if c == "," and depth == 1:
            out.append(sub[last : end - 1])
            last = end
        if depth == 0:
            out.append(sub[last : end - 1])
            return out
    return []


def apply_conditional_all(sql: str, variables: Mapping[str, VarValue]) -> str:
    macro = "$__conditionalAll("
    i = sql.rfind(macro)
    while i != -1:
        params = _macro_args(sql, i + len(macro) - 1)
        if len(params) != 2:
            return sql
        phrase = params[0]
        m = re.search(r"(?<=\$\{)\w+(?=\})|(?<=\$)\w+", params[1].strip())
        if m:
            value = variables.get(m.group())
            text = ",".join(value) if isinstance(value, (list, tuple)) else (value or "")
            if text in ("", "$__all"):
                phrase = "1=1"
        sql = sql.replace(f"{macro}{params[0]},{params[1]})", phrase, 1)
        i = sql.rfind(macro)
    return sql


# --------------------------------------------------------------------------------------------
# 3. template variables (Grafana templateSrv.replace; the plugin's format function)

_VAR = re.compile(r"\$(\w+)|\[\[(\w+?)(?::(\w+))?\]\]|\$\{(\w+)(?:\.([^:^\}]+))?(?::([^\}]+))?\}")


def _format(value: VarValue, fmt: Optional[str]) -> str:
    if fmt in (None, ""):  # the plugin's format(): arrays quoted and comma-joined
        if isinstance(value, (list, tuple)):
            return "'" + "','".join(value) + "'"
        return str(value)
    values = list(value) if isinstance(value, (list, tuple)) else [str(value)]
    if fmt == "raw":
        return ",".join(values)
    if fmt == "csv":
        return ",".join(values)
    if fmt in ("sqlstring", "singlequote"):
        return ",".join("'" + v.replace("'", "''") + "'" for v in values)
    if fmt == "doublequote":
        return ",".join('"' + v + '"' for v in values)
    raise MacroError(f"variable format :{fmt} is not modelled here")


def builtin_variables(rng: TimeRange, interval_ms: int) -> dict[str, str]:
    span = rng.to_ms - rng.from_ms
    return {
        "__interval": interval_text(interval_ms),
        "__interval_ms": str(interval_ms),
        "__from": str(rng.from_ms),
        "__to": str(rng.to_ms),
        "__range_ms": str(span),
        "__range_s": str(span // 1000),
        "__range": interval_text(span),
        "__rate_interval": interval_text(max(interval_ms * 4, 60_000)),
    }


def substitute_variables(sql: str, variables: Mapping[str, VarValue]) -> str:
    """Replace ``$var``, ``${var}``, ``${var:fmt}``, ``[[var]]``; unknown names stay."""

    def repl(m: re.Match[str]) -> str:
        name = m.group(1) or m.group(2) or m.group(4)
        fmt = m.group(3) or m.group(6)
        if name not in variables:
            return m.group(0)
        return _format(variables[name], fmt)

    return _VAR.sub(repl, sql)


# --------------------------------------------------------------------------------------------
# 4. backend macros (grafana-plugin-sdk-go data/sqlutil/macros.go + plugin pkg/macros)

Macro = Callable[[list[str]], str]


def _find_macros(sql: str, name: str) -> list[tuple[str, str]]:
    """sqlutil.getMacroMatches, byte for byte: (matched text, raw argument string)."""
    out: list[tuple[str, str]] = []
    for m in re.finditer(rf"\$__{re.escape(name)}\b", sql):
        start = m.start()
        rest = sql[start:]
        macro_end = arg_start = 0
        depth = 0
        force_break = False
        for idx, ch in enumerate(rest):
            if (depth == 0 and macro_end > 0) or force_break:
                break
            if ch == "(":
                depth += 1
                if arg_start == 0:
                    arg_start = idx + 1
            elif ch == ")":
                if depth == 0:
                    macro_end = 0
                    force_break = True
                    break
                depth -= 1
                macro_end = idx + 1
        if macro_end == 0:
            macro_end = m.end() - start
        text = rest[:macro_end]
        args = rest[arg_start : macro_end - 1] if arg_start > 0 else ""
        out.append((text, args))
    return out


def _sample_by_interval(interval_ms: int) -> str:
    """pkg/macros.SampleByInterval (Go time.Duration arithmetic on a whole-ms interval)."""
    hours_f = interval_ms / 3_600_000
    hours = int(max(hours_f, 0))
    seconds = int(max(interval_ms / 1000, 0))
    if hours > 0:
        if hours >= 24 and hours_f == float(hours):
            return f"{hours // 24}d"
        return f"{hours}h"
    if seconds > 0:
        return f"{seconds}s"
    return f"{max(interval_ms, 1)}T"


def _rfc3339(ms: int) -> str:
    return datetime.fromtimestamp(ms // 1000, tz=timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


# macros whose plugin implementation ignores arguments: text captured as "arguments" is lost
_NO_ARGS = ("fromTime", "toTime", "sampleByInterval", "table", "column")


def plugin_macros(rng: TimeRange, interval_ms: int) -> dict[str, Macro]:
    f_us, t_us = rng.from_ms * 1000, rng.to_ms * 1000

    def need(n: int, args: list[str]) -> None:
        if len(args) != n:
            raise MacroError(f"unexpected number of arguments: expected {n}, received {len(args)}")

    def time_filter(a: list[str]) -> str:
        need(1, a)
        return f"{a[0]} >= cast({f_us} as timestamp) AND {a[0]} <= cast({t_us} as timestamp)"

    def time_from(a: list[str]) -> str:
        need(1, a)
        return f"{a[0]} >= '{_rfc3339(rng.from_ms)}'"

    def time_to(a: list[str]) -> str:
        need(1, a)
        return f"{a[0]} <= '{_rfc3339(rng.to_ms)}'"

    def time_group(a: list[str]) -> str:
        need(2, a)
        raise MacroError("$__timeGroup expands to SQL Server datepart(); QuestDB rejects it")

    return {
        "fromTime": lambda a: f"cast({f_us} as timestamp)",
        "toTime": lambda a: f"cast({t_us} as timestamp)",
        "timeFilter": time_filter,
        "sampleByInterval": lambda a: _sample_by_interval(interval_ms),
        "timeFrom": time_from,
        "timeTo": time_to,
        "timeGroup": time_group,
        "table": lambda a: "",
        "column": lambda a: "",
    }


def expand_macros(sql: str, rng: TimeRange, interval_ms: int, strict: bool = True) -> str:
    for name, fn in plugin_macros(rng, interval_ms).items():
        for text, raw_args in _find_macros(sql, name):
            if strict and name in _NO_ARGS and text != f"$__{name}":
                raise MacroError(f"$__{name} swallows {text[len(name) + 3 :]!r} (a '(' follows it)")
            args = [a.strip() for a in raw_args.split(",")] if "(" in text else []
            sql = sql.replace(text, fn(args))
    if strict and "$__" in sql:
        raise MacroError(f"unexpanded macro in: {sql}")
    return sql


# --------------------------------------------------------------------------------------------
# the whole path


def render_query(
    sql: str,
    rng: TimeRange,
    variables: Mapping[str, VarValue],
    *,
    max_data_points: int = 1000,
    min_interval: Optional[str] = None,
    interval_ms: Optional[int] = None,
    strict: bool = True,
) -> str:
    """The SQL QuestDB receives for a panel target (or, with ``interval_ms``, an alert query)."""
    if interval_ms is None:
        interval_ms = calculate_interval_ms(rng, max_data_points, min_interval)
    sql = apply_conditional_all(sql, variables)
    sql = substitute_variables(sql, {**builtin_variables(rng, interval_ms), **variables})
    if strict:
        left = [m.group(0) for m in _VAR.finditer(sql) if not m.group(0).startswith("$__")]
        if left:
            raise MacroError(f"unknown template variables {left}")
    return expand_macros(sql, rng, interval_ms, strict=strict)
