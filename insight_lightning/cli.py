"""The command line: `python -m insight_lightning fit|validate|test --config configs/countdown.yaml`."""

from __future__ import annotations

import logging
import os
import sys
import warnings

from jsonargparse import set_parsing_settings
from lightning.pytorch.cli import LightningCLI

from insight_lightning.data import PromptDataModule
from insight_lightning.module import GRPOModule
from insight_lightning.policy import PolicyLoadError
from insight_lightning.sampler_names import expand_sampler_names

# The one-line docstrings under dataclass fields become the --help text of their options.
set_parsing_settings(docstring_parse_attribute_docstrings=True)

# Errors whose message tells the user what to fix; a traceback would only bury it.
USER_ERRORS = (PolicyLoadError, FileNotFoundError, ImportError, ValueError)


class InsightCLI(LightningCLI):
    """LightningCLI with the task shared by data and model, and the group size K shared by GRPO and selection."""

    def add_arguments_to_parser(self, parser) -> None:
        parser.link_arguments("data.task", "model.task", apply_on="instantiate")
        parser.link_arguments("model.grpo.group_size", "data.group_size")


CLI_SETTINGS = dict(seed_everything_default=0, auto_configure_optimizers=False, save_config_kwargs={"overwrite": True})


def quiet_known_warnings() -> None:
    """Silence warnings that are expected here and would only confuse a user."""
    # The checkpoint is meant to hold the state after the step's updates.
    warnings.filterwarnings("ignore", message="Using ModelCheckpoint with manual optimization")
    warnings.filterwarnings("ignore", message=".*is_gradient_checkpointing.*is deprecated")
    warnings.filterwarnings("ignore", message=".*isinstance\\(treespec, LeafSpec\\)")


def show_progress_messages() -> None:
    """Warm-start and validation progress go to the console, like Lightning's own messages."""
    logger = logging.getLogger("insight_lightning")
    if not logger.handlers:
        handler = logging.StreamHandler()
        handler.setFormatter(logging.Formatter("%(message)s"))
        logger.addHandler(handler)
        logger.setLevel(logging.INFO)
        logger.propagate = False


def main(args: list[str] | None = None, run: bool = True) -> InsightCLI:
    quiet_known_warnings()
    show_progress_messages()
    return InsightCLI(
        GRPOModule,
        PromptDataModule,
        args=None if args is None else expand_sampler_names(args),
        run=run,
        **CLI_SETTINGS,
    )


def run_from_command_line(argv: list[str] | None = None) -> None:
    """Entry point: user errors end with one line on stderr (INSIGHT_LIGHTNING_TRACEBACK=1 shows the traceback)."""
    if argv is None:
        # rewritten in place: LightningCLI reads sys.argv, and DDP/FSDP relaunch it for the other ranks
        sys.argv[1:] = expand_sampler_names(sys.argv[1:])
    try:
        main(argv)  # None: LightningCLI reads sys.argv itself
    except USER_ERRORS as err:
        if os.environ.get("INSIGHT_LIGHTNING_TRACEBACK") == "1":
            raise
        print(f"error: {err}", file=sys.stderr)
        sys.exit(2)


if __name__ == "__main__":
    run_from_command_line()
