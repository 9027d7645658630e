"""Math with a verifiable final answer: the last ``\\boxed{}`` must be mathematically equivalent to the reference.

The verdict is binary (reward 1.0 if correct, else 0.0). The answer is the content of the last balanced
``\\boxed{...}`` (optionally only after ``</think>``; optionally the last plain number when nothing is boxed),
at most 1,000 characters. A plain-string fast path (equal normal forms, or equal exact numbers: ``0.5`` vs
``\\frac{1}{2}``) settles most checks in microseconds; the rest go to math-verify (``parse`` + ``verify``), with
its LaTeX extraction only (its plain-expression extraction runs sympy's eval-based ``parse_expr``).

Before math-verify, an answer's redundant groups are collapsed (``((3))`` is ``3``: math-verify's parser is
exponential in such nesting) and an answer nested deeper than 12 groups, or with an integer power, factorial or
binomial of more than 100,000 digits, is refused and scores 0 (``tasks.math_guards``; counted in ``refused``).

Timeout design: math-verify's own timeouts use ``signal.alarm``, which raises off the main thread and cannot
interrupt C-level work, so they are disabled (``parsing_timeout=None``, ``timeout_seconds=None``) and each
math-verify check runs in a small pool of persistent worker processes (``tasks.math_equivalence``), the distinct
checks of a batch in parallel. The caller waits at most ``timeout_seconds``; a worker that misses the deadline is
killed and replaced, the completion scores 0, and ``task.timeouts`` counts it; a dead worker is replaced and the
check retried. Only real verdicts are memoised (a group of K identical answers costs one check; a timeout is
checked again next time). Nothing from the model is ever evaluated in this process.
"""

from __future__ import annotations

import importlib.util
import re
from typing import Literal, get_args

from tasks.base import Prompt, Score, Task
from tasks.math_answers import AnswerTooLong, extract_answer, fast_equivalence
from tasks.math_equivalence import EquivalenceChecker
from tasks.math_guards import absurd_reason, collapse_groups
from tasks.math_problems import KINDS, check_generator_config, generate_problems
from tasks.math_rows import read_math_rows
from tasks.registry import register_task
from tasks.splits import FileOrGeneratedSplits

__all__ = ["INSTRUCTION", "MathTask", "generate_problems"]

INSTRUCTION = "Please reason step by step, and put your final answer within \\boxed{}."
Template = Literal["text", "chat", "one_shot", "compact"]
ONE_SHOT = [
    {"role": "user", "content": "Compute 3+4. Put the answer in \\boxed{}."},
    {"role": "assistant", "content": "3+4=7. \\boxed{7}"},
]
"""The worked exchange before the problem in the one_shot template: small instruct models copy its format."""
TEMPLATES: tuple[str, ...] = get_args(Template)
_SPLIT_NAME = re.compile(r"[A-Za-z0-9_.-]{1,64}")


@register_task("math")
class MathTask(FileOrGeneratedSplits):
    """Math problems scored by mathematical equivalence of the final boxed answer (math-verify).

    Args:
        train_size: Training problems: generated count, or the first rows of train_file (null: all of its rows).
        test_size: Test problems: generated count, or the first rows of test_file (null: all of its rows).
        seed: Seed of the problem generator (train, test and warm-start derive different seeds from it).
        kinds: Generated problem kinds: add, sub, mul, mixed (a+b*c), linear (solve ax+b=c).
        max_number: Generated operands are in 1..max_number (equation solutions in -max_number..max_number).
        train_file: Training rows: a .jsonl/.json/.parquet path or a Hugging Face dataset name (NAME or
            NAME:SPLIT), e.g. agentica-org/DeepScaleR-Preview-Dataset; null generates problems.
        test_file: The "test" split, same forms; if equal to train_file, its rows follow the first train_size rows.
        test_files: Named test sets {name: path or dataset name}, e.g. {aime24: data/aime24.jsonl}; each becomes a
            split validated on (eval_splits) with all of its rows.
        problem_field: Field of a row holding the problem text.
        answer_field: Field holding the reference answer (or the worked solution, with answer_from_solution).
        answer_from_solution: The answer field is a worked solution; its last \\boxed{} is the answer (MATH).
        template: Prompt style: "text" (base models), "chat" (one user message), "one_shot" (chat with one worked
            example first: small instruct models follow its \boxed{} format) or "compact" (tiny models).
        require_think_close: Only an answer after the last </think> counts (R1-style reasoning models).
        number_fallback: Without a boxed answer, take the last plain number of the completion.
        timeout_seconds: Wall-clock bound of one math-verify check; a check over it scores 0 (see task.timeouts).
        verifier_workers: math-verify worker processes, i.e. checks run in parallel (null: 2-4, by CPU cores).
    """

    seed_namespace = "math"

    def __init__(
        self,
        train_size: int | None = 2000,
        test_size: int | None = 512,
        seed: int = 0,
        kinds: tuple[str, ...] = KINDS,
        max_number: int = 20,
        train_file: str | None = None,
        test_file: str | None = None,
        test_files: dict[str, str] | None = None,
        problem_field: str = "problem",
        answer_field: str = "answer",
        answer_from_solution: bool = False,
        template: Template = "text",
        require_think_close: bool = False,
        number_fallback: bool = False,
        timeout_seconds: float = 5.0,
        verifier_workers: int | None = None,
    ) -> None:
        for split, size, source in (("train", train_size, train_file), ("test", test_size, test_file)):
            if size is None and source is None:
                raise ValueError(f"{split}_size may be null only with a {split}_file (then all of its rows are used).")
            if size is not None and size < 0:
                raise ValueError(f"{split}_size must be >= 0, got {size}.")
        check_generator_config(tuple(kinds), max_number)
        if template not in TEMPLATES:
            raise ValueError(f"Unknown math template {template!r}; choose one of: {', '.join(TEMPLATES)}.")
        test_files = dict(test_files or {})
        for name in test_files:
            if name in ("train", "test") or not _SPLIT_NAME.fullmatch(str(name)):
                raise ValueError(
                    f"Test set name {name!r} must be 1-64 letters, digits, '_', '.' or '-', and not train or test."
                )
        if importlib.util.find_spec("math_verify") is None:
            raise ImportError("The math task needs the math-verify package; `pip install math-verify==0.9.0`.")
        self.train_size = train_size
        self.test_size = test_size
        self.seed = seed
        self.kinds = tuple(kinds)
        self.max_number = max_number
        self.train_file = train_file
        self.test_file = test_file
        self.test_files = test_files
        self.problem_field = problem_field
        self.answer_field = answer_field
        self.answer_from_solution = answer_from_solution
        self.template = template
        self.require_think_close = require_think_close
        self.number_fallback = number_fallback
        self.checker = EquivalenceChecker(timeout_seconds, verifier_workers)
        self.refused = 0
        """Answers refused before math-verify (absurdly nested, or astronomically large exact numbers)."""
        self.splits = ("train", "test", *test_files)
        named_only = bool(test_files) and test_file is None  # a generated "test" split is no benchmark beside them
        self.eval_splits = (() if named_only else ("test",)) + tuple(test_files)

    @property
    def timeouts(self) -> int:
        """Checks that hit ``timeout_seconds`` so far (each scored 0)."""
        return self.checker.timeouts

    # ------------------------------------------------------------------------------------------------ data
    def build_examples(self, split: str) -> list[dict]:
        """Rows of ``split``: a named test set whole, else as ``FileOrGeneratedSplits`` gives them."""
        if split in self.test_files:
            return self._cached_rows(self.test_files[split], None)
        return super().build_examples(split)

    def warmstart_examples(self, count: int, seed: int) -> list[dict]:
        """Fresh generated problems, none of them in the train or test split (the train split if it is a file)."""
        if self.train_file is not None:  # generated arithmetic would not teach a dataset's problems
            return Task.warmstart_examples(self, count, seed)
        return super().warmstart_examples(count, seed)

    def generate(self, count: int, seed: int, exclude: set | None) -> list[dict]:
        return generate_problems(count, seed, self.kinds, self.max_number, exclude)

    def read_rows(self, source: str, limit: int | None) -> list[dict]:
        return read_math_rows(source, self.problem_field, self.answer_field, self.answer_from_solution, limit=limit)

    def problem_key(self, row: dict) -> str:
        return row["problem"]

    # ------------------------------------------------------------------------------------------------ prompts
    def prompt(self, example: dict) -> Prompt:
        """The prompt in the configured template."""
        problem = _required(example, "problem")
        if self.template == "compact":
            return f"{example.get('expr') or problem}:"
        if self.template == "chat":
            return [{"role": "user", "content": f"{problem}\n{INSTRUCTION}"}]
        if self.template == "one_shot":
            return [*ONE_SHOT, {"role": "user", "content": f"{problem} Put the answer in \\boxed{{}}."}]
        return f"Problem: {problem}\n{INSTRUCTION}\nSolution:"

    def solution(self, example: dict) -> str | None:
        """The row's worked steps (generated rows) followed by ``\\boxed{answer}``."""
        steps = example.get("steps")
        return f"{steps if isinstance(steps, str) else ''}\\boxed{{{_required(example, 'answer')}}}"

    # ------------------------------------------------------------------------------------------------ verifier
    def score(self, completion: str, example: dict) -> Score:
        """1.0 if the final answer is equivalent to ``example["answer"]``, else 0.0 (also on timeouts)."""
        return self.score_many([completion], [example])[0]

    def score_many(self, completions: list[str], examples: list[dict]) -> list[Score]:
        """Score completion i against example i; the answers plain comparison cannot settle are checked by
        math-verify in parallel (distinct ones once)."""
        verdicts: list[bool | None] = []
        pending: dict[int, tuple[str, str]] = {}
        for index, (completion, example) in enumerate(zip(completions, examples, strict=True)):
            gold = _required(example, "answer")
            verdict, answer = self._settle(completion, gold)
            verdicts.append(verdict)
            if verdict is None:
                pending[index] = (gold, answer)
        if pending:
            for index, verdict in zip(pending, self.checker.check_many(list(pending.values()))):
                verdicts[index] = verdict
        return [Score(1.0 if correct else 0.0, bool(correct)) for correct in verdicts]

    def _settle(self, completion: str, gold: str) -> tuple[bool | None, str | None]:
        """The verdict when it needs no math-verify check (no answer, plain comparison, a refused answer), else
        None and the answer to check (redundant groups collapsed)."""
        try:
            answer = extract_answer(completion, self.require_think_close, self.number_fallback)
        except AnswerTooLong:
            return False, None
        if answer is None:
            return False, None
        answer = collapse_groups(answer)
        correct = fast_equivalence(collapse_groups(gold), answer)
        if correct is not None:
            return correct, None
        if absurd_reason(answer) is not None:
            self.refused += 1
            return False, None
        return None, answer

    def verifier_counts(self) -> dict[str, int]:
        """Timeouts, checks whose worker died on every retry, and answers refused unparsed (each scored 0)."""
        return {"timeouts": self.checker.timeouts, "failures": self.checker.failures, "refused": self.refused}


def _required(example: dict, field: str) -> str:
    """``example[field]`` as a non-empty string (numbers are converted); ValueError saying what is wrong otherwise."""
    if not isinstance(example, dict):
        raise ValueError(f"A math example must be a dict with 'problem' and 'answer', got {type(example).__name__}.")
    value = example.get(field)
    if isinstance(value, int | float) and not isinstance(value, bool):
        value = str(value)
    if not isinstance(value, str) or not value.strip():
        have = sorted(map(str, example))
        raise ValueError(f"Math example needs a non-empty string field {field!r} (it has: {have}).")
    return value
