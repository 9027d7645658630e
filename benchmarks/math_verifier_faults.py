"""The math verifier under attack and under faults: hostile answers, a group of slow answers, killed workers.

    python benchmarks/math_verifier_faults.py [--timeout 5] [--k 8]

1. The hostile answers of issue 10 (towers, huge factorials and binomials, 490 parentheses around the right answer):
   refused or collapsed before sympy, so each costs microseconds instead of the timeout.
2. A group of K distinct slow answers that pass every guard (``(x+y+z)^{200+i}``: sympy expands them): checked by a
   pool of 1 worker (the baseline: one at a time) and by the default pool, in the same run; prints the ratio.
3. Both workers killed between two checks: the verdict after the kill, and what the restart cost.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import signal
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.machine import machine_name  # noqa: E402
from tasks.math import MathTask  # noqa: E402
from tasks.math_equivalence import default_workers  # noqa: E402

HOSTILE = {
    "9^{9^{9^9}}": "3",
    "10^{10^{10^{10}}}": "3",
    "1000000!": "3",
    "\\binom{1000000}{500000}": "3",
    "(x+1)^{3000}": "3",
    "(" * 490 + "3" + ")" * 490: "3",
}


def timed(function):
    start = time.perf_counter()
    result = function()
    return result, time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--timeout", type=float, default=5.0, help="timeout_seconds of one check")
    parser.add_argument("--k", type=int, default=8, help="slow answers in the group")
    args = parser.parse_args()
    print(f"machine: {machine_name()}, {default_workers()} default workers, timeout {args.timeout:g} s")

    task = MathTask(train_size=1, test_size=1, timeout_seconds=args.timeout)
    task.checker.start()
    print("\n1. hostile answers (gold 3): the task (guards first) vs the bare math-verify check (baseline)")
    for answer, gold in HOSTILE.items():
        score, seconds = timed(lambda: task.score(f"\\boxed{{{answer}}}", {"problem": "p", "answer": gold}))  # noqa: B023
        bare, bare_seconds = timed(lambda: task.checker(gold, answer))  # noqa: B023
        shown = answer if len(answer) < 30 else f"{answer[:12]}...({len(answer)} chars)"
        print(
            f"   {shown:<32} task: correct={score.correct!s:<5} {seconds * 1000:8.2f} ms"
            f"   bare check: correct={bare!s:<5} {bare_seconds:6.2f} s"
        )
    print(f"   counts: {task.verifier_counts()}")

    print(f"\n2. a group of {args.k} distinct slow answers")
    completions = [f"\\boxed{{(x+y+z)^{{{200 + i}}}}}" for i in range(args.k)]
    examples = [{"problem": "p", "answer": "3"}] * args.k
    times = {}
    for workers in (1, default_workers()):
        pool = MathTask(train_size=1, test_size=1, timeout_seconds=args.timeout, verifier_workers=workers)
        pool.checker.start()
        pool.checker.wait_until_ready(60)
        _, times[workers] = timed(lambda: pool.score_many(completions, examples))  # noqa: B023
        print(f"   {workers} worker(s): {times[workers]:6.2f} s, timeouts {pool.timeouts}")
        pool.checker.close()
    print(f"   ratio one-at-a-time / pool: {times[1] / times[default_workers()]:.2f}x")

    print("\n3. both workers killed between two checks")
    example = {"problem": "p", "answer": "3"}
    task.score("\\boxed{1+2}", example)
    for pid in task.checker.worker_pids():
        os.kill(pid, signal.SIGKILL)
        with contextlib.suppress(ChildProcessError):  # dead before the next check, as after an OOM kill
            os.waitid(os.P_PID, pid, os.WEXITED | os.WNOWAIT)
    score, seconds = timed(lambda: task.score("\\boxed{2+1}", example))
    print(f"   \\boxed{{2+1}} vs 3 after the kill: correct={score.correct} in {seconds:.2f} s (restart included)")
    print(f"   restarts {task.checker.restarts}, failures {task.checker.failures}")
    task.checker.close()


if __name__ == "__main__":
    main()
