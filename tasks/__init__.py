"""Framework-free RLVR tasks: data, prompts and verifiers (importing this package registers the built-in tasks)."""

from tasks.base import Score, Task
from tasks.blocksworld import BlocksworldTask
from tasks.countdown import CountdownTask
from tasks.math import MathTask
from tasks.registry import TASKS, build_task, register_task

__all__ = ["TASKS", "BlocksworldTask", "CountdownTask", "MathTask", "Score", "Task", "build_task", "register_task"]
