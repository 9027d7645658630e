"""insight_lightning: GRPO + LoRA training with online prompt selection (InSight and baselines) on Lightning."""

__version__ = "0.2.0"

_LAZY = {
    "GRPOModule": "insight_lightning.training.module",
    "PromptDataModule": "insight_lightning.selection.data_module",
    "SelectionCallback": "insight_lightning.selection.callback",
}


def __getattr__(name: str):
    # Imported on first use, so that `python -m insight_lightning.race --help` does not load Lightning.
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'insight_lightning' has no attribute {name!r}")
