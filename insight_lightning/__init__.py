"""insight_lightning: GRPO + LoRA training with online prompt selection (InSight and baselines) on Lightning."""

__version__ = "0.1.0"

_LAZY = {
    "GRPOModule": "insight_lightning.module",
    "PromptDataModule": "insight_lightning.data",
    "SelectionCallback": "insight_lightning.selection_callback",
}


def __getattr__(name: str):
    # Imported on first use, so that `python -m insight_lightning.race --help` does not load Lightning.
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'insight_lightning' has no attribute {name!r}")
