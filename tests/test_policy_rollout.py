"""Policy building, the tiny tokenizer, the rollout engine's masks, prompt encoding and the warm-start cache."""

from pathlib import Path

import pytest
import torch

from insight_lightning.policy.loading import (
    PolicyConfig,
    PolicyLoadError,
    apply_adapter,
    build_base_policy,
    resolve_model_name,
)
from insight_lightning.policy.prompts import PromptEncoder
from insight_lightning.policy.tiny import TinyModelConfig, build_char_tokenizer, build_tiny_model
from insight_lightning.rollout.engine import HFGenerateEngine, SamplingParams, completion_mask_from_eos
from insight_lightning.training.config import OptimizerConfig
from insight_lightning.training.optimization import learning_rate_factor
from insight_lightning.training.warmstart import WarmStartConfig, encode_supervised, warm_start


def test_char_tokenizer_round_trips_text_and_left_pads():
    tok = build_char_tokenizer()
    text = "82 from 50 25 3 7:<answer>(50 + 25) + 7</answer>\n"
    ids = tok(text, add_special_tokens=False)["input_ids"]
    assert len(ids) == len(text) and tok.decode(ids) == text
    batch = tok(["ab", "abcd"], padding=True)
    assert batch["input_ids"][0][:2] == [tok.pad_token_id] * 2 and batch["attention_mask"][0] == [0, 0, 1, 1]


def test_tiny_model_is_about_a_million_parameters_and_seeded():
    tok = build_char_tokenizer()
    a, b = build_tiny_model(TinyModelConfig(), tok), build_tiny_model(TinyModelConfig(), tok)
    assert 0.5e6 < sum(p.numel() for p in a.parameters()) < 1.5e6
    assert all(torch.equal(p, q) for p, q in zip(a.parameters(), b.parameters()))
    with pytest.raises(ValueError, match="Unknown tiny architecture"):
        build_tiny_model(TinyModelConfig(architecture="gpt9"), tok)


def test_lora_freezes_the_base_and_full_finetuning_trains_everything():
    model, _ = build_base_policy(PolicyConfig())
    lora = apply_adapter(model, PolicyConfig())
    trainable = [n for n, p in lora.named_parameters() if p.requires_grad]
    assert trainable and all("lora_" in n for n in trainable)
    full_model, _ = build_base_policy(PolicyConfig())
    full = apply_adapter(full_model, PolicyConfig(lora=None))
    assert all(p.requires_grad for p in full.parameters())


def test_unknown_model_offline_fails_fast_with_one_sentence(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(PolicyLoadError, match="not in the Hugging Face cache.*model.policy.name: tiny"):
        build_base_policy(PolicyConfig(name="nobody/does-not-exist-0.1B"))
    with pytest.raises(PolicyLoadError, match="local folder"):
        build_base_policy(PolicyConfig(name="/tmp"))


def test_completion_mask_keeps_tokens_up_to_the_first_eos():
    ids = torch.tensor([[5, 6, 1, 7, 1], [5, 1, 1, 1, 1], [5, 6, 7, 8, 9]])
    mask = completion_mask_from_eos(ids, torch.tensor([1]))
    assert mask.tolist() == [[1, 1, 1, 0, 0], [1, 1, 0, 0, 0], [1, 1, 1, 1, 1]]


def test_generate_engine_returns_aligned_padded_rollouts():
    tok = build_char_tokenizer()
    model = build_tiny_model(TinyModelConfig(), tok)
    ids, mask = PromptEncoder(tok).encode(["1 from 1 2:", "3:"], torch.device("cpu"))
    engine = HFGenerateEngine([tok.eos_token_id], tok.pad_token_id)
    torch.manual_seed(0)
    out = engine.generate(model, ids, mask, SamplingParams(max_new_tokens=12, temperature=1.0))
    assert out.prompt_ids.shape == ids.shape and out.completion_ids.shape[0] == 2
    assert out.completion_ids.shape[1] <= 12
    # masked-out completion positions hold the pad token; the full-sequence masks line up
    assert bool((out.completion_ids[out.completion_mask == 0] == tok.pad_token_id).all())
    assert out.input_ids.shape == out.attention_mask.shape == out.scored_mask.shape
    greedy = engine.generate(model, ids, mask, SamplingParams(max_new_tokens=12, temperature=0.0))
    again = engine.generate(model, ids, mask, SamplingParams(max_new_tokens=12, temperature=0.0))
    assert torch.equal(greedy.completion_ids, again.completion_ids)
    with pytest.raises(ValueError, match="CUDA"):
        HFGenerateEngine([1], 0, cache="static").generate(model, ids, mask, SamplingParams())


def test_prompt_encoder_truncates_from_the_left_and_counts_it():
    tok = build_char_tokenizer()
    enc = PromptEncoder(tok, max_prompt_tokens=4)
    ids, mask = enc.encode(["abcdefgh", "xy"], torch.device("cpu"))
    assert tok.decode(ids[0]) == "efgh" and enc.last_truncated == 1
    assert enc.render([{"role": "user", "content": "hi"}]) == "hi"  # no chat template: the content itself


def test_supervised_encoding_marks_only_the_completion_and_eos():
    tok = build_char_tokenizer()
    ids, att, target = encode_supervised(tok, ["ab", "abcd"], ["x", "yz"])
    assert ids.shape == (2, 7)
    assert target.tolist() == [[0, 0, 1, 1, 0, 0, 0], [0, 0, 0, 0, 1, 1, 1]]
    assert ids[0, 3].item() == tok.eos_token_id and att[0].tolist() == [1, 1, 1, 1, 0, 0, 0]


def test_warm_start_learns_and_is_cached(tmp_path):
    tok = build_char_tokenizer()
    pairs = [(f"{i} twice:", f"<answer>{2 * i}</answer>") for i in range(50)]
    config = WarmStartConfig(max_steps=60, batch_size=16, lr=3e-3, cache_dir=str(tmp_path))
    model = build_tiny_model(TinyModelConfig(), tok)
    first = warm_start(model, tok, pairs, config, torch.device("cpu"))
    assert first.steps == 60 and not first.from_cache and first.final_loss < first.initial_loss / 2
    cached_model = build_tiny_model(TinyModelConfig(), tok)
    second = warm_start(cached_model, tok, pairs, config, torch.device("cpu"))
    assert second.from_cache and second.steps == 60
    assert all(torch.equal(p, q) for p, q in zip(model.state_dict().values(), cached_model.state_dict().values()))
    assert not list(tmp_path.glob("*.tmp"))  # written atomically
    # a corrupt cache file is retrained, not fatal
    (cache_file,) = tmp_path.glob("*.pt")
    cache_file.write_bytes(b"not a checkpoint")
    third = warm_start(build_tiny_model(TinyModelConfig(), tok), tok, pairs, config, torch.device("cpu"))
    assert not third.from_cache and third.steps == 60
    # init_from starts from a saved warm-start without any data or training
    (cache_file,) = tmp_path.glob("*.pt")
    loaded = build_tiny_model(TinyModelConfig(), tok)
    again = warm_start(loaded, tok, [], WarmStartConfig(init_from=str(cache_file)), torch.device("cpu"))
    assert again.from_cache and again.steps == 60
    with pytest.raises(FileNotFoundError, match="does not exist"):
        warm_start(loaded, tok, [], WarmStartConfig(init_from=str(tmp_path / "nope.pt")), torch.device("cpu"))


def test_warm_start_anneals_by_step_so_a_slower_machine_trains_the_same_weights(tmp_path, monkeypatch):
    from insight_lightning.training import warmstart

    tok = build_char_tokenizer()
    pairs = [(f"{i} twice:", f"<answer>{2 * i}</answer>") for i in range(50)]
    config = WarmStartConfig(max_steps=20, batch_size=16, max_seconds=100.0, cache_dir=None)

    def trained(clock):
        monkeypatch.setattr(warmstart.time, "monotonic", clock.__next__)
        model = build_tiny_model(TinyModelConfig(), tok)
        return warm_start(model, tok, pairs, config, torch.device("cpu")), model.state_dict()

    # 0.1 s a step, or a 60 s stall (another job, a compile) and then 1 s a step: 80 s for 20 steps, under the cap
    fast, fast_weights = trained(0.1 * k for k in range(10_000))
    slow, slow_weights = trained(iter([0.0, *(60.0 + k for k in range(10_000))]))
    assert fast.steps == slow.steps == 20 and not slow.cut_by_time
    assert all(torch.equal(fast_weights[k], slow_weights[k]) for k in fast_weights)
    # past the cap: a warning, fewer steps, and nothing cached (the weights depend on the machine's speed)
    monkeypatch.setattr(warmstart.time, "monotonic", iter(range(0, 10_000, 10)).__next__)
    cut_config = WarmStartConfig(max_steps=20, batch_size=16, max_seconds=100.0, cache_dir=str(tmp_path))
    with pytest.warns(UserWarning, match="stopped by max_seconds=100 after 9 of 20 steps"):
        cut = warm_start(build_tiny_model(TinyModelConfig(), tok), tok, pairs, cut_config, torch.device("cpu"))
    assert cut.cut_by_time and cut.steps == 9 and not list(tmp_path.glob("*.pt"))


def test_warm_start_cache_key_covers_the_starting_weights_and_every_pair():
    from insight_lightning.training.warmstart import cache_key

    tok = build_char_tokenizer()
    pairs = [(f"{i} twice:", f"<answer>{2 * i}</answer>") for i in range(300)]
    model = build_tiny_model(TinyModelConfig(), tok)
    key = cache_key(model, tok, WarmStartConfig(), pairs)
    assert cache_key(build_tiny_model(TinyModelConfig(), tok), tok, WarmStartConfig(), pairs) == key
    assert cache_key(build_tiny_model(TinyModelConfig(seed=1), tok), tok, WarmStartConfig(), pairs) != key
    changed_late = [*pairs[:-1], ("299 twice:", "<answer>0</answer>")]  # beyond the first 256 pairs
    assert cache_key(model, tok, WarmStartConfig(), changed_late) != key
    assert cache_key(model, tok, WarmStartConfig(cache_dir="/elsewhere"), pairs) == key


def test_learning_rate_schedules():
    warm_cos = learning_rate_factor(
        OptimizerConfig(warmup_steps=2, schedule="cosine", min_lr_ratio=0.1), total_steps=12
    )
    assert [round(warm_cos(s), 4) for s in (0, 1, 2, 7, 12)] == [0.5, 1.0, 1.0, 0.55, 0.1]
    linear = learning_rate_factor(OptimizerConfig(schedule="linear"), total_steps=10)
    assert linear(5) == 0.5 and linear(10) == 0.0
    assert learning_rate_factor(OptimizerConfig(), total_steps=10)(7) == 1.0
    with pytest.raises(ValueError, match="schedule"):
        learning_rate_factor(OptimizerConfig(schedule="step"), 10)


def test_pkg_names_resolve_to_an_installed_packages_folder():
    assert Path(resolve_model_name("pkg:tasks")) == Path(__file__).resolve().parents[1] / "tasks"
    assert resolve_model_name("Qwen/Qwen3-0.6B") == "Qwen/Qwen3-0.6B"
    with pytest.raises(PolicyLoadError, match="no installed package 'no_such_package'"):
        resolve_model_name("pkg:no_such_package")


@pytest.mark.parametrize("temperature", [0.0, 1.0])
def test_shared_prefill_samples_what_generate_alone_samples(temperature):
    tok = build_char_tokenizer()
    model = build_tiny_model(TinyModelConfig(), tok)
    ids, mask = PromptEncoder(tok).encode(["1 from 1 2:", "3:", "12 from 4 3 5:"], torch.device("cpu"))
    params = SamplingParams(max_new_tokens=12, temperature=temperature)
    batches = {}
    prefill_rows = {}
    for share in (False, True):
        rows = []
        hook = model.model.register_forward_pre_hook(
            lambda _, args, kwargs, rows=rows: rows.append(kwargs["input_ids"].shape), with_kwargs=True
        )
        torch.manual_seed(0)
        batches[share] = HFGenerateEngine([tok.eos_token_id], tok.pad_token_id, share_prefill=share).generate(
            model, ids, mask, params, n=4
        )
        hook.remove()
        prefill_rows[share] = rows[0]
    # sharing encodes the 3 prompts once (all but their last token), not 12 copies
    assert prefill_rows[True] == (3, ids.shape[1] - 1) and prefill_rows[False] == (12, ids.shape[1])
    for field in ("prompt_ids", "prompt_mask", "completion_ids", "completion_mask"):
        assert torch.equal(getattr(batches[True], field), getattr(batches[False], field)), field
