"""`python -m insight_lightning fit --config configs/countdown.yaml`"""

from insight_lightning.cli.app import run_from_command_line

run_from_command_line()
