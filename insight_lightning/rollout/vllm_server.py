"""The vLLM server engine (`rollout.engine: vllm_server`): requests to an OpenAI-compatible vLLM server started
elsewhere, which loads each step's adapter from a folder it can read."""

from __future__ import annotations

import atexit
import json
import urllib.error
import urllib.request
import uuid

from torch import Tensor, nn

from insight_lightning.rollout.engine import RolloutBatch, SamplingParams
from insight_lightning.rollout.vllm_sync import (
    AdapterFolders,
    RolloutEngineError,
    SyncedEngine,
    VLLMSettings,
    completions_batch,
    prompt_token_lists,
    vllm_sampling_params,
)


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
