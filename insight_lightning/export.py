"""Export a trained policy as a plain Hugging Face model folder (LoRA merged into the weights).

python -m insight_lightning.export --config countdown.yaml --ckpt_path last.ckpt --output_dir out/
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from insight_lightning.checkpoint_io import CheckpointReadError, read_checkpoint
from insight_lightning.cli import CLI_SETTINGS, InsightCLI, resolve_config
from insight_lightning.data import PromptDataModule
from insight_lightning.module import GRPOModule


def export_merged(module: GRPOModule, ckpt_path: str, output_dir: str) -> Path:
    """Load the checkpoint's weights into the module's policy, merge any adapter, and save model + tokenizer."""
    checkpoint = read_checkpoint(ckpt_path, weights_only=False, fresh=None)  # unreadable: one sentence, no traceback
    module.build_policy()
    module.on_load_checkpoint(checkpoint)
    missing, _ = module.load_state_dict(checkpoint["state_dict"], strict=False)
    if module.persisted_keys() & set(missing):
        raise ValueError(f"Checkpoint {ckpt_path} lacks trained weights of this policy")
    policy = module.policy.model
    if hasattr(policy, "merge_and_unload"):
        policy = policy.merge_and_unload()
    out = Path(output_dir)
    out.mkdir(parents=True, exist_ok=True)
    policy.save_pretrained(out)
    module.policy.tokenizer.save_pretrained(out)
    return out


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--config", required=True, help="the YAML the checkpoint was trained with (a path or a built-in name)"
    )
    parser.add_argument("--ckpt_path", required=True, help="checkpoint file (.ckpt)")
    parser.add_argument("--output_dir", required=True, help="folder for the merged model and tokenizer")
    args, overrides = parser.parse_known_args(argv)
    cli = InsightCLI(
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
    except (CheckpointReadError, FileNotFoundError) as err:
        sys.exit(f"error: {err}")  # stderr, exit status 1
