"""Which series a PromQL expression needs in order to return anything. Pure.

An alert can fire only if its expression can return a series, and that depends on which of
the series it reads exist: ``a / b`` needs both, ``a or b`` either, ``a unless b`` only
``a``, ``absent(a)`` neither. ``needs`` reads an expression into that answer, as
alternatives: each a set of (metric name, job) that must all exist. The reader knows the
whole PromQL grammar (operators and their precedence, aggregations, functions, modifiers)
but keeps only what this question needs: metric names, and the ``job`` matcher of each
selector when it names one job exactly.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass

# (metric name, job): the job is "" when the selector does not name one exactly.
Atom = tuple[str, str]
# Alternatives, any one of which is enough; each a set of series that must all exist.
Needs = frozenset[frozenset[Atom]]
NOTHING: Needs = frozenset({frozenset()})


class PromQLError(ValueError):
    """The expression is not PromQL this reader understands."""


_TOKEN = re.compile(
    r"""
    (?P<space>\s+|\#[^\n]*)
    |(?P<string>"(?:[^"\\]|\\.)*"|'(?:[^'\\]|\\.)*'|`[^`]*`)
    |(?P<range>\[[^\]]*\])
    |(?P<number>0[xX][0-9a-fA-F]+|(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)(?:[eE][-+]?[0-9]+)?
        (?:ms|[smhdwy])?(?:[0-9]+(?:ms|[smhdwy]))*|[iI][nN][fF]|[nN][aA][nN])
    |(?P<name>[a-zA-Z_:][a-zA-Z0-9_:]*)
    |(?P<op>==|!=|<=|>=|=~|!~|[-+*/%^<>=(){},@])
    """,
    re.VERBOSE,
)
_PRECEDENCE = {
    "or": 1,
    "and": 2,
    "unless": 2,
    "==": 3,
    "!=": 3,
    "<=": 3,
    ">=": 3,
    "<": 3,
    ">": 3,
    "+": 4,
    "-": 4,
    "*": 5,
    "/": 5,
    "%": 5,
    "atan2": 5,
    "^": 6,
}
_AGGREGATIONS = frozenset(
    [
        "sum",
        "min",
        "max",
        "avg",
        "group",
        "stddev",
        "stdvar",
        "count",
        "count_values",
        "bottomk",
        "topk",
        "quantile",
        "limitk",
        "limit_ratio",
    ]
)
# Functions that return a series whatever their argument holds.
_ALWAYS = frozenset({"absent", "absent_over_time", "vector", "time", "pi"})


@dataclass(frozen=True)
class _Token:
    kind: str
    text: str


def _tokens(expr: str) -> Iterator[_Token]:
    position = 0
    while position < len(expr):
        found = _TOKEN.match(expr, position)
        if found is None:
            raise PromQLError(f"cannot read {expr[position : position + 20]!r}")
        position = found.end()
        kind = found.lastgroup or ""
        if kind != "space":
            yield _Token(kind, found.group())


def _product(left: Needs, right: Needs) -> Needs:
    return frozenset(a | b for a in left for b in right)


class _Reader:
    def __init__(self, expr: str) -> None:
        self.tokens = list(_tokens(expr))
        self.at = 0

    def peek(self, ahead: int = 0) -> _Token | None:
        index = self.at + ahead
        return self.tokens[index] if index < len(self.tokens) else None

    def take(self, text: str | None = None) -> _Token:
        token = self.peek()
        if token is None or (text is not None and token.text != text):
            raise PromQLError(f"expected {text or 'more'}, got {token.text if token else 'end'}")
        self.at += 1
        return token

    def skip_parenthesised(self) -> None:
        """A label list: ``by (a, b)``, ``on (a)``, ``group_left (c)``."""
        self.take("(")
        while self.take().text != ")":
            pass

    def expression(self, lowest: int = 0) -> Needs:
        needs = self.unary()
        while True:
            token = self.peek()
            if token is None or token.text not in _PRECEDENCE:
                return needs
            operator = token.text
            precedence = _PRECEDENCE[operator]
            if precedence <= lowest and not (operator == "^" and precedence == lowest):
                return needs
            self.take()
            self.modifiers()
            right = self.expression(precedence)
            if operator == "or":
                needs = needs | right
            elif operator != "unless":
                needs = _product(needs, right)

    def modifiers(self) -> None:
        """``bool``, ``on(...)``/``ignoring(...)``, ``group_left(...)``/``group_right(...)``."""
        while (token := self.peek()) is not None and token.text in (
            "bool",
            "on",
            "ignoring",
            "group_left",
            "group_right",
        ):
            self.take()
            following = self.peek()
            if following is not None and following.text == "(":
                self.skip_parenthesised()

    def unary(self) -> Needs:
        token = self.peek()
        if token is not None and token.text in ("-", "+"):
            self.take()
            return self.unary()
        needs = self.primary()
        while (token := self.peek()) is not None:
            if token.kind == "range":
                self.take()
            elif token.text == "offset":
                self.take()
                if self.take().text == "-":
                    self.take()
            elif token.text == "@":
                self.take()
                if self.take().text in ("start", "end"):
                    self.take("(")
                    self.take(")")
            else:
                break
        return needs

    def primary(self) -> Needs:
        token = self.take()
        if token.kind in ("number", "string"):
            return NOTHING
        if token.text == "(":
            needs = self.expression()
            self.take(")")
            return needs
        if token.text == "{":
            return self.selector("")
        if token.kind != "name":
            raise PromQLError(f"unexpected {token.text!r}")
        following = self.peek()
        if token.text in _AGGREGATIONS and following is not None:
            if following.text in ("by", "without"):
                self.take()
                self.skip_parenthesised()
            if (following := self.peek()) is not None and following.text == "(":
                needs = self.arguments()
                if (after := self.peek()) is not None and after.text in ("by", "without"):
                    self.take()
                    self.skip_parenthesised()
                return needs
        if following is not None and following.text == "(":
            needs = self.arguments()
            return NOTHING if token.text in _ALWAYS else needs
        if following is not None and following.text == "{":
            self.take()
            return self.selector(token.text)
        return frozenset({frozenset({(token.text, "")})})

    def arguments(self) -> Needs:
        self.take("(")
        needs = NOTHING
        while (token := self.peek()) is not None and token.text != ")":
            needs = _product(needs, self.expression())
            if (token := self.peek()) is not None and token.text == ",":
                self.take()
        self.take(")")
        return needs

    def selector(self, name: str) -> Needs:
        """The matchers after ``{`` (taken): ``__name__`` and an exact ``job``."""
        job = ""
        while (token := self.take()).text != "}":
            if token.text == ",":
                continue
            operator, value = self.take().text, self.take().text
            literal = value[1:-1]
            if token.text == "__name__" and operator == "=":
                name = literal
            elif token.text == "job" and operator == "=":
                job = literal
        if not name:
            raise PromQLError("a selector without a metric name")
        return frozenset({frozenset({(name, job)})})


def needs(expr: str) -> Needs:
    """The alternatives of series ``expr`` needs to return anything (see the module doc)."""
    reader = _Reader(expr)
    result = reader.expression()
    if reader.peek() is not None:
        raise PromQLError(f"unexpected {reader.peek()!r} after the expression")
    return result


def expand(result: Needs, records: dict[str, Needs]) -> Needs:
    """``result`` with every recorded series replaced by what its recording rule needs."""
    expanded: Needs = frozenset()
    for alternative in result:
        choices = NOTHING
        for atom in alternative:
            inner = records.get(atom[0])
            choices = _product(choices, frozenset({frozenset({atom})}) if inner is None else inner)
        expanded |= choices
    return expanded
