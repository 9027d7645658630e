"""Run a command and print its wall time, the CPU time of it and the descendants it waited for (against the wall time
and the cores: how much a stage left idle), and the peak resident memory of its largest process, so every CI log
shows each stage's cost:  python .ci/peak_memory.py LABEL -- CMD..."""

import os
import resource
import subprocess
import sys
import time

label, separator, *command = sys.argv[1:]
assert separator == "--" and command, __doc__
started = time.perf_counter()
code = subprocess.call(command)
wall_s = time.perf_counter() - started
usage = resource.getrusage(resource.RUSAGE_CHILDREN)
cpu_s, peak_gb = usage.ru_utime + usage.ru_stime, usage.ru_maxrss / 2**20  # ru_maxrss is in KiB on Linux
print(
    f"== {label}: exit {code}, {wall_s:.0f} s, CPU {cpu_s:.0f} s ({cpu_s / wall_s:.2f} of {os.cpu_count()} cores "
    f"busy), peak RSS of one process {peak_gb:.1f} GiB"
)
sys.exit(code)
