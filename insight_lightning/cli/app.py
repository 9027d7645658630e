"""The command line: `python -m insight_lightning fit|validate|test --config countdown.yaml`."""

from __future__ import annotations

import functools
import logging
import os
import sys
import warnings
from collections.abc import Callable
from pathlib import Path

import docstring_parser
import lightning
import yaml
from jsonargparse import ActionConfigFile, ArgumentError, set_parsing_settings
from lightning.pytorch.callbacks import ProgressBar
from lightning.pytorch.cli import LightningCLI

from insight_lightning.checkpoints.io import check_readable, install_checkpoint_io
from insight_lightning.cli.errors import explain, init_error
from insight_lightning.cli.last_checkpoint import resolve_last
from insight_lightning.cli.step_progress import StepProgressBar
from insight_lightning.policy.loading import PolicyLoadError
from insight_lightning.rollout.vllm_sync import RolloutEngineError
from insight_lightning.selection.data_module import PromptDataModule
from insight_lightning.training.module import GRPOModule

# The one-line docstrings under dataclass fields become the --help text of their options.
set_parsing_settings(docstring_parse_attribute_docstrings=True)
_parse_docstrings = docstring_parser.parse_from_object


@functools.cache
def _parsed_docstrings(component, style) -> docstring_parser.Docstring:
    return _parse_docstrings(component, style=style)


def parse_docstrings_once(component, style=docstring_parser.DocstringStyle.AUTO) -> docstring_parser.Docstring:
    """docstring_parser.parse_from_object, cached per class or function. jsonargparse parses every class's docstrings
    (attribute docstrings read its source: inspect.getsource and ast) for each of the four subcommands' parsers and
    again for every CLI a process builds; source does not change while a process runs, and this parse was the larger
    part of building the CLI (benchmarks/cli_startup.py times both)."""
    try:
        return _parsed_docstrings(component, style)
    except TypeError:  # an unhashable component: parsed as it always was
        return _parse_docstrings(component, style=style)


docstring_parser.parse_from_object = parse_docstrings_once

BUILTIN_CONFIGS = Path(__file__).resolve().parents[1] / "configs"
"""The configs shipped with the package; `--config NAME` finds them from any folder."""

# Errors whose message tells the user what to fix; a traceback would only bury it.
USER_ERRORS = (PolicyLoadError, RolloutEngineError, FileNotFoundError, ImportError, ValueError, ArgumentError)


def resolve_config(value: str) -> str:
    """A config path as given when it exists, else the built-in config of that name (`countdown.yaml`,
    `paper/countdown_qwen3_0.6b.yaml`, also `configs/countdown.yaml` or `countdown`)."""
    if not isinstance(value, str) or os.path.exists(value) or "\n" in value or value.lstrip().startswith("{"):
        return value  # an existing file, or YAML given inline
    name = value.removeprefix("configs/")
    for candidate in (BUILTIN_CONFIGS / name, BUILTIN_CONFIGS / f"{name}.yaml"):
        if candidate.is_file():
            return str(candidate)
    if value.endswith((".yaml", ".yml", ".json")):
        builtin = sorted(str(p.relative_to(BUILTIN_CONFIGS)) for p in BUILTIN_CONFIGS.rglob("*.yaml"))
        raise FileNotFoundError(
            f"Config file '{value}' does not exist, and it is not a built-in config ({', '.join(builtin)})."
        )
    return value


def yaml_syntax_error(path: str) -> str | None:
    """Where and why the config file at ``path`` is not valid YAML, in one sentence; None if it parses."""
    if not isinstance(path, str) or not os.path.isfile(path):
        return None
    try:
        yaml.safe_load(Path(path).read_text(encoding="utf-8"))
    except yaml.MarkedYAMLError as error:
        mark = error.problem_mark or error.context_mark
        where = f", line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        context = (
            f" ({error.context}, line {error.context_mark.line + 1})" if error.context and error.context_mark else ""
        )
        return f"Config file '{path}' is not valid YAML{where}: {error.problem or error.context}{context}"
    except (yaml.YAMLError, UnicodeDecodeError) as error:
        return f"Config file '{path}' is not valid YAML: {' '.join(str(error).split())}"
    return None


class ConfigFileOrBuiltin(ActionConfigFile):
    """--config PATH, or the name of a config shipped with the package."""

    def __call__(self, parser, cfg, values, option_string=None):
        path = resolve_config(values)
        try:
            super().__call__(parser, cfg, path, option_string)
        except Exception:
            # jsonargparse parses the file's text, so its message names "<unicode string>": name the file instead
            problem = yaml_syntax_error(path)
            if problem is None:
                raise
            raise ValueError(problem) from None


class InsightCLI(LightningCLI):
    """LightningCLI with the task shared by data and model, and the group size K shared by GRPO and selection."""

    def init_parser(self, **kwargs):
        kwargs.setdefault("dump_header", [f"insight_lightning (lightning.pytorch=={lightning.__version__})"])
        parser = self.parser_class(**kwargs)
        parser.add_argument(
            "-c",
            "--config",
            action=ConfigFileOrBuiltin,
            help="A YAML config: a path, or a built-in name (countdown.yaml, math.yaml, blocksworld.yaml, paper/...).",
        )
        return parser

    def add_arguments_to_parser(self, parser) -> None:
        parser.link_arguments("data.task", "model.task", apply_on="instantiate")
        parser.link_arguments("model.grpo.group_size", "data.group_size")

    def parse_arguments(self, parser, args) -> None:
        super().parse_arguments(parser, args)
        self.typed_args = sys.argv[1:] if args is None else args
        subcommand = self.config.get("subcommand")
        # fit --ckpt_path last: the newest last.ckpt of the run's version folders, and the logger continues in it
        self.resolved_last = resolve_last(self.config[subcommand]) if subcommand == "fit" else None
        # Next, Lightning torch.loads the checkpoint to read its saved settings, before any trainer exists: a corrupt
        # one would be a traceback there.
        if self.ckpt_path():
            check_readable(self.ckpt_path(), weights_only=True)

    def ckpt_path(self) -> str | None:
        """The --ckpt_path of the subcommand, if one was given."""
        subcommand = self.config.get("subcommand")
        return self.config[subcommand].get("ckpt_path") if subcommand else None

    def before_instantiate_classes(self) -> None:
        """The config file and the command line win over the checkpoint's saved model settings."""
        # Lightning lays the saved settings over everything typed, so `validate --ckpt_path X
        # --model.rollout.engine=vllm` would silently run the checkpoint's engine: parse what was typed again on top.
        if self.ckpt_path() and isinstance(self.typed_args, list):
            typed = self.parser.parse_args(self.typed_args, defaults=False)  # only what the file and flags set
            self.config = self.parser.merge_config(typed, self.config)
            if self.resolved_last is not None:  # what was typed is `last`: keep the file it was resolved to
                resolve_last(self.config[self.config.get("subcommand")])

    def instantiate_classes(self) -> None:
        """Lightning's, with a class's refusal of its init arguments named by its option (data.task.init_args...)."""
        try:
            super().instantiate_classes()
        except ValueError as error:
            subcommand = self.config.get("subcommand")
            message = init_error(error, (self.config[subcommand] if subcommand else self.config).as_dict())
            if message is None:
                raise
            raise ValueError(message) from error

    def instantiate_trainer(self, **kwargs):
        """The trainer, with a progress bar counting RL steps (unless the config names its own or none), atomic
        checkpoint saves and one-sentence errors for checkpoints that cannot be read."""
        settings = self.config_init[self.subcommand]["trainer"] if self.subcommand else self.config_init["trainer"]
        configured = settings.get("callbacks") or []
        configured = configured if isinstance(configured, list) else [configured]
        wants_bar = settings.get("enable_progress_bar") is not False
        if wants_bar and "callbacks" not in kwargs and not any(isinstance(c, ProgressBar) for c in configured):
            kwargs["callbacks"] = [*configured, StepProgressBar()]
        trainer = super().instantiate_trainer(**kwargs)
        install_checkpoint_io(trainer.strategy)
        return trainer


def program_name() -> str:
    """How the user started us, for --help: the console script, else `python -m insight_lightning`."""
    return "insight-lightning" if Path(sys.argv[0]).name == "insight-lightning" else "python -m insight_lightning"


# Parse errors raise (exit_on_error=False) instead of printing the whole usage: run_from_command_line prints the
# one line that says what is wrong.
PARSER_KWARGS = {
    "prog": program_name(),
    "exit_on_error": False,
    **{command: {"exit_on_error": False} for command in ("fit", "validate", "test", "predict")},
}
CLI_SETTINGS = dict(
    seed_everything_default=0,
    auto_configure_optimizers=False,
    save_config_kwargs={"overwrite": True},
    parser_kwargs=PARSER_KWARGS,
)


def quiet_known_warnings() -> None:
    """Silence warnings that are expected here and would only confuse a user."""
    # The checkpoint is meant to hold the state after the step's updates.
    warnings.filterwarnings("ignore", message="Using ModelCheckpoint with manual optimization")
    warnings.filterwarnings("ignore", message=".*is_gradient_checkpointing.*is deprecated")
    warnings.filterwarnings("ignore", message=".*isinstance\\(treespec, LeafSpec\\)")


class CurrentStderrHandler(logging.StreamHandler):
    """Writes to whatever sys.stderr is when a message comes (pytest and notebooks replace it between runs)."""

    @property
    def stream(self):
        return sys.stderr

    @stream.setter
    def stream(self, value) -> None:
        pass


def show_progress_messages() -> None:
    """Warm-start and validation progress go to the console, like Lightning's own messages."""
    logger = logging.getLogger("insight_lightning")
    if not logger.handlers:
        handler = CurrentStderrHandler()
        handler.setFormatter(logging.Formatter("%(message)s"))
        logger.addHandler(handler)
        logger.setLevel(logging.INFO)
        logger.propagate = False


def main(args: list[str] | None = None, run: bool = True) -> InsightCLI:
    quiet_known_warnings()
    show_progress_messages()
    return InsightCLI(GRPOModule, PromptDataModule, args=args, run=run, **CLI_SETTINGS)


def run_from_command_line(argv: list[str] | None = None, command: Callable[[list[str] | None], object] = main) -> None:
    """Entry point of a command (fit by default, the probe, the pool builder): user errors end with one line on
    stderr (INSIGHT_LIGHTNING_TRACEBACK=1 shows the traceback)."""
    try:
        command(argv)  # None: LightningCLI reads sys.argv itself (DDP/FSDP relaunch it for the other ranks)
    except USER_ERRORS as err:
        if os.environ.get("INSIGHT_LIGHTNING_TRACEBACK") == "1":
            raise
        print(f"error: {explain(err)}", file=sys.stderr)
        sys.exit(2)


if __name__ == "__main__":
    run_from_command_line()
