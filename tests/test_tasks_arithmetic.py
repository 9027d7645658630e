"""The allow-listed arithmetic parser: accepted and rejected text, exact values, canonical printing, fuzzing."""

from fractions import Fraction

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tasks.arithmetic import (
    MAX_DEPTH,
    MAX_EXPRESSION_CHARS,
    ArithmeticSyntaxError,
    BinaryOp,
    Expr,
    Number,
    UnaryOp,
    parse_expression,
)

ACCEPTED = [
    ("1+2", 3),
    (" 1 + 2 ", 3),
    ("\t1\n+\r\n2 ", 3),
    ("(1 + 2) / 3", 1),
    ("7/2", Fraction(7, 2)),
    ("10 / 4 * 2", 5),
    ("2*(3-5)", -4),
    ("-3 + 5", 2),
    ("+4", 4),
    ("--4", 4),
    ("1 - -2", 3),
    ("-(1 + 2) * +3", -9),
    ("((((1))))", 1),
    ("0", 0),
    ("0 / 5", 0),
    ("999999 * 999999", 999999 * 999999),
    ("8 - 3 - 2", 3),
    ("8 / 4 / 2", 1),
    ("1 / 3 + 1 / 6", Fraction(1, 2)),
]

REJECTED = [
    "2**3",
    "1//2",
    "1 % 2",
    "2 ^ 3",
    "__import__('os')",
    "__import__('os').system('x')",
    "a+1",
    "abs(1)",
    "x.y",
    "1.5",
    ".5",
    "1e5",
    "1_000",
    "1,2",
    "'1'",
    "[1]",
    "{1}",
    "1 2",
    "(1)(2)",
    "1+",
    "*1",
    "()",
    "(((",
    "(1",
    "1)",
    "",
    "   ",
    "1234567",
    "007",
    "\u0663",  # ARABIC-INDIC DIGIT THREE
    "\uff11 + 1",  # FULLWIDTH DIGIT ONE
    "1\u00a0+ 2",  # no-break space
    "1 + 2;",
    "1\x00",
    "True",
    "lambda: 1",
    "1" + "+1" * 150,  # 301 characters
    "(" * 100 + "1" + ")" * 100,  # depth 100
    "-" * 100 + "1",  # 100 nested unary signs
]


@pytest.mark.parametrize(("text", "value"), ACCEPTED)
def test_accepted_expressions_evaluate_exactly(text, value):
    expr = parse_expression(text)
    assert isinstance(expr, Expr)
    assert expr.evaluate() == value
    assert isinstance(expr.evaluate(), Fraction)


@pytest.mark.parametrize("text", REJECTED)
def test_rejected_expressions(text):
    with pytest.raises(ArithmeticSyntaxError):
        parse_expression(text)


def test_syntax_error_is_a_value_error():
    assert issubclass(ArithmeticSyntaxError, ValueError)
    with pytest.raises(ValueError, match="not allowed"):
        parse_expression("2 ** x")


def test_non_string_input_is_rejected():
    with pytest.raises(ArithmeticSyntaxError):
        parse_expression(12)  # type: ignore[arg-type]


def test_length_bound_is_exact():
    longest = "1" + "+1" * ((MAX_EXPRESSION_CHARS - 1) // 2)
    assert len(longest) <= MAX_EXPRESSION_CHARS
    assert parse_expression(longest).evaluate() == (MAX_EXPRESSION_CHARS - 1) // 2 + 1
    with pytest.raises(ArithmeticSyntaxError, match="longer"):
        parse_expression(" " * (MAX_EXPRESSION_CHARS + 1))


def test_depth_bound_is_exact():
    assert parse_expression("(" * MAX_DEPTH + "7" + ")" * MAX_DEPTH).evaluate() == 7
    assert parse_expression("-" * MAX_DEPTH + "7").evaluate() == (-7 if MAX_DEPTH % 2 else 7)
    with pytest.raises(ArithmeticSyntaxError, match="nesting"):
        parse_expression("(" * (MAX_DEPTH + 1) + "7" + ")" * (MAX_DEPTH + 1))
    with pytest.raises(ArithmeticSyntaxError, match="nesting"):
        parse_expression("-" * (MAX_DEPTH + 1) + "7")


@pytest.mark.parametrize("text", ["1/0", "1 / (2 - 2)", "0/0", "(3 + 1/0) * 0", "5 / (1/2 - 1/2)"])
def test_division_by_zero_evaluates_to_none(text):
    assert parse_expression(text).evaluate() is None


def test_numbers_are_the_literals_left_to_right():
    assert parse_expression("(3 + 5) * -2 / +3").numbers() == [3, 5, 2, 3]
    assert parse_expression("((10))").numbers() == [10]


@pytest.mark.parametrize(
    ("text", "canonical"),
    [
        ("1+2*3", "1 + 2 * 3"),
        ("(1+2)*3", "(1 + 2) * 3"),
        ("1-(2-3)", "1 - (2 - 3)"),
        ("(1-2)-3", "1 - 2 - 3"),
        ("1+(2+3)", "1 + (2 + 3)"),
        ("8/(4/2)", "8 / (4 / 2)"),
        ("(8/4)*2", "8 / 4 * 2"),
        ("-(1+2)", "-(1 + 2)"),
        ("2*-3", "2 * -3"),
        ("--1", "--1"),
        ("+(-(1))", "+-1"),
        ("((7))", "7"),
    ],
)
def test_canonical_text(text, canonical):
    expr = parse_expression(text)
    assert str(expr) == canonical
    assert parse_expression(canonical) == expr


def _trees() -> st.SearchStrategy[Expr]:
    leaves = st.integers(0, 999_999).map(Number)
    return st.recursive(
        leaves,
        lambda inner: st.one_of(
            st.builds(UnaryOp, st.sampled_from("+-"), inner),
            st.builds(BinaryOp, st.sampled_from("+-*/"), inner, inner),
        ),
        max_leaves=8,
    )


@settings(max_examples=300, deadline=None)
@given(_trees())
def test_printing_round_trips(tree):
    text = str(tree)
    try:
        parsed = parse_expression(text)
    except ArithmeticSyntaxError as error:  # only the size bounds may refuse a printed tree
        assert len(text) > MAX_EXPRESSION_CHARS or "nesting" in str(error)
        return
    assert parsed == tree
    assert parsed.evaluate() == tree.evaluate()
    assert parsed.numbers() == tree.numbers()


@settings(max_examples=500, deadline=None)
@given(st.one_of(st.text(max_size=300), st.text(alphabet="0123456789+-*/() .x_\n", max_size=300)))
def test_parser_only_raises_syntax_errors(text):
    try:
        expr = parse_expression(text)
    except ArithmeticSyntaxError:
        return
    value = expr.evaluate()
    assert value is None or isinstance(value, Fraction)
    if len(str(expr)) <= MAX_EXPRESSION_CHARS:
        assert parse_expression(str(expr)) == expr
