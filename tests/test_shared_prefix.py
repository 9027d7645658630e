"""Prefix sharing: a group's prompt run once gives the log-probs, entropies and gradients of running it per row."""

from __future__ import annotations

import pytest
import torch
from peft import LoraConfig, get_peft_model
from transformers import LlamaConfig, LlamaForCausalLM, Qwen2Config, Qwen2ForCausalLM

from insight_lightning.policy.logprobs import sequence_logprobs
from insight_lightning.policy.shared_prefix import pack_shared_prefixes, packing_cost_ratio, plan_prefix_sharing
from insight_lightning.rollout.engine import RolloutBatch

VOCAB = 40


def tiny_model(architecture: str, attn: str):
    torch.manual_seed(0)
    shape = dict(
        vocab_size=VOCAB,
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=128,
        pad_token_id=0,
    )
    cls, config = (LlamaForCausalLM, LlamaConfig) if architecture == "llama" else (Qwen2ForCausalLM, Qwen2Config)
    model = cls(config(**shape, attn_implementation=attn)).float()
    model = get_peft_model(model, LoraConfig(r=4, lora_alpha=8, target_modules="all-linear"))
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "lora_B" in name:
                p.normal_(std=0.2)  # non-zero, so the adapter shapes the outputs
    return model


def grouped_rollout(prompt_lengths=(7, 3, 5), k=4, width=8, completion_width=6, seed=0) -> RolloutBatch:
    """len(prompt_lengths) prompts x k completions: left-padded prompts, right-padded completions of mixed lengths."""
    g = torch.Generator().manual_seed(seed)
    rows = len(prompt_lengths) * k
    prompt_ids = torch.zeros(rows, width, dtype=torch.long)
    prompt_mask = torch.zeros(rows, width, dtype=torch.long)
    for i, n in enumerate(prompt_lengths):
        tokens = torch.randint(1, VOCAB, (n,), generator=g)
        prompt_ids[i * k : (i + 1) * k, width - n :] = tokens
        prompt_mask[i * k : (i + 1) * k, width - n :] = 1
    completion_ids = torch.randint(1, VOCAB, (rows, completion_width), generator=g)
    lengths = torch.randint(1, completion_width + 1, (rows,), generator=g)
    completion_mask = (torch.arange(completion_width)[None] < lengths[:, None]).long()
    completion_ids = completion_ids.masked_fill(completion_mask == 0, 0)
    return RolloutBatch(prompt_ids, prompt_mask, completion_ids, completion_mask)


def logprobs_and_grads(model, batch: RolloutBatch, sharing: str, rows=slice(None)):
    model.zero_grad(set_to_none=True)
    ids, attn, scored = batch.input_ids[rows], batch.attention_mask[rows], batch.scored_mask[rows]
    logp, entropy = sequence_logprobs(
        model, ids, attn, scored, 0.9, chunk_size=7, with_entropy=True, prefix_sharing=sharing
    )
    weights = torch.linspace(-1, 1, logp.numel()).reshape(logp.shape)  # a loss that weighs every token differently
    ((logp * weights).sum() + 0.1 * entropy.sum()).backward()
    grads = {n: p.grad.clone() for n, p in model.named_parameters() if p.requires_grad}
    return logp.detach(), entropy.detach(), grads


@pytest.mark.parametrize("architecture", ["llama", "qwen2"])
@pytest.mark.parametrize("attn", ["sdpa", "eager"])
def test_shared_prefix_equals_row_by_row(architecture, attn):
    model = tiny_model(architecture, attn)
    batch = grouped_rollout()
    logp, entropy, grads = logprobs_and_grads(model, batch, "never")
    shared_logp, shared_entropy, shared_grads = logprobs_and_grads(model, batch, "always")
    assert (logp != 0).sum() == batch.completion_mask.sum()  # every completion token is scored
    torch.testing.assert_close(shared_logp, logp, atol=2e-5, rtol=1e-5)
    torch.testing.assert_close(shared_entropy, entropy, atol=2e-5, rtol=1e-5)
    for name, grad in grads.items():
        torch.testing.assert_close(shared_grads[name], grad, atol=5e-5, rtol=1e-4, msg=name)


def test_groups_cut_by_a_micro_batch_boundary_still_match():
    model = tiny_model("llama", "sdpa")
    batch = grouped_rollout(k=4)
    rows = slice(2, 11)  # the last two rows of group 0, all of group 1, three rows of group 2
    logp, _, grads = logprobs_and_grads(model, batch, "never", rows)
    shared_logp, _, shared_grads = logprobs_and_grads(model, batch, "always", rows)
    torch.testing.assert_close(shared_logp, logp, atol=2e-5, rtol=1e-5)
    for name, grad in grads.items():
        torch.testing.assert_close(shared_grads[name], grad, atol=5e-5, rtol=1e-4, msg=name)


def test_packing_groups_only_identical_prefixes():
    batch = grouped_rollout(prompt_lengths=(4, 4, 6), k=3)
    batch.prompt_ids[4, -1] = (batch.prompt_ids[4, -1] % (VOCAB - 1)) + 1  # row 4 now differs from rows 3 and 5
    ids, attn = batch.input_ids, batch.attention_mask
    positions = (attn.cumsum(-1) - 1).clamp(min=0)
    packing = pack_shared_prefixes(ids, attn, positions, width=batch.prompt_ids.shape[1])
    assert packing.group.tolist() == [0, 0, 0, 1, 2, 3, 4, 4, 4]
    assert packing.block.tolist() == [0, 1, 2, 0, 0, 0, 0, 1, 2]
    assert packing.input_ids.shape == (5, 8 + 3 * 6)
    # each completion continues its prompt's positions, as in its own row
    assert packing.position_ids[0, 8 + 6 : 8 + 12].tolist() == positions[1, 8:].tolist()
    assert packing.position_ids[0, 8 + 6].item() == batch.prompt_mask[1].sum().item()


def test_mask_keeps_completions_apart():
    batch = grouped_rollout(prompt_lengths=(5,), k=3)
    ids, attn = batch.input_ids, batch.attention_mask
    packing = pack_shared_prefixes(ids, attn, (attn.cumsum(-1) - 1).clamp(min=0), width=8)
    allowed = packing.attention_mask()[0, 0]  # [Lp, Lp] bool
    first, second = slice(8, 14), slice(14, 20)
    assert not allowed[second, first].any() and not allowed[first, second].any()
    assert not allowed[:8, 8:].any()  # the prompt never sees a completion
    assert allowed[second, 3:8].all()  # every completion token sees the real prompt tokens
    assert not allowed[second, :3].any()  # but not the prompt's padding


def test_auto_packs_long_prompts_and_short_completions_only():
    # a 235-token few-shot prompt, K = 8 completions of 24 tokens, SmolLM2's width: about a fifth of the FLOPs
    assert packing_cost_ratio(32, 4, 8, 235, 24, 576) < 0.3
    # a 64-token prompt with 8 completions of 1024 tokens: the packed attention would cost more than it saves
    assert packing_cost_ratio(32, 4, 8, 64, 1024, 576) > 1.0
    batch = grouped_rollout(prompt_lengths=(8, 8), k=4, width=8, completion_width=2)
    ids, attn, scored = batch.input_ids, batch.attention_mask, batch.scored_mask.bool()
    positions = (attn.cumsum(-1) - 1).clamp(min=0)
    assert plan_prefix_sharing(ids, attn, scored, positions, "auto", "sdpa", 32) is not None
    assert plan_prefix_sharing(ids, attn, scored, positions, "never", "sdpa", 32) is None
    assert plan_prefix_sharing(ids, attn, scored, positions, "auto", "flash_attention_2", 32) is None
    with pytest.raises(ValueError, match="needs an attention that takes a 4D mask"):
        plan_prefix_sharing(ids, attn, scored, positions, "always", "flash_attention_2", 32)
    distinct = grouped_rollout(prompt_lengths=(3, 4, 5, 6), k=1)
    ids, attn = distinct.input_ids, distinct.attention_mask
    positions = (attn.cumsum(-1) - 1).clamp(min=0)
    assert plan_prefix_sharing(ids, attn, distinct.scored_mask, positions, "always", "sdpa", 32) is None
