"""Math rows from files or dataset names: configurable field names, answers boxed inside solutions, broken rows."""

from __future__ import annotations

import numbers
from collections.abc import Mapping

from tasks.math_answers import AnswerTooLong, last_boxed
from tasks.sources import BadRow, read_valid_rows


def _field(row: Mapping, name: str):
    """``row[name]``, else the value of the one key equal to ``name`` ignoring case (AIME files use "Problem")."""
    if name in row:
        return row[name]
    matches = [key for key in row if isinstance(key, str) and key.lower() == name.lower()]
    return row[matches[0]] if len(matches) == 1 else None


def _text(value) -> str | None:
    """A non-empty string for strings and numbers (not booleans); None otherwise."""
    if isinstance(value, bool) or value is None:
        return None
    if isinstance(value, numbers.Number):
        value = str(value)
    if not isinstance(value, str) or not value.strip():
        return None
    return value.strip()


def math_row(row, problem_field: str = "problem", answer_field: str = "answer", answer_from_solution: bool = False):
    """``{**row, "problem": str, "answer": str}`` for a valid row; ``BadRow`` if a field is missing or empty.

    With ``answer_from_solution`` the ``answer_field`` holds a worked solution and the answer is its last
    ``\\boxed{...}`` (the MATH dataset's format).
    """
    if not isinstance(row, Mapping):
        raise BadRow("not a JSON object")
    problem, answer = _text(_field(row, problem_field)), _text(_field(row, answer_field))
    if problem is None:
        raise BadRow(f"missing or empty {problem_field!r}")
    if answer is None:
        raise BadRow(f"missing or empty {answer_field!r}")
    if answer_from_solution:
        try:
            answer = _text(last_boxed(answer))
        except AnswerTooLong:
            raise BadRow(f"\\boxed{{}} answer of {answer_field!r} too long") from None
        if answer is None:
            raise BadRow(f"no \\boxed{{}} answer in {answer_field!r}")
    return {**row, "problem": problem, "answer": answer}


def read_math_rows(
    source: str,
    problem_field: str = "problem",
    answer_field: str = "answer",
    answer_from_solution: bool = False,
    limit: int | None = None,
) -> list[dict]:
    """Valid rows of ``source`` (up to ``limit``); rows with a missing or empty field are skipped, reported once."""
    what = f"'{problem_field}' and '{answer_field}'" + (" (with a \\boxed{} answer)" if answer_from_solution else "")
    requirement = f"each row needs non-empty {what}: set problem_field/answer_field to the file's field names"
    return read_valid_rows(
        source, lambda raw: math_row(raw, problem_field, answer_field, answer_from_solution), "math", requirement, limit
    )
