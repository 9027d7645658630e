"""TRL's GRPOTrainer, choosing its prompts with this project's InSight sampler and Beta beliefs (no Lightning).

    pip install -e ".[bench]"          # trl and datasets, an optional extra
    python examples/trl_insight_sampler.py --steps 4

`samplers/` is framework-free: a PromptSelector picks M prompt ids a step from per-prompt Beta beliefs, and
outcomes are folded back with `update`. Two pieces plug it into TRL:
- `SelectorSampler`, a torch Sampler that replaces TRL's RepeatSampler: for every generation batch it asks the
  selector for M ids and yields each K times, in RepeatSampler's layout (each id K times in a row; the block
  repeated num_iterations x steps_per_generation times).
- `BeliefUpdatingReward`, the reward function: TRL passes each completion's dataset columns to it, so the prompt
  id arrives with the completion; it scores with the task's verifier and folds successes and trials into the
  beliefs.
TRL's dataloader (through accelerate) fetches one batch ahead, so a selection can be drawn before the rewards of
the step before have arrived: the beliefs lag at most one step (`SelectorSampler.updates_seen` records it).
"""

from __future__ import annotations

import argparse
import sys
from collections import Counter
from pathlib import Path

import torch
from torch.utils.data import Sampler

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from samplers import Outcomes, PromptSelector, build_sampler  # noqa: E402
from tasks import Task  # noqa: E402


class BeliefUpdatingReward:
    """A TRL reward function: the task's verifier, and every group's outcome folded into the selector's beliefs."""

    def __init__(self, task: Task, examples: list[dict], selector: PromptSelector) -> None:
        self.task, self.examples, self.selector = task, examples, selector
        self.__name__ = f"{type(task).__name__}_reward"  # TRL names its reward logs after the function
        self.rolled_out: list[Counter] = []

    def __call__(self, prompts, completions, prompt_id, **_) -> list[float]:
        scores = self.task.score_many(list(completions), [self.examples[i] for i in prompt_id])
        trials, successes = Counter(prompt_id), Counter(i for i, s in zip(prompt_id, scores) if s.correct)
        ids = sorted(trials)
        self.selector.update(
            Outcomes(
                torch.tensor(ids), torch.tensor([successes[i] for i in ids]), torch.tensor([trials[i] for i in ids])
            )
        )
        self.rolled_out.append(trials)
        return [s.reward for s in scores]


class SelectorSampler(Sampler[int]):
    """Yields `steps` selections of M prompt ids, each id K times in a row, the block `repeat_count` times."""

    def __init__(
        self, selector: PromptSelector, reward: BeliefUpdatingReward, group_size: int, repeat_count: int, steps: int
    ) -> None:
        self.selector, self.reward = selector, reward
        self.group_size, self.repeat_count, self.steps = group_size, repeat_count, steps
        self.selections: list[list[int]] = []
        self.updates_seen: list[int] = []  # how many reward batches had been folded in at each selection

    def __len__(self) -> int:
        return self.steps * self.selector.batch_size * self.group_size * self.repeat_count

    def __iter__(self):
        for _ in range(self.steps):
            self.updates_seen.append(len(self.reward.rolled_out))
            ids = self.selector.select().ids.tolist()
            self.selections.append(ids)
            for _ in range(self.repeat_count):
                for prompt_id in ids:
                    yield from [prompt_id] * self.group_size


def train(steps: int, prompts_per_step: int, group_size: int, pool: int, seed: int, out: str):
    """A few GRPO steps of TRL on the tiny policy and Countdown, with InSight choosing the prompts."""
    from datasets import Dataset
    from peft import LoraConfig
    from trl import GRPOConfig, GRPOTrainer

    from insight_lightning.policy.tiny import TinyModelConfig, build_char_tokenizer, build_tiny_model
    from tasks import CountdownTask

    torch.manual_seed(seed)
    tokenizer = build_char_tokenizer()
    model = build_tiny_model(TinyModelConfig(), tokenizer)
    task = CountdownTask(train_size=pool, test_size=16, template="compact", min_numbers=2, max_numbers=3,
                         max_number=20, max_target=40)  # fmt: skip
    examples = task.build_examples("train")
    dataset = Dataset.from_dict({"prompt": [task.prompt(e) for e in examples], "prompt_id": list(range(pool))})
    selector = PromptSelector(build_sampler("insight"), pool, prompts_per_step, group_size=group_size, seed=seed)
    reward = BeliefUpdatingReward(task, examples, selector)
    config = GRPOConfig(
        output_dir=out, report_to=[], save_strategy="no", logging_steps=1, use_cpu=True, seed=seed, max_steps=steps,
        per_device_train_batch_size=prompts_per_step * group_size, gradient_accumulation_steps=1,
        num_generations=group_size, max_completion_length=24, temperature=1.0, top_p=1.0, top_k=0,
        learning_rate=5e-4, beta=0.0, num_iterations=1, disable_tqdm=True, dataloader_num_workers=0, bf16=False,
    )  # fmt: skip
    trainer = GRPOTrainer(
        model=model, reward_funcs=reward, args=config, train_dataset=dataset, processing_class=tokenizer,
        peft_config=LoraConfig(r=16, lora_alpha=32, target_modules="all-linear", task_type="CAUSAL_LM"),
    )  # fmt: skip
    sampler = SelectorSampler(
        selector, reward, group_size, config.num_iterations * config.steps_per_generation, steps + 1
    )
    trainer._get_train_sampler = lambda dataset=None: sampler  # the one seam: TRL's sampler, ours instead
    trainer.train()
    return selector, sampler, reward


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=4)
    parser.add_argument("--prompts-per-step", type=int, default=4)
    parser.add_argument("--group-size", type=int, default=4)
    parser.add_argument("--pool", type=int, default=64)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default="runs/trl_insight")
    args = parser.parse_args()
    selector, sampler, reward = train(
        args.steps, args.prompts_per_step, args.group_size, args.pool, args.seed, args.out
    )
    for step, (ids, trials) in enumerate(zip(sampler.selections, reward.rolled_out)):
        print(f"step {step}: InSight chose {ids}; TRL rolled out {dict(sorted(trials.items()))}")
    observed = selector.posterior.visits > 0
    folded = int(selector.posterior.evidence.sum().item() - sum(selector.prior) * args.pool)
    print(
        f"beliefs: {int(observed.sum())} of {args.pool} prompts observed, {folded} outcomes folded in, mean "
        f"success rate of the observed {selector.posterior.mean[observed].mean():.3f}; selections made after "
        f"{sampler.updates_seen} reward batches"
    )


if __name__ == "__main__":
    main()
