"""Non-finite updates are skipped and counted, never checkpointed; too many in a row stop the run with one line."""

import math

import pytest
import torch
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from insight_lightning.cli.app import run_from_command_line
from insight_lightning.policy.divergence import DivergedError, check_finite_weights
from insight_lightning.policy.tiny import TinyModelConfig, build_char_tokenizer, build_tiny_model
from insight_lightning.rollout.engine import HFGenerateEngine, SamplingParams

NAN_FROM_STEP_2 = [
    "--data.task=fault_tasks.NaNRewardAfterFirstStep",
    "--trainer.limit_val_batches=0",  # validation would score (and count) too
    "--trainer.callbacks.init_args.every_n_train_steps=1",
    "--model.grpo.entropy_coef=0.01",  # a gradient at step 1 whatever the rewards
]


def scalars(save_dir, tag: str) -> list[float]:
    (run,) = list(save_dir.glob("countdown/version_*"))
    acc = EventAccumulator(str(run), size_guidance={"scalars": 0})
    acc.Reload()
    return [e.value for e in acc.Scalars(tag)]


def trained(path) -> tuple[dict, list]:
    checkpoint = torch.load(path, weights_only=False, map_location="cpu")
    return checkpoint["state_dict"], checkpoint["optimizer_states"]


def test_non_finite_updates_are_skipped_never_checkpointed_and_stop_the_run_in_one_sentence(
    tiny_fit_args, tmp_path, capsys
):
    with pytest.raises(SystemExit) as exit_info:
        run_from_command_line(tiny_fit_args(6, *NAN_FROM_STEP_2))  # NaN loss from step 2; 3 skips in a row stop
    assert exit_info.value.code == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert lines[-1].startswith("error: Step 4: 3 updates in a row had a non-finite loss or gradient norm")
    assert "model.optimizer.lr=0.0005" in lines[-1] and "Traceback" not in "\n".join(lines)

    assert scalars(tmp_path / "runs", "train/skipped_updates") == [0.0, 1.0, 1.0]
    norms = scalars(tmp_path / "runs", "train/grad_norm")  # the true norm, not a clipping by-product
    assert math.isfinite(norms[0]) and norms[0] > 0 and not any(math.isfinite(n) for n in norms[1:])
    step1, optimizer1 = trained(tmp_path / "ckpt" / "epoch=0-step=1.ckpt")
    assert not (tmp_path / "ckpt" / "epoch=0-step=4.ckpt").exists()
    for name in ("epoch=0-step=2.ckpt", "epoch=0-step=3.ckpt", "last.ckpt"):
        state, optimizer = trained(tmp_path / "ckpt" / name)
        assert all(torch.isfinite(v).all() for v in state.values() if v.is_floating_point())
        # skipped updates leave the weights and AdamW's moments exactly as step 1 left them
        assert state.keys() == step1.keys() and all(torch.equal(state[k], step1[k]) for k in step1)
        moments, moments1 = optimizer[0]["state"], optimizer1[0]["state"]
        assert moments and all(torch.equal(moments[i]["exp_avg"], moments1[i]["exp_avg"]) for i in moments)


def test_non_finite_weights_are_refused_a_checkpoint():
    check_finite_weights({"a": torch.ones(3), "steps": torch.tensor(3)}, step=5)
    with pytest.raises(DivergedError, match=r"Step 5: 1 trained weight tensors hold inf or nan \(e\.g\. b\)"):
        check_finite_weights({"a": torch.ones(3), "b": torch.tensor([1.0, math.inf])}, step=5)


def test_sampling_from_a_diverged_policy_is_one_sentence():
    tok = build_char_tokenizer()
    model = build_tiny_model(TinyModelConfig(hidden_size=32, num_layers=1, num_heads=2, intermediate_size=64), tok)
    with torch.no_grad():
        model.lm_head.weight.fill_(math.nan)
    ids = torch.tensor([[5, 6, 7]])
    engine = HFGenerateEngine([tok.eos_token_id], tok.pad_token_id)
    with pytest.raises(DivergedError, match="next-token probabilities hold inf or nan"):
        engine.generate(model, ids, torch.ones_like(ids), SamplingParams(max_new_tokens=4, temperature=1.0))


def test_the_skip_limit_is_validated():
    from insight_lightning.training.config import GRPOConfig

    with pytest.raises(ValueError, match="model.grpo.max_consecutive_skips=0"):
        GRPOConfig(max_consecutive_skips=0)
