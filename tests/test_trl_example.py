"""examples/trl_insight_sampler.py: TRL's GRPOTrainer rolls out exactly the prompts our InSight sampler chose."""

from collections import Counter

import pytest
from conftest import ROOT, load_script

pytest.importorskip("trl", reason="the bench extra (trl, datasets) is not installed: pip install -e '.[bench]'")


def test_trl_rolls_out_what_insight_chose_and_the_outcomes_move_the_beliefs(tmp_path):
    steps, m, k, pool = 3, 4, 4, 32
    selector, sampler, reward = load_script(ROOT / "examples" / "trl_insight_sampler.py").train(
        steps, m, k, pool, seed=0, out=str(tmp_path)
    )
    assert len(reward.rolled_out) == steps
    for chosen, rolled_out in zip(sampler.selections, reward.rolled_out):
        assert rolled_out == Counter({i: k for i in chosen})  # each chosen prompt, K completions, nothing else
    # every outcome reached the beliefs: K trials per chosen prompt per step, on exactly those prompts
    assert selector.posterior.evidence.sum().item() == pytest.approx(2 * pool + steps * m * k)
    visited = Counter(i for chosen in sampler.selections[:steps] for i in chosen)
    assert selector.posterior.visits.tolist() == [visited[i] for i in range(pool)]
    # a selection is drawn with at most the previous step's outcomes missing (accelerate fetches one batch ahead)
    assert all(seen >= step - 1 for step, seen in enumerate(sampler.updates_seen))
