"""A probe of a policy on candidate prompts: K samples of each, and the share the verifier accepts.

It says which prompts a policy never solves, always solves, or sometimes solves (only those give GRPO a gradient),
before any training: the composition of a pool, from the weights a race starts from.
"""

from __future__ import annotations

import argparse
import json
import time
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import Tensor

from insight_lightning.race.cpu_signature import cpu_signature, describe
from insight_lightning.rollout.engine import SamplingParams
from insight_lightning.rollout.scoring import score_completions
from insight_lightning.training.experience import RolloutPolicy
from tasks import Task


@dataclass
class ProbeResult:
    """What a probe measured of each prompt."""

    solved: Tensor  # [n] int64, samples of each prompt that the verifier accepted
    samples: int  # K_probe, samples drawn of each prompt
    seconds: float  # wall-clock time of the whole probe (generation and verification)

    @property
    def shares(self) -> Tensor:
        """[n] float64: each prompt's solved share, solved / samples."""
        return self.solved.double() / self.samples

    def composition(self) -> dict[str, float | int]:
        """Shares of prompts out of reach (0 of K solved), always solved (K of K) and mixed, and the probe's cost."""
        n = self.solved.numel()
        out_of_reach = int((self.solved == 0).sum())
        solved = int((self.solved == self.samples).sum())
        return {
            "prompts": n,
            "samples": self.samples,
            "out_of_reach": out_of_reach / n,
            "solved": solved / n,
            "mixed": (n - out_of_reach - solved) / n,
            "mean_share": float(self.shares.mean()),
            "seconds_per_1000_prompts": 1000 * self.seconds / n,
        }

    def composition_by_kind(self, examples: list[dict]) -> dict[str, dict[str, float | int]]:
        """composition() of each problem kind among `examples` (the probed rows, in order; math rows carry a
        "kind" such as add or mul); empty when the rows have no kind."""
        if len(examples) != self.solved.numel():
            raise ValueError(f"{len(examples)} rows but the probe measured {self.solved.numel()} prompts")
        kinds = [row.get("kind") for row in examples]
        if None in kinds:
            return {}
        by_kind = {}
        for kind in sorted(set(kinds)):
            rows = torch.tensor([k == kind for k in kinds])
            share = rows.double().mean().item()  # the probe's time is split by the kind's share of the prompts
            by_kind[kind] = ProbeResult(self.solved[rows], self.samples, self.seconds * share).composition()
        return by_kind


def probe(
    policy: RolloutPolicy,
    task: Task,
    examples: list[dict],
    samples: int = 16,
    params: SamplingParams | None = None,
    prompts_per_batch: int = 32,
) -> ProbeResult:
    """Sample every example `samples` times (prompts_per_batch prompts per generate call) and count the solved ones."""
    if samples < 1:
        raise ValueError(f"a probe needs at least one sample per prompt, got {samples}")
    if not examples:
        raise ValueError("a probe needs at least one prompt")
    params = params or SamplingParams()
    started = time.perf_counter()
    solved = []
    for first in range(0, len(examples), prompts_per_batch):
        batch = examples[first : first + prompts_per_batch]
        _, completions = policy.sample([task.prompt(e) for e in batch], samples, params)
        solved.append(score_completions(task, completions, batch, samples).correct.sum(dim=1))  # [b]
    return ProbeResult(torch.cat(solved).long(), samples, time.perf_counter() - started)


def main(argv: list[str] | None = None) -> dict:
    """python -m insight_lightning.race.probe [--samples K] [--split train] [--out FILE] -- FIT ARGUMENTS"""
    parser = argparse.ArgumentParser(
        prog="python -m insight_lightning.race.probe",
        description="Sample every prompt of a split K times from the policy that a fit's config builds (warm-start "
        "included) with its rollout settings, and report the prompts out of reach, always solved and mixed.",
    )
    parser.add_argument("--samples", type=int, default=16, help="samples of each prompt, K_probe (default 16)")
    parser.add_argument("--split", choices=("train", "test"), default="train", help="which split (default train)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the probe's sampling (default 0)")
    parser.add_argument("--out", help="JSON file for the composition and every prompt's solved count")
    parser.add_argument("fit_args", nargs="*", help="a fit's config after --, e.g. -- --config countdown.yaml")
    args = parser.parse_args(argv)
    from insight_lightning.cli.app import main as cli_main  # the CLI imports Lightning: only when probing

    built = cli_main(args.fit_args, run=False)
    module = built.model
    module.build_policy()
    examples = module.task.examples(args.split)
    torch.manual_seed(args.seed)
    result = probe(module.policy, module.task, examples, args.samples, module.rollout)
    report = {
        "split": args.split,
        "composition": result.composition(),
        "by_kind": result.composition_by_kind(examples),
        "solved": result.solved.tolist(),
        "machine": cpu_signature(),
    }
    composition = report["composition"]
    print(
        f"[probe] {composition['prompts']} {args.split} prompts x {args.samples} samples: "
        f"{100 * composition['out_of_reach']:.1f}% out of reach, {100 * composition['mixed']:.1f}% mixed, "
        f"{100 * composition['solved']:.1f}% always solved; {composition['seconds_per_1000_prompts']:.0f} s per "
        f"1,000 prompts on {describe(report['machine'])}"
    )
    for kind, shares in report["by_kind"].items():
        print(
            f"[probe]   {kind}: {shares['prompts']} prompts, {100 * shares['out_of_reach']:.1f}% out of reach, "
            f"{100 * shares['mixed']:.1f}% mixed, {100 * shares['solved']:.1f}% always solved"
        )
    if args.out:
        Path(args.out).write_text(json.dumps(report, indent=1) + "\n")
    return report


if __name__ == "__main__":
    from insight_lightning.cli.app import run_from_command_line

    run_from_command_line(command=main)
