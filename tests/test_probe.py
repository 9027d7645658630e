"""The probe of a policy on candidate prompts: exact solved shares from a scripted policy, on every task."""

import pytest
import torch

from insight_lightning.race.probe import ProbeResult, main, probe
from tasks import BlocksworldTask, CountdownTask, MathTask

SAMPLES = 4


class ScriptedPolicy:
    """Answers prompt i correctly (the task's reference solution) in its first `right[i]` samples, wrongly after."""

    pad_token_id = 0

    def __init__(self, task, examples, right):
        self.answers = {str(task.prompt(e)): (task.solution(e), r) for e, r in zip(examples, right)}
        self.calls = []

    def sample(self, prompts, n, params):
        self.calls.append(len(prompts))
        completions = []
        for prompt in prompts:  # example-major, as the policy's engines return them
            solution, right = self.answers[str(prompt)]
            completions += [solution] * right + ["I give up."] * (n - right)
        return None, completions


@pytest.mark.parametrize(
    "task",
    [CountdownTask(train_size=11, test_size=1), MathTask(train_size=11, test_size=1), BlocksworldTask(train_size=11)],
    ids=lambda task: type(task).__name__,
)
def test_the_probe_counts_exactly_what_the_verifier_accepts(task):
    examples = task.examples("train")
    right = [i % (SAMPLES + 1) for i in range(len(examples))]  # 0..K solved: out of reach, mixed and solved prompts
    policy = ScriptedPolicy(task, examples, right)
    result = probe(policy, task, examples, samples=SAMPLES, prompts_per_batch=4)
    assert result.solved.tolist() == right
    assert policy.calls == [4, 4, 3]  # batched, the last batch short
    composition = result.composition()
    n = len(examples)
    assert composition["out_of_reach"] == right.count(0) / n and composition["solved"] == right.count(SAMPLES) / n
    assert composition["mixed"] == pytest.approx(1 - (right.count(0) + right.count(SAMPLES)) / n)
    assert composition["mean_share"] == pytest.approx(sum(right) / (n * SAMPLES))


def test_the_composition_of_a_probe():
    result = ProbeResult(solved=torch.tensor([0, 0, 16, 3, 8]), samples=16, seconds=0.5)
    assert result.shares.tolist() == [0.0, 0.0, 1.0, 3 / 16, 0.5]
    composition = result.composition()
    assert (composition["out_of_reach"], composition["solved"], composition["mixed"]) == (0.4, 0.2, 0.4)
    assert composition["seconds_per_1000_prompts"] == pytest.approx(100.0)
    rows = [{"kind": kind} for kind in ("add", "mul", "add", "add", "mul")]
    by_kind = result.composition_by_kind(rows)
    assert (by_kind["add"]["prompts"], by_kind["add"]["solved"]) == (3, 1 / 3)  # solved 0, 16 and 3 of 16
    assert by_kind["add"]["mean_share"] == pytest.approx((1 + 3 / 16) / 3)
    assert (by_kind["mul"]["out_of_reach"], by_kind["mul"]["mixed"]) == (0.5, 0.5)
    assert result.composition_by_kind([{}] * 5) == {}  # rows without a kind (Countdown)
    with pytest.raises(ValueError, match="4 rows but the probe measured 5 prompts"):
        result.composition_by_kind(rows[:4])


def test_a_probe_without_samples_or_prompts_is_one_sentence():
    task = CountdownTask(train_size=2, test_size=1)
    with pytest.raises(ValueError, match="at least one sample"):
        probe(ScriptedPolicy(task, [], []), task, task.examples("train"), samples=0)
    with pytest.raises(ValueError, match="at least one prompt"):
        probe(ScriptedPolicy(task, [], []), task, [])


def test_the_probe_command_probes_the_policy_a_fit_config_builds(tiny_fit_args, tmp_path):
    import json

    out = tmp_path / "probe.json"
    fit = tiny_fit_args(1)[1:]  # the fit's arguments, without the subcommand
    report = main(["--samples", "3", "--out", str(out), "--", *fit])
    assert json.loads(out.read_text()) == report
    solved, composition = report["solved"], report["composition"]
    assert len(solved) == composition["prompts"] > 0 and all(0 <= s <= 3 for s in solved)
    assert composition["out_of_reach"] == solved.count(0) / len(solved)
    assert composition["solved"] == solved.count(3) / len(solved)
    assert report["machine"]["capability"] and report["split"] == "train"
    assert report["by_kind"] == {}  # Countdown rows have no problem kind
    # seeded: the same probe again gives the same counts
    assert main(["--samples", "3", "--", *fit])["solved"] == solved
