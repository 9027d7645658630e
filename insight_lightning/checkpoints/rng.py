"""Capturing and restoring the global random generators (so resumed runs and validation leave no trace)."""

from __future__ import annotations

import random

import torch


def capture_rng_state() -> dict:
    """The state of Python's, torch's CPU and (when present) every CUDA generator."""
    state = {"python": random.getstate(), "torch": torch.get_rng_state()}
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def restore_rng_state(state: dict | None) -> None:
    if not state:
        return
    random.setstate(state["python"])
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])
