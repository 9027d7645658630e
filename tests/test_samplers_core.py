"""The selection machinery shared by every sampler: registry, Beta posterior, candidate stream, PromptSelector."""

import pytest
import torch

import samplers
from samplers import BetaPosterior, CandidateStream, Outcomes, PromptSelector, Sampler, build_sampler, register_sampler


def test_registry_builds_uniform_and_rejects_unknown_names():
    assert isinstance(build_sampler("uniform"), samplers.UniformSampler)
    with pytest.raises(ValueError, match="Unknown sampler 'nope'. Registered samplers: .*uniform"):
        build_sampler("nope")


def test_register_sampler_refuses_a_name_taken_by_another_class():
    with pytest.raises(ValueError, match="already registered"):

        @register_sampler("uniform")
        class Other(Sampler):
            pass


def test_user_sampler_registered_with_decorator_is_buildable():
    @register_sampler("test_lowest_mean")
    class LowestMean(Sampler):
        def score(self, candidate_ids, posterior, generator):
            return -posterior.mean[candidate_ids]

    try:
        selector = PromptSelector(build_sampler("test_lowest_mean", candidate_multiplier=8), 16, 2, group_size=4)
        selector.posterior.update(torch.arange(16), torch.arange(16) % 5, torch.full((16,), 4))
        record = selector.select()
        ids = record.ids
        assert record.num_candidates == 16 and record.scores.shape == (16,)  # Mhat = 8 * 2 covers the whole pool
        assert set(ids.tolist()) <= {0, 5, 10, 15}  # the prompts with the lowest posterior mean
    finally:
        samplers.SAMPLERS.pop("test_lowest_mean")


def test_posterior_update_follows_eq6_with_forgetting():
    post = BetaPosterior(4, prior=(1.0, 2.0), forgetting=0.5)
    post.update(torch.tensor([1, 3]), torch.tensor([3, 0]), torch.tensor([8, 8]))
    # alpha <- 0.5*1 + 0.5*1 + S ; beta <- 0.5*2 + 0.5*2 + K - S
    assert post.alpha.tolist() == [1.0, 4.0, 1.0, 1.0]
    assert post.beta.tolist() == [2.0, 7.0, 2.0, 10.0]
    post.update(torch.tensor([1]), torch.tensor([8]), torch.tensor([8]))
    assert post.alpha[1].item() == 0.5 * 4.0 + 0.5 * 1.0 + 8
    assert post.beta[1].item() == 0.5 * 7.0 + 0.5 * 2.0
    assert post.visits.tolist() == [0, 2, 0, 1]


def test_posterior_sums_repeated_ids_before_updating():
    post = BetaPosterior(3)
    post.update(torch.tensor([2, 2]), torch.tensor([1, 2]), torch.tensor([4, 4]))
    assert post.alpha[2].item() == 4.0 and post.beta[2].item() == 6.0 and post.visits[2].item() == 1


def test_posterior_rejects_bad_outcomes_and_bad_states():
    post = BetaPosterior(3)
    with pytest.raises(IndexError):
        post.update(torch.tensor([3]), torch.tensor([1]), torch.tensor([2]))
    with pytest.raises(ValueError, match="successes"):
        post.update(torch.tensor([0]), torch.tensor([3]), torch.tensor([2]))
    with pytest.raises(ValueError, match="pool of 5 prompts"):
        post.load_state_dict(BetaPosterior(5).state_dict())
    with pytest.raises(ValueError, match="prior"):
        post.load_state_dict(BetaPosterior(3, prior=(2.0, 2.0)).state_dict())
    broken = post.state_dict()
    broken["alpha"] = torch.zeros(3, dtype=torch.float64)
    with pytest.raises(ValueError, match="positive"):
        post.load_state_dict(broken)
    with pytest.raises(ValueError, match="Corrupt"):
        post.load_state_dict({"alpha": 1})


def test_stream_visits_every_index_once_per_pass_and_never_repeats_within_a_draw():
    stream = CandidateStream(10, torch.Generator().manual_seed(0))
    seen = []
    for _ in range(10):
        draw = stream.take(3)
        assert draw.unique().numel() == 3
        seen.append(draw)
    flat = torch.cat(seen)
    assert sorted(flat[:9].tolist()) == sorted(set(flat[:9].tolist()))  # first 3 draws are inside pass one
    assert stream.epoch == 2
    # each full pass covers the pool exactly once: count per index over 30 draws of 1 pass = 10 indices
    counts = torch.bincount(flat, minlength=10)
    assert counts.max() - counts.min() <= 1
    assert torch.equal(stream.take(10).sort().values, torch.arange(10))


def test_stream_passes_are_permutations():
    stream = CandidateStream(7, torch.Generator().manual_seed(3))
    first_pass = torch.cat([stream.take(7 - 1), stream.take(1)])
    assert sorted(first_pass.tolist()) == list(range(7))


def run_selector(make, steps, state=None):
    """`steps` selections of a fresh selector (restored from state first), each followed by made-up outcomes."""
    sel = make()
    if state is not None:
        sel.load_state_dict(state)
    picks = []
    for _ in range(steps):
        ids = sel.select().ids
        picks.append(ids)
        sel.update(Outcomes(ids, ids % 5, torch.full_like(ids, 4)))
    return sel, picks


def test_selector_is_deterministic_and_resumes_exactly():
    def make():
        return PromptSelector(build_sampler("uniform"), 50, 8, group_size=4, seed=7)

    full, full_picks = run_selector(make, 10)
    half, _ = run_selector(make, 4)
    resumed, resumed_picks = run_selector(make, 6, state=half.state_dict())
    assert all(torch.equal(a, b) for a, b in zip(full_picks[4:], resumed_picks))
    assert torch.equal(full.posterior.alpha, resumed.posterior.alpha)
    assert torch.equal(full.posterior.beta, resumed.posterior.beta)


def test_selector_refuses_a_state_from_another_pool_or_sampler():
    sel = PromptSelector(build_sampler("uniform"), 50, 8, group_size=4)
    other = PromptSelector(build_sampler("uniform"), 60, 8, group_size=4)
    with pytest.raises(ValueError, match="pool of 60"):
        sel.load_state_dict(other.state_dict())
    state = sel.state_dict()
    state["sampler"] = "insight"
    with pytest.raises(ValueError, match="sampler 'insight'"):
        sel.load_state_dict(state)
    with pytest.raises(ValueError, match="Corrupt or incompatible"):
        sel.load_state_dict({"version": 99})


def test_selector_rejects_batches_larger_than_the_pool():
    with pytest.raises(ValueError, match="pool of only 4"):
        PromptSelector(build_sampler("uniform"), 4, 8, group_size=2)


def test_scored_selection_breaks_ties_by_random_candidate_order():
    class Constant(Sampler):
        def score(self, candidate_ids, posterior, generator):
            return torch.zeros(candidate_ids.numel(), dtype=torch.float64)

    counts = torch.zeros(100)
    for seed in range(200):
        sel = PromptSelector(Constant(candidate_multiplier=100), 100, 5, group_size=2, seed=seed)
        counts[sel.select().ids] += 1
    # ties never fall back to index order: low ids are not favoured
    assert counts[:5].sum() < 50
    assert (counts > 0).sum() > 90


class LowestMeanFirst(Sampler):
    """Scores by the lowest posterior mean (a deterministic ranking to check the order of a pass against)."""

    def score(self, candidate_ids, posterior, generator):
        return -posterior.mean[candidate_ids]


def test_epoch_refresh_ranks_the_pool_once_per_pass_and_follows_that_order():
    sel = PromptSelector(LowestMeanFirst(), 12, 4, group_size=4, seed=0, refresh="epoch")
    # beliefs before the first pass: prompt i has mean rising with i, so the pass ranks 0, 1, ..., 11
    sel.posterior.update(torch.arange(12), torch.arange(12), torch.full((12,), 12))
    first = sel.select()
    assert first.ids.tolist() == [0, 1, 2, 3] and first.num_candidates == 12 and first.scores.shape == (12,)
    # new evidence makes 11 the hardest prompt; step mode would pick it now, the fixed order of the pass does not
    sel.update(Outcomes(torch.tensor([11]), torch.tensor([0]), torch.tensor([400])))
    second = sel.select()
    assert second.ids.tolist() == [4, 5, 6, 7] and second.num_candidates == 0 and second.scores is None
    assert sel.select().ids.tolist() == [8, 9, 10, 11]
    # the next pass is ranked from the updated beliefs: 11 first
    assert sel.select().ids[0].item() == 11


def test_epoch_refresh_visits_every_prompt_once_per_pass_across_uneven_pass_boundaries():
    sel = PromptSelector(build_sampler("insight"), 10, 4, group_size=4, seed=3, refresh="epoch")
    draws = []
    for _ in range(10):
        record = sel.select()
        assert torch.unique(record.ids).numel() == 4  # no repeat within a draw, also across a pass boundary
        draws.append(record.ids)
        sel.update(Outcomes(record.ids, record.ids % 5, torch.full_like(record.ids, 4)))
    flat = torch.cat(draws)  # 40 selections = 4 passes over 10 prompts
    assert torch.bincount(flat, minlength=10).tolist() == [4] * 10


def test_epoch_refresh_resumes_exactly_and_refuses_a_step_mode_state():
    def make():
        return PromptSelector(build_sampler("mopps"), 30, 8, group_size=4, seed=5, refresh="epoch")

    _, full = run_selector(make, 9)
    half, _ = run_selector(make, 5)
    _, resumed = run_selector(make, 4, state=half.state_dict())
    assert all(torch.equal(a, b) for a, b in zip(full[5:], resumed))
    step_mode = PromptSelector(build_sampler("mopps"), 30, 8, group_size=4, seed=5)
    with pytest.raises(ValueError, match="data.refresh"):
        step_mode.load_state_dict(half.state_dict())


def test_choose_reports_scores_only_for_scoring_samplers_and_user_select_may_call_super():
    posterior = BetaPosterior(20)
    candidates = torch.randperm(20, generator=torch.Generator().manual_seed(0))

    class EvenOnly(LowestMeanFirst):
        def select(self, candidate_ids, posterior, k, generator):
            ranked = super().select(candidate_ids, posterior, candidate_ids.numel(), generator)
            return ranked[ranked % 2 == 0][:k]

    scored = LowestMeanFirst().choose(candidates, posterior, 5, torch.Generator())
    assert scored.scores is not None and scored.ids.tolist() == candidates[:5].tolist()  # ties: candidate order
    own = EvenOnly().choose(candidates, posterior, 5, torch.Generator())
    assert own.scores is None and all(i % 2 == 0 for i in own.ids.tolist())
    assert build_sampler("uniform").choose(candidates, posterior, 5, torch.Generator()).scores is None
