"""GRPOModule: rollouts, verifier rewards and clipped policy-gradient updates of a (LoRA) policy, one step at a time."""

from __future__ import annotations

import copy
import logging
import math
import time
from dataclasses import asdict, dataclass

import lightning as L
import torch
from torch import Tensor
from torch.distributed.tensor import DTensor

from insight_lightning.config import GRPOConfig, LoggingConfig, OptimizerConfig, RolloutConfig, ValidationConfig
from insight_lightning.data import PromptBatch
from insight_lightning.fsdp import gradient_sync, shard_policy, unsharded_for_generation
from insight_lightning.grpo import (
    LOSS_AGGREGATIONS,
    aggregate_loss,
    group_advantages,
    kl_k3,
    loss_normalizer,
    policy_loss,
)
from insight_lightning.logprobs import sequence_logprobs
from insight_lightning.policy import PolicyConfig, apply_adapter, build_base_policy
from insight_lightning.prompts import PromptEncoder
from insight_lightning.rng import capture_rng_state, restore_rng_state
from insight_lightning.rollout import HFGenerateEngine, RolloutBatch, SamplingParams, concat_rollouts
from insight_lightning.rollout_scoring import GroupScores, score_completions
from insight_lightning.scalar_logging import log_scalars, tensorboard
from insight_lightning.warmstart import WarmStartConfig, warm_start
from tasks import Task

log = logging.getLogger(__name__)


@dataclass
class StepRollouts:
    """What one training step rolled out: the groups to train on, and the outcomes of every group generated."""

    rollout: RolloutBatch  # [b*K] rows of the groups trained on
    completions: list[str]  # [b*K]
    scores: GroupScores  # [b, K]
    examples: list[dict]  # [b]
    outcomes: dict[str, Tensor]  # ids / successes / trials of every group rolled out (for the beliefs)
    generated_tokens: float  # completion tokens of every generated sequence
    extra_metrics: dict[str, Tensor]


class GRPOModule(L.LightningModule):
    """GRPO with a LoRA (or fully trained) causal LM on a task with a verifier.

    Args:
        policy: the model: 'tiny' (offline, in-process) or a Hugging Face name/path, LoRA settings, dtype.
        grpo: the objective: group size K, clipping, KL and entropy terms, loss aggregation, mini-batches.
        rollout: sampling of the training completions.
        optimizer: AdamW and its learning-rate schedule.
        validation: how the validation split is scored.
        warm_start: supervised training on the task's reference solutions before RL (null: none).
        logging: text samples and histograms in TensorBoard.
        task: the task (linked from data.task by the CLI).
    """

    def __init__(
        self,
        policy: PolicyConfig = PolicyConfig(),  # noqa: B008 (copied below, never mutated)
        grpo: GRPOConfig = GRPOConfig(),  # noqa: B008
        rollout: RolloutConfig = RolloutConfig(),  # noqa: B008
        optimizer: OptimizerConfig = OptimizerConfig(),  # noqa: B008
        validation: ValidationConfig = ValidationConfig(),  # noqa: B008
        warm_start: WarmStartConfig | None = None,
        logging: LoggingConfig = LoggingConfig(),  # noqa: B008
        task: Task | None = None,
    ) -> None:
        super().__init__()
        # copies: the defaults above are shared instances, and a module may adjust its own settings
        self.policy_config = copy.deepcopy(policy)
        self.grpo = copy.deepcopy(grpo)
        self.rollout = copy.deepcopy(rollout)
        self.optim = copy.deepcopy(optimizer)
        self.validation = copy.deepcopy(validation)
        self.warm_start_config = copy.deepcopy(warm_start)
        self.log_config = copy.deepcopy(logging)
        self.task = task
        _check_settings(self.grpo, self.policy_config)
        self.automatic_optimization = False
        self.strict_loading = False  # checkpoints hold only the trained weights, not the frozen base
        self.save_hyperparameters(ignore=["task"])
        self.policy: torch.nn.Module | None = None
        self.tokenizer = None
        self.prompts: PromptEncoder | None = None
        self.engine: HFGenerateEngine | None = None
        self.fsdp_units: list[torch.nn.Module] = []  # FSDP2 units of the policy, root last (empty: not sharded)
        self.warm_start_result = None
        self.last_step_times: dict[str, float] = {}
        self.rollouts_generated = 0  # sequences sampled for training so far, extra dynamic-sampling rounds included
        self._val_sums: Tensor | None = None
        self._val_rng = None

    # ----------------------------------------------------------------------------------------------- model set-up
    def setup(self, stage: str) -> None:
        # Built here rather than in configure_model: Lightning runs configure_model inside its tensor-init
        # contexts (device, dtype, empty init), which would also wrap, and slow down, the warm-start training.
        self.build_policy()

    def build_policy(self) -> None:
        """The policy (base + adapter), its tokenizer and the rollout engine; warm-started first when configured."""
        if self.policy is not None:
            return
        if self.task is None:
            raise ValueError("GRPOModule needs a task (the CLI links it from data.task)")
        device = self._target_device()
        base, tokenizer = build_base_policy(self.policy_config, device.type)
        self.tokenizer = tokenizer  # prompts are rendered (chat template included) the same for warm-start and RL
        self.prompts = PromptEncoder(tokenizer, self.policy_config.chat_template_kwargs, self.rollout.max_prompt_tokens)
        if self.warm_start_config is not None:
            self._warm_start(base, tokenizer, device)
        self.policy = apply_adapter(base, self.policy_config)
        eos = self.policy.generation_config.eos_token_id
        eos_ids = eos if isinstance(eos, list) else [eos if eos is not None else tokenizer.eos_token_id]
        self.engine = HFGenerateEngine(eos_ids, tokenizer.pad_token_id, cache=self.rollout.cache)

    def configure_model(self) -> None:
        # Under ModelParallelStrategy (FSDP2) Lightning hands the module a device mesh: shard the policy over its
        # data-parallel dimension. Other strategies have no mesh and leave the policy as it is.
        mesh = self._device_mesh
        if mesh is None or self.fsdp_units:
            return
        if mesh.size() != mesh["data_parallel"].size():
            raise ValueError(
                "ModelParallelStrategy: only data parallelism (FSDP2) is supported; set tensor_parallel_size: 1"
            )
        if self.rollout.cache == "static":
            raise ValueError("rollout.cache=static is not supported with FSDP2 (ModelParallelStrategy); use dynamic")
        self.fsdp_units = shard_policy(self.policy, mesh["data_parallel"])

    def _target_device(self) -> torch.device:
        return self.trainer.strategy.root_device if self._trainer is not None else torch.device("cpu")

    def _warm_start(self, base: torch.nn.Module, tokenizer, device: torch.device) -> None:
        """Supervised warm-start on rank 0 (or from its cache); the other ranks receive rank 0's weights."""
        strategy = self.trainer.strategy if self._trainer is not None else None
        is_zero = strategy is None or strategy.global_rank == 0
        if is_zero:
            pairs = [] if self.warm_start_config.init_from else self._warm_start_pairs()
            if pairs:
                log.info(
                    "Warm-start: supervised training on %d reference solutions (up to %.0f s)",
                    len(pairs),
                    self.warm_start_config.max_seconds,
                )
            self.warm_start_result = warm_start(base, tokenizer, pairs, self.warm_start_config, device)
            base.to("cpu")
        if strategy is not None and strategy.world_size > 1:
            state = strategy.broadcast({k: v.cpu() for k, v in base.state_dict().items()} if is_zero else None, src=0)
            base.load_state_dict(state)
            self.warm_start_result = strategy.broadcast(self.warm_start_result, src=0)
        result = self.warm_start_result
        log.info(
            "Warm-start done: %d steps, %.0f s, loss %.4f%s",
            result.steps,
            result.seconds,
            result.final_loss,
            " (from cache)" if result.from_cache else "",
        )

    def _warm_start_pairs(self) -> list[tuple[str, str]]:
        examples = self.task.warmstart_examples(self.warm_start_config.num_examples, self.warm_start_config.seed)
        pairs = []
        for example in examples:
            solution = self.task.solution(example)
            if solution is not None:
                pairs.append((self.prompts_text(example), solution))
        return pairs

    def prompts_text(self, example: dict) -> str:
        """The exact text the policy continues from for this example."""
        return self.prompts.render(self.task.prompt(example))

    def configure_callbacks(self):
        from insight_lightning.selection_callback import SelectionCallback

        return [SelectionCallback(histogram_every_n_steps=self.log_config.histogram_every_n_steps)]

    def on_fit_start(self) -> None:
        if self.warm_start_result is not None and self.global_step == 0:
            for step, loss in self.warm_start_result.losses:
                log_scalars(self.trainer, {"warmstart/loss": loss}, step)
            log_scalars(self.trainer, {"warmstart/seconds": self.warm_start_result.seconds}, 0)

    def configure_optimizers(self):
        params = [p for p in self.policy.parameters() if p.requires_grad]
        opt = torch.optim.AdamW(
            params, lr=self.optim.lr, weight_decay=self.optim.weight_decay, betas=tuple(self.optim.betas)
        )
        total = self.trainer.max_steps if self._trainer is not None and self.trainer.max_steps > 0 else None
        schedule = torch.optim.lr_scheduler.LambdaLR(opt, _lr_lambda(self.optim, total))
        return [opt], [{"scheduler": schedule, "interval": "step"}]

    # ----------------------------------------------------------------------------------------------- rollouts
    def sample(self, examples: list[dict], n: int, params: SamplingParams) -> tuple[RolloutBatch, list[str]]:
        """n completions per example ([len(examples) * n] rows, example-major) and their decoded texts."""
        texts = [self.prompts_text(e) for e in examples]
        prompt_ids, prompt_mask = self.prompts.encode(texts, self.device)  # [b, P]
        prompt_ids = prompt_ids.repeat_interleave(n, dim=0)  # [b*n, P]
        prompt_mask = prompt_mask.repeat_interleave(n, dim=0)
        chunk = self.rollout.batch_size or prompt_ids.shape[0]
        with unsharded_for_generation(self.fsdp_units):
            parts = [
                self.engine.generate(self.policy, prompt_ids[i : i + chunk], prompt_mask[i : i + chunk], params)
                for i in range(0, prompt_ids.shape[0], chunk)
            ]
        rollout = concat_rollouts(parts, self.tokenizer.pad_token_id)
        completions = self.tokenizer.batch_decode(rollout.completion_ids, skip_special_tokens=True)
        return rollout, completions

    # ----------------------------------------------------------------------------------------------- training
    def transfer_batch_to_device(self, batch, device, dataloader_idx: int):
        return batch  # batches are examples (Python data); token ids are built on the device in sample()

    def training_step(self, batch: PromptBatch, batch_idx: int) -> dict:
        k = self.grpo.group_size
        started = time.perf_counter()
        step = self._collect_rollouts(batch)
        rollout_s = time.perf_counter() - started

        started = time.perf_counter()
        rewards = step.scores.rewards.to(self.device)
        advantages = group_advantages(rewards, self.grpo.normalize_std).reshape(-1)  # [b*K]
        update = self._update_policy(step.rollout, advantages)
        self.lr_schedulers().step()
        update_s = time.perf_counter() - started

        tokens = step.generated_tokens  # completion tokens of every sequence generated this step
        self.rollouts_generated += step.outcomes["trials"].sum().item()
        self.last_step_times = {
            "rollout_s": rollout_s,
            "update_s": update_s,
            "sequences": float(step.outcomes["trials"].sum()),
            "tokens": tokens,
            "tok_per_s": tokens / max(rollout_s, 1e-9),
        }
        scores = step.scores
        metrics = {
            "train/reward": scores.rewards.mean(),
            "train/accuracy": scores.correct.float().mean(),
            "train/frac_all_correct": scores.correct.all(dim=1).float().mean(),
            "train/frac_all_wrong": (~scores.correct.any(dim=1)).float().mean(),
            "train/response_len": step.rollout.completion_mask.sum(dim=1).float().mean().cpu(),
            "train/truncated_prompts": torch.tensor(float(self.prompts.last_truncated)),
            "train/rollouts_total": torch.tensor(float(self.rollouts_generated)),
            "time/rollout_s": torch.tensor(rollout_s),
            "time/update_s": torch.tensor(update_s),
            "time/rollout_tok_per_s": torch.tensor(self.last_step_times["tok_per_s"]),
            "train/lr": torch.tensor(self.optimizers().param_groups[0]["lr"]),
            **step.extra_metrics,
            **update,
        }
        self._log_metrics(metrics)
        self._maybe_log_text(step.examples, step.completions, scores.rewards, k)
        return step.outcomes

    def _collect_rollouts(self, batch: PromptBatch) -> StepRollouts:
        """Roll out the step's prompts; a sampler with max_extra_rounds > 0 (dynamic sampling) gets fresh prompts
        until every rank has as many informative groups as prompts, or the cap is hit."""
        k, params, sampler = self.grpo.group_size, self.rollout, batch.sampler
        examples = list(batch.examples)
        rollout, completions = self.sample(examples, k, params)
        scores = score_completions(self.task, completions, examples, k)
        rounds, wanted = 0, len(batch.examples)
        if sampler.max_extra_rounds > 0:
            parts, texts, scored = [rollout], [completions], [scores]
            keep = sampler.informative(scores.rewards)  # [b]
            # Every rank takes the same decision (one collective per round), so all ranks draw alike.
            while rounds < sampler.max_extra_rounds and self._ranks_short_of(wanted, int(keep.sum())):
                more = batch.selection.draw()
                more_rollout, more_texts = self.sample(more, k, params)
                more_scores = score_completions(self.task, more_texts, more, k)
                examples += more
                parts.append(more_rollout)
                texts.append(more_texts)
                scored.append(more_scores)
                keep = torch.cat([keep, sampler.informative(more_scores.rewards)])
                rounds += 1
            rollout = concat_rollouts(parts, self.tokenizer.pad_token_id)
            completions = [t for chunk in texts for t in chunk]
            scores = GroupScores.cat(scored)
        all_scores, all_examples = scores, examples
        generated_tokens = float(rollout.completion_mask.sum())
        if sampler.max_extra_rounds > 0:
            # Train on `wanted` groups: informative ones first, then (cap hit) uninformative ones, whose advantage is 0.
            groups = torch.sort((~keep).long(), stable=True).indices[:wanted]  # [wanted]
            rows = (groups[:, None] * k + torch.arange(k)).reshape(-1)  # [wanted*K]
            rollout = rollout.select(rows.to(rollout.prompt_ids.device))
            completions = [completions[i] for i in rows.tolist()]
            scores = scores.select(groups)
            examples = [examples[i] for i in groups.tolist()]
        ids = torch.tensor([e["id"] for e in all_examples], dtype=torch.long)
        outcomes = {"ids": ids, "successes": all_scores.correct.sum(dim=1), "trials": torch.full_like(ids, k)}
        extra = {}
        if sampler.max_extra_rounds > 0:
            extra = {
                "selection/extra_rounds": torch.tensor(float(rounds)),
                "selection/extra_rollouts": torch.tensor(float((len(all_examples) - wanted) * k)),
                "selection/informative_frac": keep.float().mean(),
            }
        return StepRollouts(rollout, completions, scores, examples, outcomes, generated_tokens, extra)

    def _ranks_short_of(self, wanted: int, informative: int) -> bool:
        """Whether any rank has fewer than `wanted` informative groups."""
        shortfall = torch.tensor(float(max(0, wanted - informative)), device=self.device)
        if self._trainer is not None and self.trainer.world_size > 1:
            shortfall = self.trainer.strategy.reduce(shortfall, reduce_op="sum")
        return bool(shortfall > 0)

    def _update_policy(self, rollout: RolloutBatch, advantages: Tensor) -> dict[str, Tensor]:
        """Mini-batch clipped policy-gradient updates on one step's rollouts; returns detached metrics."""
        cfg = self.grpo
        opt = self.optimizers()
        input_ids, attention, scored = rollout.input_ids, rollout.attention_mask, rollout.scored_mask  # [B, L]
        num_rows = input_ids.shape[0]
        rows_per_update = (cfg.mini_batch_size or num_rows // cfg.group_size) * cfg.group_size
        updates_per_pass = math.ceil(num_rows / rows_per_update)
        old_logp = None
        if cfg.epochs * updates_per_pass > 1:  # off-policy after the first update: keep the sampling policy's log-probs
            old_logp = self._logprobs_no_grad(input_ids, attention, scored)
        sums = torch.zeros(6, device=self.device, dtype=torch.float64)  # pg, clipped, kl, entropy, tokens, grad_norm
        params = [p for p in self.policy.parameters() if p.requires_grad]
        updates_done, total_updates = 0, cfg.epochs * updates_per_pass
        for _ in range(cfg.epochs):
            for start in range(0, num_rows, rows_per_update):
                rows = slice(start, min(start + rows_per_update, num_rows))
                normalizer = loss_normalizer(scored[rows], cfg.loss_aggregation, self.rollout.max_new_tokens)
                starts = range(rows.start, rows.stop, cfg.micro_batch_size)
                for micro in starts:
                    mb = slice(micro, min(micro + cfg.micro_batch_size, rows.stop))
                    # Gradients are all-reduced across ranks only on the last micro-batch of an update.
                    last = micro == starts[-1]
                    with opt.toggle_model(sync_grad=last), gradient_sync(self.fsdp_units, last):
                        sums[:5] += self._backward_micro_batch(
                            input_ids[mb],
                            attention[mb],
                            scored[mb],
                            advantages[mb],
                            None if old_logp is None else old_logp[mb],
                            normalizer,
                        )
                if cfg.max_grad_norm > 0:
                    norm = torch.nn.utils.clip_grad_norm_(params, cfg.max_grad_norm)
                    sums[5] += (norm.full_tensor() if isinstance(norm, DTensor) else norm).double()
                updates_done += 1
                if updates_done == total_updates:
                    opt.step()  # counted by Lightning: trainer.global_step is the number of RL steps
                else:
                    self.trainer.strategy.optimizer_step(opt.optimizer, closure=lambda: None)
                opt.zero_grad(set_to_none=True)
        tokens = sums[4].clamp(min=1)
        metrics = {
            "train/pg_loss": sums[0] / tokens,
            "train/clip_frac": sums[1] / tokens,
            "train/entropy": sums[3] / tokens,
            "train/grad_norm": sums[5] / (cfg.epochs * updates_per_pass),
        }
        if cfg.kl_coef > 0:
            metrics["train/kl"] = sums[2] / tokens
        return metrics

    def _backward_micro_batch(self, input_ids, attention, scored, advantages, old_logp, normalizer) -> Tensor:
        cfg = self.grpo
        logp, entropy = sequence_logprobs(
            self.policy, input_ids, attention, scored, self.rollout.temperature, cfg.logprob_chunk_size, True
        )  # [b, L] each
        old = logp.detach() if old_logp is None else old_logp
        pg, clipped = policy_loss(logp, old, advantages, cfg.clip_low, cfg.clip_high, cfg.dual_clip)  # [b, L]
        loss_tok = pg
        kl = torch.zeros_like(pg)
        if cfg.kl_coef > 0:
            kl = kl_k3(logp, self._reference_logprobs(input_ids, attention, scored))
            loss_tok = loss_tok + cfg.kl_coef * kl
        if cfg.entropy_coef > 0:
            loss_tok = loss_tok - cfg.entropy_coef * entropy
        self.manual_backward(aggregate_loss(loss_tok, scored, cfg.loss_aggregation, normalizer))
        mask = scored.to(pg.dtype)
        with torch.no_grad():
            return torch.stack(
                [(pg * mask).sum(), (clipped * mask).sum(), (kl * mask).sum(), (entropy * mask).sum(), mask.sum()]
            ).double()

    @torch.no_grad()
    def _logprobs_no_grad(self, input_ids: Tensor, attention: Tensor, scored: Tensor) -> Tensor:
        step = self.grpo.micro_batch_size
        parts = [
            sequence_logprobs(
                self.policy,
                input_ids[i : i + step],
                attention[i : i + step],
                scored[i : i + step],
                self.rollout.temperature,
                self.grpo.logprob_chunk_size,
            )[0]
            for i in range(0, input_ids.shape[0], step)
        ]
        return torch.cat(parts)

    @torch.no_grad()
    def _reference_logprobs(self, input_ids: Tensor, attention: Tensor, scored: Tensor) -> Tensor:
        """Log-probs under the frozen base: the same weights with the LoRA adapter switched off (no copy)."""
        with self.policy.disable_adapter():
            return sequence_logprobs(
                self.policy, input_ids, attention, scored, self.rollout.temperature, self.grpo.logprob_chunk_size
            )[0]

    def on_train_batch_end(self, outputs, batch, batch_idx: int) -> None:
        # Reaching max_steps requests a stop, which also runs a last validation (Lightning validates on stop),
        # unless the regular validation interval falls on this step anyway.
        if not self.validation.at_end or not 0 < self.trainer.max_steps <= self.global_step:
            return
        interval = self.trainer.val_check_batch
        regular = isinstance(interval, int) and self.global_step % interval == 0
        if not regular:
            self.trainer.should_stop = True

    # ----------------------------------------------------------------------------------------------- validation
    def on_validation_epoch_start(self) -> None:
        # Validation samples from its own copy of the RNG, so that it never changes the training trajectory.
        self._val_rng = capture_rng_state()
        splits = len(self.trainer.datamodule.val_splits) if self.trainer.datamodule is not None else 1
        # per split: correct, samples, greedy correct, problems, reward
        self._val_sums = torch.zeros(splits, 5, dtype=torch.float64)

    def validation_step(self, batch: list[dict], batch_idx: int, dataloader_idx: int = 0) -> None:
        if self.trainer.sanity_checking and (self.global_step > 0 or not self.validation.before_training):
            return  # the pre-RL validation runs only at step 0
        cfg = self.validation
        sums = self._val_sums[dataloader_idx]
        n = cfg.samples_per_problem
        max_new = cfg.max_new_tokens or self.rollout.max_new_tokens
        real = torch.tensor([not e.get("_padding", False) for e in batch])  # [b]
        _, completions = self.sample(batch, n, SamplingParams(max_new, cfg.temperature, cfg.top_p, 0))
        sampled = score_completions(self.task, completions, batch, n)  # [b, n]
        sums[0] += sampled.correct[real].sum()
        sums[1] += real.sum() * n
        sums[4] += sampled.rewards[real].sum().double()
        if cfg.greedy:
            _, completions = self.sample(batch, 1, SamplingParams(max_new, 0.0))
            greedy = score_completions(self.task, completions, batch, 1)
            sums[2] += greedy.correct[real].sum()
            sums[3] += real.sum()

    def on_validation_epoch_end(self) -> None:
        restore_rng_state(self._val_rng)
        sums = self.trainer.strategy.reduce(self._val_sums.to(self.device), reduce_op="sum").cpu()  # [splits, 5]
        if sums[:, 1].sum() == 0:
            return
        names = self.trainer.datamodule.val_splits if self.trainer.datamodule is not None else ["test"]
        prefix = "test" if self.trainer.testing else "val"
        metrics = _accuracy_metrics(prefix, sums.sum(dim=0))  # all splits together, weighted by problems
        if len(names) > 1:
            for name, split_sums in zip(names, sums):
                metrics.update(_accuracy_metrics(f"{prefix}/{name}", split_sums))
        log.info(
            "%s at step %d: %s",
            "Test" if self.trainer.testing else "Validation",
            self.global_step,
            ", ".join(f"{k} {v:.4f}" for k, v in metrics.items()),
        )
        log_scalars(self.trainer, metrics, self.global_step)
        if not self.trainer.sanity_checking:  # visible to callbacks (e.g. ModelCheckpoint(monitor="val/accuracy"))
            self.log_dict({k: torch.tensor(v) for k, v in metrics.items()}, logger=False, sync_dist=False)

    # `test` scores the same splits the same way, under test/ tags
    def on_test_epoch_start(self) -> None:
        self.on_validation_epoch_start()

    def test_step(self, batch: list[dict], batch_idx: int, dataloader_idx: int = 0) -> None:
        self.validation_step(batch, batch_idx, dataloader_idx)

    def on_test_epoch_end(self) -> None:
        self.on_validation_epoch_end()

    # ----------------------------------------------------------------------------------------------- checkpoints
    def _persisted_keys(self) -> set[str]:
        """Trainable weights; with the in-process tiny model also its (warm-started) base, which no hub can restore."""
        if self.policy_config.is_tiny:
            return set(self.state_dict().keys())
        return {name for name, p in self.named_parameters() if p.requires_grad}

    def on_save_checkpoint(self, checkpoint: dict) -> None:
        state = checkpoint["state_dict"]
        # A sharded (distributed) FSDP2 checkpoint keeps every weight: its loader asks for the model's full key set.
        if not any(isinstance(v, DTensor) for v in state.values()):
            keep = self._persisted_keys()
            state = checkpoint["state_dict"] = {k: v for k, v in state.items() if k in keep}
        checkpoint["insight_lightning"] = {
            "rng_per_rank": self._rng_states_of_all_ranks(),
            "policy": asdict(self.policy_config),
            "rollouts_generated": self.rollouts_generated,
            "weights": sorted(state),
        }

    def on_load_checkpoint(self, checkpoint: dict) -> None:
        extra = checkpoint.get("insight_lightning", {})
        # FSDP2 loads the weights itself and hands this hook the checkpoint without them: use the saved key list.
        saved = checkpoint["state_dict"] if "state_dict" in checkpoint else extra.get("weights", [])
        missing = sorted(self._persisted_keys() - set(saved))
        if missing:
            raise ValueError(
                f"The checkpoint lacks {len(missing)} weights this policy trains (e.g. {missing[0]}): it was written "
                "for a different model or adapter configuration."
            )
        per_rank = extra.get("rng_per_rank") or [extra.get("rng")]
        # Ranks sample different prompts, so their generators drift apart (a rank whose sequences end early draws
        # fewer tokens): each rank restores its own stream; with a different number of ranks, rank 0's.
        world_size = self.trainer.world_size if self._trainer is not None else 1
        restore_rng_state(per_rank[self.global_rank] if len(per_rank) == world_size else per_rank[0])
        self.rollouts_generated = int(extra.get("rollouts_generated", 0))

    def _rng_states_of_all_ranks(self) -> list[dict]:
        """Every rank's generator states, in rank order (Lightning dumps checkpoints on all ranks, rank 0 writes)."""
        state = capture_rng_state()
        if self._trainer is None or self.trainer.world_size == 1 or not torch.distributed.is_initialized():
            return [state]
        states: list[dict | None] = [None] * self.trainer.world_size
        torch.distributed.all_gather_object(states, state)
        return states

    # ----------------------------------------------------------------------------------------------- logging
    def _log_metrics(self, metrics: dict[str, Tensor]) -> None:
        """Average across ranks with one collective, then log at step = RL steps done; reward and accuracy also go
        to the progress bar."""
        keys = list(metrics)
        stacked = torch.stack([torch.as_tensor(metrics[k], dtype=torch.float64).cpu() for k in keys])
        if self.trainer.world_size > 1:
            stacked = self.trainer.strategy.reduce(stacked.to(self.device), reduce_op="mean").cpu()
        values = dict(zip(keys, stacked.tolist()))
        log_scalars(self.trainer, values, self.global_step)
        self.log_dict({"reward": values["train/reward"], "acc": values["train/accuracy"]}, prog_bar=True, logger=False)

    def _maybe_log_text(self, batch: list[dict], completions: list[str], rewards: Tensor, k: int) -> None:
        every = self.log_config.text_samples_every_n_steps
        experiment = tensorboard(self.trainer)
        if experiment is None or not every or (self.global_step % every and self.global_step != 1):
            return
        rows = []
        for i in range(min(self.log_config.num_text_samples, len(completions))):
            prompt = self.prompts_text(batch[i // k])
            rows.append(f"**reward {float(rewards.reshape(-1)[i]):.2f}**\n\n```\n{prompt}{completions[i]}\n```")
        experiment.add_text("samples", "\n\n---\n\n".join(rows), self.global_step)


def _accuracy_metrics(prefix: str, sums: Tensor) -> dict[str, float]:
    """accuracy (pass@1 over samples), reward and greedy accuracy from [correct, samples, greedy, problems, reward]."""
    metrics = {f"{prefix}/accuracy": float(sums[0] / sums[1]), f"{prefix}/reward": float(sums[4] / sums[1])}
    if sums[3] > 0:
        metrics[f"{prefix}/accuracy_greedy"] = float(sums[2] / sums[3])
    return metrics


def _lr_lambda(cfg: OptimizerConfig, total_steps: int | None):
    if cfg.schedule not in ("constant", "linear", "cosine"):
        raise ValueError(f"optimizer.schedule must be constant, linear or cosine, got '{cfg.schedule}'")

    def factor(step: int) -> float:
        if cfg.warmup_steps and step < cfg.warmup_steps:
            return (step + 1) / cfg.warmup_steps
        if cfg.schedule == "constant" or not total_steps:
            return 1.0
        progress = min(1.0, (step - cfg.warmup_steps) / max(1, total_steps - cfg.warmup_steps))
        shape = 1.0 - progress if cfg.schedule == "linear" else 0.5 * (1.0 + math.cos(math.pi * progress))
        return cfg.min_lr_ratio + (1.0 - cfg.min_lr_ratio) * shape

    return factor


def _check_settings(grpo: GRPOConfig, policy: PolicyConfig) -> None:
    if grpo.group_size < 2:
        raise ValueError("grpo.group_size must be at least 2: advantages compare completions of the same prompt")
    if grpo.loss_aggregation not in LOSS_AGGREGATIONS:
        raise ValueError(
            f"grpo.loss_aggregation must be one of {sorted(LOSS_AGGREGATIONS)}, got '{grpo.loss_aggregation}'"
        )
    if grpo.kl_coef > 0 and policy.lora is None:
        raise ValueError("grpo.kl_coef > 0 needs a LoRA policy: the reference is the base with the adapter disabled")
    if grpo.mini_batch_size is not None and grpo.mini_batch_size <= 0:
        raise ValueError("grpo.mini_batch_size must be positive or null")
    if grpo.micro_batch_size <= 0 or grpo.epochs <= 0:
        raise ValueError("grpo.micro_batch_size and grpo.epochs must be positive")
