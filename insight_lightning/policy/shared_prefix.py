"""One forward pass over a prompt shared by the K completions of its group, instead of K identical ones.

GRPO scores K completions of every prompt, so a batch holds each prompt K times: with a 235-token few-shot prompt
and 24-token completions, 90% of an update's tokens are copies. Rows whose prefix columns are identical are packed
into one row, `[prefix, completion_1, ..., completion_n]`, with a block mask: the prefix is causal, each completion
attends to the prefix and causally to itself, never to another completion; position ids continue each completion
from the prefix as in its own row. A causal LM computes the same hidden states either way (up to float rounding of
different matmul shapes); the prefix's gradient sums over the group's completions, as it does unpacked.

The layout costs attention over the longer packed row, (P + nC)^2 instead of n (P + C)^2 query-key pairs, so for
long completions it loses: `auto` packs only when a cost model of the decoder's FLOPs says it saves a fifth.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch
from torch import Tensor

PrefixSharing = Literal["auto", "always", "never"]

# Attention implementations that take an arbitrary additive 4D mask (flash-attention and flex do not).
MASKABLE_ATTENTION = ("sdpa", "eager")
# auto packs only when the packed forward is predicted to cost at most this share of the unpacked one
AUTO_MAX_COST_RATIO = 0.8


@dataclass
class PackedRows:
    """B rows packed into G rows of one shared prefix (width P) followed by up to n suffix blocks (width C)."""

    input_ids: Tensor  # [G, P + n*C]
    position_ids: Tensor  # [G, P + n*C]
    key_valid: Tensor  # [G, P + n*C] bool: a real token (not padding)
    segment: Tensor  # [P + n*C] long: 0 on the prefix, i + 1 on suffix block i
    group: Tensor  # [B] long: each row's packed row
    block: Tensor  # [B] long: each row's suffix block
    prefix_width: int  # P
    suffix_width: int  # C
    blocks: int  # n, the largest group

    def attention_mask(self, additive_dtype: torch.dtype | None = None) -> Tensor:
        """[G, 1, Lp, Lp] mask: True where a query may attend a key; or additive (0 / the dtype's minimum)."""
        lp = self.segment.shape[0]
        q = torch.arange(lp, device=self.segment.device)
        causal = q[None, :] <= q[:, None]  # [Lp(q), Lp(k)]
        same_story = (self.segment[None, :] == 0) | (self.segment[None, :] == self.segment[:, None])  # [Lp, Lp]
        allowed = (causal & same_story)[None] & self.key_valid[:, None, :]  # [G, Lp, Lp]
        # every query sees at least itself: a padding query attending nothing would be NaN, and NaN values leak
        # through zero attention weights into real queries
        allowed = allowed | torch.eye(lp, dtype=torch.bool, device=allowed.device)[None]
        if additive_dtype is None:  # sdpa takes a boolean mask in any compute dtype (autocast included)
            return allowed[:, None]
        mask = torch.zeros(allowed.shape, dtype=additive_dtype, device=allowed.device)  # eager adds it to the scores
        return mask.masked_fill_(~allowed, torch.finfo(additive_dtype).min)[:, None]

    def unpack(self, hidden: Tensor) -> Tensor:
        """Packed hidden states [G, Lp, H] back in the rows' layout [B, P + C, H]."""
        p, g, h = self.prefix_width, hidden.shape[0], hidden.shape[-1]
        prefix = hidden[:, :p][self.group]  # [B, P, H]
        suffix = hidden[:, p:].reshape(g, self.blocks, self.suffix_width, h)[self.group, self.block]  # [B, C, H]
        return torch.cat([prefix, suffix], dim=1)


def prefix_width(scored: Tensor) -> int:
    """Columns before the first scored one (the prompt, in a rollout batch); 0 if nothing is scored."""
    # scored: [B, L]
    any_scored = scored.bool().any(dim=0)  # [L]
    return int(any_scored.float().argmax()) if bool(any_scored.any()) else 0


def pack_shared_prefixes(
    input_ids: Tensor, attention_mask: Tensor, position_ids: Tensor, width: int, pad_id: int = 0
) -> PackedRows:
    """Pack consecutive rows whose first `width` columns (tokens and mask) are identical."""
    # input_ids, attention_mask, position_ids: [B, L]
    b, length = input_ids.shape
    device = input_ids.device
    prefix = torch.cat([input_ids[:, :width], attention_mask[:, :width].to(input_ids.dtype)], dim=1)  # [B, 2P]
    starts = torch.ones(b, dtype=torch.bool, device=device)
    starts[1:] = (prefix[1:] != prefix[:-1]).any(dim=1)
    group = starts.long().cumsum(0) - 1  # [B]
    first_rows = starts.nonzero().squeeze(1)  # [G]
    block = torch.arange(b, device=device) - first_rows[group]  # [B]
    g, n = first_rows.shape[0], int(block.max()) + 1  # host sync: the packed shape
    c = length - width

    def packed(rows: Tensor, fill) -> Tensor:
        suffix = torch.full((g, n, c), fill, dtype=rows.dtype, device=device)
        suffix[group, block] = rows[:, width:]
        return torch.cat([rows[first_rows, :width], suffix.reshape(g, n * c)], dim=1)  # [G, P + n*C]

    segment = torch.cat([torch.zeros(width, dtype=torch.long), torch.arange(1, n + 1).repeat_interleave(c)]).to(
        device
    )  # [Lp]
    return PackedRows(
        input_ids=packed(input_ids, pad_id),
        position_ids=packed(position_ids, 0),
        key_valid=packed(attention_mask.bool(), False),
        segment=segment,
        group=group,
        block=block,
        prefix_width=width,
        suffix_width=c,
        blocks=n,
    )


def packing_cost_ratio(rows: int, packed_rows: int, blocks: int, width: int, suffix: int, hidden_size: int) -> float:
    """Predicted decoder FLOPs packed / unpacked: per-token projections and MLP (~12 H^2) plus dense attention."""

    def cost(n_rows: int, length: int) -> float:
        return n_rows * (length * 12 * hidden_size**2 + length**2 * 2 * hidden_size)

    return cost(packed_rows, width + blocks * suffix) / cost(rows, width + suffix)


def plan_prefix_sharing(
    input_ids: Tensor,
    attention_mask: Tensor,
    scored: Tensor,
    position_ids: Tensor,
    mode: PrefixSharing,
    attn_implementation: str | None,
    hidden_size: int,
) -> PackedRows | None:
    """The packed layout of this batch, or None to run it row by row (nothing shared, or sharing would not pay)."""
    if mode not in ("auto", "always", "never"):
        raise ValueError(f"prefix_sharing must be auto, always or never, got '{mode}'")
    if mode == "never":
        return None
    if attn_implementation not in MASKABLE_ATTENTION:
        if mode == "always":
            raise ValueError(
                f"prefix_sharing=always needs an attention that takes a 4D mask ({', '.join(MASKABLE_ATTENTION)}); "
                f"this model uses {attn_implementation}: set model.policy.prefix_sharing to auto or never"
            )
        return None
    width = prefix_width(scored)
    if width == 0 or input_ids.shape[0] < 2:
        return None
    packing = pack_shared_prefixes(input_ids, attention_mask, position_ids, width)
    packed_rows = packing.input_ids.shape[0]
    if packed_rows == input_ids.shape[0]:
        return None  # no two rows share a prefix
    ratio = packing_cost_ratio(
        input_ids.shape[0], packed_rows, packing.blocks, width, packing.suffix_width, hidden_size
    )
    if mode == "auto" and ratio > AUTO_MAX_COST_RATIO:
        return None
    return packing
