"""The alert-rule grammar: a tokenizer, a recursive-descent parser and a three-valued evaluator.

User text is never handed to ``eval``/``compile``/``ast``: it is split into a handful of token
kinds, parsed into a small tree of frozen dataclasses and evaluated by walking that tree. The
only things a rule can read are the numeric :class:`~pairstream.records.Analytics` columns, by a
fixed whitelist. Grammar (lowest precedence first)::

    condition  := and_expr ("or" and_expr)*
    and_expr   := not_expr ("and" not_expr)*
    not_expr   := "not" not_expr | comparison
    comparison := sum (("<" | "<=" | ">" | ">=" | "==" | "!=") sum)?     # no chaining
    sum        := product (("+" | "-") product)*
    product    := unary (("*" | "/") unary)*
    unary      := "-" unary | "+" unary | primary
    primary    := NUMBER | METRIC | "price" "(" SYMBOL ")" | "abs" "(" sum ")" | "(" condition ")"

Evaluation follows SQL's three-valued logic, so warm-up rows behave like NULLs in QuestDB: a
NULL metric (or a non-finite result, e.g. a division by zero) makes arithmetic "no value" and a
comparison *unknown*; ``not unknown`` is unknown, ``false and unknown`` is false, ``true or
unknown`` is true. Only a *true* condition fires or resolves anything.
"""

from __future__ import annotations

import difflib
import math
import re
import unicodedata
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, Optional, Union

#: Numeric Analytics columns a rule may read (the whitelist; nothing else is ever looked up).
METRICS: tuple[str, ...] = (
    "y",
    "x",
    "beta",
    "alpha",
    "spread",
    "zscore",
    "corr",
    "adf_p",
    "beta_kf",
    "alpha_kf",
    "z_kf",
    "half_life",
)
FUNCTIONS = ("abs", "price")
KEYWORDS = ("and", "or", "not")
MAX_LENGTH = 1000  # characters of one expression
MAX_DEPTH = 20  # nested parentheses / abs() / not / unary minus
MAX_NUMBER_CHARS = 32  # characters of one numeric literal
MAX_MAGNITUDE = 1e15  # |literal| bound: far above any price, spread or z-score

_KNOWN = ", ".join(sorted(METRICS)) + ", price(SYMBOL)"
_COMPARE = ("<", "<=", ">", ">=", "==", "!=")
_NUMBER = re.compile(r"(?:[0-9]+\.?[0-9]*|\.[0-9]+)(?:[eE][+-]?[0-9]+)?")
_DIGITS = "0123456789"
_WORD = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_SYMBOL = re.compile(r"[A-Za-z0-9_]+")
_TRAILER = re.compile(r"[A-Za-z0-9_.]+")
# Characters users type out of habit from other languages, with what to write instead.
_HINTS = {
    "=": "use '==' to compare",
    "&": "use 'and'",
    "|": "use 'or'",
    "!": "use 'not' (or '!=')",
    "'": "strings are not supported",
    '"': "strings are not supported",
    ".": "attribute access is not supported",
    "[": "indexing is not supported",
    "]": "indexing is not supported",
    "{": "braces are not supported",
    "}": "braces are not supported",
    ":": "only conditions are allowed",
    ";": "one condition per rule, no statements",
    "`": "backticks are not supported",
    "%": "the operators are + - * /",
    "^": "the operators are + - * /",
    "@": "the operators are + - * /",
    "~": "use 'not'",
    "#": "comments are not supported",
    "\\": "backslashes are not supported",
    "$": "variables are not supported",
}


class RuleError(ValueError):
    """A malformed expression; ``column`` is the 1-based position of the offending character."""

    def __init__(self, column: int, reason: str) -> None:
        super().__init__(f"column {column}: {reason}")
        self.column = column
        self.reason = reason


# ---------------------------------------------------------------------------------------------
# tree


def _finite(v: Any) -> Optional[float]:
    if v is None:
        return None
    f = float(v)
    return f if math.isfinite(f) else None


@dataclass(frozen=True, slots=True)
class Num:
    value: float

    def evaluate(self, row: Any) -> Optional[float]:
        return self.value


@dataclass(frozen=True, slots=True)
class Metric:
    """An Analytics column, read by name from the :data:`METRICS` whitelist."""

    name: str

    def evaluate(self, row: Any) -> Optional[float]:
        return _finite(getattr(row, self.name))

    def label(self) -> str:
        return self.name


@dataclass(frozen=True, slots=True)
class Price:
    """``price(SYMBOL)``: the close of one pair leg; ``leg`` is the Analytics column (y or x)."""

    symbol: str
    leg: str

    def evaluate(self, row: Any) -> Optional[float]:
        return _finite(getattr(row, self.leg))

    def label(self) -> str:
        return f"price({self.symbol})"


@dataclass(frozen=True, slots=True)
class Neg:
    operand: NumExpr

    def evaluate(self, row: Any) -> Optional[float]:
        v = self.operand.evaluate(row)
        return None if v is None else -v


@dataclass(frozen=True, slots=True)
class Abs:
    operand: NumExpr

    def evaluate(self, row: Any) -> Optional[float]:
        v = self.operand.evaluate(row)
        return None if v is None else abs(v)


@dataclass(frozen=True, slots=True)
class Arith:
    """``first (op operand)*`` left to right, one precedence level; n-ary keeps the tree flat."""

    first: NumExpr
    rest: tuple[tuple[str, NumExpr], ...]

    def evaluate(self, row: Any) -> Optional[float]:
        acc = self.first.evaluate(row)
        for op, node in self.rest:
            v = node.evaluate(row)
            if acc is None or v is None:
                return None
            if op == "+":
                acc = acc + v
            elif op == "-":
                acc = acc - v
            elif op == "*":
                acc = acc * v
            elif v == 0:
                return None  # division by zero: no value, never an exception
            else:
                acc = acc / v
            if not math.isfinite(acc):
                return None
        return acc


@dataclass(frozen=True, slots=True)
class Compare:
    op: str
    left: NumExpr
    right: NumExpr

    def evaluate(self, row: Any) -> Optional[bool]:
        a, b = self.left.evaluate(row), self.right.evaluate(row)
        if a is None or b is None:
            return None
        op = self.op
        if op == "<":
            return a < b
        if op == "<=":
            return a <= b
        if op == ">":
            return a > b
        if op == ">=":
            return a >= b
        if op == "==":
            return a == b
        return a != b


@dataclass(frozen=True, slots=True)
class Not:
    operand: BoolExpr

    def evaluate(self, row: Any) -> Optional[bool]:
        v = self.operand.evaluate(row)
        return None if v is None else not v


@dataclass(frozen=True, slots=True)
class BoolOp:
    """n-ary ``and`` / ``or`` with Kleene (SQL) logic."""

    op: str
    operands: tuple[BoolExpr, ...]

    def evaluate(self, row: Any) -> Optional[bool]:
        dominant = self.op == "or"  # or: any true wins; and: any false wins
        unknown = False
        for node in self.operands:
            v = node.evaluate(row)
            if v is None:
                unknown = True
            elif v is dominant:
                return dominant
        return None if unknown else not dominant


NumExpr = Union[Num, Metric, Price, Neg, Abs, Arith]
BoolExpr = Union[Compare, Not, BoolOp]
_BOOL_NODES = (Compare, Not, BoolOp)


def _children(node: Any) -> tuple[Any, ...]:
    if isinstance(node, (Neg, Abs, Not)):
        return (node.operand,)
    if isinstance(node, Arith):
        return (node.first, *(n for _, n in node.rest))
    if isinstance(node, Compare):
        return (node.left, node.right)
    if isinstance(node, BoolOp):
        return node.operands
    return ()


def _walk_metrics(node: Any) -> Iterator[Union[Metric, Price]]:
    if isinstance(node, (Metric, Price)):
        yield node
    for child in _children(node):
        yield from _walk_metrics(child)


@dataclass(frozen=True, slots=True)
class Condition:
    """A parsed condition and its source text; ``metrics`` are in the order they appear."""

    text: str
    root: BoolExpr
    metrics: tuple[Union[Metric, Price], ...]

    def evaluate(self, row: Any) -> Optional[bool]:
        """True, False, or None (unknown: a metric it needs is NULL)."""
        return self.root.evaluate(row)

    def first_value(self, row: Any) -> Optional[float]:
        """The value of the first metric written in the expression (the event's ``value``)."""
        return self.metrics[0].evaluate(row)

    def values(self, row: Any) -> dict[str, Optional[float]]:
        """Every metric the expression reads, by label, for readable messages."""
        return {m.label(): m.evaluate(row) for m in self.metrics}

    def negated(self) -> Condition:
        """``not (text)``: the default ``clear`` of a rule."""
        return Condition(f"not ({self.text})", Not(self.root), self.metrics)


# ---------------------------------------------------------------------------------------------
# tokenizer


@dataclass(frozen=True, slots=True)
class Token:
    kind: str  # "num", "name", "symbol", "op", "end"
    text: str
    col: int  # 1-based


def _show(text: str, limit: int = 40) -> str:
    """repr() of user text, shortened: error messages stay one readable line."""
    return repr(text if len(text) <= limit else text[:limit] + "...")


def _bad_char(ch: str, col: int) -> RuleError:
    if not ch.isascii():
        name = unicodedata.name(ch, f"U+{ord(ch):04X}")
        return RuleError(col, f"unexpected character {ch!r} ({name}); rules are plain ASCII")
    hint = _HINTS.get(ch)
    return RuleError(col, f"unexpected character {ch!r}" + (f" ({hint})" if hint else ""))


def tokenize(text: str) -> list[Token]:
    """All tokens of ``text`` (ending with an ``end`` token); see :func:`iter_tokens`."""
    return list(iter_tokens(text))


def iter_tokens(text: str) -> Iterator[Token]:
    """Tokens of ``text``, lazily: the parser reports the first error in reading order.

    Anything outside the grammar's alphabet is a RuleError at its column.
    """
    tokens: list[Token] = []  # the last two, for the price(SYMBOL) context
    i, n = 0, len(text)
    while i < n:
        ch = text[i]
        col = i + 1
        if ch in " \t\r\n":
            i += 1
            continue
        # price(SYMBOL): symbols may start with a digit (1000PEPEUSDT), so lex them as words.
        if (
            len(tokens) >= 2
            and tokens[-1].text == "("
            and tokens[-2].kind == "name"
            and tokens[-2].text == "price"
        ):
            m = _SYMBOL.match(text, i)
            if m:
                tokens = [*tokens[-1:], Token("symbol", m.group(), col)]
                yield tokens[-1]
                i = m.end()
                continue
        if ch in _DIGITS or (ch == "." and i + 1 < n and text[i + 1] in _DIGITS):
            m = _NUMBER.match(text, i)
            assert m is not None
            end = m.end()
            trailer = _TRAILER.match(text, end)
            if trailer:  # 2abc, 1.2.3, 0x1F, 1e
                bad = text[i : trailer.end()]
                raise RuleError(col, f"malformed number {_show(bad)}")
            literal = m.group()
            if len(literal) > MAX_NUMBER_CHARS:
                too_long = f"is too long (at most {MAX_NUMBER_CHARS} characters)"
                raise RuleError(col, f"number {_show(literal, 20)} {too_long}")
            value = float(literal)  # the regex guarantees a plain decimal literal
            if not math.isfinite(value) or value > MAX_MAGNITUDE:
                raise RuleError(
                    col, f"number {_show(literal)} is out of range (at most {MAX_MAGNITUDE:g})"
                )
            tokens = [*tokens[-1:], Token("num", literal, col)]
            yield tokens[-1]
            i = end
            continue
        if ch.isascii() and (ch.isalpha() or ch == "_"):
            m = _WORD.match(text, i)
            assert m is not None
            tokens = [*tokens[-1:], Token("name", m.group(), col)]
            yield tokens[-1]
            i = m.end()
            continue
        two = text[i : i + 2]
        if two in ("<=", ">=", "==", "!="):
            tokens = [*tokens[-1:], Token("op", two, col)]
            yield tokens[-1]
            i += 2
            continue
        if two in ("&&", "||", "**", "//", "=>"):
            hint = {"&&": "use 'and'", "||": "use 'or'", "=>": "did you mean '>='?"}.get(
                two, "the operators are + - * /"
            )
            raise RuleError(col, f"unexpected {two!r} ({hint})")
        if ch in "<>+-*/(),":
            tokens = [*tokens[-1:], Token("op", ch, col)]
            yield tokens[-1]
            i += 1
            continue
        raise _bad_char(ch, col)
    yield Token("end", "", n + 1)


# ---------------------------------------------------------------------------------------------
# parser


_OPERAND = "expected a number, a metric, price(SYMBOL), abs(...) or '('"


class _Parser:
    def __init__(self, text: str, legs: tuple[str, str]) -> None:
        self.tokens = iter_tokens(text)
        self.tok = next(self.tokens)
        self.depth = 0
        self.legs = legs

    # -- helpers
    def advance(self) -> Token:
        tok = self.tok
        if tok.kind != "end":
            self.tok = next(self.tokens)
        return tok

    def at(self, *texts: str) -> bool:
        return self.tok.kind in ("op", "name") and self.tok.text in texts

    def found(self, tok: Token) -> str:
        return "end of expression" if tok.kind == "end" else _show(tok.text)

    def expect(self, text: str, what: str) -> Token:
        if self.tok.kind == "op" and self.tok.text == text:
            return self.advance()
        raise RuleError(self.tok.col, f"expected {what}, found {self.found(self.tok)}")

    def nest(self, col: int) -> None:
        self.depth += 1
        if self.depth > MAX_DEPTH:
            raise RuleError(col, f"expression nested too deeply (at most {MAX_DEPTH} levels)")

    def need_bool(self, node: Any, col: int, where: str) -> None:
        if not isinstance(node, _BOOL_NODES):
            raise RuleError(col, f"{where} needs a condition such as 'zscore > 2', got a number")

    def need_num(self, node: Any, col: int, where: str) -> None:
        if isinstance(node, _BOOL_NODES):
            raise RuleError(col, f"{where} needs a number, got a condition")

    # -- grammar
    def condition(self) -> Any:
        col = self.tok.col
        first = self.and_expr()
        if not self.at("or"):
            return first
        self.need_bool(first, col, "'or'")
        operands = [first]
        while self.at("or"):
            self.advance()
            col = self.tok.col
            node = self.and_expr()
            self.need_bool(node, col, "'or'")
            operands.append(node)
        return BoolOp("or", tuple(operands))

    def and_expr(self) -> Any:
        col = self.tok.col
        first = self.not_expr()
        if not self.at("and"):
            return first
        self.need_bool(first, col, "'and'")
        operands = [first]
        while self.at("and"):
            self.advance()
            col = self.tok.col
            node = self.not_expr()
            self.need_bool(node, col, "'and'")
            operands.append(node)
        return BoolOp("and", tuple(operands))

    def not_expr(self) -> Any:
        if self.at("not") and self.tok.kind == "name":
            tok = self.advance()
            self.nest(tok.col)
            col = self.tok.col
            node = self.not_expr()
            self.need_bool(node, col, "'not'")
            self.depth -= 1
            return Not(node)
        return self.comparison()

    def comparison(self) -> Any:
        col = self.tok.col
        left = self.sum()
        if not (self.tok.kind == "op" and self.tok.text in _COMPARE):
            return left
        op = self.advance().text
        self.need_num(left, col, f"'{op}'")
        col = self.tok.col
        right = self.sum()
        self.need_num(right, col, f"'{op}'")
        if self.tok.kind == "op" and self.tok.text in _COMPARE:
            raise RuleError(self.tok.col, "comparisons cannot be chained; combine them with 'and'")
        return Compare(op, left, right)

    def _chain(self, ops: tuple[str, str], sub: Any) -> Any:
        col = self.tok.col
        first = sub()
        if not (self.tok.kind == "op" and self.tok.text in ops):
            return first
        self.need_num(first, col, f"'{self.tok.text}'")
        rest = []
        while self.tok.kind == "op" and self.tok.text in ops:
            op = self.advance().text
            col = self.tok.col
            node = sub()
            self.need_num(node, col, f"'{op}'")
            rest.append((op, node))
        return Arith(first, tuple(rest))

    def sum(self) -> Any:
        return self._chain(("+", "-"), self.product)

    def product(self) -> Any:
        return self._chain(("*", "/"), self.unary)

    def unary(self) -> Any:
        if self.tok.kind == "op" and self.tok.text in "+-":
            tok = self.advance()
            self.nest(tok.col)
            col = self.tok.col
            node = self.unary()
            self.need_num(node, col, f"unary '{tok.text}'")
            self.depth -= 1
            if tok.text == "+":
                return node
            return Num(-node.value) if isinstance(node, Num) else Neg(node)
        return self.primary()

    def primary(self) -> Any:
        tok = self.tok
        if tok.kind == "num":
            self.advance()
            return Num(float(tok.text))
        if tok.kind == "op" and tok.text == "(":
            self.advance()
            self.nest(tok.col)
            if self.tok.kind == "op" and self.tok.text == ")":
                raise RuleError(self.tok.col, "empty parentheses; expected a condition or a number")
            node = self.condition()
            self.expect(")", f"')' to close the '(' at column {tok.col}")
            self.depth -= 1
            return node
        if tok.kind == "name":
            return self.name()
        if tok.kind == "end":
            raise RuleError(tok.col, f"unexpected end of expression; {_OPERAND}")
        raise RuleError(tok.col, f"{_OPERAND}, found {self.found(tok)}")

    def name(self) -> Any:
        tok = self.advance()
        word = tok.text
        is_call = self.tok.kind == "op" and self.tok.text == "("
        if word == "abs":
            self.nest(tok.col)
            self.expect("(", "'(' after abs")
            col = self.tok.col
            node = self.sum()
            self.need_num(node, col, "abs()")
            if self.tok.kind == "op" and self.tok.text in _COMPARE:
                raise RuleError(col, "abs() takes a number, not a condition")
            if self.tok.kind == "op" and self.tok.text == ",":
                raise RuleError(self.tok.col, "abs() takes one argument")
            self.expect(")", f"')' to close abs( at column {tok.col}")
            self.depth -= 1
            return Abs(node)
        if word == "price":
            self.expect("(", "'(' after price, as in price(BTCUSDT)")
            sym = self.tok
            if sym.kind != "symbol":
                raise RuleError(
                    sym.col, f"price() needs a symbol of the pair ({' or '.join(self.legs)})"
                )
            self.advance()
            symbol = sym.text.upper()
            if symbol not in self.legs:
                raise RuleError(
                    sym.col,
                    f"price({_show(sym.text)[1:-1]}): not a leg of this pair "
                    f"(expected {' or '.join(self.legs)})",
                )
            if self.tok.kind == "op" and self.tok.text == ",":
                raise RuleError(self.tok.col, "price() takes one symbol")
            self.expect(")", f"')' to close price( at column {tok.col}")
            return Price(symbol, "y" if symbol == self.legs[0] else "x")
        if word in METRICS:
            if is_call:
                raise RuleError(self.tok.col, f"{word} is a metric, not a function")
            return Metric(word)
        if word in KEYWORDS:
            raise RuleError(tok.col, f"{_OPERAND}, found keyword {word!r}")
        if is_call:
            raise RuleError(tok.col, f"unknown function {_show(word)} (known: abs, price)")
        close = difflib.get_close_matches(word.lower(), (*METRICS, *KEYWORDS), n=1)
        hint = f"did you mean {close[0]!r}? " if close else ""
        raise RuleError(tok.col, f"unknown metric {_show(word)} ({hint}known: {_KNOWN})")


def parse_condition(text: Any, legs: tuple[str, str]) -> Condition:
    """Parse ``text`` into a :class:`Condition` for a pair whose legs are ``legs`` = (y, x).

    Raises :class:`RuleError` (with the 1-based column) for anything outside the grammar,
    a number where a condition is needed, or a condition that reads no metric at all.
    """
    if not isinstance(text, str):
        raise RuleError(1, f"expected a condition as a string, got {type(text).__name__}")
    if len(text) > MAX_LENGTH:
        raise RuleError(MAX_LENGTH + 1, f"expression longer than {MAX_LENGTH} characters")
    if not text.strip():
        raise RuleError(1, "empty expression; expected a condition such as 'abs(zscore) > 2'")
    p = _Parser(text, legs)
    col = p.tok.col
    root = p.condition()
    if p.tok.kind != "end":
        tok = p.tok
        if tok.kind == "op" and tok.text == ")":
            raise RuleError(tok.col, "unbalanced ')': no '(' to close")
        raise RuleError(tok.col, f"expected an operator or the end, found {p.found(tok)}")
    if not isinstance(root, _BOOL_NODES):
        raise RuleError(col, "expected a condition such as 'zscore > 2', got a number")
    metrics = tuple(_walk_metrics(root))
    if not metrics:
        raise RuleError(col, "the condition reads no metric, so it never changes")
    return Condition(text, root, metrics)
