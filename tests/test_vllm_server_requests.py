"""The vLLM server engine's request layer against a stand-in HTTP server (no vLLM needed): timeouts, retries with
backoff to a deadline, a restarted server that lost the adapter, unloading what a restart removed. The CI's vLLM stage
runs the same faults against a real vLLM server (tests/test_vllm_engine.py)."""

from __future__ import annotations

import json
import logging
import os
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from insight_lightning.rollout.vllm_server import VLLMServerEngine
from insight_lightning.rollout.vllm_sync import RolloutEngineError, VLLMSettings


class StandIn:
    """Answers like a vLLM server for one base model; `fail` lists what the next requests get instead."""

    def __init__(self) -> None:
        self.adapters: set[str] = set()
        self.folders: dict[str, str] = {}  # adapter name: the folder it was loaded from
        self.unloaded: list[tuple[str, bool]] = []  # (name, whether its folder still existed) at each unload
        self.fail: list[str] = []  # "503", "stall" or "close" for each next request
        self.requests: list[tuple[str, str]] = []
        self.stall_s = 5.0
        self.vocab_size = 16  # the served base model: its vocabulary, and log p(token) = -this shift for any token
        self.logprob_shift = 1.0
        stand_in = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args) -> None:
                pass

            def do_GET(self) -> None:
                self.answer("GET", None)

            def do_POST(self) -> None:
                self.answer("POST", json.loads(self.rfile.read(int(self.headers["Content-Length"]))))

            def answer(self, method: str, body: dict | None) -> None:
                stand_in.requests.append((method, self.path))
                if stand_in.fail:
                    fault = stand_in.fail.pop(0)
                    if fault == "stall":
                        time.sleep(stand_in.stall_s)
                        return
                    if fault == "close":
                        self.close_connection = True
                        return
                    return self.reply(int(fault), {"error": {"message": "Internal Server Error"}})
                self.reply(*stand_in.route(self.path, body))

            def reply(self, status: int, payload: dict) -> None:
                data = json.dumps(payload).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def route(self, path: str, body: dict | None) -> tuple[int, dict]:
        if path == "/v1/models":
            return 200, {"data": [{"id": "/models/base"}]}
        if path == "/v1/load_lora_adapter":
            if body["lora_name"] in self.adapters:
                return 400, {"error": {"message": f"The lora adapter '{body['lora_name']}' has already been loaded."}}
            self.adapters.add(body["lora_name"])
            self.folders[body["lora_name"]] = body["lora_path"]
            return 200, {}
        if path == "/v1/unload_lora_adapter":
            self.unloaded.append((body["lora_name"], os.path.isdir(self.folders.get(body["lora_name"], ""))))
            if body["lora_name"] not in self.adapters:
                return 404, {"error": {"message": f"The lora adapter '{body['lora_name']}' cannot be found."}}
            self.adapters.remove(body["lora_name"])
            return 200, {}
        if body.get("echo"):  # the probe: the prompt's log-probs under the base model
            if max(body["prompt"]) >= self.vocab_size:
                return 400, {"error": {"message": f"Token id {max(body['prompt'])} is out of vocabulary"}}
            logprobs = [None] + [-self.logprob_shift] * (len(body["prompt"]) - 1)
            return 200, {"choices": [{"index": 0, "logprobs": {"token_logprobs": logprobs}}]}
        if body["model"] not in self.adapters:
            return 404, {"error": {"message": f"The model `{body['model']}` does not exist."}}
        choices = [{"index": i, "logprobs": {"tokens": ["token_id:2"], "token_logprobs": [-0.5]}} for i in range(2)]
        return 200, {"choices": choices}

    def restart(self) -> None:
        """A restarted server knows no adapter."""
        self.adapters.clear()


class Adapter:
    """save_pretrained of a PeftModel."""

    def save_pretrained(self, folder: str) -> None:
        os.makedirs(folder)


@pytest.fixture
def stand_in():
    server = StandIn()
    yield server
    server.server.shutdown()


def engine_for(stand_in: StandIn, retry_s: float = 30, timeout_s: float = 2) -> VLLMServerEngine:
    settings = VLLMSettings(server_url=stand_in.url, server_timeout_s=timeout_s, server_retry_s=retry_s)
    return VLLMServerEngine("base", settings, [2], 0, lora_rank=8)


def generate(engine: VLLMServerEngine):
    import torch

    from insight_lightning.rollout.engine import SamplingParams

    return engine.generate(Adapter(), torch.tensor([[5, 6]]), torch.tensor([[1, 1]]), SamplingParams(4), n=2)


@pytest.fixture
def waits(monkeypatch) -> list[float]:
    """The engine's backoff waits, recorded instead of slept."""
    import insight_lightning.rollout.vllm_server as module

    recorded = []
    monkeypatch.setattr(module, "sleep", recorded.append)
    return recorded


def test_failed_requests_are_retried_with_backoff_and_each_retry_is_logged(stand_in, caplog, waits):
    engine = engine_for(stand_in, timeout_s=0.5)
    assert engine.model_name == "/models/base"  # the server's name for its base model
    generate(engine)  # the adapter is loaded: the faults below hit the completions
    stand_in.fail = ["503", "close", "stall", "502", "503"]
    started = time.monotonic()
    with caplog.at_level(logging.WARNING, logger="insight_lightning"):
        batch = generate(engine)
    assert batch.completion_ids.tolist() == [[2], [2]]
    assert waits == [1, 2, 4, 8, 10]  # doubling, up to 10 s
    retries = [r.getMessage() for r in caplog.records if "failed" in r.getMessage()]
    assert len(retries) == 5, retries
    assert "HTTP 503" in retries[0] and "try 2 in 1 s" in retries[0] and "timed out" in retries[2]
    assert time.monotonic() - started >= 0.5  # the stalled request was given up after its timeout


def test_past_the_deadline_the_engine_stops_with_one_sentence_naming_the_url(stand_in):
    engine = engine_for(stand_in, retry_s=1.5, timeout_s=0.5)
    stand_in.fail = ["stall"] * 10
    with pytest.raises(RolloutEngineError) as error:
        generate(engine)
    message = str(error.value)
    # the adapter's load failed first; the check of the server that must precede another try did not get through
    assert message.startswith(f"The vLLM server at {stand_in.url} did not answer GET /v1/models for 1.5 s")
    assert "timed out" in message and "--ckpt_path last" in message and "\n" not in message


def test_a_server_restarted_between_steps_gets_the_adapter_again_and_unloading_what_it_lost_is_fine(stand_in, waits):
    engine = engine_for(stand_in)
    generate(engine)
    first = engine.served
    stand_in.restart()  # between steps: the next sync loads a new adapter and unloads one the server forgot
    engine.weights_updated()
    generate(engine)
    assert stand_in.adapters == {engine.served} and engine.served != first
    stand_in.restart()  # between the sync and the completions: the completions name an adapter it lost
    stand_in.fail = ["close"]
    generate(engine)
    assert stand_in.adapters == {engine.served}
    assert stand_in.requests[-4:] == [
        ("POST", "/v1/completions"),  # refused: "The model ... does not exist"
        ("GET", "/v1/models"),  # the same base model?
        ("POST", "/v1/load_lora_adapter"),  # the adapter again
        ("POST", "/v1/completions"),
    ]


def test_an_adapters_files_stay_until_the_server_has_unloaded_it(stand_in):
    """The server may still run a request with the previous adapter (one whose client timed out and retried) and
    read its files again: vLLM's engine dies on an adapter it cannot read, so they go only after the unload."""
    engine = engine_for(stand_in)
    generate(engine)
    first, first_folder = engine.served, stand_in.folders[engine.served]
    engine.weights_updated()
    generate(engine)
    assert stand_in.unloaded == [(first, True)]  # its files were there while the server held it
    assert not os.path.exists(first_folder) and os.path.isdir(stand_in.folders[engine.served])


def test_adapter_folders_keep_one_version_unless_the_caller_removes_the_previous_itself(tmp_path):
    from insight_lightning.rollout.vllm_sync import AdapterFolders

    folders = AdapterFolders(str(tmp_path))
    first, second = folders.write(Adapter(), 0), folders.write(Adapter(), 1)
    assert not first.exists() and second.is_dir()  # the colocated engine's way: one version on disk
    third = folders.write(Adapter(), 2, keep_previous=True)
    assert second.is_dir() and third.is_dir()
    folders.remove(third)  # never the current one
    folders.remove(second)
    assert not second.exists() and third.is_dir()


def test_a_server_that_comes_back_serving_another_model_is_refused_before_any_rollout(stand_in, waits):
    """A server replaced mid-run by one of another base model (same URL): the first request after the outage checks
    the model again, and the run stops in one sentence naming both models, with no rollout from the other model."""
    from insight_lightning.rollout.vllm_server import ModelProbe

    probe = ModelProbe("trainer-base", stand_in.vocab_size, [1, 2, 3, 4], [-1.0] * 3)
    settings = VLLMSettings(server_url=stand_in.url, server_timeout_s=2, server_retry_s=30)
    engine = VLLMServerEngine("trainer-base", settings, [2], 0, lora_rank=8, probe=probe)
    generate(engine)
    stand_in.restart()  # another model now answers at the URL: no adapters, other log-probs
    stand_in.logprob_shift = 1.5
    stand_in.fail = ["close"]  # the outage the engine sees
    engine.weights_updated()
    with pytest.raises(RolloutEngineError) as error:
        generate(engine)
    assert str(error.value).startswith(f"The vLLM server at {stand_in.url} serves `/models/base`, not the trainer's")
    assert "its log-probs of a probe text differ from the trainer's by 0.5 nats a token" in str(error.value)
    rollouts_after = stand_in.requests[stand_in.requests.index(("GET", "/v1/models"), 1) :]
    assert ("POST", "/v1/load_lora_adapter") not in rollouts_after  # checked before its adapter went there
    assert not stand_in.adapters


def test_two_engines_on_one_server_never_share_an_adapter_name(stand_in):
    engines = [engine_for(stand_in) for _ in range(2)]
    for engine in engines:
        generate(engine)
    assert len(stand_in.adapters) == 2  # each rank's engine serves its own


def test_a_server_that_is_not_running_gives_one_clear_sentence():
    from conftest import free_port

    settings = VLLMSettings(server_url=f"http://127.0.0.1:{free_port()}", server_timeout_s=5, server_retry_s=0)
    with pytest.raises(RolloutEngineError, match=r"^No vLLM server answers at http://127\.0\.0\.1:\d+ .*server_url$"):
        VLLMServerEngine("model", settings, [2], 0, 8)
