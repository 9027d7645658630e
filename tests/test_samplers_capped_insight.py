"""capped_insight: InSight's ranking with a bound on how far one prompt's draws run ahead of uniform's."""

import math

import pytest
import torch

from samplers import BetaPosterior, Outcomes, PromptSelector, build_sampler


def simulate(name: str, steps: int = 40, pool: int = 24, batch: int = 6, seed: int = 0, **kwargs):
    """A run against fixed per-prompt success rates; returns the selector and how often each prompt was drawn."""
    selector = PromptSelector(build_sampler(name, **kwargs), pool, batch, group_size=8, seed=seed)
    rates = torch.linspace(0.0, 1.0, pool, dtype=torch.float64)  # [N] from never to always solved
    coins = torch.Generator().manual_seed(seed + 1)
    drawn = torch.zeros(pool, dtype=torch.long)
    for _ in range(steps):
        ids = selector.select().ids
        successes = torch.binomial(torch.full((batch,), 8.0, dtype=torch.float64), rates[ids], generator=coins)
        selector.update(Outcomes(ids, successes.long(), torch.full_like(ids, 8)))
        drawn[ids] += 1
    return selector, drawn


def test_no_prompt_runs_ahead_of_the_cap_while_insight_alone_concentrates():
    steps, pool, batch, max_rate = 40, 24, 6, 1.5
    _, insight = simulate("insight", steps, pool, batch)
    _, capped = simulate("capped_insight", steps, pool, batch, max_rate=max_rate)
    bound = max_rate * steps * batch / pool  # uniform draws each prompt steps * M / N = 10 times
    assert insight.max() > bound  # the concentration the cap exists for (InSight favours mid-rate prompts)
    assert capped.max() <= bound and capped.sum() == steps * batch


def test_unbounded_cap_is_insight_itself():
    _, insight = simulate("insight")
    _, unbounded = simulate("capped_insight", max_rate=math.inf)
    assert torch.equal(insight, unbounded)


def test_eligible_prompts_go_by_insight_score_and_capped_ones_fill_least_drawn_first():
    sampler = build_sampler("capped_insight", max_rate=1.0)
    sampler.setup(pool_size=4, batch_size=2, group_size=8)
    posterior = BetaPosterior(4)
    # prompt 0 is mid-rate (InSight's favourite), 1 and 2 are settled, 3 unseen
    posterior.update(torch.tensor([0, 1, 2]), torch.tensor([3, 0, 8]), torch.tensor([8, 8, 8]))
    sampler.draws = torch.tensor([2, 1, 0, 0])  # 3 groups drawn: the next step's allowance is max(1, 5/4) = 1.25
    gen = torch.Generator().manual_seed(0)
    scores = sampler.score(torch.arange(4), posterior, gen)
    assert scores[0] == -3 and scores[1] == -2  # drawn 2 and 1 times: 3 and 2 would exceed 1.25
    assert bool((scores[2:] >= 0).all())
    assert sorted(sampler.select(torch.arange(4), posterior, 2, gen).tolist()) == [2, 3]
    sampler.draws = torch.tensor([2, 1, 1, 1])  # one eligible prompt left (none): the least drawn fill up
    assert sampler.select(torch.tensor([0, 1, 2]), posterior, 2, gen).tolist()[1] in (1, 2)


def test_counts_resume_with_the_selector_and_a_corrupt_state_is_one_sentence():
    def run(steps, state=None, first_step=0):
        selector = PromptSelector(build_sampler("capped_insight"), 10, 4, group_size=8, seed=3)
        if state is not None:
            selector.load_state_dict(state)
        picks = []
        for step in range(first_step, first_step + steps):
            ids = selector.select().ids
            picks.append(ids)
            selector.update(Outcomes(ids, (ids * 5 + step) % 9, torch.full_like(ids, 8)))
        return selector, picks

    _, full = run(12)
    half, _ = run(6)
    state = half.state_dict()
    _, resumed = run(6, state=state, first_step=6)
    assert all(torch.equal(a, b) for a, b in zip(full[6:], resumed))
    broken = dict(state, sampler_state={"draws": "many"})
    with pytest.raises(ValueError, match="Corrupt capped_insight state"):
        run(1, state=broken)
    with pytest.raises(ValueError, match="cover 3 prompts"):
        run(1, state=dict(state, sampler_state={"draws": torch.zeros(3, dtype=torch.long)}))


@pytest.mark.parametrize("max_rate", [0.5, float("nan")])
def test_a_cap_below_uniforms_rate_is_refused(max_rate):
    with pytest.raises(ValueError, match="max_rate"):
        build_sampler("capped_insight", max_rate=max_rate)
