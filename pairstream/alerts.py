"""User alert rules: checked configuration and an edge-triggered engine (operator: flows.alerting).

A rule turns a stream of :class:`~pairstream.records.Analytics` rows into a few
:class:`~pairstream.records.AlertEvent` edges, not a flood of one row per bar:

* **FIRING** at the first bar where ``when`` is true, has been true on every bar of the current
  run for at least ``for`` (bar timestamps: ``ts - first true bar >= for``), and at least
  ``cooldown`` has passed since this rule last fired. A condition that is still true when its
  cooldown ends fires then: it is deferred, never lost.
* **RESOLVED** at the first later bar where ``clear`` is true (default ``not (when)``).

Unknown (a NULL metric in warm-up) is neither true nor false: it never fires, never resolves
and breaks a ``for`` run. At most one event per rule and bar (the ``alerts`` table is keyed by
``ts, rule_id, pair, tf``). ``value`` of an event is the value of the first metric written in
its expression (``when`` for FIRING, ``clear`` for RESOLVED), e.g. ``zscore`` for
``abs(zscore) > 2`` — signed, before ``abs``.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Optional

from pairstream.config import Config, ConfigError, parse_duration
from pairstream.records import AlertEvent, Analytics
from pairstream.rules import Condition, RuleError, parse_condition

SEVERITIES = ("info", "warning", "critical")
FIRING, RESOLVED = "FIRING", "RESOLVED"
_KEYS = ("id", "pair", "tf", "when", "clear", "for", "cooldown", "severity")
_REQUIRED = ("id", "pair", "tf", "when")
_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.:-]{0,63}")


@dataclass(frozen=True)
class AlertRule:
    """One checked ``[[alerts]]`` table."""

    id: str
    pair: str
    tf: str
    when: Condition
    clear: Condition
    hold: timedelta  # the rule's ``for``
    cooldown: timedelta
    severity: str

    @property
    def key(self) -> str:
        """The stream key of the rows this rule watches (see :func:`alerts`)."""
        return stream_key(self.pair, self.tf)


def stream_key(pair: str, tf: str) -> str:
    return f"{pair}@{tf}"


# ---------------------------------------------------------------------------------------------
# configuration


def _load_one(i: int, raw: Any, cfg: Config, seen: set[str]) -> AlertRule:
    where = f"alerts[{i}]"
    if not isinstance(raw, Mapping):
        raise ConfigError(f"{where}: expected a table, got {type(raw).__name__}")
    rid = raw.get("id")
    if rid is None:
        raise ConfigError(f"{where}.id: required (a unique name for the rule)")
    if not isinstance(rid, str) or not _ID.fullmatch(rid):
        raise ConfigError(
            f"{where}.id: expected 1-64 letters, digits or _.:- starting with a letter or digit,"
            f" got {rid!r:.60}"
        )
    where = f"alerts[{rid}]"
    if rid in seen:
        raise ConfigError(f"{where}.id: used by another rule; ids must be unique")
    for k in raw:
        if k not in _KEYS:
            raise ConfigError(f"{where}.{k!s:.40}: unknown key (known: {', '.join(_KEYS)})")
    for k in _REQUIRED:
        if k not in raw:
            raise ConfigError(f"{where}.{k}: required")
    for k in ("pair", "tf", "clear", "for", "cooldown", "severity"):
        if k in raw and not isinstance(raw[k], str):
            raise ConfigError(f"{where}.{k}: expected a string, got {raw[k]!r:.60}")
    pair, tf = raw["pair"], raw["tf"]
    if pair not in cfg.pair_ids:
        known = ", ".join(cfg.pair_ids)
        raise ConfigError(f"{where}.pair: {pair!r:.60} is not a configured pair (known: {known})")
    if tf not in cfg.timeframes:
        raise ConfigError(
            f"{where}.tf: {tf!r:.60} is not a configured timeframe"
            f" (known: {', '.join(cfg.timeframes)})"
        )
    y, x = pair.split("/")
    try:
        when = parse_condition(raw["when"], (y, x))
    except RuleError as e:
        raise ConfigError(f"{where}.when: {e}") from None
    if "clear" in raw:
        try:
            clear = parse_condition(raw["clear"], (y, x))
        except RuleError as e:
            raise ConfigError(f"{where}.clear: {e}") from None
    else:
        clear = when.negated()
    hold = parse_duration(raw.get("for", "0s"), f"{where}.for")
    cooldown = parse_duration(raw.get("cooldown", "0s"), f"{where}.cooldown")
    severity = raw.get("severity", "warning")
    if severity not in SEVERITIES:
        raise ConfigError(
            f"{where}.severity: expected one of {', '.join(SEVERITIES)}, got {severity!r:.60}"
        )
    return AlertRule(rid, pair, tf, when, clear, hold, cooldown, severity)


def load_rules(cfg: Config) -> tuple[AlertRule, ...]:
    """Check every ``[[alerts]]`` table of ``cfg``; the first problem is a one-line ConfigError.

    Call it at start-up: a bad rule stops the flow before any data is read.
    """
    rules: list[AlertRule] = []
    seen: set[str] = set()
    for i, raw in enumerate(cfg.alerts):
        rule = _load_one(i, raw, cfg, seen)
        seen.add(rule.id)
        rules.append(rule)
    return tuple(rules)


# ---------------------------------------------------------------------------------------------
# engine


@dataclass
class RuleState:
    """What one rule remembers between bars (small and picklable for recovery snapshots)."""

    firing: bool = False
    run_start: Optional[datetime] = None  # first bar of the current run of ``when`` = true
    last_fired: Optional[datetime] = None
    last_ts: Optional[datetime] = None  # rows at or before it are ignored (replayed input)


def _fmt(v: Optional[float]) -> str:
    return "NULL" if v is None else f"{v:.6g}"


def _event(rule: AlertRule, row: Analytics, state: str, cond: Condition) -> AlertEvent:
    values = ", ".join(f"{k}={_fmt(v)}" for k, v in cond.values(row).items())
    message = (
        f"[{rule.severity}] {rule.id} {state} on {rule.pair} {rule.tf} at "
        f"{row.ts.isoformat()}: {cond.text} ({values})"
    )
    return AlertEvent(
        rule_id=rule.id,
        pair=rule.pair,
        tf=rule.tf,
        ts=row.ts,
        state=state,
        severity=rule.severity,
        expr=cond.text,
        value=cond.first_value(row),
        message=message,
    )


def step(rule: AlertRule, state: RuleState, row: Analytics) -> Optional[AlertEvent]:
    """Advance ``state`` by one row of the rule's pair+tf; return the edge it causes, if any."""
    ts = row.ts
    last = state.last_ts
    if last is not None and ts <= last:
        return None
    state.last_ts = ts
    if rule.when.root.evaluate(row) is True:  # Condition.evaluate, one call less per row
        if state.run_start is None:
            state.run_start = ts
    else:
        state.run_start = None
    if state.firing:
        if rule.clear.root.evaluate(row) is True:
            state.firing = False
            return _event(rule, row, RESOLVED, rule.clear)
        return None
    if (
        state.run_start is not None
        and ts - state.run_start >= rule.hold
        and (state.last_fired is None or ts - state.last_fired >= rule.cooldown)
    ):
        state.firing = True
        state.last_fired = ts
        return _event(rule, row, FIRING, rule.when)
    return None


@dataclass
class AlertEngine:
    """Every rule of one pair+tf with its state; feed it that key's rows in time order."""

    rules: tuple[AlertRule, ...]
    states: dict[str, RuleState] = field(default_factory=dict)

    def update(self, row: Analytics) -> list[AlertEvent]:
        events = []
        pair, tf, states = row.pair, row.tf, self.states
        for rule in self.rules:
            if rule.pair != pair or rule.tf != tf:
                continue
            state = states.get(rule.id)
            if state is None:
                state = states[rule.id] = RuleState()
            event = step(rule, state, row)
            if event is not None:
                events.append(event)
        return events

    def rebind(self, rules: tuple[AlertRule, ...]) -> AlertEngine:
        """The same states under ``rules`` (after a recovery with a possibly edited config).

        A rule whose definition changed starts from scratch; a removed rule's state is dropped.
        """
        old = {r.id: r for r in self.rules}
        states = {
            r.id: self.states[r.id] for r in rules if r.id in self.states and old.get(r.id) == r
        }
        return AlertEngine(rules, states)
