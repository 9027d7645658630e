"""Token log-probs (and entropies) of completions without ever holding a full-vocabulary float32 tensor.

The lm_head is applied to chunks of at most chunk_size scored positions; under autograd each chunk is activation-
checkpointed, so backward recomputes that chunk's logits instead of keeping them: peak memory is
O(chunk_size * vocab), never O(num_tokens * vocab).
"""

from __future__ import annotations

import torch
from torch import Tensor, nn
from torch.utils.checkpoint import checkpoint

from insight_lightning.policy.shared_prefix import PrefixSharing, plan_prefix_sharing

__all__ = [
    "SCORED_LOGPROBS_METHOD",
    "completion_logprobs",
    "entropy_from_logits",
    "scored_logprobs",
    "sequence_logprobs",
]

# Name under which policy.fsdp registers scored_logprobs on a sharded model as an FSDP2 forward method.
SCORED_LOGPROBS_METHOD = "scored_logprobs"


def entropy_from_logits(logits: Tensor) -> Tensor:
    """Entropy of the softmax over the last dim, in float32: -(p * log p).sum(-1)."""
    # logits: [..., V] -> [...]
    logp = torch.log_softmax(logits.float(), dim=-1)
    return -(logp.exp() * logp).sum(-1)


def _chunk_logprobs(
    hidden: Tensor, targets: Tensor, lm_head: nn.Module, temperature: float, with_entropy: bool
) -> tuple[Tensor, Tensor | None]:
    """Log-prob of each target (and the entropy) for one chunk of rows."""
    # hidden: [n, H], targets: [n] -> logp [n], entropy [n] or None
    logits = lm_head(hidden).float()  # [n, V], freed when the chunk returns
    if temperature != 1.0:  # dividing by 1 is exact but costs a pass over n x V floats (4% of a CPU update)
        logits = logits / temperature
    logp_all = torch.log_softmax(logits, dim=-1)  # [n, V]
    logp = logp_all.gather(-1, targets.unsqueeze(-1)).squeeze(-1)  # [n]
    entropy = -(logp_all.exp() * logp_all).sum(-1) if with_entropy else None  # [n]
    return logp, entropy


def completion_logprobs(
    hidden: Tensor,
    lm_head: nn.Module,
    targets: Tensor,
    temperature: float = 1.0,
    chunk_size: int = 1024,
    with_entropy: bool = False,
) -> tuple[Tensor, Tensor | None]:
    """Log-probs of targets under softmax(lm_head(hidden) / temperature), chunked; float32 (logp, entropy or None)."""
    # hidden: [N, H] final hidden states of the positions before each target; targets: [N] token ids
    # returns logp [N] float32 and, with with_entropy, entropy [N] float32 of the tempered distribution.
    # Both carry gradients (an entropy bonus needs them); detach the entropy yourself when it is only a metric.
    # lm_head is called as a module (not F.linear on its weight) so that module hooks, e.g. FSDP2 unsharding, run.
    if chunk_size < 1:
        raise ValueError(f"chunk_size must be a positive number of rows, got {chunk_size}")
    if hidden.shape[0] != targets.shape[0]:
        raise ValueError(f"hidden has {hidden.shape[0]} rows but targets has {targets.shape[0]}")
    use_checkpoint = torch.is_grad_enabled()
    logps: list[Tensor] = []
    entropies: list[Tensor] = []
    # Loop over chunks (N / chunk_size iterations), never over tokens. An empty N still runs one empty chunk, so
    # the outputs stay attached to the graph.
    for start in range(0, max(hidden.shape[0], 1), chunk_size):
        h, t = hidden[start : start + chunk_size], targets[start : start + chunk_size]  # [n, H], [n]
        if use_checkpoint:
            # lm_head is deterministic, so there is no RNG state to stash for the recompute
            logp, entropy = checkpoint(
                _chunk_logprobs, h, t, lm_head, temperature, with_entropy, use_reentrant=False, preserve_rng_state=False
            )
        else:
            logp, entropy = _chunk_logprobs(h, t, lm_head, temperature, with_entropy)
        logps.append(logp)
        if entropy is not None:
            entropies.append(entropy)
    return torch.cat(logps), (torch.cat(entropies) if with_entropy else None)


def _decoder_and_head(model: nn.Module) -> tuple[nn.Module, nn.Module]:
    """The decoder backbone (hidden states out) and the output head of a HF causal LM, optionally peft-wrapped."""
    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    decoder = base.get_decoder() if hasattr(base, "get_decoder") else None
    if decoder is None:
        decoder = getattr(base, "model", None)
    head = base.get_output_embeddings() if hasattr(base, "get_output_embeddings") else None
    if decoder is None or head is None:
        raise ValueError(
            f"{type(base).__name__} is not a Hugging Face causal LM with a decoder backbone and an output head "
            "(get_decoder()/.model and get_output_embeddings()); pass an AutoModelForCausalLM (or a PeftModel of one)"
        )
    return decoder, head


def sequence_logprobs(
    model: nn.Module,
    input_ids: Tensor,
    attention_mask: Tensor,
    completion_mask: Tensor,
    temperature: float = 1.0,
    chunk_size: int = 1024,
    with_entropy: bool = False,
    prefix_sharing: PrefixSharing = "auto",
) -> tuple[Tensor, Tensor | None]:
    """Float32 log-probs (and entropies) of the scored tokens of a batch, [B, L], zero where not scored."""
    # input_ids, attention_mask: [B, L] (left or right padded; prompt + completion)
    # completion_mask: [B, L], 1 on the positions t whose token input_ids[:, t] is scored (a completion token);
    #   position 0 has no preceding context and is never scored.
    # returns logp [B, L] float32: log p(input_ids[b, t] | input_ids[b, :t]) at scored (b, t), 0 elsewhere;
    #   entropy [B, L] float32 of the distribution at that step (with grad), or None.
    # prefix_sharing: consecutive rows with the same unscored prefix (a GRPO group's prompt) run it once
    #   (insight_lightning.policy.shared_prefix); auto does so when it saves compute.
    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    # Under FSDP2 the same function is registered on the root unit as a forward method (insight_lightning.policy.fsdp),
    # so that the root's weights are gathered and its gradients reduced around it.
    method = getattr(base, SCORED_LOGPROBS_METHOD, None)
    if method is not None:
        return method(input_ids, attention_mask, completion_mask, temperature, chunk_size, with_entropy, prefix_sharing)
    return scored_logprobs(
        base, input_ids, attention_mask, completion_mask, temperature, chunk_size, with_entropy, prefix_sharing
    )


def scored_logprobs(
    model: nn.Module,
    input_ids: Tensor,
    attention_mask: Tensor,
    completion_mask: Tensor,
    temperature: float,
    chunk_size: int,
    with_entropy: bool,
    prefix_sharing: PrefixSharing = "auto",
) -> tuple[Tensor, Tensor | None]:
    """sequence_logprobs on a Hugging Face causal LM (not peft-wrapped; its injected LoRA layers still apply)."""
    # Position ids count only attended tokens, so a left-padded row scores exactly like the same row unpadded.
    # The decoder backbone and the head are called directly (not the root forward): logits exist only for the
    # scored positions, chunk by chunk.
    decoder, head = _decoder_and_head(model)
    position_ids = (attention_mask.long().cumsum(-1) - 1).clamp(min=0)  # [B, L]
    scored = completion_mask.bool() & attention_mask.bool()  # [B, L]
    scored[:, 0] = False
    config = decoder.config
    packing = plan_prefix_sharing(
        input_ids, attention_mask, scored, position_ids, prefix_sharing, config._attn_implementation, config.hidden_size
    )
    if packing is None:
        hidden = decoder(
            input_ids=input_ids, attention_mask=attention_mask, position_ids=position_ids, use_cache=False
        ).last_hidden_state  # [B, L, H]
    else:
        packed = decoder(
            input_ids=packing.input_ids,
            attention_mask=packing.attention_mask(
                None if config._attn_implementation == "sdpa" else decoder.get_input_embeddings().weight.dtype
            ),
            position_ids=packing.position_ids,
            use_cache=False,
        ).last_hidden_state  # [G, P + n*C, H]
        hidden = packing.unpack(packed)  # [B, L, H]
    next_scored = scored[:, 1:]  # [B, L-1]: the token at t + 1 is scored, predicted from the hidden state at t
    prev_hidden = hidden[:, :-1][next_scored]  # [N, H]
    targets = input_ids[:, 1:][next_scored]  # [N]
    logp, entropy = completion_logprobs(prev_hidden, head, targets, temperature, chunk_size, with_entropy)  # [N]
    zeros = torch.zeros(input_ids.shape, dtype=torch.float32, device=input_ids.device)  # [B, L]
    logp_full = zeros.masked_scatter(scored, logp)  # [B, L]
    entropy_full = zeros.masked_scatter(scored, entropy) if entropy is not None else None  # [B, L]
    return logp_full, entropy_full
