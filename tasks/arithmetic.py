"""Safe arithmetic over integer literals: an allow-listed tokenizer and recursive-descent parser, exact evaluation.

Grammar (whitespace between tokens is ignored)::

    expr   := term (("+" | "-") term)*
    term   := factor (("*" | "/") factor)*
    factor := ("+" | "-") factor | NUMBER | "(" expr ")"
    NUMBER := 1 to 6 ASCII digits, no leading zero (except "0" itself)

Nothing is ever executed: text becomes a tree of ``Number``, ``UnaryOp`` and ``BinaryOp`` nodes or an
``ArithmeticSyntaxError``. Input is bounded (``MAX_EXPRESSION_CHARS`` characters, ``MAX_DEPTH`` nested
parentheses / unary signs), so parsing, evaluating and printing never hit Python's recursion limit.
"""

import abc
from dataclasses import dataclass
from fractions import Fraction

MAX_EXPRESSION_CHARS = 256
MAX_DEPTH = 32
MAX_DIGITS = 6

_DIGITS = frozenset("0123456789")
_WHITESPACE = frozenset(" \t\r\n\f\v")
_SYMBOLS = frozenset("+-*/()")


class ArithmeticSyntaxError(ValueError):
    """The text is not an allowed arithmetic expression."""


class Expr(abc.ABC):
    """A parsed arithmetic expression (an immutable tree)."""

    precedence: int = 0

    @abc.abstractmethod
    def numbers(self) -> list[int]:
        """The integer literals, left to right."""

    @abc.abstractmethod
    def _value(self) -> Fraction:
        """The exact value; raises ZeroDivisionError on division by zero."""

    def evaluate(self) -> Fraction | None:
        """The exact value, or None if it divides by zero."""
        try:
            return self._value()
        except ZeroDivisionError:
            return None

    def _wrapped(self, parenthesize: bool) -> str:
        return f"({self})" if parenthesize else str(self)


@dataclass(frozen=True)
class Number(Expr):
    """An integer literal."""

    value: int
    precedence = 3

    def numbers(self) -> list[int]:
        return [self.value]

    def _value(self) -> Fraction:
        return Fraction(self.value)

    def __str__(self) -> str:
        return str(self.value)


@dataclass(frozen=True)
class UnaryOp(Expr):
    """A unary sign: ``-x`` or ``+x``."""

    op: str
    operand: Expr
    precedence = 2

    def numbers(self) -> list[int]:
        return self.operand.numbers()

    def _value(self) -> Fraction:
        value = self.operand._value()
        return -value if self.op == "-" else value

    def __str__(self) -> str:
        return self.op + self.operand._wrapped(self.operand.precedence < self.precedence)


@dataclass(frozen=True)
class BinaryOp(Expr):
    """A binary operation ``left op right`` with op one of + - * /."""

    op: str
    left: Expr
    right: Expr

    @property
    def precedence(self) -> int:  # type: ignore[override]
        return 1 if self.op in "*/" else 0

    def numbers(self) -> list[int]:
        return self.left.numbers() + self.right.numbers()

    def _value(self) -> Fraction:
        left, right = self.left._value(), self.right._value()
        if self.op == "+":
            return left + right
        if self.op == "-":
            return left - right
        if self.op == "*":
            return left * right
        return left / right

    def __str__(self) -> str:
        # Left-associative grammar: the right operand needs parentheses at equal precedence too.
        left = self.left._wrapped(self.left.precedence < self.precedence)
        right = self.right._wrapped(self.right.precedence <= self.precedence)
        return f"{left} {self.op} {right}"


def _tokenize(text: str) -> list[str]:
    tokens: list[str] = []
    i, n = 0, len(text)
    while i < n:
        char = text[i]
        if char in _WHITESPACE:
            i += 1
        elif char in _SYMBOLS:
            tokens.append(char)
            i += 1
        elif char in _DIGITS:
            j = i
            while j < n and text[j] in _DIGITS:
                j += 1
            literal = text[i:j]
            if len(literal) > MAX_DIGITS:
                raise ArithmeticSyntaxError(f"number {literal[:10]}... has more than {MAX_DIGITS} digits")
            if len(literal) > 1 and literal[0] == "0":
                raise ArithmeticSyntaxError(f"number {literal!r} has a leading zero")
            tokens.append(literal)
            i = j
        else:
            raise ArithmeticSyntaxError(f"character {char!r} at position {i} is not allowed")
    return tokens


class _Parser:
    """Recursive descent over the token list; ``depth`` counts open parentheses and unary signs."""

    def __init__(self, tokens: list[str]) -> None:
        self.tokens = tokens
        self.pos = 0

    def _peek(self) -> str | None:
        return self.tokens[self.pos] if self.pos < len(self.tokens) else None

    def _take(self) -> str:
        token = self._peek()
        if token is None:
            raise ArithmeticSyntaxError("unexpected end of expression")
        self.pos += 1
        return token

    def parse(self) -> Expr:
        if not self.tokens:
            raise ArithmeticSyntaxError("empty expression")
        expr = self._expr(0)
        if self.pos != len(self.tokens):
            raise ArithmeticSyntaxError(f"unexpected {self.tokens[self.pos]!r} after a complete expression")
        return expr

    def _expr(self, depth: int) -> Expr:
        node = self._term(depth)
        while self._peek() in ("+", "-"):
            op = self._take()
            node = BinaryOp(op, node, self._term(depth))
        return node

    def _term(self, depth: int) -> Expr:
        node = self._factor(depth)
        while self._peek() in ("*", "/"):
            op = self._take()
            node = BinaryOp(op, node, self._factor(depth))
        return node

    def _factor(self, depth: int) -> Expr:
        if depth > MAX_DEPTH:
            raise ArithmeticSyntaxError(f"nesting deeper than {MAX_DEPTH}")
        token = self._take()
        if token in ("+", "-"):
            return UnaryOp(token, self._factor(depth + 1))
        if token == "(":
            node = self._expr(depth + 1)
            if self._take() != ")":
                raise ArithmeticSyntaxError("expected ')'")
            return node
        if token[0] in _DIGITS:
            return Number(int(token))
        raise ArithmeticSyntaxError(f"unexpected {token!r}")


def parse_expression(text: str) -> Expr:
    """Parse ``text`` into an ``Expr``; raises ``ArithmeticSyntaxError`` for anything outside the grammar."""
    if not isinstance(text, str):
        raise ArithmeticSyntaxError(f"expected a string, got {type(text).__name__}")
    if len(text) > MAX_EXPRESSION_CHARS:
        raise ArithmeticSyntaxError(f"expression longer than {MAX_EXPRESSION_CHARS} characters")
    return _Parser(_tokenize(text)).parse()
