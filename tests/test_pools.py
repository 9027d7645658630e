"""Pools of a stated difficulty mix: the composition asked for is the composition a probe finds."""

import pytest
from test_probe import ScriptedPolicy

from insight_lightning.race.pools import compose_pool, kind_counts, kind_of
from insight_lightning.race.probe import probe
from tasks import CountdownTask

SAMPLES = 4


def test_kinds_and_counts():
    assert [kind_of(s, 4) for s in (0, 1, 3, 4)] == ["out_of_reach", "mixed", "mixed", "solved"]
    assert kind_counts(10, {"out_of_reach": 0.25, "mixed": 0.75}) == {"out_of_reach": 2, "mixed": 8}
    assert kind_counts(98, {"out_of_reach": 0.5, "mixed": 0.25, "solved": 0.25}) == {
        "out_of_reach": 49,
        "mixed": 24,
        "solved": 25,
    }
    with pytest.raises(ValueError, match="sum to 1"):
        kind_counts(10, {"out_of_reach": 0.5, "mixed": 0.25})
    with pytest.raises(ValueError, match="unknown prompt kinds"):
        kind_counts(10, {"hard": 1.0})


def test_a_composed_pool_has_its_stated_composition_on_its_probe():
    task = CountdownTask(train_size=40, test_size=1)
    candidates = task.examples("train")
    right = [i % (SAMPLES + 1) for i in range(len(candidates))]  # 8 out of reach, 24 mixed, 8 always solved
    policy = ScriptedPolicy(task, candidates, right)
    found = probe(policy, task, candidates, samples=SAMPLES).solved.tolist()
    pool = compose_pool(candidates, found, SAMPLES, 16, {"out_of_reach": 0.5, "mixed": 0.5}, seed=0)
    assert len(pool) == 16 and len({p["id"] for p in pool}) == 16
    kinds = [kind_of(found[candidates.index(row)], SAMPLES) for row in pool]
    assert set(kinds[:8]) == {"out_of_reach", "mixed"}  # shuffled: no kind comes first
    composition = probe(policy, task, pool, samples=SAMPLES).composition()
    assert (composition["out_of_reach"], composition["mixed"], composition["solved"]) == (0.5, 0.5, 0.0)
    assert pool == compose_pool(candidates, found, SAMPLES, 16, {"out_of_reach": 0.5, "mixed": 0.5}, seed=0)
    assert pool != compose_pool(candidates, found, SAMPLES, 16, {"out_of_reach": 0.5, "mixed": 0.5}, seed=1)
    with pytest.raises(ValueError, match="needs 12 out of reach prompts but the probe found 8"):
        compose_pool(candidates, found, SAMPLES, 16, {"out_of_reach": 0.75, "mixed": 0.25}, seed=0)
