"""What building the command line costs, with the per-process docstring cache and without it, in one process.

    python benchmarks/cli_startup.py [--repeats 5]

Each build is `fit --config countdown.yaml --print_config` through the CLI's entry point, in this process (the
imports are paid once, before timing). "uncached" restores docstring_parser's own parse_from_object, so jsonargparse
reads every class's source again for each subcommand's parser; "cached" is what the CLI runs. Medians of the repeats.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks.machine import machine_name  # noqa: E402


def build_seconds(main) -> float:
    start = time.perf_counter()
    with contextlib.redirect_stdout(io.StringIO()), contextlib.suppress(SystemExit):
        main(["fit", "--config", "countdown.yaml", "--print_config"])
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    import docstring_parser

    import insight_lightning.cli.app as app

    cached = docstring_parser.parse_from_object
    docstring_parser.parse_from_object = app._parse_docstrings  # the library's own, uncached
    build_seconds(app.main)  # warm-up: lazy imports of the first build
    uncached = statistics.median(build_seconds(app.main) for _ in range(args.repeats))
    docstring_parser.parse_from_object = cached
    first = build_seconds(app.main)  # fills the cache
    again = statistics.median(build_seconds(app.main) for _ in range(args.repeats))
    print(f"machine: {machine_name()}")
    print(f"uncached, every build:    {uncached:.2f} s")
    print(f"cached, first build:      {first:.2f} s ({uncached / first:.1f}x faster)")
    print(f"cached, later builds:     {again:.2f} s ({uncached / again:.1f}x faster)")


if __name__ == "__main__":
    main()
