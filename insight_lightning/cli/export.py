"""Export a trained policy as a plain Hugging Face model folder (LoRA merged into the weights).

python -m insight_lightning.cli.export --config runs/countdown/version_0/config.yaml --ckpt_path last.ckpt \
    --output_dir out/
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import sys
from pathlib import Path

from insight_lightning.checkpoints.io import CheckpointReadError, read_checkpoint
from insight_lightning.cli.app import CLI_SETTINGS, USER_ERRORS, InsightCLI, quiet_known_warnings, resolve_config
from insight_lightning.cli.errors import explain
from insight_lightning.policy.hf_folder import plain_float_model
from insight_lightning.selection.data_module import PromptDataModule
from insight_lightning.training.module import GRPOModule

RUN_OPTIONS = ("ckpt_path", "weights_only", "verbose")
"""Top-level keys of a run's saved config.yaml (arguments of Trainer.fit/validate/test) that export ignores."""


class ExportCLI(InsightCLI):
    """The training parser without a subcommand, accepting a run's saved config.yaml as it is."""

    def add_arguments_to_parser(self, parser) -> None:
        super().add_arguments_to_parser(parser)
        for name in RUN_OPTIONS:  # the checkpoint to export comes from export's own --ckpt_path
            parser.add_argument(f"--{name}", default=None, help=argparse.SUPPRESS)


def jinja_literal(value) -> str:
    """A JSON-like value as a Jinja expression."""
    if value is None or isinstance(value, bool):
        return {None: "none", True: "true", False: "false"}[value]
    if isinstance(value, (int, float, str)):
        return json.dumps(value)
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(jinja_literal(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{json.dumps(str(k))}: {jinja_literal(v)}" for k, v in value.items()) + "}"
    raise ValueError(f"chat_template_kwargs value {value!r} is not a string, number, boolean, list or mapping.")


def with_template_defaults(template: str, kwargs: dict) -> str:
    """The chat template with `kwargs` as the defaults of its variables (a caller's own values still win)."""
    defaults = []
    for name, value in kwargs.items():
        if not str(name).isidentifier():
            raise ValueError(f"chat_template_kwargs key {name!r} is not a valid template variable name.")
        defaults.append(f"{{%- if {name} is not defined %}}{{%- set {name} = {jinja_literal(value)} %}}{{%- endif %}}")
    return "".join(defaults) + template


def training_tokenizer(tokenizer, chat_template_kwargs: dict | None = None):
    """A copy of the tokenizer that saves as training used it: padding side, pad token, chat template and its kwargs."""
    tokenizer = copy.deepcopy(tokenizer)
    # A tokenizer saves padding_side only when it was an init argument (GGUF and hub tokenizers get it set later).
    tokenizer.init_kwargs["padding_side"] = tokenizer.padding_side
    for how_it_was_loaded in ("is_local", "local_files_only"):  # facts of training's load, not of the tokenizer
        tokenizer.init_kwargs.pop(how_it_was_loaded, None)
    template = getattr(tokenizer, "chat_template", None)
    if chat_template_kwargs and template:
        if isinstance(template, dict):  # named templates (default, tool_use, ...)
            tokenizer.chat_template = {k: with_template_defaults(t, chat_template_kwargs) for k, t in template.items()}
        else:
            tokenizer.chat_template = with_template_defaults(template, chat_template_kwargs)
    return tokenizer


def export_merged(module: GRPOModule, ckpt_path: str, output_dir: str) -> Path:
    """Load the checkpoint's weights into the module's policy, merge any adapter, and save model + tokenizer."""
    checkpoint = read_checkpoint(ckpt_path, weights_only=False, fresh=None)  # unreadable: one sentence, no traceback
    module.rollout.engine = "hf"  # exporting generates nothing: no vLLM engine to start, even if training used one
    module.build_policy()
    module.on_load_checkpoint(checkpoint)
    missing, _ = module.load_state_dict(checkpoint["state_dict"], strict=False)
    if module.persisted_keys() & set(missing):
        raise ValueError(f"Checkpoint {ckpt_path} lacks trained weights of this policy")
    policy = module.policy.model
    if hasattr(policy, "merge_and_unload"):
        policy = policy.merge_and_unload()
    policy = plain_float_model(policy)
    tokenizer = training_tokenizer(module.policy.tokenizer, module.policy_config.chat_template_kwargs)
    out = Path(output_dir)
    out.mkdir(parents=True, exist_ok=True)
    policy.save_pretrained(out)
    tokenizer.save_pretrained(out)
    return out


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m insight_lightning.cli.export", description=__doc__.splitlines()[0])
    parser.add_argument(
        "--config",
        required=True,
        help="the run's saved config.yaml (in its log folder), or the YAML it was trained with (a path or a built-in "
        "name) plus the same overrides",
    )
    parser.add_argument("--ckpt_path", required=True, help="checkpoint file (.ckpt)")
    parser.add_argument("--output_dir", required=True, help="folder for the merged model and tokenizer")
    args, overrides = parser.parse_known_args(argv)
    quiet_known_warnings()
    cli = ExportCLI(
        GRPOModule,
        PromptDataModule,
        run=False,
        args=["--config", resolve_config(args.config), *overrides],
        **CLI_SETTINGS,
    )
    module = cli.model
    module.warm_start_config = None  # the checkpoint holds the trained weights; no need to warm-start again
    out = export_merged(module, args.ckpt_path, args.output_dir)
    print(f"Exported merged model and tokenizer to {out}")


if __name__ == "__main__":
    try:
        main(sys.argv[1:])
    except (CheckpointReadError, *USER_ERRORS) as err:
        if os.environ.get("INSIGHT_LIGHTNING_TRACEBACK") == "1":
            raise
        sys.exit(f"error: {explain(err)}")  # stderr, exit status 1
