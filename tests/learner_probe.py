"""One Learner update of a small LoRA policy on fixed rollouts, through a real Lightning Trainer (1 or 2 processes).

python tests/learner_probe.py OUT.pt --devices 2 [--micro-batch-size N] [--correction tis|mask|none]
(DDP over gloo re-runs this script per rank)

The rollouts are fixed and seeded: 4 groups of K = 2 rows; groups 0-1 have 12-token completions, groups 2-3 have
2-token ones, so under 2 ranks (rank r takes groups 2r, 2r+1) the ranks' token counts differ 6x. The optimizer is
SGD with lr 1, so the weight change of the step is minus the gradient of the learner's loss: the file written holds
the trained weights before and after, and the advantage-weighted log-likelihood of the whole batch before and after.
With --correction, the rollouts carry behaviour log-probs (as a vLLM engine's): the trainer's own plus
BEHAVIOUR_OFFSET, so each token's ratio pi_old / pi_behaviour is exp(-offset), and the file also holds the step's
rollout/* metrics.
"""

from __future__ import annotations

import argparse

import lightning as L
import torch

from insight_lightning.policy.loading import PolicyConfig
from insight_lightning.policy.tiny import TinyModelConfig
from insight_lightning.rollout.config import RolloutConfig
from insight_lightning.rollout.engine import RolloutBatch
from insight_lightning.training.config import GRPOConfig
from insight_lightning.training.grpo import aggregate_loss, loss_normalizer, policy_loss
from insight_lightning.training.learner import Learner
from insight_lightning.training.policy import build_policy

K, GROUPS, PROMPT, COMPLETION = 2, 4, 5, 12


def fixed_rollouts() -> tuple[RolloutBatch, torch.Tensor]:
    """The whole batch: [GROUPS*K] rows and their advantages (+1 / -1 within each group)."""
    g = torch.Generator().manual_seed(0)
    rows = GROUPS * K
    prompt_ids = torch.randint(3, 90, (rows, PROMPT), generator=g)
    completion_ids = torch.randint(3, 90, (rows, COMPLETION), generator=g)
    lengths = torch.tensor([COMPLETION] * (rows // 2) + [2] * (rows // 2))  # long completions, then short ones
    completion_mask = (torch.arange(COMPLETION)[None, :] < lengths[:, None]).long()
    completion_ids = completion_ids.masked_fill(completion_mask == 0, 0)
    rollout = RolloutBatch(prompt_ids, torch.ones_like(prompt_ids), completion_ids, completion_mask)
    advantages = torch.tensor([1.0, -1.0] * GROUPS)
    return rollout, advantages


def behaviour_offset(rollout: RolloutBatch) -> torch.Tensor:
    """log pi_behaviour - log pi_old per completion token, [B, T]: from -1.5 to 1.5 (ratios 0.22 to 4.5)."""
    return torch.linspace(-1.5, 1.5, rollout.completion_ids.numel()).reshape(rollout.completion_ids.shape)


def with_behaviour(policy, rollout: RolloutBatch) -> RolloutBatch:
    """The rollouts with behaviour log-probs: the policy's own plus behaviour_offset."""
    with torch.no_grad():
        logp, _ = policy.logprobs(rollout.input_ids, rollout.attention_mask, rollout.scored_mask, 1.0)
    rollout.behaviour_logprobs = logp[:, PROMPT:] + behaviour_offset(rollout)
    return rollout


def surrogate(policy, rollout: RolloutBatch, advantages: torch.Tensor, weights: torch.Tensor | None = None):
    """The token-mean clipped surrogate of the rows at ratio 1 (each token's term times weights [B, P+T] if given);
    its gradient is -sum w * A * grad logp / tokens."""
    logp, _ = policy.logprobs(rollout.input_ids, rollout.attention_mask, rollout.scored_mask, 1.0)
    loss, _ = policy_loss(logp, logp.detach(), advantages)
    if weights is not None:
        loss = loss * weights
    norm = loss_normalizer(rollout.scored_mask, "token_mean")
    return aggregate_loss(loss, rollout.scored_mask, "token_mean", norm)


def weighted_loglik(policy, rollout: RolloutBatch, advantages: torch.Tensor) -> float:
    """sum A * logp over the scored tokens / tokens: what a policy-gradient step raises."""
    with torch.no_grad():
        logp, _ = policy.logprobs(rollout.input_ids, rollout.attention_mask, rollout.scored_mask, 1.0)
        return float((advantages[:, None] * logp).sum() / rollout.scored_mask.sum())


def probe_policy():
    """A small LoRA policy, identical in every process."""
    config = PolicyConfig(tiny=TinyModelConfig(hidden_size=32, num_layers=2, num_heads=2, intermediate_size=64))
    with torch.random.fork_rng():
        torch.manual_seed(0)  # the same LoRA initialisation in every process
        policy = build_policy(config, RolloutConfig(), 1024, torch.device("cpu"))
    # LoRA B starts at zero; a non-zero B makes the gradients of A non-zero too
    with torch.no_grad():
        for name, p in policy.model.named_parameters():
            if "lora_B" in name:
                p.copy_(torch.linspace(-0.05, 0.05, p.numel()).reshape(p.shape))
    return policy


class LearnerProbe(L.LightningModule):
    def __init__(self, micro_batch_size: int, out: str, correction: str | None) -> None:
        super().__init__()
        self.automatic_optimization = False
        self.policy = probe_policy()
        grpo = GRPOConfig(group_size=K, micro_batch_size=micro_batch_size, max_grad_norm=0.0)
        self.learner = Learner(grpo, 1.0, COMPLETION, correction or "none")
        self.correction = correction
        self.out = out

    def configure_optimizers(self):
        return torch.optim.SGD(self.policy.trainable_parameters(), lr=1.0)

    def train_dataloader(self):
        return [0]

    def training_step(self, batch, batch_idx):
        rollout, advantages = fixed_rollouts()
        if self.correction is not None:
            rollout = with_behaviour(self.policy, rollout)
        rows = torch.arange(GROUPS * K).reshape(self.trainer.world_size, -1)[self.global_rank]  # this rank's groups
        before = {n: p.detach().clone() for n, p in self.policy.named_parameters() if p.requires_grad}
        objective_before = weighted_loglik(self.policy, rollout, advantages)
        stats = self.learner.update(self, self.policy, rollout.select(rows), advantages[rows])
        after = {n: p.detach().clone() for n, p in self.policy.named_parameters() if p.requires_grad}
        if self.global_rank == 0:
            objective = (objective_before, weighted_loglik(self.policy, rollout, advantages))
            torch.save(
                {
                    "before": before,
                    "after": after,
                    "objective": objective,
                    "grad_norm": float(stats.grad_norm),
                    "metrics": {k: float(v) for k, v in stats.metrics().items()},
                },
                self.out,
            )


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("out")
    parser.add_argument("--devices", type=int, default=1)
    parser.add_argument("--micro-batch-size", type=int, default=64)
    parser.add_argument("--correction", choices=["none", "tis", "mask"], default=None)
    args = parser.parse_args(argv)
    trainer = L.Trainer(
        accelerator="cpu",
        devices=args.devices,
        strategy="ddp" if args.devices > 1 else "auto",
        max_steps=1,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
    )
    trainer.fit(LearnerProbe(args.micro_batch_size, args.out, args.correction))


if __name__ == "__main__":
    main()
