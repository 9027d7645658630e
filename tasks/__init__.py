"""Framework-free RLVR tasks: data, prompts and verifiers (importing this package registers the built-in tasks)."""

from tasks.base import Score, Task
from tasks.countdown import CountdownTask
from tasks.registry import TASKS, build_task, register_task

__all__ = ["TASKS", "CountdownTask", "Score", "Task", "build_task", "register_task"]
