"""Checkpoints: written atomically and read back with one clear sentence when they cannot be (`io`), what a
checkpoint holds of the policy and of every rank's random generators (`persisted`, `rng`).

It imports torch and Lightning only, no other part of insight_lightning: every layer above may save and restore.
"""
