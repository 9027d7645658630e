"""Bounded-time mathematical equivalence: math-verify in a small pool of persistent worker processes.

Design: math-verify bounds its own work with ``signal.alarm``, which only works on the main thread (verifiers
run wherever the trainer calls them) and cannot interrupt long C-level work such as a huge integer power. So
its timeouts are disabled and each check is sent to a worker process (``tasks/math_verify_worker.py``, started
with the running interpreter) over a pipe; the caller waits at most ``timeout_seconds`` for the verdict.

Faults never become verdicts:
- A worker that misses the deadline is killed (it is ours, by its process id) and replaced; the check scores
  False for that completion and is counted in ``timeouts``, but nothing is memoised, so a later check of the same
  answer runs again.
- A worker that is found dead (the OOM killer, the memory cap, a ``kill``) or dies during a check is replaced and
  the check is retried on a fresh worker (``retries`` times); only when every attempt fails does the check score
  False, counted in ``failures`` and again not memoised.
Only real verdicts are memoised, so the K identical answers of a group cost one check. ``check_many`` runs the
distinct checks of a batch in parallel, one per worker, so K slow answers of a group cost about K / workers
deadlines, not K. Processes are used rather than threads because a thread cannot be stopped: a stuck symbolic
simplification would keep a core and the GIL forever.
"""

from __future__ import annotations

import collections
import concurrent.futures
import contextlib
import json
import os
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

    def alive(self) -> bool:
        return self.process.poll() is None

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


def default_workers() -> int:
    """Worker processes of a checker: 2 to 4, as many as the machine has cores."""
    return max(2, min(4, os.cpu_count() or 2))


class EquivalenceChecker:
    """``checker(gold, answer)``: math-verify's verdict within ``timeout_seconds``, False on timeout.

    Args:
        timeout_seconds: Wall-clock bound of one check (after the pool's first start).
        workers: Worker processes, i.e. checks run in parallel (None: ``default_workers()``, 2 to 4).
        startup_timeout: How long a worker may take to start before it is an error.
        retries: Further attempts, each on a fresh worker, of a check whose worker died.
    """

    def __init__(
        self,
        timeout_seconds: float = 5.0,
        workers: int | None = None,
        startup_timeout: float = 60.0,
        retries: int = 2,
    ) -> None:
        workers = default_workers() if workers is None else workers
        if timeout_seconds <= 0 or workers < 1 or retries < 0:
            raise ValueError(
                f"Need timeout_seconds > 0, workers >= 1 and retries >= 0, got {timeout_seconds}, {workers}, {retries}."
            )
        self.timeout_seconds = timeout_seconds
        self.num_workers = workers
        self.startup_timeout = startup_timeout
        self.retries = retries
        self.timeouts = 0
        """Checks that missed the deadline (scored False, not memoised)."""
        self.failures = 0
        """Checks whose worker died on every attempt (scored False, not memoised)."""
        self.restarts = 0
        """Workers replaced because they were found dead or died during a check (retried)."""
        self.checks = 0
        """Checks sent to a worker (memoised verdicts not counted)."""
        self._workers: list[_Worker] = []
        self._idle: list[_Worker] = []  # workers not serving a check (ready, starting, or found dead)
        self._executor: concurrent.futures.ThreadPoolExecutor | None = None
        self._lock = threading.Lock()  # the pool, the counters and the memo
        self._released = threading.Condition(self._lock)
        self._cache: collections.OrderedDict[tuple[str, str], bool] = collections.OrderedDict()
        self._finalizer = weakref.finalize(self, _stop_all, self._workers)

    def __call__(self, gold: str, answer: str) -> bool:
        """Whether ``answer`` is mathematically equivalent to ``gold`` (both LaTeX or plain text)."""
        return self.check_many([(gold, answer)])[0]

    def check_many(self, pairs: list[tuple[str, str]]) -> list[bool]:
        """The verdict of every ``(gold, answer)`` pair; distinct unmemoised pairs are checked in parallel."""
        with self._lock:
            known = {pair: self._cache[pair] for pair in set(pairs) if pair in self._cache}
            for pair in known:
                self._cache.move_to_end(pair)
            self._ensure_started()
            executor = self._executor
        todo = [pair for pair in dict.fromkeys(pairs) if pair not in known]
        if len(todo) == 1:
            known[todo[0]] = self._check(*todo[0])
        elif todo:
            known.update(zip(todo, executor.map(lambda pair: self._check(*pair), todo)))
        return [known[pair] for pair in pairs]

    def start(self) -> None:
        """Start the workers and wait for one to be ready (done lazily by the first check otherwise)."""
        with self._lock:
            self._ensure_started()
            first = self._workers[0]
        if not first.wait_ready(self.startup_timeout):
            raise RuntimeError(self._cannot_start(first))

    def worker_pids(self, ready_only: bool = False) -> list[int]:
        """The process ids of the pool's workers (with ready_only, of those that announced they are ready): a
        worker killed from outside (the OOM killer, a memory cap, a user) is replaced at its next check."""
        with self._lock:
            return [w.process.pid for w in self._workers if w.ready or not ready_only]

    def wait_until_ready(self, seconds: float) -> bool:
        """Start the workers and wait up to ``seconds`` for all of them to be ready (so a timing measures checks)."""
        with self._lock:
            self._ensure_started()
            workers = list(self._workers)
        deadline = time.monotonic() + seconds
        return all(worker.wait_ready(deadline - time.monotonic()) for worker in workers)

    def close(self) -> None:
        """Stop the worker processes; a later check starts new ones."""
        with self._lock:
            _stop_all(self._workers)
            self._workers.clear()
            self._idle.clear()
            if self._executor is not None:
                self._executor.shutdown(wait=False)
                self._executor = None

    def _ensure_started(self) -> None:
        """Called under the lock: the pool's workers exist (they start in the background)."""
        if not self._workers:
            for _ in range(self.num_workers):
                worker = _Worker()
                self._workers.append(worker)
                self._idle.append(worker)
        if self._executor is None:
            self._executor = concurrent.futures.ThreadPoolExecutor(self.num_workers, "math-verify")

    def _cannot_start(self, worker: _Worker) -> str:
        reason = worker.error or f"no answer within {self.startup_timeout:.0f} s"
        return f"The math-verify worker process could not start ({reason}); `pip install math-verify`."

    def _replace(self, worker: _Worker) -> _Worker:
        worker.kill()
        fresh = _Worker()
        with self._lock:
            self._swap(worker, fresh)
        return fresh

    def _swap(self, worker: _Worker, fresh: _Worker) -> None:
        """Under the lock: ``fresh`` takes ``worker``'s place in the pool."""
        if worker in self._workers:
            self._workers[self._workers.index(worker)] = fresh
        else:  # the pool was closed meanwhile
            self._workers.append(fresh)

    def _acquire(self) -> _Worker:
        """An idle worker for one check: a ready one when there is one, so that a restart delays no check while
        another worker is ready; idle workers found dead are restarted on the way."""
        deadline = time.monotonic() + self.startup_timeout
        with self._released:
            while True:
                for index, worker in enumerate(self._idle):
                    if not worker.alive():  # killed while idle (OOM killer, memory cap, a user): restart it now
                        worker.kill()
                        fresh = self._idle[index] = _Worker()
                        self._swap(worker, fresh)
                        self.restarts += 1
                ready = [w for w in self._idle if w.wait_ready(0.0) or w.error is not None]
                if ready or (self._idle and time.monotonic() > deadline):
                    worker = (ready or self._idle)[0]
                    self._idle.remove(worker)
                    return worker
                # every check holding a worker ends within its deadline, and starting ones announce themselves
                self._released.wait(0.01 if self._idle else None)

    def _release(self, worker: _Worker) -> None:
        with self._released:
            self._idle.append(worker)
            self._released.notify()

    def _check(self, gold: str, answer: str) -> bool:
        """One check on an idle worker: a verdict, or False (counted) after a timeout or repeated worker deaths."""
        worker = self._acquire()
        try:
            for attempt in range(self.retries + 1):
                if not worker.wait_ready(self.startup_timeout):
                    raise RuntimeError(self._cannot_start(worker))
                with self._lock:
                    self.checks += 1
                verdict = worker.ask(gold, answer, self.timeout_seconds)
                if verdict in ("1", "0"):
                    self._remember((gold, answer), verdict == "1")
                    return verdict == "1"
                worker = self._replace(worker)  # killed at the deadline, or found dead: a fresh one either way
                with self._lock:
                    if verdict == "timeout":
                        self.timeouts += 1
                        return False  # a timeout is not retried: the same answer would time out again
                    self.restarts += 1
                    if attempt == self.retries:
                        self.failures += 1
            return False
        finally:
            self._release(worker)

    def _remember(self, pair: tuple[str, str], verdict: bool) -> None:
        with self._lock:
            self._cache[pair] = verdict
            if len(self._cache) > _CACHE_SIZE:
                self._cache.popitem(last=False)

    def __getstate__(self) -> dict:
        """Pickled (e.g. with a task object) without processes, lock or cache; they are rebuilt lazily."""
        return {
            "timeout_seconds": self.timeout_seconds,
            "num_workers": self.num_workers,
            "startup_timeout": self.startup_timeout,
            "retries": self.retries,
        }

    def __setstate__(self, state: dict) -> None:
        self.__init__(state["timeout_seconds"], state["num_workers"], state["startup_timeout"], state.get("retries", 2))
