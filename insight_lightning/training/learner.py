"""The learner: one step's clipped policy-gradient updates, epochs x mini-batches x micro-batches.

Gradients accumulate over the micro-batches of a mini-batch and are synchronised across ranks only on its last
one; each mini-batch is one optimizer update. The loss of a mini-batch does not depend on how it is split into
micro-batches (grpo.py: a sum over rows and tokens divided by a normaliser computed once per mini-batch), nor, under
DDP/FSDP2, on how the rows are split across ranks: the normaliser is the global one.

An update whose loss or gradient norm is not finite is skipped (its gradients dropped, so the weights and the
optimizer's moments stay as they were) and counted; after ``grpo.max_consecutive_skips`` skips in a row the run
stops with ``DivergedError``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, fields

import lightning as L
import torch
from torch import Tensor
from torch.distributed.tensor import DTensor

from insight_lightning.policy.divergence import DivergedError
from insight_lightning.policy.fsdp import gradient_sync
from insight_lightning.rollout.engine import RolloutBatch
from insight_lightning.training.config import GRPOConfig
from insight_lightning.training.grpo import aggregate_loss, grpo_token_loss, loss_normalizer, rollout_correction_weights
from insight_lightning.training.policy import Policy


@dataclass
class TokenSums:
    """Masked sums of the loss terms over the tokens of the updates (float64, on the device), and the token count."""

    pg: Tensor
    clipped: Tensor
    kl: Tensor
    entropy: Tensor
    tokens: Tensor

    @staticmethod
    def zeros(device: torch.device) -> TokenSums:
        return TokenSums(*(torch.zeros((), dtype=torch.float64, device=device) for _ in fields(TokenSums)))

    def add(self, other: TokenSums) -> None:
        for f in fields(self):
            setattr(self, f.name, getattr(self, f.name) + getattr(other, f.name))


@dataclass
class CorrectionStats:
    """How far the rollout engine's log-probs are from the trainer's (per scored token), and the importance ratios."""

    abs_diff_sum: Tensor
    abs_diff_max: Tensor
    ratio_sum: Tensor
    ratio_min: Tensor
    ratio_max: Tensor
    tokens: Tensor

    @staticmethod
    def empty(device: torch.device) -> CorrectionStats:
        zero = torch.zeros((), dtype=torch.float64, device=device)
        inf = torch.full((), math.inf, dtype=torch.float64, device=device)
        return CorrectionStats(zero, zero, zero, inf, -inf, zero)

    def add(self, old_logp: Tensor, behaviour_logp: Tensor, ratio: Tensor, mask: Tensor) -> None:
        # old_logp, behaviour_logp, ratio: [b, L] float; mask: [b, L] bool (scored tokens). Masked reductions, not
        # boolean indexing, so that no host sync is needed.
        diff, ratio = (old_logp - behaviour_logp).abs().double(), ratio.double()
        self.abs_diff_sum = self.abs_diff_sum + (diff * mask).sum()
        self.abs_diff_max = torch.maximum(self.abs_diff_max, diff.masked_fill(~mask, 0.0).amax())
        self.ratio_sum = self.ratio_sum + (ratio * mask).sum()
        self.ratio_min = torch.minimum(self.ratio_min, ratio.masked_fill(~mask, math.inf).amin())
        self.ratio_max = torch.maximum(self.ratio_max, ratio.masked_fill(~mask, -math.inf).amax())
        self.tokens = self.tokens + mask.sum()

    def metrics(self) -> dict[str, Tensor]:
        tokens = self.tokens.clamp(min=1)
        return {
            "rollout/logprob_abs_diff": self.abs_diff_sum / tokens,
            "rollout/logprob_abs_diff_max": self.abs_diff_max,
            "rollout/is_ratio": self.ratio_sum / tokens,
            "rollout/is_ratio_min": self.ratio_min,
            "rollout/is_ratio_max": self.ratio_max,
        }


@dataclass
class UpdateStats:
    """What a step's updates did: token means of the loss terms, the mean gradient norm before clipping, and how
    many updates were skipped for a non-finite loss or gradient norm."""

    pg_loss: Tensor
    clip_frac: Tensor
    entropy: Tensor
    kl: Tensor | None  # None without a KL term
    grad_norm: Tensor  # the true global norm, clipping or not (non-finite if an update's was)
    skipped_updates: int
    correction: CorrectionStats | None = None  # None when the engine reports no behaviour log-probs

    def metrics(self) -> dict[str, Tensor]:
        metrics = {
            "train/pg_loss": self.pg_loss,
            "train/clip_frac": self.clip_frac,
            "train/entropy": self.entropy,
            "train/grad_norm": self.grad_norm,
            "train/skipped_updates": torch.tensor(float(self.skipped_updates)),
        }
        if self.kl is not None:
            metrics["train/kl"] = self.kl
        if self.correction is not None:
            metrics.update(self.correction.metrics())
        return metrics


class Learner:
    """Turns one step's rollouts and advantages into optimizer updates of the policy (manual optimisation).

    Args:
        config: the GRPO objective and the epochs / mini-batch / micro-batch layout.
        temperature: the sampling temperature: log-probs are those of the tempered distribution that sampled.
        max_response_length: the longest completion (the constant of Dr.GRPO's aggregation).
        rollout_correction: none, tis or mask (resolved from the config's auto by the engine).
    """

    def __init__(
        self, config: GRPOConfig, temperature: float, max_response_length: int, rollout_correction: str = "none"
    ) -> None:
        if rollout_correction not in ("none", "tis", "mask"):
            raise ValueError(f"rollout_correction must be none, tis or mask, got '{rollout_correction}'")
        self.config = config
        self.temperature = temperature
        self.max_response_length = max_response_length
        self.rollout_correction = rollout_correction
        self.consecutive_skips = 0
        """Updates skipped in a row, across steps (reset by an update that is applied)."""

    def update(
        self, module: L.LightningModule, policy: Policy, rollout: RolloutBatch, advantages: Tensor
    ) -> UpdateStats:
        """All of the step's updates; the last one steps through Lightning, so trainer.global_step counts RL steps."""
        cfg = self.config
        opt = module.optimizers()
        strategy = module.trainer.strategy
        input_ids, attention, scored = rollout.input_ids, rollout.attention_mask, rollout.scored_mask  # [B, L]
        num_rows = input_ids.shape[0]
        rows_per_update = (cfg.mini_batch_size or num_rows // cfg.group_size) * cfg.group_size
        total_updates = cfg.epochs * math.ceil(num_rows / rows_per_update)
        old_logp = None
        if total_updates > 1:  # off-policy after the first update: keep the sampling policy's log-probs
            old_logp = self._logprobs_no_grad(policy, input_ids, attention, scored)
        behaviour = rollout.behaviour_logprobs_full  # [B, L] or None
        if behaviour is None and self.rollout_correction != "none":
            raise ValueError(
                f"model.grpo.rollout_correction={self.rollout_correction} needs the rollout engine's log-probs, and "
                "this engine reports none (use it with rollout.engine vllm or vllm_server, or set it to none)"
            )
        correction = None if behaviour is None else CorrectionStats.empty(module.device)
        sums = TokenSums.zeros(module.device)
        grad_norm = torch.zeros((), dtype=torch.float64, device=module.device)
        params = policy.trainable_parameters()
        updates_done = skipped = 0
        for epoch in range(cfg.epochs):
            for start in range(0, num_rows, rows_per_update):
                rows = slice(start, min(start + rows_per_update, num_rows))
                normalizer = self._global_normalizer(scored[rows], module)
                loss_finite = torch.ones((), dtype=torch.bool, device=module.device)
                starts = range(rows.start, rows.stop, cfg.micro_batch_size)
                for micro in starts:
                    mb = slice(micro, min(micro + cfg.micro_batch_size, rows.stop))
                    # Gradients are all-reduced across ranks only on the last micro-batch of an update.
                    last = micro == starts[-1]
                    with opt.toggle_model(sync_grad=last), gradient_sync(policy.fsdp_units, last):
                        loss, micro_sums = self._micro_batch_loss(
                            policy,
                            input_ids[mb],
                            attention[mb],
                            scored[mb],
                            advantages[mb],
                            None if old_logp is None else old_logp[mb],
                            None if behaviour is None else behaviour[mb],
                            normalizer,
                            correction if epoch == 0 else None,
                        )
                        module.manual_backward(loss)
                    loss_finite &= torch.isfinite(loss.detach())
                    sums.add(micro_sums)
                norm = self._clip_gradients(params)
                grad_norm = grad_norm + norm
                if not self._update_is_finite(norm, loss_finite, module):
                    opt.zero_grad(set_to_none=True)  # the optimizer skips parameters without a gradient
                    skipped += 1
                    self._count_skip(module, opt)
                else:
                    self.consecutive_skips = 0
                updates_done += 1
                if updates_done == total_updates:
                    opt.step()  # counted by Lightning: trainer.global_step is the number of RL steps
                else:
                    strategy.optimizer_step(opt.optimizer, closure=lambda: None)
                opt.zero_grad(set_to_none=True)
        tokens = sums.tokens.clamp(min=1)
        return UpdateStats(
            pg_loss=sums.pg / tokens,
            clip_frac=sums.clipped / tokens,
            entropy=sums.entropy / tokens,
            kl=sums.kl / tokens if cfg.kl_coef > 0 else None,
            grad_norm=grad_norm / total_updates,
            skipped_updates=skipped,
            correction=correction,
        )

    def _clip_gradients(self, params: list[torch.nn.Parameter]) -> Tensor:
        """The global gradient norm (float64 scalar on the device); gradients clipped to max_grad_norm if set."""
        grads = [p.grad for p in params if p.grad is not None]
        norm = torch.nn.utils.get_total_norm(grads)
        if self.config.max_grad_norm > 0:
            torch.nn.utils.clip_grads_with_norm_(params, self.config.max_grad_norm, norm)
        return (norm.full_tensor() if isinstance(norm, DTensor) else norm).double()

    def _update_is_finite(self, norm: Tensor, loss_finite: Tensor, module: L.LightningModule) -> bool:
        """Whether this update may be applied: the same answer on every rank (one host sync per update).

        The norm is of the synchronised gradients, hence equal on all ranks; a rank's non-finite loss is shared.
        """
        bad = (~(torch.isfinite(norm) & loss_finite)).double()
        if module.trainer.world_size > 1:
            bad = module.trainer.strategy.reduce(bad, reduce_op="sum")
        return not bool(bad > 0)

    def _count_skip(self, module: L.LightningModule, opt) -> None:
        """One more skipped update in a row; too many stop the run with what to change."""
        self.consecutive_skips += 1
        if self.consecutive_skips < self.config.max_consecutive_skips:
            return
        lr = opt.param_groups[0].get("initial_lr", opt.param_groups[0]["lr"])
        clip = "" if self.config.max_grad_norm > 0 else " or clip gradients (model.grpo.max_grad_norm > 0)"
        raise DivergedError(
            f"Step {module.global_step + 1}: {self.consecutive_skips} updates in a row had a non-finite loss or "
            f"gradient norm and were skipped (the weights are as after the last finite update); the training has "
            f"diverged, most likely from too high a learning rate (model.optimizer.lr={lr:g}): lower it{clip}; if "
            "train/reward is nan, the task's verifier is at fault."
        )

    def _global_normalizer(self, scored: Tensor, module: L.LightningModule) -> float:
        """The mini-batch's loss denominator; under data parallelism the mean over ranks of theirs.

        DDP and FSDP2 average gradients over ranks, so with each rank dividing its sum by the ranks' mean
        denominator the objective is the global sum over the global denominator (as in verl and TRL), not the mean
        of per-rank means (which weights a token of a rank with short completions more). One collective per update.
        """
        normalizer = loss_normalizer(scored, self.config.loss_aggregation, self.max_response_length)
        if module.trainer.world_size == 1:
            return normalizer
        local = torch.tensor(normalizer, dtype=torch.float64, device=module.device)
        return float(module.trainer.strategy.reduce(local, reduce_op="mean"))

    def _micro_batch_loss(
        self,
        policy: Policy,
        input_ids: Tensor,
        attention: Tensor,
        scored: Tensor,
        advantages: Tensor,
        old_logp: Tensor | None,
        behaviour_logp: Tensor | None,
        normalizer: float,
        correction: CorrectionStats | None,
    ) -> tuple[Tensor, TokenSums]:
        """This micro-batch's share of the update's loss, and its (detached) term sums (and correction stats)."""
        cfg = self.config
        logp, entropy = policy.logprobs(input_ids, attention, scored, self.temperature, with_entropy=True)  # [b, L]
        ref = policy.reference_logprobs(input_ids, attention, scored, self.temperature) if cfg.kl_coef > 0 else None
        old = logp.detach() if old_logp is None else old_logp  # pi_old: the trainer's log-probs at rollout time
        weights = None
        if behaviour_logp is not None:
            weights, ratio = rollout_correction_weights(
                old, behaviour_logp, self.rollout_correction, cfg.tis_cap, cfg.mask_band
            )  # [b, L]
            if correction is not None:
                correction.add(old, behaviour_logp, ratio, scored.bool())
        terms = grpo_token_loss(
            logp,
            old,
            advantages,
            entropy,
            cfg.clip_low,
            cfg.clip_high,
            cfg.dual_clip,
            ref,
            cfg.kl_coef,
            cfg.entropy_coef,
            weights,
        )
        loss = aggregate_loss(terms.loss, scored, cfg.loss_aggregation, normalizer)
        mask = scored.to(terms.pg.dtype)
        with torch.no_grad():
            sums = [(terms.pg * mask).sum(), (terms.clipped * mask).sum(), (terms.kl * mask).sum()]
            sums += [(entropy * mask).sum(), mask.sum()]
            return loss, TokenSums(*(s.double() for s in sums))

    @torch.no_grad()
    def _logprobs_no_grad(self, policy: Policy, input_ids: Tensor, attention: Tensor, scored: Tensor) -> Tensor:
        step = self.config.micro_batch_size
        parts = [
            policy.logprobs(input_ids[i : i + step], attention[i : i + step], scored[i : i + step], self.temperature)[0]
            for i in range(0, input_ids.shape[0], step)
        ]
        return torch.cat(parts)
