"""Sampler registry: short name -> class, filled by the `register_sampler` decorator."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, TypeVar

if TYPE_CHECKING:
    from samplers.base import Sampler

SAMPLERS: dict[str, type[Sampler]] = {}

_S = TypeVar("_S", bound="type[Sampler]")


def register_sampler(name: str):
    """Class decorator registering a Sampler subclass under a short name (used in YAML and `build_sampler`)."""

    def decorator(cls: _S) -> _S:
        existing = SAMPLERS.get(name)
        if existing is not None and existing.__qualname__ != cls.__qualname__:
            raise ValueError(
                f"Sampler name '{name}' is already registered by {existing.__module__}.{existing.__qualname__}"
            )
        SAMPLERS[name] = cls
        cls.name = name
        return cls

    return decorator


def build_sampler(name: str, **options: Any) -> Sampler:
    """Instantiate a registered sampler by its short name."""
    try:
        cls = SAMPLERS[name]
    except KeyError:
        known = ", ".join(sorted(SAMPLERS)) or "(none)"
        raise ValueError(f"Unknown sampler '{name}'. Registered samplers: {known}.") from None
    return cls(**options)
