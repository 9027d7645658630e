"""GRESO's pre-rollout skipping against a direct re-implementation of its rule from reward traces."""

import random

import pytest
import torch

from samplers import BetaPosterior, GRESOSampler, build_sampler


class TraceGRESO:
    """GRESO as its code states it: per prompt a trace of each group's mean reward; z_e, z_h counted from the end."""

    def __init__(self, pool_size, target=0.25, p=0.5, step=0.01, low=0.05, high=0.95, floor=0.01):
        self.traces = [[] for _ in range(pool_size)]
        self.target, self.p_e, self.p_h, self.step, self.low, self.high, self.floor = (
            target,
            p,
            p,
            step,
            low,
            high,
            floor,
        )

    def runs(self, prompt):
        trace, easy, hard = self.traces[prompt], 0, 0
        for mean in reversed(trace):
            if mean < 1.0:
                break
            easy += 1
        if trace and trace[-1] == 0.0:
            for mean in reversed(trace):
                if mean > 0.0:
                    break
                hard += 1
        return easy, hard

    def select(self, candidates, k, coins):
        kept, skipped = [], []
        for prompt, (u_easy, u_hard) in zip(candidates, coins):
            easy, hard = self.runs(prompt)
            if u_easy < 1 - max(self.p_e**easy, self.floor) or u_hard < 1 - max(self.p_h**hard, self.floor):
                skipped.append(prompt)
            else:
                kept.append(prompt)
        return (kept + skipped)[:k]

    def update(self, ids, successes, trials):
        for prompt, s, n in zip(ids, successes, trials):
            self.traces[prompt].append(s / n)
        easy_share = sum(s == n for s, n in zip(successes, trials)) / len(ids)
        hard_share = sum(s == 0 for s in successes) / len(ids)
        self.p_e += -self.step if easy_share >= self.target / 3 else self.step
        self.p_h += -self.step if hard_share >= 2 * self.target / 3 else self.step
        self.p_e, self.p_h = (min(max(p, self.low), self.high) for p in (self.p_e, self.p_h))


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_greso_skips_and_adapts_as_the_rule_on_random_outcome_histories(seed):
    rng = random.Random(seed)
    pool, k, group = 40, 6, 4
    sampler, reference = build_sampler("greso", candidate_multiplier=3), TraceGRESO(pool)
    sampler.setup(pool, k, group)
    posterior = BetaPosterior(pool)
    skill = [rng.choice([0.0, 0.02, 0.5, 0.98, 1.0]) for _ in range(pool)]  # many always/never-solved prompts
    generator = torch.Generator().manual_seed(seed)
    for _ in range(60):
        candidates = torch.tensor(rng.sample(range(pool), 3 * k))
        coins = torch.rand(
            len(candidates), 2, generator=torch.Generator().set_state(generator.get_state()), dtype=torch.float64
        )
        chosen = sampler.select(candidates, posterior, k, generator)
        assert chosen.tolist() == reference.select(candidates.tolist(), k, coins.tolist())
        successes = [sum(rng.random() < skill[p] for _ in range(group)) for p in chosen.tolist()]
        sampler.update(chosen, torch.tensor(successes), torch.full((k,), group), posterior)
        reference.update(chosen.tolist(), successes, [group] * k)
        assert (sampler.p_easy, sampler.p_hard) == pytest.approx((reference.p_e, reference.p_h), abs=1e-12)
    runs = [reference.runs(p) for p in range(pool)]
    assert sampler.easy_run.tolist() == [e for e, _ in runs] and sampler.hard_run.tolist() == [h for _, h in runs]
    assert max(sampler.easy_run.max(), sampler.hard_run.max()) >= 3  # the histories exercised the skip coins


def test_greso_skips_prompts_it_keeps_solving_and_keeps_mixed_ones():
    sampler = GRESOSampler(p_start=0.5, step=0.0, candidate_multiplier=2)
    sampler.setup(4, 2, 8)
    sampler.easy_run[0], sampler.hard_run[1] = 10, 10  # prompt 0 always solved, 1 never; 2 and 3 unseen or mixed
    posterior, generator = BetaPosterior(4), torch.Generator().manual_seed(0)
    picks = [sampler.select(torch.tensor([0, 1, 2, 3]), posterior, 2, generator).tolist() for _ in range(200)]
    assert sum(p == [2, 3] for p in picks) >= 190  # kept with probability max(0.5^10, 0.01) each: about 98%


def test_greso_folds_the_groups_of_a_prompt_rolled_out_twice_in_one_step_in_order():
    sampler = GRESOSampler()
    sampler.setup(6, 2, 4)
    sampler.easy_run[5] = 3
    ids, trials = torch.tensor([3, 3, 4, 4, 5, 5]), torch.full((6,), 4)
    # prompt 3 all correct twice; prompt 4 all wrong, then mixed; prompt 5 mixed, then all correct
    sampler.update(ids, torch.tensor([4, 4, 0, 2, 1, 4]), trials, BetaPosterior(6))
    assert sampler.easy_run.tolist() == [0, 0, 0, 2, 0, 1] and sampler.hard_run.tolist() == [0] * 6


def test_greso_refuses_settings_out_of_range_and_a_corrupt_state():
    with pytest.raises(ValueError, match="p_start=0.99 must lie in p_range"):
        GRESOSampler(p_start=0.99)
    with pytest.raises(ValueError, match="Corrupt GRESO state"):
        GRESOSampler().load_state_dict({"p_easy": 0.5})
