"""The sampler race: every sampler trained from the same start, over seeds and pool regimes, scored on a test set.

python -m insight_lightning.race --quick --jobs 2 --out race/quick      (or benchmarks/sampler_race.py)
"""
