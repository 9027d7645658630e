"""Training: one GRPO step and everything around it. `module` holds the LightningModule's hooks; a step runs
`experience` (rollouts, scores, dynamic sampling's refills) -> `grpo` (advantages and the per-token objective) ->
`learner` (the clipped policy-gradient epochs) and reports through `step_report`. Around it: the trained policy as
one object (`policy`), the settings (`config`) and their cross-field checks (`setting_checks`), AdamW and its
schedule (`optimization`), validation and test (`evaluation`), the supervised warm-start (`warmstart`) and the
update's host-memory mode (`host_memory`).

It may import `policy`, `rollout`, `selection`, `checkpoints`, `samplers` and `tasks`; never `cli` or `race`.
"""
