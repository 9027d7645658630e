"""PoolProbe: the training pool probed by the policy being trained, logged and written per probe, without touching
the training's random state."""

import pytest
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from insight_lightning.cli.app import main
from insight_lightning.race.plan import PROBE_CALLBACK
from insight_lightning.race.pool_probe import PROBE_FILE, PoolProbe, read_probes

# No warm start: a few seconds a fit; what the probe counts does not matter here, only that it counts every prompt.
SMALL_POOL = ["--data.task.init_args.train_size=16", "--model.warm_start=null"]
PROBE = [f"--trainer.callbacks+={PROBE_CALLBACK}", "--trainer.callbacks.init_args.every_n_steps=1"]


def scalars(log_dir) -> dict[str, list[tuple[int, float]]]:
    events = EventAccumulator(str(log_dir), size_guidance={"scalars": 0})
    events.Reload()
    return {tag: [(e.step, e.value) for e in events.Scalars(tag)] for tag in events.Tags()["scalars"]}


def test_the_pool_is_probed_every_n_steps_and_at_the_end_without_changing_the_training(tiny_fit_args, tmp_path):
    main(tiny_fit_args(3, *SMALL_POOL, *PROBE, "--trainer.callbacks.init_args.samples=2"))
    log_dir = tmp_path / "runs" / "countdown" / "version_0"
    probes = read_probes(log_dir)
    assert [p["step"] for p in probes] == [1, 2, 3]  # every step; the end (step 3) is not probed twice
    for p in probes:
        assert sorted(p["ids"]) == list(range(16)) and all(0 <= s <= 2 for s in p["solved"])
        shares = p["composition"]
        assert shares["prompts"] == 16 and shares["samples"] == 2
        assert shares["out_of_reach"] + shares["mixed"] + shares["solved"] == pytest.approx(1)
        assert shares["out_of_reach"] == sum(s == 0 for s in p["solved"]) / 16
    logged = scalars(log_dir)
    assert [step for step, _ in logged["probe/out_of_reach"]] == [1, 2, 3]
    assert logged["probe/mixed"][-1][1] == pytest.approx(probes[-1]["composition"]["mixed"])
    # the same fit without the probe samples the same rollouts: the probe leaves the random state as it found it
    plain_root = tmp_path / "plain"
    main(tiny_fit_args(3, *SMALL_POOL, "--trainer.logger.init_args.save_dir", str(plain_root)))
    plain = scalars(plain_root / "countdown" / "version_0")
    for tag in ("train/response_len", "train/entropy", "train/reward"):
        assert plain[tag] == logged[tag], tag
    assert not (plain_root / "countdown" / "version_0" / PROBE_FILE).exists()


def test_a_probe_needs_one_process_and_sensible_settings():
    with pytest.raises(ValueError, match="PoolProbe needs samples >= 1 and every_n_steps >= 0, got 0 and 0"):
        PoolProbe(samples=0)

    class TwoRanks:
        world_size = 2

    with pytest.raises(ValueError, match="PoolProbe runs in one process; this fit has 2: remove the callback"):
        PoolProbe().setup(TwoRanks(), None, "fit")
