"""insight_lightning: GRPO + LoRA training with online prompt selection (InSight and baselines) on Lightning."""

__version__ = "0.1.0"
