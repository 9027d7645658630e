"""The README is a front door and the documentation site builds strictly: no broken link, anchor or missing page."""

import importlib.util
import os
import subprocess
import sys

import pytest
from conftest import ROOT


def test_the_readme_is_a_front_door_of_at_most_200_lines():
    lines = (ROOT / "README.md").read_text().splitlines()
    assert len(lines) <= 200, f"README.md has {len(lines)} lines; move detail into a page under docs/"


@pytest.mark.skipif(importlib.util.find_spec("mkdocs") is None, reason='needs the docs extra: pip install -e ".[docs]"')
def test_the_site_builds_strictly(tmp_path):
    """Strict: a link to a missing page or anchor, a page left out of the nav or a docstring the API reference cannot
    render fails the build (mkdocs.yml's validation settings)."""
    result = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(tmp_path / "site")],
        cwd=ROOT,
        capture_output=True,
        text=True,
        env={**os.environ, "NO_MKDOCS_2_WARNING": "1"},
    )
    assert result.returncode == 0, result.stderr[-3000:]
    home = (tmp_path / "site" / "index.html").read_text()  # the README is the home page
    assert "When selection pays" in home and 'src="results/selection_pays.png"' in home
    assert (tmp_path / "site" / "results" / "selection_pays.png").is_file()
    assert (tmp_path / "site" / "reference" / "samplers" / "index.html").read_text().count("InSightSampler") >= 1


def test_the_readme_sampler_registers_and_picks_the_prompts_believed_hardest():
    import torch

    from samplers import SAMPLERS, BetaPosterior, build_sampler

    code = (ROOT / "README.md").read_text().split("```python\n", 1)[1].split("```", 1)[0]
    registered = dict(SAMPLERS)
    try:
        exec(compile(code, "README.md", "exec"), {})
        sampler = build_sampler("hardest_first")
        posterior = BetaPosterior(4)
        posterior.alpha = torch.tensor([9.0, 1.0, 5.0, 2.0])
        posterior.beta = torch.tensor([1.0, 9.0, 5.0, 8.0])  # believed success rates 0.9, 0.1, 0.5, 0.2
        chosen = sampler.select(torch.arange(4), posterior, 2, torch.Generator().manual_seed(0))
        assert sorted(chosen.tolist()) == [1, 3]
    finally:
        SAMPLERS.clear()
        SAMPLERS.update(registered)
