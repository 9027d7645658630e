"""What a race runs: settings, the pool regimes, and the command line of each run."""

from __future__ import annotations

import hashlib
import inspect
import json
import re
from dataclasses import asdict, dataclass, field
from pathlib import Path

from insight_lightning.race.pools import BUILT_POOLS, GRADED, MIXES
from samplers import REFRESH_MODES, SAMPLERS

ROOT = Path(__file__).resolve().parents[2]
ALL_SAMPLERS = (
    "uniform",
    "insight",
    "mopps",
    "expected_difficulty",
    "inverse_evidence",
    "dynamic_sampling",
    "greso",
    "speed_rl",
)
INSIGHT_ABLATIONS = ("insight:score=mi", "insight:score=w", "insight:belief=sample", "insight:refresh=epoch")
"""The paper's ablations of InSight (information only, difficulty weight only, a Thompson draw for w) and the
per-pass ranking mode, as race variants."""
VISITS_PER_PROMPT = 13  # the paper's Countdown run: 100 steps x 256 prompts from a pool of 2,000
REGIMES = ("main", "large", *MIXES, GRADED)
PROBE_CALLBACK = "insight_lightning.race.pool_probe.PoolProbe"
"""Added to the graded regime's runs: the pool probed by the trained policy, to compare with the probe at the start."""
DATA_OPTIONS = ("refresh", "screening")
"""Variant options that are the data module's, not the sampler's."""


@dataclass
class RaceSettings:
    """Everything that decides the outcome of a race (the output folder and the parallelism do not)."""

    samplers: tuple[str, ...] = ALL_SAMPLERS
    seeds: int = 5
    steps: int = 100
    prompts_per_step: int = 32
    group_size: int = 8
    eval_every: int = 10
    eval_problems: int = 512
    eval_samples: int = 4
    regimes: tuple[str, ...] = ("main", "large")
    lr: float = 5e-4
    max_new_tokens: int = 48
    model: str = "tiny"
    warm_start_steps: int = 800
    config: str = str(ROOT / "configs" / "countdown.yaml")
    extra_args: tuple[str, ...] = field(default_factory=tuple)
    visits_per_prompt: int = VISITS_PER_PROMPT

    def pool_size(self, regime: str) -> int:
        """main and the difficulty mixes: each prompt is selected about `visits_per_prompt` times (13, as in the
        paper); large: about once."""
        selections = self.steps * self.prompts_per_step
        if regime == "main" or regime in BUILT_POOLS:
            return max(self.prompts_per_step, round(selections / self.visits_per_prompt))
        if regime == "large":
            return selections
        raise ValueError(f"unknown regime '{regime}' ({', '.join(REGIMES)})")

    def portable(self) -> dict:
        """The settings as a dict in which the project's own config is named relative to the checkout."""
        settings = asdict(self)
        settings["regimes"] = sorted(self.regimes)  # their order is only the order in which they run
        if self.visits_per_prompt == VISITS_PER_PROMPT:  # added later: at its default, races made before keep theirs
            del settings["visits_per_prompt"]
        config = Path(self.config).resolve()
        if config.is_relative_to(ROOT):
            settings["config"] = str(config.relative_to(ROOT))
        return settings

    def run_settings(self) -> dict:
        """What decides each run's result: all but the samplers and seeds, which only say which runs a race has
        (so adding seeds or samplers grows the same race)."""
        return {k: v for k, v in self.portable().items() if k not in ("samplers", "seeds")}

    def fingerprint(self) -> str:
        """Identifies the run settings, wherever the checkout is."""
        return hashlib.sha256(json.dumps(self.run_settings(), sort_keys=True).encode()).hexdigest()[:12]


QUICK = dict(
    samplers=("uniform", "insight", "mopps", "informative_group"),
    seeds=4,
    steps=40,
    prompts_per_step=32,
    eval_every=10,
    eval_problems=256,
    eval_samples=2,
    regimes=("main",),
)
"""--quick: the paper's main regime (each prompt selected ~13 times) at CPU size, the three central samplers and
`informative_group`."""


@dataclass(frozen=True)
class RunSpec:
    """One training run of the race."""

    regime: str
    sampler: str
    seed: int

    @property
    def name(self) -> str:
        return f"{self.regime}__{variant_slug(self.sampler)}__seed{self.seed}"


def parse_variant(spec: str) -> tuple[str, dict[str, str]]:
    """'insight:score=mi,belief=sample' -> ('insight', {'score': 'mi', 'belief': 'sample'}), checked.

    The options are the sampler class's constructor arguments, plus the data options `refresh` (step or epoch) and
    `screening` (N_init, e.g. 'insight:screening=4' screens InSight's picks as SPEED-RL does).
    """
    name, _, options = spec.partition(":")
    if name not in SAMPLERS:
        raise ValueError(f"unknown sampler '{name}' in '{spec}'; registered: {', '.join(sorted(SAMPLERS))}")
    allowed = set(inspect.signature(SAMPLERS[name]).parameters) | set(DATA_OPTIONS)
    parsed: dict[str, str] = {}
    for item in filter(None, options.split(",")):
        key, equals, value = item.partition("=")
        if not equals or not value:
            raise ValueError(f"'{item}' in '{spec}' is not option=value")
        if key not in allowed:
            raise ValueError(f"'{key}' in '{spec}' is not an option of {name}: {', '.join(sorted(allowed))}")
        if key == "refresh" and value not in REFRESH_MODES:
            raise ValueError(f"refresh={value} in '{spec}' is not one of {', '.join(REFRESH_MODES)}")
        if key == "screening" and not value.isdigit():
            raise ValueError(f"screening={value} in '{spec}' is not a whole number of rollouts")
        parsed[key] = value
    return name, parsed


def variant_slug(spec: str) -> str:
    """A file-name-safe form of a sampler variant: 'insight:score=mi' -> 'insight-score-mi'."""
    return re.sub(r"[^A-Za-z0-9_.]+", "-", spec)


def sampler_args(spec: str) -> list[str]:
    """CLI arguments that select a sampler variant (the class is named when options are set, as the CLI asks)."""
    name, options = parse_variant(spec)
    data = [f"--data.{key}={options.pop(key)}" for key in DATA_OPTIONS if key in options]
    if options:
        args = [f"--data.sampler={SAMPLERS[name].__name__}", *(f"--data.sampler.{k}={v}" for k, v in options.items())]
    else:
        args = [f"--data.sampler={name}"]
    return args + data


def all_runs(settings: RaceSettings) -> list[RunSpec]:
    return [RunSpec(r, s, seed) for r in settings.regimes for seed in range(settings.seeds) for s in settings.samplers]


def common_args(settings: RaceSettings) -> list[str]:
    """Arguments shared by the warm-start and every run: the same task, model and selection batch."""
    args = [
        "--config",
        settings.config,
        f"--model.policy.name={settings.model}",
        f"--data.prompts_per_step={settings.prompts_per_step}",
        f"--model.grpo.group_size={settings.group_size}",
        f"--model.rollout.max_new_tokens={settings.max_new_tokens}",
        f"--model.optimizer.lr={settings.lr}",
        f"--data.task.init_args.test_size={settings.eval_problems}",
        "--trainer.enable_progress_bar=false",
        "--trainer.enable_model_summary=false",
        "--trainer.enable_checkpointing=false",
        "--trainer.callbacks=[]",
    ]
    return [*args, *settings.extra_args]


def warm_start_args(settings: RaceSettings, cache_dir: Path) -> list[str]:
    """A fit of zero steps that only warm-starts the tiny policy once and saves it in cache_dir.

    Bounded by steps, not time, so that every machine trains the same starting point; its problems exclude the
    largest regime's pool and test set, which contain the smaller regimes' ones.
    """
    pool = max(settings.pool_size(r) for r in settings.regimes)
    return [
        "fit",
        *common_args(settings),
        "--trainer.max_steps=0",
        "--trainer.logger=false",
        f"--trainer.default_root_dir={cache_dir}",  # where the CLI saves its config.yaml (not the current folder)
        "--trainer.num_sanity_val_steps=0",
        f"--data.task.init_args.train_size={pool}",
        f"--model.warm_start.max_steps={settings.warm_start_steps}",
        "--model.warm_start.max_seconds=1e9",
        f"--model.warm_start.cache_dir={cache_dir}",
    ]


def pairs_evaluations(settings: RaceSettings) -> bool:
    """Whether runs evaluate with a per-seed validation seed: the hf engine's sampling can be seeded, vLLM's not."""
    args = list(settings.extra_args)
    for i, arg in enumerate(args):
        if arg.startswith("--model.rollout.engine="):
            return arg.split("=", 1)[1] == "hf"
        if arg == "--model.rollout.engine" and i + 1 < len(args):
            return args[i + 1] == "hf"
    return True


def pool_args(settings: RaceSettings, regime: str, pools: Path | None) -> list[str]:
    """The pool of a regime: generated by the task, or a built pool's file with its test file: the ordinary test
    split for a difficulty mix (a generated one would be redrawn around the file's problems), the graded one's own."""
    size = [f"--data.task.init_args.train_size={settings.pool_size(regime)}"]
    if regime not in BUILT_POOLS:
        return size
    if pools is None:
        raise ValueError(f"the {regime} regime needs its pool built (race/pool_builder.py)")
    test = f"{GRADED}_test.jsonl" if regime == GRADED else "test.jsonl"
    files = [f"--data.task.init_args.train_file={pools / f'{regime}.jsonl'}"]
    return [*size, *files, f"--data.task.init_args.test_file={pools / test}"]


def run_args(
    settings: RaceSettings, run: RunSpec, start_weights: Path | None, log_dir: Path, pools: Path | None = None
) -> list[str]:
    """The run's CLI arguments; with the tiny model every run starts from the same warm-started weights file."""
    start = [f"--model.warm_start.init_from={start_weights}"] if start_weights else ["--model.warm_start=null"]
    return [
        "fit",
        *common_args(settings),
        *start,
        f"--seed_everything={run.seed}",
        f"--data.seed={run.seed}",
        *sampler_args(run.sampler),
        *pool_args(settings, run.regime, pools),
        f"--trainer.max_steps={settings.steps}",
        f"--trainer.val_check_interval={settings.eval_every}",
        "--trainer.num_sanity_val_steps=-1",
        f"--model.validation.samples_per_problem={settings.eval_samples}",
        *([f"--model.validation.seed={run.seed}"] if pairs_evaluations(settings) else []),
        "--model.validation.greedy=false",
        "--model.logging.text_samples_every_n_steps=0",
        f"--trainer.logger.init_args.save_dir={log_dir}",
        f"--trainer.logger.init_args.name={run.name}",
        "--trainer.logger.init_args.version=0",
        *([f"--trainer.callbacks+={PROBE_CALLBACK}"] if run.regime == GRADED else []),
    ]
