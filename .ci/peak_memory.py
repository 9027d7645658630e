"""Run a command and print its wall time and the peak resident memory of its largest process (the command or any
descendant it waited for), so every CI log shows each stage's memory:  python .ci/peak_memory.py LABEL -- CMD..."""

import resource
import subprocess
import sys
import time

label, separator, *command = sys.argv[1:]
assert separator == "--" and command, __doc__
started = time.perf_counter()
code = subprocess.call(command)
peak_gb = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 2**20  # KiB on Linux
print(f"== {label}: exit {code}, {time.perf_counter() - started:.0f} s, peak RSS of one process {peak_gb:.1f} GiB")
sys.exit(code)
