"""What makes this machine's floating-point results what they are: the CPU's vendor, family and model numbers, the
vector extension torch dispatches to, and the torch version.

The model *name* does not identify this: two "AMD EPYC" hosts (family 25 model 17 with AVX-512, family 25 model 1
with AVX2 only) give different entropies in the 4th decimal from the same seed. Results are compared exactly, and
race runs paired, only between equal signatures.
"""

from __future__ import annotations

import platform
from pathlib import Path

import torch


def cpuinfo_fields(text: str) -> dict[str, str]:
    """The first processor's ``key: value`` lines of /proc/cpuinfo."""
    fields: dict[str, str] = {}
    for line in text.splitlines():
        if not line.strip():
            if fields:
                break  # the next processor repeats them
            continue
        key, _, value = line.partition(":")
        fields.setdefault(key.strip(), value.strip())
    return fields


def cpu_signature() -> dict[str, str]:
    """Vendor, family, model, torch's CPU dispatch level and torch version; "unknown" where the OS does not say."""
    try:
        fields = cpuinfo_fields(Path("/proc/cpuinfo").read_text())
    except OSError:
        fields = {}
    return {
        "vendor": fields.get("vendor_id") or platform.processor() or "unknown",
        "family": fields.get("cpu family", "unknown"),
        "model": fields.get("model", "unknown"),
        "capability": torch.backends.cpu.get_cpu_capability(),
        "torch": torch.__version__,
    }


def describe(signature: dict[str, str]) -> str:
    """One line for logs and reports: ``AuthenticAMD family 25 model 17, AVX512, torch 2.13.0+cpu``."""
    return (
        f"{signature['vendor']} family {signature['family']} model {signature['model']}, "
        f"{signature['capability']}, torch {signature['torch']}"
    )
