"""Blocksworld states, the four actions, an optimal (breadth-first) planner and a seeded problem generator.

A state is a set of stacks (each bottom to top) plus the block in the hand, if any. Actions (PlanBench's
4-operator domain): ``pickup x`` (x alone on the table and clear, hand empty), ``putdown x`` (holding x),
``stack x y`` (holding x, y clear), ``unstack x y`` (x directly on y and clear, hand empty). A goal is a set of
``(x, y)`` facts "x is directly on y"; the hand and the other blocks are unconstrained.
"""

from __future__ import annotations

import functools
import random
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass

from tasks.sources import BadRow
from tasks.splits import draw_distinct

BLOCK_NAMES = "abcdefgh"
"""Generated problems name their blocks with distinct letters drawn from these."""
MAX_BLOCKS = len(BLOCK_NAMES)
MAX_PLANNED_BLOCKS = 6
"""Breadth-first search stays fast (under ~0.1 s) up to this many blocks."""
ONE_ARG = ("pickup", "putdown")
TWO_ARGS = ("stack", "unstack")

Action = tuple[str, str, str | None]
"""``(verb, x, y)``: verb in pickup/putdown/stack/unstack; y is None for pickup and putdown."""
Goal = frozenset[tuple[str, str]]


@dataclass(frozen=True)
class State:
    """Stacks (bottom to top, sorted, none empty) and the held block."""

    stacks: tuple[tuple[str, ...], ...]
    holding: str | None = None

    @staticmethod
    def of(stacks: Iterable[Iterable[str]], holding: str | None = None) -> State:
        """The canonical state of the given stacks."""
        return State(tuple(sorted(tuple(s) for s in stacks if tuple(s))), holding)

    def blocks(self) -> set[str]:
        return {b for stack in self.stacks for b in stack} | ({self.holding} if self.holding else set())

    def on_facts(self) -> set[tuple[str, str]]:
        """``(x, y)`` for every block x directly on a block y."""
        return {(stack[i + 1], stack[i]) for stack in self.stacks for i in range(len(stack) - 1)}


def apply_action(state: State, action: Action) -> State | None:
    """The successor state, or None if the action is not legal in ``state``."""
    verb, x, y = action
    stacks = list(state.stacks)
    if verb in ("pickup", "unstack"):
        if state.holding is not None:
            return None
        for index, stack in enumerate(stacks):
            if stack[-1] != x:
                continue
            if verb == "pickup" and len(stack) == 1:
                return State.of(stacks[:index] + stacks[index + 1 :], x)
            if verb == "unstack" and len(stack) > 1 and stack[-2] == y:
                return State.of([*stacks[:index], stack[:-1], *stacks[index + 1 :]], x)
        return None
    if state.holding != x:
        return None
    if verb == "putdown":
        return State.of([*stacks, (x,)])
    for index, stack in enumerate(stacks):  # stack x on y
        if stack[-1] == y:
            return State.of([*stacks[:index], (*stack, x), *stacks[index + 1 :]])
    return None


def successors(state: State) -> Iterator[tuple[Action, State]]:
    """Every legal action and its result, in a fixed order (the planner's tie-break)."""
    if state.holding is None:
        for stack in state.stacks:
            x = stack[-1]
            action: Action = ("pickup", x, None) if len(stack) == 1 else ("unstack", x, stack[-2])
            yield action, apply_action(state, action)
        return
    x = state.holding
    yield ("putdown", x, None), apply_action(state, ("putdown", x, None))
    for stack in state.stacks:
        yield ("stack", x, stack[-1]), apply_action(state, ("stack", x, stack[-1]))


def satisfied(state: State, goal: Goal) -> int:
    """Number of goal facts that hold in ``state``."""
    return len(goal & state.on_facts())


@functools.lru_cache(maxsize=8192)
def optimal_plan(state: State, goal: Goal) -> tuple[Action, ...]:
    """A shortest plan reaching ``goal`` (breadth-first search); ValueError if the goal is unreachable."""
    if len(state.blocks()) > MAX_PLANNED_BLOCKS:
        raise ValueError(f"The optimal planner handles at most {MAX_PLANNED_BLOCKS} blocks, got {len(state.blocks())}.")
    check_goal(goal, state.blocks())
    parents: dict[State, tuple[State, Action] | None] = {state: None}
    frontier = deque([state])
    while frontier:
        current = frontier.popleft()
        if satisfied(current, goal) == len(goal):
            plan = []
            while parents[current] is not None:
                current, action = parents[current]
                plan.append(action)
            return tuple(reversed(plan))
        for action, child in successors(current):
            if child not in parents:
                parents[child] = (current, action)
                frontier.append(child)
    raise ValueError(f"The goal {sorted(goal)} cannot be reached.")  # only for inconsistent goals


def check_goal(goal: Goal, blocks: set[str]) -> None:
    """Raise ``BadRow`` (a ValueError) unless the goal facts name known blocks and can hold together (no cycles)."""
    above: dict[str, str] = {}
    below: dict[str, str] = {}
    for x, y in goal:
        if x not in blocks or y not in blocks or x == y:
            raise BadRow(
                "'goal' names an unknown block",
                f"Goal fact {x!r} on {y!r} must name two different blocks of the problem.",
            )
        if above.get(y, x) != x or below.get(x, y) != y:
            raise BadRow("'goal' cannot hold", f"Goal facts put two blocks on {y!r} or {x!r} on two blocks.")
        above[y], below[x] = x, y
    for start in below:
        seen, block = set(), start
        while block in below:
            if block in seen:
                raise BadRow("'goal' cannot hold", "Goal facts form a cycle.")
            seen.add(block)
            block = below[block]


def _random_stacks(rng: random.Random, blocks: list[str]) -> list[list[str]]:
    order = blocks[:]
    rng.shuffle(order)
    stacks = [[order[0]]]
    for block in order[1:]:
        if rng.random() < 0.5:
            stacks[-1].append(block)
        else:
            stacks.append([block])
    return stacks


def goal_chains(goal: Goal) -> list[list[str]]:
    """The goal facts as towers, bottom to top (``{("b", "a"), ("c", "b")}`` -> ``[["a", "b", "c"]]``), sorted."""
    above = {y: x for x, y in goal}
    bottoms = sorted({y for _, y in goal} - {x for x, _ in goal})
    chains = []
    for bottom in bottoms:
        chain = [bottom]
        while chain[-1] in above:
            chain.append(above[chain[-1]])
        chains.append(chain)
    return chains


def problem_key(row: Mapping) -> tuple:
    """The identity of a problem: its canonical initial state and goal."""
    state, goal = problem_fields(row)
    return state.stacks, tuple(sorted(goal))


def problem_fields(row: Mapping) -> tuple[State, Goal]:
    """The validated initial state and goal of a row ``{"init": [[...], ...], "goal": [[x, y], ...]}``."""
    if not isinstance(row, Mapping) or "init" not in row or "goal" not in row:
        reason = "missing 'init' or 'goal'" if isinstance(row, Mapping) else "not a JSON object"
        raise BadRow(reason, "A Blocksworld example must be a dict with 'init' (stacks) and 'goal' ([x, y] facts).")
    init, goal = row["init"], row["goal"]
    if not isinstance(init, list | tuple) or not all(isinstance(s, list | tuple) and s for s in init):
        detail = f"Blocksworld 'init' must be a list of non-empty stacks (lists of names), got {init!r}."
        raise BadRow("'init' not a list of non-empty stacks", detail)
    names = [b for stack in init for b in stack]
    if not names or not all(isinstance(b, str) and len(b) == 1 and b.isalpha() and b.islower() for b in names):
        raise BadRow(
            "blocks not single lowercase letters", f"Blocksworld blocks must be single lowercase letters, got {init!r}."
        )
    if len(set(names)) != len(names):
        raise BadRow("'init' names a block twice", f"Blocksworld 'init' names a block twice: {init!r}.")
    if not isinstance(goal, list | tuple) or not all(isinstance(f, list | tuple) and len(f) == 2 for f in goal):
        detail = f"Blocksworld 'goal' must be a list of [x, y] pairs (x on y), got {goal!r}."
        raise BadRow("'goal' not a list of [x, y] pairs", detail)
    facts = frozenset((str(x), str(y)) for x, y in goal)
    check_goal(facts, set(names))
    return State.of(init), facts


def generate_problems(
    count: int, seed: int, min_blocks: int = 3, max_blocks: int = 5, exclude: set[tuple] | None = None
) -> list[dict]:
    """Draw ``count`` distinct problems with optimal plans, deterministically from ``seed``.

    Each draws n in [min_blocks, max_blocks], n distinct letters of ``BLOCK_NAMES``, a random initial and a
    random goal configuration; the goal is every "x on y" fact of the goal configuration (at least one, not all
    true initially). Rows: ``{"init", "goal", "optimal_length", "plan"}`` with ``plan`` a list of actions.
    """
    check_generator_config(min_blocks, max_blocks)

    def draw(rng: random.Random) -> tuple[tuple, Callable[[], dict]] | None:
        blocks = sorted(rng.sample(BLOCK_NAMES, rng.randint(min_blocks, max_blocks)))
        init, goal_config = _random_stacks(rng, blocks), _random_stacks(rng, blocks)
        state, goal = State.of(init), frozenset(State.of(goal_config).on_facts())
        if not goal or satisfied(state, goal) == len(goal):
            return None
        return (state.stacks, tuple(sorted(goal))), lambda: _planned_row(state, goal)

    give_up = (
        f"distinct Blocksworld problems with {min_blocks}-{max_blocks} blocks; widen the block range or ask for "
        "fewer problems."
    )
    return draw_distinct(count, seed, draw, exclude, give_up)


def _planned_row(state: State, goal: Goal) -> dict:
    """A generated problem's row, with its optimal plan (computed once per kept problem)."""
    plan = optimal_plan(state, goal)
    return {
        "init": [list(s) for s in state.stacks],
        "goal": [list(f) for f in sorted(goal)],
        "optimal_length": len(plan),
        "plan": [list(a) for a in plan],
    }


def check_generator_config(min_blocks: int, max_blocks: int) -> None:
    """Raise ValueError for block counts the generator and planner cannot serve."""
    if not 2 <= min_blocks <= max_blocks <= MAX_PLANNED_BLOCKS:
        raise ValueError(
            f"min_blocks={min_blocks}, max_blocks={max_blocks}: "
            f"need 2 <= min_blocks <= max_blocks <= {MAX_PLANNED_BLOCKS}."
        )
