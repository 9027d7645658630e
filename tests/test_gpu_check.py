"""benchmarks/gpu_check.py, the check prepared for a CUDA machine: without CUDA it runs nothing and says so in one
line; --smoke-on-cpu runs each of its stages at toy size, so the script works before a GPU is lent to it."""

import json
import sys

import pytest
import torch
from conftest import ROOT, load_script

GPU_CHECK = load_script(ROOT / "benchmarks" / "gpu_check.py")


@pytest.mark.skipif(torch.cuda.is_available(), reason="a CUDA machine runs the check itself")
def test_without_cuda_the_check_runs_nothing_and_says_so_in_one_line(monkeypatch, capsys):
    monkeypatch.setattr(sys, "argv", ["gpu_check.py"])
    GPU_CHECK.main()
    (line,) = capsys.readouterr().out.splitlines()
    assert line.startswith("No CUDA device: the GPU check needs one and ran nothing")


@pytest.mark.skipif(torch.cuda.is_available(), reason="on a CUDA machine the CUDA tests run and pass: see the check")
def test_every_stage_runs_at_toy_size_on_cpu_and_fills_the_table(monkeypatch, capsys, tmp_path):
    monkeypatch.setattr(sys, "argv", ["gpu_check.py", "--smoke-on-cpu", "--out", str(tmp_path / "gpu_check.json")])
    GPU_CHECK.main()
    figures = json.loads((tmp_path / "gpu_check.json").read_text())
    assert GPU_CHECK.cuda_test_files() == ["tests/test_cuda.py", "tests/test_logprobs.py"]
    # on CPU each CUDA test is collected and skipped (the two files hold 2), none silently dropped
    assert figures["tests"]["exit_code"] == 0
    assert figures["tests"]["skipped"] == 2 and "passed" not in figures["tests"]
    (step,) = figures["grpo_steps"]
    assert step["rollout_s"] > 0 and step["update_s"] > 0 and step["tokens"] > 0 and step["peak_gib"] is None
    assert [row["check"].split(":")[0] for row in figures["selection"][1:]] == ["insight", "mopps", "uniform"]
    assert all(row["s"] > 0 for row in figures["selection"])
    table = capsys.readouterr().out
    assert "smoke run on CPU" in table and f"{figures['tests']['skipped']} skipped" in table
    for row in figures["selection"]:
        assert row["check"] in table
