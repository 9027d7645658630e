"""The command line: `python -m insight_lightning` (`app`: the LightningCLI with built-in config names), the one
sentence a command-line mistake gets (`errors`), the progress bar (`step_progress`) and exporting a trained policy
as a Hugging Face model folder (`export`).

It may import every package but `race`: it assembles the others and is imported only by `race`.
"""
