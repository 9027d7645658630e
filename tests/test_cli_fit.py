"""End-to-end: the real CLI on configs/countdown.yaml with a tiny pool, in-process (DDP, nodes: test_distributed)."""

from pathlib import Path

import pytest
import torch
from conftest import ROOT, cli
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from insight_lightning.cli.app import main
from insight_lightning.rollout.config import RolloutConfig
from insight_lightning.selection.callback import SelectionCallback
from insight_lightning.training.setting_checks import check_strategy_settings

REQUIRED_TAGS = {
    "train/reward",
    "train/accuracy",
    "train/frac_all_correct",
    "train/frac_all_wrong",
    "train/pg_loss",
    "train/clip_frac",
    "train/entropy",
    "train/response_len",
    "train/grad_norm",
    "train/lr",
    "time/rollout_s",
    "time/update_s",
    "time/rollout_tok_per_s",
    "time/verify_s",
    "train/skipped_updates",
    "train/frac_all_equal",
    "train/steps_without_signal",
    "val/accuracy",
    "val/accuracy_greedy",
    "selection/frac_unseen",
    "selection/batch_accuracy",
    "selection/frac_zero_variance",
    "selection/max_visit_rate",
}


# Completions long enough to close the answer tag, and an entropy bonus: every step moves the adapter even when all
# of a group's rewards tie, so comparing weights checks something.
SIGNAL = ["--model.rollout.max_new_tokens=40", "--model.grpo.entropy_coef=0.01"]


def probe_args(out_dir: Path) -> list[str]:
    return ["--trainer.callbacks+=selection_probe.SelectionProbe", f"--trainer.callbacks.init_args.out_dir={out_dir}"]


def events(save_dir: Path) -> EventAccumulator:
    (run,) = list(save_dir.glob("countdown/version_*"))
    acc = EventAccumulator(str(run), size_guidance={"scalars": 0, "histograms": 0, "tensors": 0})
    acc.Reload()
    return acc


def test_fit_trains_the_adapter_and_writes_tensorboard(tiny_fit_args, tmp_path):
    cli = main(tiny_fit_args(3, *probe_args(tmp_path / "probe"), *SIGNAL))
    assert cli.trainer.global_step == 3
    lora = {n: p for n, p in cli.model.named_parameters() if p.requires_grad}
    assert lora and all("lora_" in n for n in lora)
    # LoRA B starts at zero: any non-zero B means the updates reached the adapter (the entropy bonus guarantees a
    # gradient even when every group's rewards tie; tests/test_learner.py checks the policy-gradient itself)
    assert any(p.abs().sum() > 0 for n, p in lora.items() if "lora_B" in n)
    frozen = [p for p in cli.model.parameters() if not p.requires_grad]
    assert frozen and all(p.grad is None for p in frozen)

    acc = events(tmp_path / "runs")
    assert set(acc.Tags()["scalars"]) >= REQUIRED_TAGS
    assert {"selection/posterior_mean", "selection/evidence"} <= set(acc.Tags()["histograms"])
    assert "samples/text_summary" in acc.Tags()["tensors"]
    # validation before RL (step 0), after step 2 (interval) and at the end (step 3)
    assert [e.step for e in acc.Scalars("val/accuracy")] == [0, 2, 3]
    assert [e.step for e in acc.Scalars("train/reward")] == [1, 2, 3]
    # every selected prompt's outcome reached the beliefs: K trials per prompt and step
    posterior = SelectionCallback.of(cli.trainer).selector.posterior
    assert posterior.evidence.sum().item() == 64 * 2 + 3 * 8 * 4
    # after 3 steps of 8 prompts from 64 none is visited twice: the most-visited once, the pool's mean 24 / 64
    assert posterior.visits.max().item() == 1
    assert acc.Scalars("selection/max_visit_rate")[-1].value == pytest.approx(64 / 24)


# The tiny runs' groups of K = 4: screen with 2, complete with 2. One refill round, not 10: the tiny policy leaves most
# groups unmixed, so the default would screen up to 10 more rounds a step, triple the test's time for no new path.
SCREENED = {"speed_rl": ["--data.screening=2", "--data.screening_rounds=1"]}


@pytest.mark.parametrize("sampler", ["insight", "mopps", "greso", "speed_rl"])
def test_resume_restores_weights_optimizer_and_selection_exactly(tiny_fit_args, tmp_path, sampler):
    full_dir, resumed_dir = tmp_path / "full", tmp_path / "resumed"
    sampler_args = [f"--data.sampler={sampler}", *SCREENED.get(sampler, [])]
    main(tiny_fit_args(4, *probe_args(full_dir), *SIGNAL, *sampler_args))
    checkpoint = tmp_path / "ckpt" / "epoch=0-step=2.ckpt"
    assert checkpoint.is_file()
    resume = ["--ckpt_path", str(checkpoint)]
    main(tiny_fit_args(4, *probe_args(resumed_dir), *SIGNAL, *sampler_args, *resume))
    full, resumed = torch.load(full_dir / "rank0.pt"), torch.load(resumed_dir / "rank0.pt")
    assert resumed["global_step"] == full["global_step"] == 4
    assert resumed["selections"] == full["selections"][2:]
    assert torch.equal(resumed["alpha"], full["alpha"]) and torch.equal(resumed["beta"], full["beta"])
    assert any(w.abs().sum() > 0 for n, w in full["weights"].items() if "lora_B" in n)  # the weights did move
    for name, weight in full["weights"].items():
        assert torch.equal(resumed["weights"][name], weight), name


def test_checkpoint_holds_adapter_and_selection_state(tiny_fit_args, tmp_path):
    main(tiny_fit_args(2, "--model.policy.name", "tiny"))
    ckpt = torch.load(tmp_path / "ckpt" / "last.ckpt", weights_only=False)
    # the pickle names no class of ours, so moving a module never orphans a checkpoint (as 0.2's subpackages did not)
    pickled = torch.serialization.get_unsafe_globals_in_checkpoint(tmp_path / "ckpt" / "last.ckpt")
    assert not [name for name in pickled if name.split(".")[0] in ("insight_lightning", "samplers", "tasks")]
    state = ckpt["callbacks"]["SelectionCallback"]["selector"]
    assert state["posterior"]["alpha"].shape == (64,) and state["steps"] == 2
    assert any("lora_A" in k for k in ckpt["state_dict"])
    assert ckpt["optimizer_states"] and ckpt["lr_schedulers"]
    # the last step is also a regular validation step: validated once there, not twice
    assert [e.step for e in events(tmp_path / "runs").Scalars("val/accuracy")] == [0, 2]


FSDP2 = ["--config", str(ROOT / "configs" / "strategies" / "fsdp2.yaml")]  # the snippet users add


def test_tensor_parallelism_under_fsdp2_fails_with_one_line(tiny_fit_args):
    # through two real processes: the check needs ModelParallelStrategy's device mesh
    tensor_parallel = ["--trainer.strategy.data_parallel_size=1", "--trainer.strategy.tensor_parallel_size=2"]
    result = cli(*tiny_fit_args(1, *FSDP2, "--trainer.accelerator=cpu", *tensor_parallel))
    assert result.returncode != 0 and "Traceback" not in result.stderr
    assert any(
        line.startswith("error: ") and "only data parallelism (FSDP2) is supported" in line
        for line in result.stderr.splitlines()
    )


def test_a_static_cache_or_the_colocated_vllm_engine_under_fsdp2_is_refused():
    # the same check and error path as above, given a 2-rank data-parallel mesh (a subprocess run costs ~15 s)
    class Mesh:
        def size(self) -> int:
            return 2

        def __getitem__(self, name: str) -> "Mesh":
            assert name == "data_parallel"
            return self

    with pytest.raises(ValueError, match="model.rollout.cache=static is not supported with FSDP2"):
        check_strategy_settings(RolloutConfig(cache="static"), torch.device("cpu"), Mesh())
    check_strategy_settings(RolloutConfig(cache="dynamic"), torch.device("cpu"), Mesh())
    from lightning.pytorch.strategies import DDPStrategy, FSDPStrategy, ModelParallelStrategy

    def on_two_ranks(strategy: type) -> object:  # as the strategy reports itself in a 2-process run
        return type(strategy.__name__, (strategy,), {"world_size": 2})()

    colocated, cpu = RolloutConfig(engine="vllm"), torch.device("cpu")
    for sharded in (ModelParallelStrategy, FSDPStrategy):
        with pytest.raises(ValueError, match=f"on several ranks under DDP only, not {sharded.__name__}: use"):
            check_strategy_settings(colocated, cpu, None, on_two_ranks(sharded))
    check_strategy_settings(colocated, cpu, None, on_two_ranks(DDPStrategy))  # an engine per rank
    check_strategy_settings(colocated, cpu, Mesh(), ModelParallelStrategy())  # one process: nothing to shard over


@pytest.mark.parametrize(
    "sampler",
    ["uniform", "insight", "mopps", "expected_difficulty", "inverse_evidence", "dynamic_sampling", "informative_group"]
    + ["greso", "speed_rl"],
)
def test_every_sampler_trains_through_the_cli(tiny_fit_args, tmp_path, sampler):
    cli = main(
        tiny_fit_args(
            2,
            *probe_args(tmp_path / "probe"),
            f"--data.sampler={sampler}",
            *SCREENED.get(sampler, []),
            "--trainer.num_sanity_val_steps=0",
            "--model.validation.at_end=false",
        )
    )
    assert cli.trainer.global_step == 2 and cli.datamodule.sampler.name == sampler
    probe = torch.load(tmp_path / "probe" / "rank0.pt")
    trials = (probe["alpha"] + probe["beta"] - 2).sum().item()
    tags = set(events(tmp_path / "runs").Tags()["scalars"])
    if sampler in ("dynamic_sampling", "speed_rl"):
        assert {"selection/extra_rollouts", "selection/extra_rounds"} <= tags
        extra = sum(e.value for e in events(tmp_path / "runs").Scalars("selection/extra_rollouts"))
        # the beliefs saw every rollout generated: 2 steps x 8 groups x K = 4 trained on, plus the discarded ones
        assert trials == 2 * 8 * 4 + extra
        assert events(tmp_path / "runs").Scalars("train/rollouts_total")[-1].value == trials
    else:
        assert trials == 2 * 8 * 4 and [len(s) for s in probe["selections"]] == [8, 8]


def test_validate_and_test_subcommands_score_a_checkpoint(tiny_fit_args, tmp_path):
    fit = main(tiny_fit_args(2))
    checkpoint = str(tmp_path / "ckpt" / "last.ckpt")  # written after step 2, before the last validation
    validate = main(["validate", *tiny_fit_args(2)[1:], "--ckpt_path", checkpoint])
    # same weights and the checkpoint's random state: the very same samples and scores as the fit's last validation
    for key in ("val/reward", "val/accuracy", "val/accuracy_greedy"):
        assert validate.trainer.callback_metrics[key].item() == fit.trainer.callback_metrics[key].item(), key
    tested = main(["test", *tiny_fit_args(2)[1:], "--ckpt_path", checkpoint])
    assert "test/accuracy" in tested.trainer.callback_metrics and "test/reward" in tested.trainer.callback_metrics


def test_settings_typed_with_ckpt_path_win_over_the_checkpoints_and_untyped_ones_come_from_it(tiny_fit_args, tmp_path):
    main(tiny_fit_args(2, "--model.validation.top_p=0.9"))  # a setting the config file does not set
    checkpoint = str(tmp_path / "ckpt" / "last.ckpt")
    # Lightning lays a checkpoint's saved settings over the command line; here what is typed must win
    typed = ["--model.validation.greedy=false", "--model.validation.samples_per_problem=2"]
    validate = main(["validate", *tiny_fit_args(2, *typed)[1:], "--ckpt_path", checkpoint])
    settings = validate.model.validation
    assert settings.greedy is False and settings.samples_per_problem == 2
    assert (
        "val/accuracy_greedy" not in validate.trainer.callback_metrics
        and "val/accuracy" in validate.trainer.callback_metrics
    )
    assert settings.top_p == 0.9  # not typed: the checkpoint's own value, not the default 0.95


def test_epoch_refresh_trains_through_the_cli_and_visits_a_pass_without_repeats(tiny_fit_args, tmp_path):
    cli = main(
        tiny_fit_args(
            3,
            *probe_args(tmp_path / "probe"),
            "--data.sampler=insight",
            "--data.refresh=epoch",
            "--trainer.num_sanity_val_steps=0",
            "--model.validation.at_end=false",
        )
    )
    assert cli.trainer.global_step == 3 and SelectionCallback.of(cli.trainer).selector.refresh == "epoch"
    selections = torch.load(tmp_path / "probe" / "rank0.pt")["selections"]
    picked = [i for step in selections for i in step]
    assert len(picked) == 3 * 8 and len(set(picked)) == 3 * 8  # 3 steps of one pass over 64 prompts
    # the pass was ranked once, at its start: the candidate scores cover the whole pool then, not later
    histograms = events(tmp_path / "runs").Histograms("selection/candidate_scores")
    assert [h.step for h in histograms] == [1] and histograms[0].histogram_value.num == 64


def test_validation_seed_pairs_evaluations_of_runs_whose_training_consumed_the_rng_differently(
    tiny_fit_args, monkeypatch
):
    # lr 0 keeps the weights, while K = 2 or 4 rollouts per prompt draw different amounts of random numbers: the
    # validation seed must make the step-2 evaluation's samples independent of that.
    from insight_lightning.training import evaluation

    score, capture = evaluation.score_completions, evaluation.capture_rng_state

    def validation_run(group_size):
        completions, training_rng = [], []

        def recording_score(task, texts, batch, n):
            completions.append(list(texts))
            return score(task, texts, batch, n)

        def recording_capture():
            training_rng.append(torch.get_rng_state())
            return capture()

        monkeypatch.setattr(evaluation, "score_completions", recording_score)
        monkeypatch.setattr(evaluation, "capture_rng_state", recording_capture)
        args = tiny_fit_args(2, "--model.optimizer.lr=0", f"--model.grpo.group_size={group_size}")
        args += ["--data.prompts_per_step=4", "--trainer.num_sanity_val_steps=0", "--trainer.logger=false"]
        args += ["--trainer.enable_checkpointing=false", "--trainer.callbacks=[]", "--model.validation.at_end=false"]
        main([*args, "--model.validation.seed=5"])
        (state,) = training_rng  # one validation, at step 2
        return completions, state

    (two, rng_two), (four, rng_four) = validation_run(2), validation_run(4)
    assert not torch.equal(rng_two, rng_four)  # the training RNG differs at the validation...
    assert two and two == four  # ...and the evaluation sampled exactly alike
