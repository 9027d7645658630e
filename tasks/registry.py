"""The task registry: ``@register_task(name)`` and ``build_task(name, **kwargs)``."""

from collections.abc import Callable
from typing import TypeVar

from tasks.base import Task

TaskT = TypeVar("TaskT", bound=type[Task])

TASKS: dict[str, type[Task]] = {}


def _qualified_name(cls: type) -> str:
    return f"{cls.__module__}.{cls.__qualname__}"


def register_task(name: str) -> Callable[[TaskT], TaskT]:
    """Class decorator registering a ``Task`` subclass under ``name`` (and setting its ``name``)."""

    def decorator(cls: TaskT) -> TaskT:
        if not (isinstance(cls, type) and issubclass(cls, Task)):
            raise TypeError(f"@register_task({name!r}) expects a Task subclass, got {cls!r}.")
        existing = TASKS.get(name)
        # The same class re-imported (module reload) replaces its entry; another class may not take the name.
        if existing is not None and _qualified_name(existing) != _qualified_name(cls):
            raise ValueError(f"Task name {name!r} is already registered by {_qualified_name(existing)}.")
        cls.name = name
        TASKS[name] = cls
        return cls

    return decorator


def build_task(name: str, **kwargs) -> Task:
    """Instantiate the task registered as ``name`` with ``kwargs``."""
    if name not in TASKS:
        raise ValueError(f"Unknown task {name!r}. Registered tasks: {', '.join(sorted(TASKS))}.")
    return TASKS[name](**kwargs)
