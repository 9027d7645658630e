"""Figures the README and the documentation quote equal the result files they come from (docs/results/, written by
benchmarks/ and the race)."""

import re
import subprocess
import sys

import pytest
import torch
from conftest import ROOT, load_script

RESULTS = ROOT / "docs" / "results"


@pytest.mark.parametrize("race", sorted(p.name for p in (RESULTS / "race").iterdir() if p.is_dir()))
def test_a_committed_race_report_is_a_rebuild_of_its_ledger(race, tmp_path):
    """race.md, race.json and race.csv come from the ledger alone, byte for byte (the PNG is redrawn, not compared:
    its pixels depend on the matplotlib and FreeType versions)."""
    from insight_lightning.race.report import write_report

    committed = RESULTS / "race" / race
    rebuilt = tmp_path / race
    (rebuilt / "runs").mkdir(parents=True)
    for run in (committed / "runs").glob("*.json"):
        (rebuilt / "runs" / run.name).write_bytes(run.read_bytes())
    write_report(rebuilt)
    for name in ("race.md", "race.json", "race.csv"):
        assert (rebuilt / name).read_bytes() == (committed / name).read_bytes(), (
            f"{committed / name} is not what its ledger gives; rebuild it with "
            f"python -m insight_lightning.race --name {race} --report-only"
        )


FIGURES = load_script(ROOT / "benchmarks" / "figures.py")


@pytest.mark.parametrize("figure", FIGURES.FIGURES, ids=lambda figure: figure.name)
def test_every_figure_on_its_page_is_what_its_results_file_holds(figure):
    missing = figure.missing()
    assert not missing, f"{figure.page} lacks these lines of {figure.source}; paste them:\n" + "\n".join(missing)


def tables(text: str) -> list[list[str]]:
    """The markdown tables of a page: each a list of its lines, the header first."""
    found, current = [], []
    for line in [*text.splitlines(), ""]:
        if line.startswith("|"):
            current.append(line)
        elif current:
            found.append(current)
            current = []
    return found


def test_every_table_is_a_figure_from_a_results_file_or_a_listed_kind():
    """Each table of the README and the pages is a registered figure's, line for line, or is named in figures.py:
    DESCRIPTIVE (no measurements) or UNSOURCED (measurements without a results file yet), so a new table must say
    which it is, and one that gains a results file must leave UNSOURCED."""
    quoted = {line for figure in FIGURES.FIGURES for line in figure.quoted()}
    unsourced = {}
    for page in [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]:
        for table in tables(page.read_text()):
            if not (set(table[2:]) <= quoted or table[0] in FIGURES.DESCRIPTIVE):
                unsourced[table[0]] = str(page.relative_to(ROOT))
    assert unsourced == FIGURES.UNSOURCED


def test_a_page_that_quotes_an_old_number_is_caught(tmp_path):
    figure = FIGURES.by_name("default_run")
    page = tmp_path / "page.md"
    lines = figure.quoted()
    page.write_text("\n".join([*lines[:-1], lines[-1].replace("%", "0%", 1)]) + "\n")  # one cell off
    stale = FIGURES.Figure(figure.name, str(page), figure.source, figure.command, figure.renderer)
    assert stale.missing() == [lines[-1]]


def test_the_figures_command_lists_every_figure_and_refuses_an_unknown_name():
    script = str(ROOT / "benchmarks" / "figures.py")
    listing = subprocess.run([sys.executable, script], capture_output=True, text=True, check=True).stdout
    assert all(f"{figure.name}\n  quoted in {figure.page}" in listing for figure in FIGURES.FIGURES)
    unknown = subprocess.run([sys.executable, script, "--only", "nope"], capture_output=True, text=True)
    assert unknown.returncode == 1 and unknown.stderr.startswith("error: no figure named 'nope'")


def insight_against_uniform(race: str) -> tuple[str, str]:
    """InSight's paired AUC difference in mix50 as the README writes it, and the zero-variance shares it quotes."""
    import json

    report = json.loads((RESULTS / "race" / race / "race.json").read_text())
    (insight,) = [row for row in report["paired"]["mix50"] if row["sampler"] == "insight"]
    shares = {row["sampler"]: row["frac_zero_variance"] for row in report["summary"]["mix50"]}
    mean, half_width = (100 * value for value in insight["auc_diff"])
    return f"{mean:+.1f} +/- {half_width:.1f} points", f"from {shares['uniform']:.0%} to {shares['insight']:.0%}"


@pytest.mark.parametrize("race", ["mixes", "smollm2"])
def test_the_readme_headline_is_what_the_race_reports_hold(race):
    auc, shares = insight_against_uniform(race)
    readme = " ".join((ROOT / "README.md").read_text().split())
    assert f"**{auc}**" in readme if race == "mixes" else auc in readme
    assert shares in readme


def test_the_figures_the_readme_names_are_listed_as_quoted_there():
    readme = (ROOT / "README.md").read_text()
    named = {figure.name for figure in FIGURES.FIGURES if f"`{figure.name}`" in readme or figure.source in readme}
    assert named == {figure.name for figure in FIGURES.FIGURES if "README.md" in figure.also_in}


def test_a_command_with_leading_assignments_runs_with_them_in_its_environment(monkeypatch):
    calls = []
    monkeypatch.setattr(FIGURES.subprocess, "run", lambda argv, **kw: calls.append((argv, kw["env"])))
    figure = FIGURES.by_name("real_model_memory")
    assert figure.command.startswith("OMP_NUM_THREADS=1 python ")
    figure.regenerate()
    ((argv, env),) = calls
    assert argv == [sys.executable, "benchmarks/real_model_memory.py", "--write"] and env["OMP_NUM_THREADS"] == "1"


def test_a_figure_whose_command_needs_vllm_is_refused_in_one_sentence_where_vllm_is_absent(monkeypatch):
    calls = []
    monkeypatch.setattr(FIGURES.subprocess, "run", lambda argv, **kw: calls.append(argv))
    monkeypatch.setattr(FIGURES.importlib.util, "find_spec", lambda name: None)
    with pytest.raises(SystemExit, match="vllm_lora_cost runs vllm, which this Python .* lacks") as refused:
        FIGURES.by_name("vllm_lora_cost").regenerate()
    assert "\n" not in str(refused.value) and not calls


def test_the_sampler_overhead_benchmark_times_every_sampler_and_renders_its_table(monkeypatch, capsys):
    """At toy size and with a given step time (the documented run measures one): every registered sampler gets a row
    of the table the documentation quotes, and nothing is written without --write."""
    bench = load_script(ROOT / "benchmarks" / "sampler_overhead.py")
    written = (RESULTS / "sampler_overhead.json").read_bytes()
    toy = ["--train-step-s", "2", "--pool", "1000", "--step-pool", "200", "--batch", "8", "--candidates", "32"]
    monkeypatch.setattr(sys, "argv", ["sampler_overhead.py", *toy, "--repeats", "1"])
    threads = torch.get_num_threads()
    try:
        bench.main()
    finally:
        torch.set_num_threads(threads)  # the benchmark sets 2 threads for itself
    table = [line for line in capsys.readouterr().out.splitlines() if line.startswith("| ")]
    assert table[0].startswith("| | CPU, ") and table[2].startswith("| InSight scoring + top-8 over 1,000 prompts")
    assert "| a GRPO step of the tiny CPU policy (the step compared with) | 2.00 s |" in table
    rows = {line.split(" | ")[0][2:] for line in table}
    assert set(bench.SAMPLERS) <= rows
    assert (RESULTS / "sampler_overhead.json").read_bytes() == written


INTERVAL = re.compile(r"([+-]?\d+\.\d+)%? \(?\+/- (\d+\.\d+)%?\)?")
"""A mean and its 95% half-width as the pages and the reports write them: "-0.4 +/- 1.0", "-0.4 (+/- 1.0)",
"+10.7% +/- 6.5%"."""


def intervals(text: str) -> set[tuple[str, str]]:
    return {(mean if mean[0] in "+-" else f"+{mean}", half) for mean, half in INTERVAL.findall(" ".join(text.split()))}


def prose(page: str) -> str:
    """A page's text outside its tables, as one line."""
    return " ".join(" ".join(line for line in page.splitlines() if not line.startswith("|")).split())


def unreported_intervals(page: str, reports: str) -> set[tuple[str, str]]:
    """The intervals a page's prose quotes that neither a race report nor the page's own tables (held to their
    results files above) print."""
    printed = intervals(reports) | intervals("\n".join(line for table in tables(page) for line in table))
    return intervals(prose(page)) - printed


RANGES_OF_INTERVALS = ("(+/- 1.8 to 3.7 points)",)
"""Prose "+/-" that quotes a range of half-widths rather than one interval (docs/race.md's power paragraph)."""


def unparsed_plus_minus(page: str) -> list[str]:
    """The prose "+/-" that INTERVAL does not read (a form it misses would escape the check below unseen)."""
    text = prose(page)
    for quoted in [*(match.group(0) for match in INTERVAL.finditer(text)), *RANGES_OF_INTERVALS]:
        text = text.replace(quoted, "")
    return [text[max(0, i - 20) : i + 20] for i in range(len(text)) if text.startswith("+/-", i)]


def race_reports() -> str:
    return "\n".join(path.read_text() for path in sorted((RESULTS / "race").glob("*/race.md")))


@pytest.mark.parametrize("page", ["README.md", *sorted(p.name for p in (ROOT / "docs").glob("*.md"))])
def test_every_interval_quoted_in_prose_is_one_a_report_prints(page):
    """A rebuilt report changes its tables (caught above); this catches the prose beside them keeping an old number."""
    path = ROOT / page if page == "README.md" else ROOT / "docs" / page
    assert unparsed_plus_minus(path.read_text()) == []
    assert unreported_intervals(path.read_text(), race_reports()) == set()


def test_a_prose_interval_no_report_prints_is_caught():
    reports = race_reports()
    page = (ROOT / "docs" / "race.md").read_text()
    (mean, half), *_ = sorted(intervals(reports))
    stale = f"{float(half) + 50:.1f}"  # a half-width no report of this tiny model prints
    assert unreported_intervals(f"{page}\nMoPPS moved by {mean} +/- {stale} points.\n", reports) == {(mean, stale)}
    wrapped = f"{page}\nMoPPS moved by {mean.lstrip('+')}\n+/- {stale} points.\n"  # unsigned, across a line break
    assert unreported_intervals(wrapped, reports) == {(mean, stale)}  # read back signed, as intervals() gives it
    (unread,) = unparsed_plus_minus(f"{page}\nMoPPS moved by {mean} points +/- {stale}.\n")
    assert f"{mean} points +/- {stale}" in unread
