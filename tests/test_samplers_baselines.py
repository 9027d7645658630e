"""MoPPS, expected difficulty, inverse evidence, dynamic sampling, and the Beta draws they use."""

import pytest
import torch

from samplers import SAMPLERS, BetaPosterior, Outcomes, PromptSelector, build_sampler
from samplers.base import top_k_first_wins
from samplers.informative import mixed_group_probability
from samplers.randomness import derive_generator, sample_beta


@pytest.mark.parametrize(("a", "b"), [(0.3, 0.3), (1.0, 1.0), (2.0, 5.0), (30.0, 3.0), (1e-3, 2.0)])
def test_beta_draws_have_the_beta_moments(a, b):
    gen = torch.Generator().manual_seed(0)
    draws = sample_beta(
        torch.full((200_000,), a, dtype=torch.float64), torch.full((200_000,), b, dtype=torch.float64), gen
    )
    mean, var = a / (a + b), a * b / ((a + b) ** 2 * (a + b + 1))
    assert bool(((draws >= 0) & (draws <= 1)).all()) and not bool(draws.isnan().any())
    assert draws.mean().item() == pytest.approx(mean, abs=4 * (var / 200_000) ** 0.5 + 1e-9)
    assert draws.var().item() == pytest.approx(var, rel=0.05, abs=1e-9)


def test_beta_draws_are_reproducible_and_the_device_generator_is_derived_from_the_cpu_one():
    alpha, beta = torch.rand(100, dtype=torch.float64) + 0.5, torch.rand(100, dtype=torch.float64) + 0.5
    first = sample_beta(alpha, beta, derive_generator(torch.Generator().manual_seed(3), "cpu"))
    again = sample_beta(alpha, beta, derive_generator(torch.Generator().manual_seed(3), "cpu"))
    other = sample_beta(alpha, beta, derive_generator(torch.Generator().manual_seed(4), "cpu"))
    assert torch.equal(first, again) and not torch.equal(first, other)


def test_top_k_keeps_the_best_and_breaks_ties_by_position():
    scores = torch.tensor([0.0, 1.0, 1.0, 0.0, 2.0, 1.0])
    assert top_k_first_wins(scores, 3).tolist() == [4, 1, 2]
    assert top_k_first_wins(scores, 1).tolist() == [4]
    assert top_k_first_wins(torch.zeros(5), 2).tolist() == [0, 1]


def mopps_selector(seed, **options):
    selector = PromptSelector(build_sampler("mopps", **options), 100, 10, group_size=8, seed=seed)
    selector.posterior.update(torch.arange(100), torch.arange(100) % 9, torch.full((100,), 8))
    return selector


def test_mopps_is_reproducible_under_a_seed_and_aims_at_the_target():
    assert torch.equal(mopps_selector(5).select().ids, mopps_selector(5).select().ids)
    assert not torch.equal(mopps_selector(5).select().ids, mopps_selector(6).select().ids)
    selector = mopps_selector(0)
    ids = selector.select().ids
    chosen = selector.posterior.mean[ids]
    # Thompson draws are noisy, but the chosen prompts' means sit far closer to 0.5 than the pool's
    assert (chosen - 0.5).abs().mean() < 0.5 * (selector.posterior.mean - 0.5).abs().mean()


def test_mopps_band_variant_takes_prompts_inside_the_band_first():
    post = BetaPosterior(6)
    # three prompts confidently inside [0.3, 0.7], three confidently outside
    post.update(torch.arange(6), torch.tensor([500, 400, 600, 10, 990, 5]), torch.full((6,), 1000))
    sampler = build_sampler("mopps", band=(0.3, 0.7))
    picks = sampler.select(torch.arange(6), post, 3, torch.Generator().manual_seed(0))
    assert set(picks.tolist()) == {0, 1, 2}
    picks = sampler.select(torch.arange(6), post, 4, torch.Generator().manual_seed(0))
    assert set(picks.tolist()) == {0, 1, 2, 3}  # filled up with the one nearest the band (0.01 beats 0.005, 0.99)
    with pytest.raises(ValueError, match="band"):
        build_sampler("mopps", band=(0.8, 0.2))


def test_expected_difficulty_and_inverse_evidence_rank_by_their_statistic():
    post = BetaPosterior(5)
    post.update(torch.arange(5), torch.tensor([0, 4, 8, 2, 7]), torch.tensor([8, 8, 8, 40, 8]))
    gen = torch.Generator().manual_seed(0)
    assert build_sampler("expected_difficulty").select(torch.arange(5), post, 1, gen).item() == 1  # mean exactly 0.5
    # prompt 3 has five times the evidence: the least-observed ones come first, never it
    picks = build_sampler("inverse_evidence").select(torch.arange(5), post, 4, gen)
    assert 3 not in picks.tolist()


def test_dynamic_sampling_keeps_uniform_candidates_and_flags_informative_groups():
    sampler = build_sampler("dynamic_sampling", max_extra_rounds=3)
    assert sampler.max_extra_rounds == 3 and sampler.candidate_multiplier == 1
    rewards = torch.tensor([[0.0, 0.0, 0.0], [1.0, 0.0, 1.0], [0.1, 0.1, 0.1], [0.1, 1.0, 0.0]])
    assert sampler.informative(rewards).tolist() == [False, True, False, True]
    assert build_sampler("insight").max_extra_rounds == 0
    with pytest.raises(ValueError, match="max_extra_rounds"):
        build_sampler("dynamic_sampling", max_extra_rounds=-1)


@pytest.mark.parametrize("name", sorted(SAMPLERS))  # every registered sampler, a new one too
def test_every_sampler_resumes_its_selections_exactly(name):
    def run(steps, state=None, first_step=0):
        selector = PromptSelector(build_sampler(name), 300, 16, group_size=8, seed=11)
        if state is not None:
            selector.load_state_dict(state)
        picks = []
        for step in range(first_step, first_step + steps):
            ids = selector.select().ids
            picks.append(ids)
            selector.update(Outcomes(ids, (ids * 7 + step) % 9, torch.full_like(ids, 8)))
        return selector, picks

    full, full_picks = run(8)
    half, _ = run(4)
    resumed, resumed_picks = run(4, state=half.state_dict(), first_step=4)
    assert all(torch.equal(a, b) for a, b in zip(full_picks[4:], resumed_picks))
    assert torch.equal(full.posterior.alpha, resumed.posterior.alpha)


@pytest.mark.parametrize("k", [2, 8, 32])
def test_mixed_group_probability_is_the_beta_binomial_mass_strictly_between_0_and_k(k):
    alpha = torch.tensor([1.0, 3.0, 0.5, 40.0, 2.0, 1e-3], dtype=torch.float64)
    beta = torch.tensor([1.0, 3.0, 7.0, 2.0, 900.0, 1e-3], dtype=torch.float64)
    # The explicit pmf C(K, s) B(a+s, b+K-s) / B(a, b), summed over s = 1..K-1 (an independent formula).
    s = torch.arange(1, k, dtype=torch.float64).unsqueeze(-1)  # [K-1, 1]
    log_choose = (
        torch.lgamma(torch.tensor(k + 1.0, dtype=torch.float64)) - torch.lgamma(s + 1) - torch.lgamma(k - s + 1)
    )

    def log_b(x, y):
        return torch.lgamma(x) + torch.lgamma(y) - torch.lgamma(x + y)

    explicit = torch.exp(log_choose + log_b(alpha + s, beta + k - s) - log_b(alpha, beta)).sum(0)
    assert torch.allclose(mixed_group_probability(alpha, beta, k), explicit, rtol=1e-9, atol=1e-12)
    # A uniform belief makes every count equally likely: K - 1 of the K + 1 counts are mixed.
    assert mixed_group_probability(torch.tensor(1.0), torch.tensor(1.0), k).item() == pytest.approx((k - 1) / (k + 1))


def test_informative_group_prefers_prompts_likely_to_give_a_mixed_group():
    post = BetaPosterior(4)
    # 0: solved 20/20 times, 1: never in 20, 2: 10 of 20, 3: unseen (wide belief: likely all-0 or all-1)
    post.update(torch.arange(3), torch.tensor([20, 0, 10]), torch.full((3,), 20))
    picks = build_sampler("informative_group").select(torch.arange(4), post, 2, torch.Generator().manual_seed(0))
    assert picks.tolist() == [2, 3]
    with pytest.raises(ValueError, match="at least 2 rollouts"):
        build_sampler("informative_group", k=1)
