"""The sampler race: every sampler trained from the same start, over seeds and pool regimes, scored on a test set.

python -m insight_lightning.race --quick --jobs 2 --budget-minutes 25      (or benchmarks/sampler_race.py)

Each finished run is one file of the race's ledger, docs/results/race/NAME/runs/; the report is rebuilt from it.
`plan` says what runs, `pools`, `pool_builder` and `probe` make the difficulty-mix pools, `runner` runs them and
`ledger` keeps them with the machine's `cpu_signature`; `statistics`, `paired` and `report` turn them into tables.

It is the top layer: it may import every other package of insight_lightning, and none imports it.
"""
