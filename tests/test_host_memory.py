"""model.grpo.release_update_memory: the low mmap threshold is set for the update only, and only when asked for."""

import pytest

from insight_lightning.cli.app import main
from insight_lightning.training import host_memory


@pytest.mark.parametrize("release", [False, True])
def test_the_update_lowers_the_mmap_threshold_only_when_asked_and_restores_it(tiny_fit_args, monkeypatch, release):
    calls = []
    monkeypatch.setattr(host_memory, "_MALLOPT", lambda parameter, value: calls.append((parameter, value)) or 1)
    steps = 2
    main(
        tiny_fit_args(
            steps,
            f"--model.grpo.release_update_memory={str(release).lower()}",
            "--trainer.num_sanity_val_steps=0",
            "--model.validation.at_end=false",
        )
    )
    low = (host_memory.M_MMAP_THRESHOLD, host_memory.UPDATE_THRESHOLD_BYTES)
    reuse = (host_memory.M_MMAP_THRESHOLD, host_memory.REUSE_THRESHOLD_BYTES)
    assert calls == ([low, reuse] * steps if release else [])
