"""GRPOModule: the Lightning hooks of GRPO training; each step is experience -> advantages -> update -> outcomes."""

from __future__ import annotations

import copy
import logging
import os
import time
from dataclasses import asdict

import lightning as L
import torch

from insight_lightning.checkpoints.persisted import load_training_state, persisted_keys, save_training_state
from insight_lightning.checkpoints.preemption import PreemptionCheckpoint
from insight_lightning.policy.divergence import check_finite_weights
from insight_lightning.policy.loading import PolicyConfig
from insight_lightning.rollout.config import RolloutConfig
from insight_lightning.rollout.vllm_sync import RolloutEngineError
from insight_lightning.selection.callback import SelectionCallback
from insight_lightning.selection.data_module import PromptBatch
from insight_lightning.selection.scalar_logging import log_scalars
from insight_lightning.training.config import GRPOConfig, LoggingConfig, OptimizerConfig, ValidationConfig
from insight_lightning.training.evaluation import ValidationPass, score_batch, split_metrics
from insight_lightning.training.experience import collect_experience
from insight_lightning.training.grpo import group_advantages
from insight_lightning.training.host_memory import mmapped_large_blocks
from insight_lightning.training.learner import Learner
from insight_lightning.training.optimization import build_optimizer
from insight_lightning.training.policy import Policy, build_policy
from insight_lightning.training.setting_checks import (
    check_model_settings,
    check_sampling_settings,
    check_strategy_settings,
    check_validation_settings,
)
from insight_lightning.training.step_report import StepLogger, StepTimes
from insight_lightning.training.warmstart import WarmStartConfig, WarmStartResult, log_warm_start, shared_warm_start
from tasks import Task

log = logging.getLogger(__name__)


class GRPOModule(L.LightningModule):
    """GRPO with a LoRA (or fully trained) causal LM on a task with a verifier.

    Args:
        policy: the model: 'tiny' (offline, in-process) or a Hugging Face name/path, LoRA settings, dtype.
        grpo: the objective: group size K, clipping, KL and entropy terms, loss aggregation, mini-batches.
        rollout: sampling of the training completions.
        optimizer: AdamW and its learning-rate schedule.
        validation: how the validation split is scored.
        warm_start: supervised training on the task's reference solutions before RL (null: none).
        logging: text samples in TensorBoard.
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
        # copies: the defaults above are shared instances
        self.policy_config = copy.deepcopy(policy)
        self.grpo = copy.deepcopy(grpo)
        self.rollout = copy.deepcopy(rollout)
        self.optim = copy.deepcopy(optimizer)
        self.validation = copy.deepcopy(validation)
        self.warm_start_config = copy.deepcopy(warm_start)
        self.log_config = copy.deepcopy(logging)
        self.task = task
        check_model_settings(self.policy_config, self.grpo)
        check_sampling_settings(self.rollout)
        check_validation_settings(self.validation, self.rollout)
        self.automatic_optimization = False
        self.strict_loading = False  # checkpoints hold only the trained weights, not the frozen base
        self.save_hyperparameters(ignore=["task"])
        correction = self.rollout.resolved_correction(self.grpo.rollout_correction)
        self.learner = Learner(self.grpo, self.rollout.temperature, self.rollout.max_new_tokens, correction)
        self.policy: Policy | None = None
        self.warm_start_result: WarmStartResult | None = None
        self.last_step_times: StepTimes | None = None
        self.step_logger = StepLogger(grpo.group_size, self.log_config, grpo.max_steps_without_signal_at_start)
        self.rollouts_generated = 0  # sequences sampled for training so far, extra dynamic-sampling rounds included
        self._validation: ValidationPass | None = None

    # ----------------------------------------------------------------------------------------------- set-up
    def setup(self, stage: str) -> None:
        # Built here rather than in configure_model: Lightning runs configure_model inside its tensor-init
        # contexts (device, dtype, empty init), which would also wrap, and slow down, the warm-start training.
        strategy = self.trainer.strategy if self._trainer is not None else None
        device = strategy.root_device if strategy is not None else torch.device("cpu")
        # before the model is loaded or warm-started
        check_strategy_settings(self.rollout, device, self._device_mesh, strategy)
        self.build_policy()

    def build_policy(self) -> None:
        """The policy (base + adapter, tokenizer, rollout engine); warm-started first when configured."""
        if self.policy is not None:
            return
        if self.task is None:
            raise ValueError("GRPOModule needs a task (the CLI links it from data.task)")
        warm_start = self._warm_start if self.warm_start_config is not None else None
        device = self.trainer.strategy.root_device if self._trainer is not None else torch.device("cpu")
        rank = self.global_rank if self._trainer is not None else 0
        seed = int(os.environ.get("PL_GLOBAL_SEED", "0")) + rank  # the engine's own sampling seed (vLLM), per rank
        self.policy = build_policy(
            self.policy_config,
            self.rollout,
            self.grpo.logprob_chunk_size,
            device,
            warm_start,
            max_completion_tokens=self.validation.max_new_tokens,
            seed=seed,
            prefix_sharing=self.grpo.prefix_sharing,
            rank=rank,
        )

    def _warm_start(self, base: torch.nn.Module, prompts) -> None:
        strategy = self.trainer.strategy if self._trainer is not None else None
        device = strategy.root_device if strategy is not None else torch.device("cpu")
        self.warm_start_result = shared_warm_start(base, prompts, self.task, self.warm_start_config, device, strategy)

    def configure_model(self) -> None:
        # Under ModelParallelStrategy (FSDP2) Lightning hands the module a device mesh: shard the policy over its
        # data-parallel dimension. Other strategies have no mesh and leave the policy as it is.
        if self._device_mesh is not None and not self.policy.fsdp_units:
            self.policy.shard(self._device_mesh["data_parallel"])

    def configure_callbacks(self) -> list[L.Callback]:
        present = self.trainer.callbacks if self._trainer is not None else []
        missing = [k for k in (SelectionCallback, PreemptionCheckpoint) if not any(isinstance(c, k) for c in present)]
        return [kind() for kind in missing]  # with their defaults; list one in trainer.callbacks to set its options

    def configure_optimizers(self):
        total = self.trainer.max_steps if self._trainer is not None and self.trainer.max_steps > 0 else None
        optimizer, schedule = build_optimizer(self.policy.trainable_parameters(), self.optim, total)
        return [optimizer], [{"scheduler": schedule, "interval": "step"}]

    def on_fit_start(self) -> None:
        if self.warm_start_result is not None and self.global_step == 0:
            log_warm_start(self.trainer, self.warm_start_result)

    # ----------------------------------------------------------------------------------------------- training
    def transfer_batch_to_device(self, batch, device, dataloader_idx: int):
        return batch  # batches are examples (Python data); token ids are built on the device by the policy

    def training_step(self, batch: PromptBatch, batch_idx: int) -> dict:
        faults_before = self.task.verifier_counts()
        started, synced = time.perf_counter(), self.policy.engine.sync_seconds
        try:  # a vLLM server gone past its retries, or replaced by another model, ends the run naming the step
            experience = collect_experience(
                batch, self.policy, self.task, self.grpo.group_size, self.rollout, self._any_rank_short
            )
        except RolloutEngineError as err:
            raise RolloutEngineError(f"Step {self.global_step + 1}: {err}") from None
        rollout_s = time.perf_counter() - started
        weight_sync_s = self.policy.engine.sync_seconds - synced

        started = time.perf_counter()
        advantages = group_advantages(experience.scores.rewards.to(self.device), self.grpo.normalize_std)  # [b, K]
        # off by default: page-faulting every large block afresh made a SmolLM2 update 37% slower (host_memory.py)
        with mmapped_large_blocks(self.grpo.release_update_memory and self.device.type == "cpu"):
            stats = self.learner.update(self, self.policy, experience.rollout, advantages.reshape(-1))
        self.policy.weights_updated()  # an engine with its own copy of the weights syncs before the next rollout
        self.lr_schedulers().step()
        update_s = time.perf_counter() - started

        sequences = experience.sequences_generated
        self.rollouts_generated += sequences
        self.last_step_times = StepTimes(rollout_s, update_s, float(sequences), experience.generated_tokens)
        faults = {name: count - faults_before.get(name, 0) for name, count in self.task.verifier_counts().items()}
        update_metrics = stats.metrics()
        if self.rollout.engine != "hf":
            update_metrics["time/weight_sync_s"] = torch.tensor(weight_sync_s)
        self.step_logger.log(self, experience, update_metrics, faults)
        return {"outcomes": experience.outcomes}  # to SelectionCallback.on_train_batch_end (Lightning wants a dict)

    def _any_rank_short(self, shortfall: int) -> bool:
        """Whether any rank is still short of informative groups (the same answer on every rank)."""
        total = torch.tensor(float(shortfall), device=self.device)
        if self._trainer is not None and self.trainer.world_size > 1:
            total = self.trainer.strategy.reduce(total, reduce_op="sum")
        return bool(total > 0)

    def on_train_batch_end(self, outputs, batch, batch_idx: int) -> None:
        PreemptionCheckpoint.at_step_end(self.trainer)  # after every callback's hook: it saves the whole step
        # Reaching max_steps requests a stop, which also runs a last validation (Lightning validates on stop),
        # unless the regular validation interval falls on this step anyway.
        if not self.validation.at_end or not 0 < self.trainer.max_steps <= self.global_step:
            return
        interval = self.trainer.val_check_batch
        if not (isinstance(interval, int) and self.global_step % interval == 0):
            self.trainer.should_stop = True

    # ----------------------------------------------------------------------------------------------- validation
    def on_validation_epoch_start(self) -> None:
        splits = len(self.trainer.datamodule.val_splits) if self.trainer.datamodule is not None else 1
        self._validation = ValidationPass(splits, self.validation.seed, self.global_step)

    def validation_step(self, batch: list[dict], batch_idx: int, dataloader_idx: int = 0) -> None:
        if self.trainer.sanity_checking and (self.global_step > 0 or not self.validation.before_training):
            return  # the pre-RL validation runs only at step 0
        max_new = self.validation.max_new_tokens or self.rollout.max_new_tokens
        totals = score_batch(self.policy, self.task, batch, self.validation, max_new)
        self._validation.add(dataloader_idx, totals)

    def on_validation_epoch_end(self) -> None:
        totals = self._validation.finish(self.trainer.strategy, self.device)
        if sum(t.samples for t in totals) == 0:
            return
        names = self.trainer.datamodule.val_splits if self.trainer.datamodule is not None else ["test"]
        testing = self.trainer.testing
        metrics = split_metrics("test" if testing else "val", names, totals)
        summary = ", ".join(f"{k} {v:.4f}" for k, v in metrics.items())
        log.info("%s at step %d: %s", "Test" if testing else "Validation", self.global_step, summary)
        log_scalars(self.trainer, metrics, self.global_step)
        if not self.trainer.sanity_checking:  # visible to callbacks (e.g. ModelCheckpoint(monitor="val/accuracy"))
            self.log_dict({k: torch.tensor(v) for k, v in metrics.items()}, logger=False, sync_dist=False)

    # `test` scores the same splits the same way, under test/ tags
    on_test_epoch_start = on_validation_epoch_start
    test_step = validation_step
    on_test_epoch_end = on_validation_epoch_end

    # ----------------------------------------------------------------------------------------------- checkpoints
    def persisted_keys(self) -> set[str]:
        """The weights a checkpoint keeps: the trained ones (with the in-process tiny model, its base too)."""
        return persisted_keys(self, keep_base=self.policy_config.is_tiny)

    def on_save_checkpoint(self, checkpoint: dict) -> None:
        world_size = self.trainer.world_size if self._trainer is not None else 1
        settings = asdict(self.policy_config)
        kept = save_training_state(checkpoint, self.persisted_keys(), world_size, settings, self.rollouts_generated)
        check_finite_weights(kept, self.global_step)

    def on_load_checkpoint(self, checkpoint: dict) -> None:
        world_size = self.trainer.world_size if self._trainer is not None else 1
        self.rollouts_generated = load_training_state(checkpoint, self.persisted_keys(), self.global_rank, world_size)
        if self.policy is not None:
            self.policy.weights_updated()  # the checkpoint's weights replace the engine's copy at the next rollout
