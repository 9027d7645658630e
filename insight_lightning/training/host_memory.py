"""Host memory of CPU training: large tensors freed during the update go back to the operating system.

glibc serves a large allocation with its own mmap, but after such a block is freed it raises its mmap threshold to
that block's size (up to 32 MB), so later blocks of that size come from the heap, where freed memory stays with the
process and fragments. A training update allocates and frees hundreds of activation, logit and gradient tensors of
a few to tens of MB, and resident memory grows far past what is alive at any time: measured on SmolLM2-135M with
LoRA and checkpointing (16 x 144 tokens, one forward and backward), peak RSS 3.7 GB with glibc's adaptive threshold
and 1.4 GB with a fixed 128 KiB one (benchmarks/real_model_memory.py). Generation is the opposite case: its
per-token logits and cache blocks (about 13 MB each for 64 sequences) are reused thousands of times, and unmapping
them each time costs kernel time (a first probe: 8 x 8 sequences x 32 tokens took 10.7 s with every block mmapped
against 7.6 s with heap reuse). So the threshold is low only while the update runs (``mmapped_large_blocks``) and
at glibc's maximum otherwise.

The update pays for it too: every mmapped block is page-faulted and zeroed afresh. The same SmolLM2 forward and
backward took 67.9 s with the 128 KiB threshold against 49.4 s with heap reuse (``OMP_NUM_THREADS=1 python
benchmarks/real_model_memory.py``, AMD EPYC), and it had made the tiny model's update 2x TRL's in vs_trl.py.
So it is an opt-in (``model.grpo.release_update_memory``) for a machine whose memory, not time, is short.
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import sys
from collections.abc import Iterator

M_MMAP_THRESHOLD = -3  # glibc's mallopt parameter number (malloc.h)
UPDATE_THRESHOLD_BYTES = 128 * 1024
"""During the update: blocks at least this large are mmapped, and unmapped as soon as they are freed."""
REUSE_THRESHOLD_BYTES = 32 * 1024 * 1024
"""Otherwise: glibc's own maximum, so that generation reuses its blocks from the heap."""


def _mallopt():
    """glibc's mallopt, or None (not Linux, or a libc without it such as musl)."""
    if not sys.platform.startswith("linux"):
        return None
    try:
        mallopt = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6").mallopt
    except (OSError, AttributeError):
        return None
    mallopt.argtypes, mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
    return mallopt


_MALLOPT = _mallopt()


@contextlib.contextmanager
def mmapped_large_blocks(enabled: bool = True) -> Iterator[None]:
    """Within the block, large host allocations are mmapped and returned to the OS when freed (glibc only)."""
    if _MALLOPT is None or not enabled:
        yield
        return
    _MALLOPT(M_MMAP_THRESHOLD, UPDATE_THRESHOLD_BYTES)
    try:
        yield
    finally:
        _MALLOPT(M_MMAP_THRESHOLD, REUSE_THRESHOLD_BYTES)
