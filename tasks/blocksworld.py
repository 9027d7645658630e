"""Blocksworld planning (PlanBench-style): write a plan that turns the initial stacks into the goal."""

from __future__ import annotations

from typing import Literal, get_args

from tasks.base import Prompt, Score
from tasks.blocksworld_plans import PLAN_CLOSE, PLAN_OPEN, format_action, parse_plan
from tasks.blocksworld_problems import (
    MAX_PLANNED_BLOCKS,
    ONE_ARG,
    TWO_ARGS,
    Action,
    Goal,
    State,
    apply_action,
    check_generator_config,
    generate_problems,
    goal_chains,
    optimal_plan,
    problem_fields,
    problem_key,
    satisfied,
)
from tasks.registry import register_task
from tasks.sources import read_valid_rows
from tasks.splits import FileOrGeneratedSplits, check_split_sizes

__all__ = ["BlocksworldTask", "generate_problems", "optimal_plan", "simulate"]

Template = Literal["text", "chat", "compact"]
TEMPLATES: tuple[str, ...] = get_args(Template)
RewardMode = Literal["binary", "shaped"]
REWARDS: tuple[str, ...] = get_args(RewardMode)
RULES = (
    "I am playing with a set of blocks. I can do one of four actions at a time, holding at most one block:\n"
    "pick up X: X is on the table, nothing is on X, and my hand is empty;\n"
    "unstack X from Y: X is on Y, nothing is on X, and my hand is empty;\n"
    "put down X: I hold X; it goes on the table;\n"
    "stack X on Y: I hold X and nothing is on Y; X goes on Y."
)
ASK = "Write the plan between <plan> and </plan>, one action per line, in the words above (e.g. unstack b from a)."


def simulate(state: State, goal: Goal, completion: str) -> tuple[bool, int]:
    """Run the plan of ``completion`` from ``state``: (every action legal, goal facts true after the legal prefix)."""
    for action in parse_plan(completion):
        following = None if action is None else apply_action(state, action)
        if following is None:
            return False, satisfied(state, goal)
        state = following
    return True, satisfied(state, goal)


def describe(state: State, goal: Goal) -> str:
    """The initial state and the goal in words."""
    facts = []
    for stack in state.stacks:
        facts.append(f"{stack[0]} is on the table")
        facts.extend(f"{upper} is on {lower}" for lower, upper in zip(stack, stack[1:]))
    wanted = [f"{x} is on {y}" for x, y in sorted(goal)]
    return f"Initially my hand is empty, {', '.join(facts)}.\nMy goal is that {' and '.join(wanted) or 'nothing'}."


@register_task("blocksworld")
class BlocksworldTask(FileOrGeneratedSplits):
    """Blocksworld: reach the goal facts ("x is on y") from the initial stacks with legal actions.

    Rows are ``{"init": [["a", "b"], ["c"]], "goal": [["a", "c"]], "optimal_length": 3, "plan": [...]}``: stacks
    listed bottom to top (b is on a), goal facts as [x, y] = "x is on y". The plan is written one action per line
    (``pick up a``, ``put down a``, ``stack a on b``, ``unstack a from b``) or compactly (``pa da sab uab``); see
    ``tasks.blocksworld_plans`` for the full grammar. The verifier simulates the plan step by step: a malformed or
    illegal action ends it, and it is correct only if every action was legal and the goal holds at the end.

    Compact template (tiny models): stacks as letter strings bottom to top, then the goal as towers, e.g.
    ``ab c>ca:`` = "b on a, c alone; goal: a on c", answered by ``uba db pa sac``.

    Args:
        train_size: Number of training problems (the first rows of train_file if given).
        test_size: Number of test problems (the first rows of test_file if given).
        seed: Seed of the problem generator (train, test and warm-start derive different seeds from it).
        min_blocks: Fewest blocks in a generated problem (at least 2).
        max_blocks: Most blocks in a generated problem (at most 6: the optimal planner is breadth-first search).
        train_file: Rows in the format above (.jsonl/.json/.parquet or a dataset name); null generates problems.
            Broken rows, and JSON lines over 1 MB, are skipped with one warning counting each reason.
        test_file: Same for testing; if equal to train_file, the test rows follow the first train_size rows.
        template: Prompt style: "text" (base models), "chat" (one user message) or "compact" (tiny models).
        reward: "binary" (1 if correct else 0) or "shaped" (1 if correct, else shaped_scale times the fraction of
            goal facts true after the legal prefix of the plan); ``correct`` is always binary.
        shaped_scale: Largest reward of an incorrect plan under reward "shaped" (in [0, 1)).
    """

    splits = ("train", "test")
    seed_namespace = "blocksworld"

    def __init__(
        self,
        train_size: int = 2000,
        test_size: int = 512,
        seed: int = 0,
        min_blocks: int = 3,
        max_blocks: int = 5,
        train_file: str | None = None,
        test_file: str | None = None,
        template: Template = "text",
        reward: RewardMode = "binary",
        shaped_scale: float = 0.5,
    ) -> None:
        check_split_sizes(train_size=train_size, test_size=test_size)
        check_generator_config(min_blocks, max_blocks)
        if template not in TEMPLATES:
            raise ValueError(f"template={template!r} is not one of: {', '.join(TEMPLATES)}.")
        if reward not in REWARDS:
            raise ValueError(f"reward={reward!r} is not one of: {', '.join(REWARDS)}.")
        if not 0.0 <= shaped_scale < 1.0:
            raise ValueError(f"shaped_scale={shaped_scale} must be in [0, 1), so that only correct plans earn 1.")
        self.train_size = train_size
        self.test_size = test_size
        self.seed = seed
        self.min_blocks = min_blocks
        self.max_blocks = max_blocks
        self.train_file = train_file
        self.test_file = test_file
        self.template = template
        self.reward = reward
        self.shaped_scale = shaped_scale

    # ------------------------------------------------------------------------------------------------ data
    def generate(self, count: int, seed: int, exclude: set | None) -> list[dict]:
        return generate_problems(count, seed, self.min_blocks, self.max_blocks, exclude)

    def read_rows(self, source: str, limit: int | None) -> list[dict]:
        return read_blocksworld_rows(source, limit)

    def problem_key(self, row: dict) -> tuple:
        return problem_key(row)

    # ------------------------------------------------------------------------------------------------ prompts
    def prompt(self, example: dict) -> Prompt:
        """The prompt in the configured template."""
        state, goal = problem_fields(example)
        if self.template == "compact":
            towers = " ".join("".join(chain) for chain in goal_chains(goal))
            return f"{' '.join(''.join(stack) for stack in state.stacks)}>{towers}:"
        text = f"{RULES}\n\n{describe(state, goal)}\n\n{ASK}"
        if self.template == "chat":
            return [{"role": "user", "content": text}]
        return f"{text}\n\nPlan:\n{PLAN_OPEN}\n"

    def solution(self, example: dict) -> str | None:
        """The row's plan if it is one, else an optimal plan, in the template's writing style."""
        state, goal = problem_fields(example)
        plan = _row_plan(example)
        if plan is None or not simulate(state, goal, " ".join(format_action(a, "compact") for a in plan))[0]:
            if len(state.blocks()) > MAX_PLANNED_BLOCKS:
                return None
            plan = optimal_plan(state, goal)
        if self.template == "compact":
            return " ".join(format_action(a, "compact") for a in plan)
        lines = "\n".join(format_action(a, "text") for a in plan)
        return f"{lines}\n{PLAN_CLOSE}" if self.template == "text" else f"{PLAN_OPEN}\n{lines}\n{PLAN_CLOSE}"

    # ------------------------------------------------------------------------------------------------ verifier
    def score(self, completion: str, example: dict) -> Score:
        """Simulate the plan; 1.0 if every action is legal and the goal holds at the end (see ``reward``)."""
        state, goal = problem_fields(example)
        legal, done = simulate(state, goal, completion)
        correct = legal and done == len(goal)
        if correct:
            return Score(1.0, True)
        if self.reward == "shaped" and goal:
            return Score(self.shaped_scale * done / len(goal), False)
        return Score(0.0, False)


def _row_plan(example: dict) -> tuple[Action, ...] | None:
    """The row's ``plan`` as actions if it is a list of [verb, x, y] triples, else None."""
    plan = example.get("plan")
    if not isinstance(plan, list | tuple):
        return None
    actions = []
    for step in plan:
        if not (isinstance(step, list | tuple) and len(step) == 3):
            return None
        verb, x, y = step
        one_arg = verb in ONE_ARG and y is None
        if not (isinstance(x, str) and (one_arg or (verb in TWO_ARGS and isinstance(y, str)))):
            return None
        actions.append((verb, x, y))
    return tuple(actions)


def read_blocksworld_rows(source: str, limit: int | None = None) -> list[dict]:
    """Valid rows of ``source`` (up to ``limit``) with ``optimal_length`` filled in; broken rows are skipped."""
    requirement = (
        "each row needs 'init' (stacks of single-letter blocks, bottom to top) and 'goal' ([x, y] pairs: x on y)"
    )
    return read_valid_rows(source, _blocksworld_row, "Blocksworld", requirement, limit)


def _blocksworld_row(row) -> dict:
    state, goal = problem_fields(row)  # BadRow says what is wrong
    length = row.get("optimal_length")
    if not isinstance(length, int) and len(state.blocks()) <= MAX_PLANNED_BLOCKS:
        length = len(optimal_plan(state, goal))
    return {**row, "optimal_length": length}
