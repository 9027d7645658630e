"""Bounded-time mathematical equivalence: math-verify in a small pool of persistent worker processes.

Design: math-verify bounds its own work with ``signal.alarm``, which only works on the main thread (verifiers
run wherever the trainer calls them) and cannot interrupt long C-level work such as a huge integer power. So
its timeouts are disabled and each check is sent to a worker process (``tasks/math_verify_worker.py``, started
with the running interpreter) over a pipe; the caller waits at most ``timeout_seconds`` for the verdict. A
worker that misses the deadline is killed (it is ours, by its process id) and replaced at once; the check
scores False and is counted in ``timeouts``. A worker that dies is replaced and its check counted in
``failures``. The pool keeps ``workers`` processes so that a spare is ready while a killed one restarts
(~0.6 s); checks run one at a time (a lock), from any thread. Verdicts are memoised, so the K identical answers
of a group cost one check. Processes are used rather than threads because a thread cannot be stopped: a stuck
symbolic simplification would keep a core and the GIL forever.
"""

from __future__ import annotations

import collections
import contextlib
import json
import queue
import subprocess
import sys
import threading
import time
import weakref
from pathlib import Path

WORKER_SCRIPT = Path(__file__).with_name("math_verify_worker.py")
# Run the worker file by path, without the script's folder on sys.path: tasks/math.py would shadow `import math`.
_BOOTSTRAP = (
    "import sys; sys.path[:] = [p for p in sys.path if p]; import runpy; "
    "runpy.run_path(sys.argv[1], run_name='__main__')"
)
_CACHE_SIZE = 65536


class _Worker:
    """One worker process and a thread that turns its stdout into a queue of lines."""

    def __init__(self) -> None:
        # Linux's parent-death signal follows the spawning thread: ask for it only from the main thread.
        main_thread = threading.current_thread() is threading.main_thread()
        flags = ["--die-with-parent-thread"] if main_thread else []
        self.process = subprocess.Popen(
            [sys.executable, "-c", _BOOTSTRAP, str(WORKER_SCRIPT), *flags],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
            bufsize=1,
        )
        self.lines: queue.Queue[str] = queue.Queue()
        self.ready = False
        self.error: str | None = None
        threading.Thread(target=self._pump, args=(self.process.stdout, self.lines), daemon=True).start()

    @staticmethod
    def _pump(stream, lines: queue.Queue) -> None:
        with contextlib.suppress(OSError, ValueError), stream:
            for line in stream:
                lines.put(line.strip())
        lines.put("eof")

    def wait_ready(self, seconds: float) -> bool:
        """Whether the worker has announced that it is ready (waiting up to ``seconds``)."""
        if not self.ready and self.error is None:
            try:
                line = self.lines.get(timeout=max(seconds, 0.0))
            except queue.Empty:
                return False
            if line == "ready":
                self.ready = True
            else:
                self.error = line.removeprefix("error ") if line != "eof" else "the worker exited while starting"
        return self.ready

    def ask(self, gold: str, answer: str, seconds: float) -> str:
        """The worker's verdict "1" or "0"; "timeout" if it is not back within ``seconds``; "failed" if it died."""
        try:
            self.process.stdin.write(json.dumps([gold, answer]) + "\n")
            self.process.stdin.flush()
        except (OSError, ValueError):
            return "failed"
        try:
            line = self.lines.get(timeout=max(seconds, 0.0))
        except queue.Empty:
            return "timeout"
        return line if line in ("1", "0") else "failed"

    def kill(self) -> None:
        """Stop this worker process (only ever one we started)."""
        if self.process.poll() is None:
            self.process.kill()
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.process.wait(timeout=5)
        with contextlib.suppress(OSError):
            self.process.stdin.close()  # stdout is closed by the reading thread when it sees the end


def _stop_all(workers: list[_Worker]) -> None:
    for worker in workers:
        worker.kill()


class EquivalenceChecker:
    """``checker(gold, answer)``: math-verify's verdict within ``timeout_seconds``, False on timeout.

    Args:
        timeout_seconds: Wall-clock bound of one check (after the pool's first start).
        workers: Worker processes kept alive (one serves, the others stand by for restarts).
        startup_timeout: How long the first start of the pool may take before it is an error.
    """

    def __init__(self, timeout_seconds: float = 5.0, workers: int = 2, startup_timeout: float = 60.0) -> None:
        if timeout_seconds <= 0 or workers < 1:
            raise ValueError(f"Need timeout_seconds > 0 and workers >= 1, got {timeout_seconds} and {workers}.")
        self.timeout_seconds = timeout_seconds
        self.num_workers = workers
        self.startup_timeout = startup_timeout
        self.timeouts = 0
        """Checks that missed the deadline (scored False)."""
        self.failures = 0
        """Checks whose worker died or answered nonsense (scored False)."""
        self.checks = 0
        """Checks sent to a worker (memoised verdicts not counted)."""
        self._workers: list[_Worker] = []
        self._started = False
        self._lock = threading.Lock()
        self._cache: collections.OrderedDict[tuple[str, str], bool] = collections.OrderedDict()
        self._finalizer = weakref.finalize(self, _stop_all, self._workers)

    def __call__(self, gold: str, answer: str) -> bool:
        """Whether ``answer`` is mathematically equivalent to ``gold`` (both LaTeX or plain text)."""
        key = (gold, answer)
        with self._lock:
            if key in self._cache:
                self._cache.move_to_end(key)
                return self._cache[key]
            verdict = self._check(gold, answer)
            self._cache[key] = verdict
            if len(self._cache) > _CACHE_SIZE:
                self._cache.popitem(last=False)
            return verdict

    def start(self) -> None:
        """Start the workers and wait for the first to be ready (done lazily by the first check otherwise)."""
        with self._lock:
            self._ensure_started()

    def close(self) -> None:
        """Stop the worker processes; a later check starts new ones."""
        with self._lock:
            self._stop_workers()

    def _ensure_started(self) -> None:
        while len(self._workers) < self.num_workers:
            self._workers.append(_Worker())
        if self._started:
            return
        first = self._workers[0]
        if not first.wait_ready(self.startup_timeout):
            reason = first.error or f"no answer within {self.startup_timeout:.0f} s"
            self._stop_workers()
            raise RuntimeError(f"The math-verify worker process could not start ({reason}); `pip install math-verify`.")
        self._started = True

    def _stop_workers(self) -> None:
        _stop_all(self._workers)
        self._workers.clear()
        self._started = False

    def _replace(self, worker: _Worker) -> None:
        worker.kill()
        self._workers[self._workers.index(worker)] = _Worker()

    def _ready_worker(self, deadline: float) -> _Worker | None:
        """A ready worker, waiting for restarting ones until ``deadline``; workers that failed to start are replaced."""
        while True:
            for worker in list(self._workers):
                if worker.wait_ready(0.0):
                    return worker
                if worker.error is not None:
                    self._replace(worker)
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return None
            self._workers[0].wait_ready(min(remaining, 0.02))

    def _check(self, gold: str, answer: str) -> bool:
        self._ensure_started()
        deadline = time.monotonic() + self.timeout_seconds
        worker = self._ready_worker(deadline)
        if worker is None:
            self.timeouts += 1
            return False
        self.checks += 1
        verdict = worker.ask(gold, answer, deadline - time.monotonic())
        if verdict in ("1", "0"):
            return verdict == "1"
        if verdict == "timeout":
            self.timeouts += 1
        else:
            self.failures += 1
        self._replace(worker)
        return False

    def __getstate__(self) -> dict:
        """Pickled (e.g. with a task object) without processes, lock or cache; they are rebuilt lazily."""
        return {
            "timeout_seconds": self.timeout_seconds,
            "num_workers": self.num_workers,
            "startup_timeout": self.startup_timeout,
        }

    def __setstate__(self, state: dict) -> None:
        self.__init__(state["timeout_seconds"], state["num_workers"], state["startup_timeout"])
