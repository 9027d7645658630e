"""Countdown (TinyZero): reach a target with + - * / using each given number once."""

from typing import Literal, get_args

from tasks.arithmetic import MAX_EXPRESSION_CHARS, ArithmeticSyntaxError, parse_expression
from tasks.base import Prompt, Score
from tasks.countdown_problems import (
    MAX_TARGET,
    ROW_NUMBERS,
    ProblemKey,
    check_generator_config,
    file_row,
    generate_problems,
    problem_fields,
    problem_key,
    solve,
)
from tasks.registry import register_task
from tasks.sources import read_valid_rows
from tasks.splits import FileOrGeneratedSplits, check_split_sizes

__all__ = ["CountdownTask", "countdown_reward", "generate_problems", "problem_key", "solve"]

ANSWER_OPEN = "<answer>"
ANSWER_CLOSE = "</answer>"

INSTRUCTION = (
    "Using the numbers {nums}, create an equation that equals {target}. You can use basic arithmetic operations "
    "(+, -, *, /) and each number can only be used once. Show your work in <think> </think> tags. And return the "
    "final answer in <answer> </answer> tags, for example <answer> (1 + 2) / 3 </answer>."
)
TINYZERO_PREFIX = (
    "A conversation between User and Assistant. The user asks a question, and the Assistant solves it. The "
    "assistant first thinks about the reasoning process in the mind and then provides the user with the answer.\n"
    "User: {instruction}\nAssistant: Let me solve this step by step.\n<think>"
)
ONE_SHOT_INSTRUCTION = (
    "Using the numbers {nums}, write an equation that equals {target}. Use + - * / and each number exactly once. "
    "Put the equation in <answer> </answer> tags."
)


def worked_exchange(nums: list[int], target: int, expression: str) -> list[dict]:
    """One solved problem as a user/assistant exchange, in the format the reward checks."""
    return [
        {"role": "user", "content": ONE_SHOT_INSTRUCTION.format(nums=nums, target=target)},
        {"role": "assistant", "content": f"{expression} = {target}. {ANSWER_OPEN}{expression}{ANSWER_CLOSE}"},
    ]


ONE_SHOT = worked_exchange([6, 3], 2, "6 / 3")
"""The worked exchange before the problem in the one_shot template: small instruct models copy its format."""
FEW_SHOT = [
    *worked_exchange([8, 2], 4, "8 / 2"),
    *worked_exchange([3, 5], 8, "3 + 5"),
    *worked_exchange([4, 6], 24, "4 * 6"),
    *worked_exchange([9, 2], 7, "9 - 2"),
]
"""The few_shot template's four exchanges, one per operator: with one_shot's single division SmolLM2-135M mostly
divides (1.2% of its sampled answers correct on two-number problems up to 20), with these 21.5%
(benchmarks/countdown_prompts.py)."""
SHORT_INSTRUCTION = "Numbers {nums}, target {target}."
"""The later problems of the few_shot_short template: the first exchange has already stated the rules."""


def short_exchange(nums: list[int], target: int, expression: str) -> list[dict]:
    """A solved problem in the short form: only the numbers and the target, then the answer."""
    return [
        {"role": "user", "content": SHORT_INSTRUCTION.format(nums=nums, target=target)},
        {"role": "assistant", "content": f"{expression} = {target}. {ANSWER_OPEN}{expression}{ANSWER_CLOSE}"},
    ]


FEW_SHOT_SHORT = [
    *worked_exchange([8, 2], 4, "8 / 2"),
    *short_exchange([3, 5], 8, "3 + 5"),
    *short_exchange([4, 6], 24, "4 * 6"),
    *short_exchange([9, 2], 7, "9 - 2"),
]
"""few_shot's four exchanges with the rules stated once: 235 prompt tokens instead of 350 for SmolLM2, so an update
costs about a third less, at the same validation accuracy before RL (docs/real-models.md)."""
Template = Literal["tinyzero", "chat", "one_shot", "few_shot", "few_shot_short", "compact"]
TEMPLATES: tuple[str, ...] = get_args(Template)


def countdown_reward(completion: str, nums: list[int], target: int, format_score: float = 0.1) -> float:
    """TinyZero's Countdown reward: 0 without an answer, 1 if correct, ``format_score`` otherwise.

    The answer is the text between the last ``</answer>`` and the nearest ``<answer>`` before it; it must
    parse (see ``tasks.arithmetic``), use exactly the multiset ``nums`` and equal ``target`` exactly.
    """
    end = completion.rfind(ANSWER_CLOSE)
    if end < 0:
        return 0.0
    start = completion.rfind(ANSWER_OPEN, 0, end)
    if start < 0:
        return 0.0
    start += len(ANSWER_OPEN)
    if end - start > MAX_EXPRESSION_CHARS:
        return format_score
    try:
        expr = parse_expression(completion[start:end])
    except ArithmeticSyntaxError:
        return format_score
    if sorted(expr.numbers()) != sorted(nums) or expr.evaluate() != target:
        return format_score
    return 1.0


@register_task("countdown")
class CountdownTask(FileOrGeneratedSplits):
    """Countdown: combine the given numbers with + - * / (each used once) to reach the target.

    Args:
        train_size: Number of training problems (the first rows of ``train_file`` if given).
        test_size: Number of test problems (the first rows of ``test_file`` if given).
        seed: Seed of the problem generator (train and test derive different seeds from it).
        min_numbers: Fewest numbers in a generated problem.
        max_numbers: Most numbers in a generated problem.
        max_number: Generated numbers are drawn from 1..max_number.
        max_target: Generated targets are integers in 1..max_target (at most 1000000).
        train_file: TinyZero-format rows (nums, target) for training: a .jsonl/.json/.parquet path or a
            Hugging Face dataset name; None generates problems. A row needs 2-6 positive integers and a target in
            1..1000000; other rows, and JSON lines over 1 MB, are skipped with one warning counting each reason.
        test_file: Same for testing; if equal to train_file, the test rows follow the first train_size rows.
        template: Prompt style: "tinyzero" (base-model text), "chat" (one user message), "one_shot" (chat with one
            worked example first: small instruct models follow its <answer> format), "few_shot" (four worked
            examples, one per operator: small models stop copying the one example's operator), "few_shot_short"
            (the same examples with the rules stated only in the first: a third fewer tokens) or "compact" (tiny
            models).
        format_score: Reward for a well-formed but wrong answer (in [0, 1)).
    """

    splits = ("train", "test")
    seed_namespace = "countdown"

    def __init__(
        self,
        train_size: int = 2000,
        test_size: int = 512,
        seed: int = 0,
        min_numbers: int = 3,
        max_numbers: int = 4,
        max_number: int = 99,
        max_target: int = 100,
        train_file: str | None = None,
        test_file: str | None = None,
        template: Template = "tinyzero",
        format_score: float = 0.1,
    ) -> None:
        check_split_sizes(train_size=train_size, test_size=test_size)
        check_generator_config(min_numbers, max_numbers, max_number, max_target)
        if template not in TEMPLATES:
            raise ValueError(f"template={template!r} is not one of: {', '.join(TEMPLATES)}.")
        if not 0.0 <= format_score < 1.0:
            raise ValueError(f"format_score={format_score} must be in [0, 1), so that only correct answers earn 1.")
        self.train_size = train_size
        self.test_size = test_size
        self.seed = seed
        self.min_numbers = min_numbers
        self.max_numbers = max_numbers
        self.max_number = max_number
        self.max_target = max_target
        self.train_file = train_file
        self.test_file = test_file
        self.template = template
        self.format_score = format_score

    def generate(self, count: int, seed: int, exclude: set | None) -> list[dict]:
        return generate_problems(
            count, seed, self.min_numbers, self.max_numbers, self.max_number, self.max_target, exclude=exclude
        )

    def read_rows(self, source: str, limit: int | None) -> list[dict]:
        return read_countdown_rows(source, limit)

    def problem_key(self, row: dict) -> ProblemKey:
        return problem_key(row)

    def prompt(self, example: dict) -> Prompt:
        """The prompt in the configured template."""
        nums, target = problem_fields(example)
        if self.template == "compact":
            return f"{target} from {' '.join(map(str, nums))}:"
        if self.template in ("one_shot", "few_shot"):
            shots = ONE_SHOT if self.template == "one_shot" else FEW_SHOT
            return [*shots, {"role": "user", "content": ONE_SHOT_INSTRUCTION.format(nums=nums, target=target)}]
        if self.template == "few_shot_short":
            return [*FEW_SHOT_SHORT, {"role": "user", "content": SHORT_INSTRUCTION.format(nums=nums, target=target)}]
        instruction = INSTRUCTION.format(nums=nums, target=target)
        if self.template == "chat":
            return [{"role": "user", "content": instruction}]
        return TINYZERO_PREFIX.format(instruction=instruction)

    def score(self, completion: str, example: dict) -> Score:
        """TinyZero's reward (see ``countdown_reward``); correct iff the reward is 1."""
        nums, target = problem_fields(example)
        reward = countdown_reward(completion, nums, target, self.format_score)
        return Score(reward=reward, correct=reward == 1.0)

    def solution(self, example: dict) -> str | None:
        """``<answer>EXPR</answer>`` from the row's ``solution`` field, else from the exact solver."""
        nums, target = problem_fields(example)
        expr = example.get("solution")
        if not isinstance(expr, str) or not expr.strip():
            expr = solve(nums, target)
        return None if expr is None else f"{ANSWER_OPEN}{expr}{ANSWER_CLOSE}"


def read_countdown_rows(source: str, limit: int | None = None) -> list[dict]:
    """Valid Countdown rows of ``source`` (up to ``limit``; see ``file_row``); the others are skipped, reported once."""
    low, high = ROW_NUMBERS
    requirement = f"each row needs 'nums' ({low}-{high} positive integers) and 'target' (an integer in 1..{MAX_TARGET})"
    return read_valid_rows(source, file_row, "Countdown", requirement, limit)
