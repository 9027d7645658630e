"""The race's ledger: one small committed JSON file per finished run, and what is left to run within a time budget.

A race grows piece by piece, on whatever machine a session gets: each invocation runs what the ledger lacks and
its budget allows, and writes each run's file as it finishes. Runs pair (same seed, compared run by run) only when
they were made on one CPU signature from one warm-start, so a unit (one seed with every requested variant) is
finished on the machine that began it.
"""

from __future__ import annotations

import json
import os
import subprocess
from collections import defaultdict
from pathlib import Path

from insight_lightning.race.cpu_signature import describe
from insight_lightning.race.plan import ROOT, RaceSettings, RunSpec

LEDGER_ROOT = ROOT / "docs" / "results" / "race"


class Ledger:
    """The folder of one race: ``runs/<run name>.json``, ``settings.json`` and the report rebuilt from them."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.runs_dir = folder / "runs"

    def path(self, run: RunSpec) -> Path:
        return self.runs_dir / f"{run.name}.json"

    def has(self, run: RunSpec) -> bool:
        return self.path(run).is_file()

    def records(self) -> list[dict]:
        """Every finished run, in file-name order (so a report rebuilt from them is the same on every machine)."""
        return [json.loads(p.read_text()) for p in sorted(self.runs_dir.glob("*.json"))]

    def write(self, record: dict) -> None:
        """Atomically: an interrupted write leaves no half file that would count as a finished run."""
        self.runs_dir.mkdir(parents=True, exist_ok=True)
        target = self.runs_dir / f"{record['run']}.json"
        tmp = target.with_suffix(".tmp")
        tmp.write_text(json.dumps(record, indent=1) + "\n")
        os.replace(tmp, target)

    def claim(self, settings: RaceSettings) -> None:
        claim_folder(self.folder, settings, "give it another --name")


def claim_folder(folder: Path, settings: RaceSettings, remedy: str) -> None:
    """Record the run settings in folder/settings.json, or refuse settings other than those recorded there."""
    saved = folder / "settings.json"
    if saved.is_file() and json.loads(saved.read_text())["fingerprint"] != settings.fingerprint():
        raise ValueError(f"{folder} holds a race with other settings; {remedy}")
    folder.mkdir(parents=True, exist_ok=True)
    text = json.dumps({"fingerprint": settings.fingerprint(), "settings": settings.run_settings()}, indent=1)
    saved.write_text(text + "\n")


def identity(record: dict) -> tuple[str, str | None]:
    """What a run's result depends on beyond its seed and variant: the CPU signature and the starting weights."""
    return describe(record["machine"]), record.get("start")


def unit_of(run: RunSpec) -> tuple[str, int]:
    """A unit is one regime and seed: the runs compared with each other, pair by pair."""
    return run.regime, run.seed


def units_begun_elsewhere(records: list[dict], here: tuple[str, str | None]) -> dict[tuple[str, int], str]:
    """Units with runs made on another signature or warm-start than `here`: their other runs would not pair here."""
    elsewhere: dict[tuple[str, int], str] = {}
    for record in records:
        if identity(record) != here:
            elsewhere[record["regime"], record["seed"]] = identity(record)[0]
    return elsewhere


def estimated_seconds(run: RunSpec, records: list[dict], signature: str) -> float | None:
    """The ledger's mean wall time for this run: of its variant on this signature, else of any variant on it, else
    of its variant anywhere, else of any run; None when the ledger has measured nothing yet."""
    same_regime = [r for r in records if r["regime"] == run.regime] or records
    for candidates in (
        [r for r in same_regime if r["sampler"] == run.sampler and describe(r["machine"]) == signature],
        [r for r in same_regime if describe(r["machine"]) == signature],
        [r for r in same_regime if r["sampler"] == run.sampler],
        same_regime,
    ):
        if candidates:
            return sum(r["wall_s"] for r in candidates) / len(candidates)
    return None


def machines(records: list[dict]) -> list[tuple[str, str | None, int]]:
    """Each (CPU signature, warm-start) that contributed runs, with its count, in order of first appearance."""
    counts: dict[tuple[str, str | None], int] = defaultdict(int)
    for record in records:
        counts[identity(record)] += 1
    return [(signature, start, n) for (signature, start), n in counts.items()]


def commit() -> str | None:
    """The checkout's commit (with -dirty for uncommitted changes); None outside a git checkout."""
    try:
        described = subprocess.run(
            ["git", "describe", "--always", "--dirty", "--abbrev=12"],
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=30,
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    return (described.stdout.strip() or None) if described.returncode == 0 else None
