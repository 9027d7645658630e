"""SPEED-RL (Zanette-Labs/speed-rl): screen each prompt with a few rollouts, complete the ones with mixed results."""

from __future__ import annotations

from samplers.registry import register_sampler
from samplers.uniform import UniformSampler


@register_sampler("speed_rl")
class SpeedRLSampler(UniformSampler):
    """Uniform prompts with screened rollouts: each is rolled out `screening` (N_init) times first; a prompt with some
    but not all rewards equal ("qualified") gets group_size - N_init (N_cont) more, under the same policy, and trains
    with all of them in one group. Unqualified prompts are dropped and fresh ones screened, up to
    data.screening_rounds more rounds per step; their rollouts count in `rollouts generated`.

    The screening itself is the trainer's (`data.screening` turns it on for any sampler); this class is uniform
    selection with SPEED-RL's default N_init = 4. Unlike SPEED-RL's trainer, which carries qualified prompts over to
    the next generation call (and so may complete a group under a newer policy), a step here screens and completes
    its own prompts, so nothing is in flight at a checkpoint and a resume is exact.

    Args:
        prior: Beta prior of the beliefs (updated from every screened group, for the logs and the race's probes).
        forgetting: forgetting factor lambda of those beliefs.
    """

    screening = 4  # SPEED-RL's n (N_init); with the group size 16 its N_cont = 12
