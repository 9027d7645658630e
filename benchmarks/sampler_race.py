"""The sampler race (same as `python -m insight_lightning.race`): does InSight train faster than the baselines?

python benchmarks/sampler_race.py --quick --jobs 2 --budget-minutes 25
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from insight_lightning.race.__main__ import main  # noqa: E402

if __name__ == "__main__":
    main()
