"""The vLLM server engine (`rollout.engine: vllm_server`): requests to an OpenAI-compatible vLLM server started
elsewhere, which loads each step's adapter from a folder it can read.

The server fails independently of the trainer, so every request has a timeout and is retried with backoff (a refused
or reset connection, a timeout, a 5xx) until `rollout.vllm.server_retry_s` has passed. The engine checks that the
server serves the trainer's base model (same vocabulary, same log-probs of a probe text) when it starts and again
after any outage, and a server restarted between two requests gets the current adapter loaded again.
"""

from __future__ import annotations

import atexit
import http.client
import json
import logging
import time
import urllib.error
import urllib.request
import uuid
from dataclasses import dataclass
from time import sleep  # a name of this module: tests record the backoff instead of waiting

import torch
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

log = logging.getLogger(__name__)

PROBE_TEXT = (
    "The probe checks that the server runs the trainer's base model: 12 + 7 = 19, and the capital of France is Paris."
)
MAX_BACKOFF_S = 10.0


@dataclass
class ModelProbe:
    """What identifies the trainer's base model to a server: its vocabulary size and its log-probs of a text."""

    name: str  # the trainer's base model, as the user named it
    vocab_size: int  # token ids 0 .. vocab_size - 1 are valid (vLLM takes the larger of tokenizer and embedding)
    token_ids: list[int]  # the probe text, tokenized by the trainer's tokenizer
    logprobs: list[float]  # [len(token_ids) - 1] log p(token_i | tokens before it) under the base model


@torch.no_grad()
def probe_of(model: nn.Module, tokenizer, name: str) -> ModelProbe:
    """The probe of the trainer's base model (before any adapter), computed once at start."""
    token_ids = tokenizer(PROBE_TEXT, add_special_tokens=False)["input_ids"][:48]  # a character tokenizer's too
    vocab_size = max(len(tokenizer), model.get_input_embeddings().weight.shape[0])
    device = model.get_input_embeddings().weight.device
    ids = torch.tensor([token_ids], device=device)  # [1, L]
    logits = model(input_ids=ids).logits[0, :-1].float()  # [L-1, V]
    logprobs = logits.log_softmax(-1).gather(-1, ids[0, 1:, None])[:, 0]  # [L-1]
    return ModelProbe(name, vocab_size, token_ids, logprobs.cpu().tolist())


class ServerUnavailable(Exception):
    """No answer, or a 5xx: what a retry may fix."""


class ServerRefused(RolloutEngineError):
    """A 4xx answer: the server is up and said no (callers handle the refusals they expect)."""

    def __init__(self, message: str, status: int, detail: str) -> None:
        super().__init__(message)
        self.status, self.detail = status, detail


class ServerGone(RolloutEngineError):
    """A request failed until the retry deadline passed."""

    def __init__(self, message: str, last: str) -> None:
        super().__init__(message)
        self.last = last


class VLLMServerEngine(SyncedEngine):
    """A client of a vLLM OpenAI-compatible server: token-id prompts in, n completions with log-probs out.

    The server must load the same base model, be started with --enable-lora --max-lora-rank R and
    VLLM_ALLOW_RUNTIME_LORA_UPDATING=True (adapters are loaded at run time) and --logprobs-mode processed_logprobs,
    --max-loras at least the number of trainer ranks (each loads its own adapter under its own name) and
    --max-cpu-loras twice that (each loads its next version before it unloads the last).
    Each step's adapter is written to settings.adapter_dir, which the server must be able to read.

    Args:
        probe: the trainer's base model as a server must reproduce it (None: trust the server, as tests of the
            request layer do).
    """

    def __init__(
        self,
        model_name: str,
        settings: VLLMSettings,
        eos_token_ids: list[int],
        pad_token_id: int,
        lora_rank: int,
        probe: ModelProbe | None = None,
        rank: int = 0,
    ) -> None:
        self.settings = settings
        self.url = settings.server_url.rstrip("/")
        self.model_name = model_name
        self.eos_token_ids = list(eos_token_ids)
        self.pad_token_id = pad_token_id
        self.probe = probe
        self.adapters = AdapterFolders(settings.adapter_dir)
        atexit.register(self.adapters.close)
        self.served: str | None = None  # the adapter the server holds for this engine (from self.adapters.current)
        self.instance = f"policy-{uuid.uuid4().hex[:8]}-rank{rank}"  # unique per engine: ranks share one server
        self.outage = False  # a request failed since the last check that the server serves our base model
        try:
            self.check_server()
        except ServerGone as gone:
            raise RolloutEngineError(
                f"No vLLM server answers at {self.url} ({gone.last}; tried for model.rollout.vllm.server_retry_s="
                f"{settings.server_retry_s:g} s): start one (docs/vllm.md) or set "
                "model.rollout.vllm.server_url"
            ) from None

    # ------------------------------------------------------------------------------------------------ requests
    def _send(self, method: str, path: str, body: dict | None) -> dict:
        """One attempt; ServerUnavailable for what a retry may fix, ServerRefused for a 4xx."""
        data = None if body is None else json.dumps(body).encode()
        headers = {"Content-Type": "application/json"}
        request = urllib.request.Request(self.url + path, data=data, method=method, headers=headers)
        try:
            with urllib.request.urlopen(request, timeout=self.settings.server_timeout_s) as response:
                text = response.read().decode()
        except urllib.error.HTTPError as err:
            detail = " ".join(err.read().decode(errors="replace").split())[:500]
            if err.code >= 500:
                raise ServerUnavailable(f"HTTP {err.code}: {detail}") from None
            message = f"The vLLM server at {self.url} refused {method} {path}: {detail}"
            raise ServerRefused(message, err.code, detail) from None
        except (OSError, http.client.HTTPException) as err:  # refused, reset, timed out (URLError is an OSError)
            reason = getattr(err, "reason", None) or err
            raise ServerUnavailable(str(reason) or type(err).__name__) from None
        try:
            return json.loads(text) if text.strip().startswith(("{", "[")) else {}
        except json.JSONDecodeError:
            return {}

    def _request(self, method: str, path: str, body: dict | None = None) -> dict:
        """The request, retried with backoff while the server is unavailable, up to settings.server_retry_s."""
        deadline = time.monotonic() + self.settings.server_retry_s
        backoff, tries = 1.0, 0
        while True:
            tries += 1
            try:
                return self._send(method, path, body)
            except ServerUnavailable as failure:
                self.outage = True
                left = deadline - time.monotonic()
                if left <= 0:
                    raise ServerGone(
                        f"The vLLM server at {self.url} did not answer {method} {path} for "
                        f"{self.settings.server_retry_s:g} s ({tries} {'try' if tries == 1 else 'tries'}; last: "
                        f"{failure}); the last checkpoint is intact: once the server is back, continue with "
                        "--ckpt_path last (or raise model.rollout.vllm.server_retry_s)",
                        str(failure),
                    ) from None
                wait = min(backoff, left)
                log.warning(
                    "vLLM server at %s: %s %s failed (%s); try %d in %.0f s",
                    self.url,
                    method,
                    path,
                    failure,
                    tries + 1,
                    wait,
                )
                sleep(wait)
                backoff = min(2 * backoff, MAX_BACKOFF_S)

    # ------------------------------------------------------------------------------------------ the served model
    def check_server(self) -> None:
        """The server answers and serves the trainer's base model; otherwise one sentence naming both."""
        models = self._request("GET", "/v1/models")
        served = [m["id"] for m in models.get("data", [])]
        if self.model_name not in served and served:
            self.model_name = served[0]  # the server's name for its base model (a folder path, usually)
        if self.probe is not None:
            self.check_probe(self.probe)
        self.outage = False

    def _prompt_logprobs(self, token_ids: list[int]) -> list[float | None]:
        body = {"model": self.model_name, "prompt": token_ids, "max_tokens": 1, "temperature": 1.0}
        body.update(echo=True, logprobs=0)  # echo: the log-prob of every prompt token given those before it
        response = self._request("POST", "/v1/completions", body)
        return response["choices"][0]["logprobs"]["token_logprobs"][: len(token_ids)]

    def check_probe(self, probe: ModelProbe) -> None:
        def other_model(why: str) -> RolloutEngineError:
            return RolloutEngineError(
                f"The vLLM server at {self.url} serves `{self.model_name}`, not the trainer's base model "
                f"`{probe.name}` ({why}): start the server with the trainer's base model"
            )

        last = probe.vocab_size - 1
        try:
            served = self._prompt_logprobs([*probe.token_ids, last])  # the largest id must be in its vocabulary
        except ServerRefused as refusal:
            if "out of vocabulary" not in refusal.detail:
                raise
            raise other_model(f"its vocabulary has fewer than the trainer's {probe.vocab_size} tokens") from None
        try:
            self._prompt_logprobs([probe.vocab_size])  # ... and one past it must not be
        except ServerRefused as refusal:
            if "out of vocabulary" not in refusal.detail:
                raise
        else:
            raise other_model(f"its vocabulary has more than the trainer's {probe.vocab_size} tokens")
        diffs = [abs(a - b) for a, b in zip(served[1 : len(probe.token_ids)], probe.logprobs, strict=True)]
        mean = sum(diffs) / max(len(diffs), 1)
        tolerance = self.settings.server_probe_tolerance
        if not mean <= tolerance:
            raise other_model(
                f"its log-probs of a probe text differ from the trainer's by {mean:.3g} nats a token on average, "
                f"over the tolerance model.rollout.vllm.server_probe_tolerance={tolerance:g}"
            )

    def recover(self) -> None:
        """After an outage: the same base model still, and this engine's adapter loaded (a restart loses it)."""
        self._check_after_outage()
        if self.served is not None:
            self._load(self.served, str(self.adapters.current))

    def _check_after_outage(self) -> None:
        """The server that answers after an outage may be another one (replaced by another model): check it."""
        self.check_server()
        log.warning("vLLM server at %s is back and serves the same base model", self.url)

    # ------------------------------------------------------------------------------------------------ adapters
    def _load(self, name: str, folder: str) -> None:
        body = {"lora_name": name, "lora_path": folder}
        try:
            try:
                self._send("POST", "/v1/load_lora_adapter", body)
            except ServerUnavailable as failure:
                # checked before the adapter goes there: another model's server may refuse it in its own words, or
                # take it (completions need no such care: they name an adapter only this engine loads)
                log.warning(
                    "vLLM server at %s: loading adapter %s failed (%s); checking the server", self.url, name, failure
                )
                self.outage = True
                self._check_after_outage()
                self._request("POST", "/v1/load_lora_adapter", body)
        except ServerRefused as refusal:
            if "has already been loaded" not in refusal.detail:  # a retried load whose first try had landed
                raise

    def _unload(self, name: str) -> None:
        try:
            self._request("POST", "/v1/unload_lora_adapter", {"lora_name": name})
        except ServerRefused as refusal:
            if refusal.status != 404:  # a restarted server no longer has it: nothing to unload
                raise

    def push_weights(self, model: nn.Module) -> None:
        """Load the current adapter into the server under a new name (and unload the previous one)."""
        if self.outage:
            self.recover()
        previous_folder = self.adapters.current
        # The previous version's files stay until the server has unloaded it: a request it still runs (one whose
        # client timed out and retried) may need them again, and vLLM's engine dies on an adapter it cannot read.
        folder = str(self.adapters.write(model, self.version, keep_previous=True))
        name = f"{self.instance}-v{self.version}"
        self._load(name, folder)
        previous, self.served = self.served, name
        if previous is not None:
            self._unload(previous)
        self.adapters.remove(previous_folder)

    def generate(
        self, model: nn.Module, prompt_ids: Tensor, prompt_mask: Tensor, params: SamplingParams, n: int = 1
    ) -> RolloutBatch:
        self.sync(model)
        body = vllm_sampling_params(params, n, self.eos_token_ids)
        body.pop("seed")
        body.update(
            prompt=prompt_token_lists(prompt_ids, prompt_mask),
            return_tokens_as_token_ids=True,
            skip_special_tokens=False,
        )
        response = self._completions(body)
        choices = sorted(response["choices"], key=lambda c: c["index"])  # index = prompt * n + sample
        token_ids, logprobs = [], []
        for choice in choices:
            tokens = choice["logprobs"]["tokens"]  # "token_id:123" with return_tokens_as_token_ids
            token_ids.append([int(t.rsplit(":", 1)[1]) for t in tokens])
            logprobs.append([float(x) for x in choice["logprobs"]["token_logprobs"]])
        return completions_batch(prompt_ids, prompt_mask, n, token_ids, logprobs, self.eos_token_ids, self.pad_token_id)

    def _completions(self, body: dict) -> dict:
        """The completions of the current adapter; a server that restarted (and lost it) is checked and reloaded."""
        for _ in range(3):
            if self.outage:
                self.recover()
            try:
                return self._request("POST", "/v1/completions", {**body, "model": self.served})
            except ServerRefused as refusal:
                if refusal.status != 404:
                    raise
                self.outage = True  # "the model does not exist": a restarted server without our adapter
        raise RolloutEngineError(f"The vLLM server at {self.url} keeps losing adapter {self.served} after loading it")
