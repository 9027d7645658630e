"""A math-verify worker process: reads ``[gold, answer]`` JSON lines on stdin, writes ``1`` or ``0`` lines.

Run by ``tasks.math_equivalence`` as a plain script (it imports only the standard library and math-verify, never
the ``tasks`` package). It prints ``ready`` once math-verify is imported and warmed up, or ``error <message>``
if it cannot start. math-verify's own signal-based timeouts are disabled (they fail off the main thread); the
parent bounds each check by killing this process. A watchdog thread exits when the parent process is gone, and
the address space is capped (POSIX) so that a runaway computation (``9^{9^{9^9}}``) fails with MemoryError
instead of eating the machine's memory.
"""

import contextlib
import functools
import json
import os
import sys
import threading
import time

MEMORY_LIMIT_BYTES = 4 << 30


def _exit_with_parent() -> None:
    """Exit when the parent process is gone: a watchdog thread, and on Linux a kill signal if asked for (argv)."""
    parent = os.getppid()
    if "--die-with-parent-thread" in sys.argv:  # only sound when the spawning thread lives as long as the process
        with contextlib.suppress(Exception):
            import ctypes
            import signal

            ctypes.CDLL(None).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG: also stops a check stuck in C code

    def watch() -> None:
        while True:
            time.sleep(1.0)
            if os.getppid() != parent:
                os._exit(1)

    threading.Thread(target=watch, daemon=True).start()


def _limit_memory() -> None:
    """Best effort: cap the address space (POSIX)."""
    with contextlib.suppress(Exception):  # no resource module (Windows) or a lower hard limit already
        import resource

        resource.setrlimit(resource.RLIMIT_AS, (MEMORY_LIMIT_BYTES, MEMORY_LIMIT_BYTES))


def main() -> None:
    """Serve equivalence checks until stdin closes."""
    _exit_with_parent()
    _limit_memory()
    try:
        import logging

        from math_verify import LatexExtractionConfig, parse, verify

        logging.getLogger("math_verify").setLevel(logging.ERROR)  # the "timeout is disabled" notice
    except Exception as error:  # report why, e.g. math-verify missing, instead of dying silently
        print(f"error {type(error).__name__}: {error}", flush=True)
        return

    # LaTeX extraction only: math-verify's plain-expression extraction goes through sympy's eval-based parse_expr.
    latex_only = [LatexExtractionConfig()]

    @functools.lru_cache(maxsize=4096)
    def parse_gold(gold: str):
        return parse(f"\\boxed{{{gold}}}", extraction_config=latex_only, parsing_timeout=None)

    def equivalent(gold: str, answer: str) -> bool:
        parsed = parse(f"\\boxed{{{answer}}}", extraction_config=latex_only, parsing_timeout=None)
        return bool(parsed) and verify(parse_gold(gold), parsed, timeout_seconds=None)

    equivalent("\\frac{1}{2}", "0.5")  # warm-up: the first parse builds math-verify's grammar (~0.1 s)
    print("ready", flush=True)
    for line in sys.stdin:
        try:
            gold, answer = json.loads(line)
            verdict = equivalent(str(gold), str(answer))
        except Exception:  # parse errors, RecursionError, MemoryError: not equivalent
            verdict = False
        sys.stdout.write("1\n" if verdict else "0\n")
        sys.stdout.flush()


if __name__ == "__main__":
    main()
