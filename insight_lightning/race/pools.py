"""Pools of a stated difficulty mix, composed from a probe of the starting policy on candidate prompts."""

from __future__ import annotations

import random
from typing import Literal

Kind = Literal["out_of_reach", "mixed", "solved"]
KINDS: tuple[Kind, ...] = ("out_of_reach", "mixed", "solved")
MIXES: dict[str, dict[Kind, float]] = {
    **{f"mix{percent}": {"out_of_reach": percent / 100, "mixed": 1 - percent / 100} for percent in (25, 50, 75)},
    "solved50": {"mixed": 0.5, "solved": 0.5},
}
"""Race regimes of a stated difficulty mix: mixNN holds NN% prompts out of reach and the rest mixed; solved50 half
always solved by the starting policy, half mixed."""


GRADED_LEVELS: dict[str, tuple[int, int]] = {
    "3 numbers, target <= 40": (3, 40),
    "4 numbers, target <= 40": (4, 40),
    "4 numbers, target <= 400": (4, 400),
    "5 numbers, target <= 40": (5, 40),
}
"""The graded regime's Countdown levels (numbers per problem, largest target), an equal share each, every problem
solvable (drawn from an expression tree): the race config's own problems (3 or 4 numbers, targets up to 40), then
larger targets, then one number more than its warm-start ever saw, so that prompts out of reach at the start may come
within reach as the policy learns (where beliefs that never forget go stale)."""
GRADED = "graded"
BUILT_POOLS = (*MIXES, GRADED)
"""Regimes whose pools are files the pool builder makes from a probe of the starting weights."""


def level_counts(size: int) -> dict[str, int]:
    """How many prompts of each graded level a pool of `size` holds: equal shares, the first levels taking the rest."""
    base, extra = divmod(size, len(GRADED_LEVELS))
    return {level: base + (index < extra) for index, level in enumerate(GRADED_LEVELS)}


def kind_of(solved: int, samples: int) -> Kind:
    """A prompt's kind by its probe: none of the samples solved, all of them, or some (only these give a gradient)."""
    if solved == 0:
        return "out_of_reach"
    return "solved" if solved == samples else "mixed"


def kind_counts(size: int, shares: dict[Kind, float]) -> dict[Kind, int]:
    """How many prompts of each kind a pool of `size` holds: the shares rounded, the last kind taking the rest."""
    unknown = set(shares) - set(KINDS)
    if unknown:
        raise ValueError(f"unknown prompt kinds {sorted(unknown)}; the kinds are {', '.join(KINDS)}")
    if any(share < 0 for share in shares.values()) or abs(sum(shares.values()) - 1) > 1e-9:
        raise ValueError(f"the shares of a pool's kinds must be >= 0 and sum to 1, got {shares}")
    kinds = [kind for kind in KINDS if shares.get(kind, 0) > 0]
    counts = {kind: round(shares[kind] * size) for kind in kinds[:-1]}
    counts[kinds[-1]] = size - sum(counts.values())
    return counts


def compose_pool(
    candidates: list[dict], solved: list[int], samples: int, size: int, shares: dict[Kind, float], seed: int
) -> list[dict]:
    """`size` candidates, each kind's count from `shares`, drawn without replacement (seeded) among the candidates
    of that kind by their probe (`solved` of `samples`), in a seeded random order (a sampler that takes unseen
    prompts in pool order must not meet one kind first)."""
    if len(candidates) != len(solved):
        raise ValueError(f"{len(candidates)} candidates but {len(solved)} probe counts")
    by_kind: dict[Kind, list[int]] = {kind: [] for kind in KINDS}
    for index, count in enumerate(solved):
        by_kind[kind_of(count, samples)].append(index)
    rng = random.Random(seed)
    chosen: list[int] = []
    for kind, count in kind_counts(size, shares).items():
        if count > len(by_kind[kind]):
            raise ValueError(
                f"the pool needs {count} {kind.replace('_', ' ')} prompts but the probe found {len(by_kind[kind])} "
                "among the candidates; probe more candidates or ask for a smaller pool"
            )
        chosen += rng.sample(by_kind[kind], count)
    rng.shuffle(chosen)
    return [candidates[i] for i in chosen]
