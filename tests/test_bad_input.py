"""Bad data and bad settings are reported, never accepted quietly: skipped rows with reasons, small pools, one-line
config errors that name the option, and warnings for sampling settings that make GRPO learn nothing."""

import importlib
import json
import re
import sys
import warnings

import pytest

from insight_lightning.cli.app import BUILTIN_CONFIGS, run_from_command_line
from insight_lightning.cli.errors import MOVED_MODULES
from insight_lightning.rollout.config import RolloutConfig
from insight_lightning.selection.data_module import PromptDataModule
from insight_lightning.training.module import GRPOModule
from tasks.blocksworld import BlocksworldTask
from tasks.countdown import CountdownTask
from tasks.math import MathTask
from tasks.sources import MAX_ROW_CHARS


def _write_lines(path, lines) -> str:
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return str(path)


def _one_warning(record, source: str) -> str:
    messages = [str(w.message) for w in record if source in str(w.message)]
    assert len(messages) == 1, messages
    return messages[0]


# ---------------------------------------------------------------- data files


def test_countdown_file_reports_every_skip_reason_with_counts_and_rows(tmp_path):
    good = [{"nums": [44, 19, 35], "target": 98}, {"nums": [3, 4], "target": 12, "extra": "kept"}]
    lines = [
        json.dumps(good[0]),  # 0
        json.dumps({"nums": [1, 2, 3], "target": 10**40}),  # 1: target out of range
        json.dumps({"nums": list(range(1, 15)), "target": 20}),  # 2: 14 numbers
        json.dumps({"nums": [1, 2], "target": 3, "pad": "x" * (MAX_ROW_CHARS + 1)}),  # 3: over 1 MB
        "{not json",  # 4
        "",  # 5: blank
        json.dumps({"nums": [0, 5], "target": 5}),  # 6: a zero
        json.dumps({"nums": [7, 8, 9], "target": 10**40}),  # 7: target out of range
        "   ",  # 8: blank
        json.dumps(good[1]),  # 9
    ]
    path = _write_lines(tmp_path / "countdown.jsonl", lines)
    with warnings.catch_warnings(record=True) as record:
        warnings.simplefilter("always")
        rows = CountdownTask(train_file=path, train_size=2, test_size=3).examples("train")
    assert [(r["nums"], r["target"]) for r in rows] == [([44, 19, 35], 98), ([3, 4], 12)] and rows[1]["extra"] == "kept"
    report = _one_warning(record, path)
    assert "Skipped 6 broken Countdown rows" in report
    assert "2 'target' outside 1..1000000 (rows 1, 7)" in report
    assert "1 'nums' not 2-6 numbers (row 2)" in report
    assert "1 longer than 1,000,000 characters (row 3)" in report
    assert "1 not valid JSON (row 4)" in report
    assert "1 'nums' not all positive (row 6)" in report
    assert "ignored 2 blank lines" in report


def test_blank_lines_alone_are_counted(tmp_path):
    rows = [json.dumps({"nums": [1, n], "target": n + 1}) for n in (2, 3)]
    path = _write_lines(tmp_path / "rows.jsonl", ["", rows[0], "  ", rows[1]])
    with pytest.warns(UserWarning, match=r"^Ignored 2 blank lines of '.*rows\.jsonl'\.$"):
        assert len(CountdownTask(train_file=path, train_size=2).examples("train")) == 2


def test_math_and_blocksworld_rows_share_the_report(tmp_path):
    math_path = _write_lines(
        tmp_path / "math.jsonl",
        [json.dumps({"problem": "1+1?", "answer": "2"}), json.dumps({"problem": "", "answer": "3"}), "[1, 2]"],
    )
    with warnings.catch_warnings(record=True) as record:
        warnings.simplefilter("always")
        MathTask(train_file=math_path, train_size=None).examples("train")
    report = _one_warning(record, math_path)
    assert "1 missing or empty 'problem' (row 1)" in report and "1 not a JSON object (row 2)" in report

    rows = [{"init": [["a", "a"]], "goal": []}, {"init": [["A"]]}, {"init": [["a", "b"]], "goal": [["b", "a"]]}]
    bw_path = _write_lines(tmp_path / "bw.jsonl", [json.dumps(r) for r in rows])
    with warnings.catch_warnings(record=True) as record:
        warnings.simplefilter("always")
        BlocksworldTask(train_file=bw_path, train_size=1).examples("train")
    report = _one_warning(record, bw_path)
    assert "1 'init' names a block twice (row 0)" in report and "1 missing 'init' or 'goal' (row 1)" in report


def test_the_row_length_bound_applies_to_json_arrays(tmp_path):
    path = tmp_path / "math.json"
    rows = [{"problem": "p" * (MAX_ROW_CHARS + 1), "answer": "1"}, {"problem": "2+2?", "answer": "4"}]
    path.write_text(json.dumps(rows), encoding="utf-8")
    with pytest.warns(UserWarning, match=r"1 longer than 1,000,000 characters \(row 0\)"):
        test = MathTask(test_file=str(path), test_size=None).examples("test")
    assert [r["problem"] for r in test] == ["2+2?"]


@pytest.mark.parametrize("suffix", ["jsonl", "json"])
def test_valid_rows_load_unchanged_and_without_a_warning(tmp_path, suffix):
    generated = CountdownTask(train_size=300, test_size=10, seed=3).examples("train")
    path = tmp_path / f"rows.{suffix}"
    if suffix == "json":
        path.write_text(json.dumps(generated), encoding="utf-8")
    else:
        _write_lines(path, [json.dumps(row) for row in generated])
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        loaded = CountdownTask(train_file=str(path), train_size=300).examples("train")
    assert loaded == generated


def test_a_pool_smaller_than_the_configured_size_warns_once(tmp_path):
    path = _write_lines(tmp_path / "pool.jsonl", [json.dumps({"nums": [i, 1], "target": i + 1}) for i in range(1, 64)])
    task = CountdownTask(train_file=path, train_size=2000, test_size=4)
    with pytest.warns(UserWarning) as record:
        assert len(task.examples("train")) == 63
        task.examples("train")
        task.examples("test")  # generated: no notice
    [message] = [str(w.message) for w in record]
    assert "train split" in message and path in message and "63" in message and "train_size=2000" in message

    shared = CountdownTask(train_file=path, test_file=path, train_size=60, test_size=20)
    with pytest.warns(UserWarning, match=r"test split has only 3 rows, fewer than test_size=20.*after .* first 60"):
        assert len(shared.examples("test")) == 3


def test_more_prompts_per_step_than_the_pool_names_the_option():
    data = PromptDataModule(task=CountdownTask(train_size=10, test_size=2), prompts_per_step=32)
    with pytest.raises(ValueError, match=r"data\.prompts_per_step=32 is more than the 10 prompts"):
        data.setup("fit")


# ---------------------------------------------------------------- config errors


def _cli_error(monkeypatch, capsys, *args: str) -> str:
    """The one `error:` line of a command line that fails before training (stderr has no usage, no traceback)."""
    monkeypatch.setattr(sys, "argv", ["insight_lightning"])
    with pytest.raises(SystemExit) as exit_info:
        run_from_command_line(["fit", "--config", "countdown.yaml", "--trainer.max_steps=1", *args])
    err = capsys.readouterr().err
    assert exit_info.value.code == 2 and "usage:" not in err and "Traceback" not in err
    errors = [line for line in err.splitlines() if line.startswith("error: ")]
    assert len(errors) == 1, err
    return errors[0]


@pytest.mark.parametrize(
    ("args", "option", "path"),
    [
        (["--data.sampler=insight_lightning.NoSuchSampler"], "data.sampler", "insight_lightning.NoSuchSampler"),
        (["--data.task=tasks.CountdownTsk"], "data.task", "tasks.CountdownTsk"),
        (["--trainer.callbacks+=no.such.Callback"], "trainer.callbacks", "no.such.Callback"),
    ],
)
def test_a_mistyped_class_path_is_one_line_naming_the_option(monkeypatch, capsys, args, option, path):
    line = _cli_error(monkeypatch, capsys, *args)
    assert line.startswith(f"error: {option}: ") and f"'{path}'" in line


def test_a_mistyped_class_path_in_yaml_is_one_line(monkeypatch, capsys, tmp_path):
    config = tmp_path / "sampler.yaml"
    config.write_text("data:\n  sampler:\n    class_path: samplers.InSightSamplr\n", encoding="utf-8")
    line = _cli_error(monkeypatch, capsys, "--config", str(config))
    assert line.startswith("error: data.sampler: ") and "samplers.InSightSamplr" in line


@pytest.mark.parametrize("old", sorted(MOVED_MODULES))
def test_a_config_written_before_the_move_names_the_class_path_to_write(monkeypatch, capsys, tmp_path, old):
    """A shipped config with a class path of insight_lightning < 0.2 is refused naming the new one, which imports."""
    now = MOVED_MODULES[old]
    shipped = (BUILTIN_CONFIGS / "countdown.yaml").read_text(encoding="utf-8")
    moved_class = re.search(re.escape(now) + r"\.(\w+)", shipped).group(1)
    config = tmp_path / "countdown.yaml"
    config.write_text(shipped.replace(now, old), encoding="utf-8")
    line = _cli_error(monkeypatch, capsys, "--config", str(config))
    assert f"'{old}.{moved_class}' moved to '{now}.{moved_class}'" in line and "change the class_path" in line
    assert isinstance(getattr(importlib.import_module(now), moved_class), type)


def test_a_yaml_syntax_error_names_the_file_and_line(monkeypatch, capsys, tmp_path):
    config = tmp_path / "broken.yaml"
    config.write_text("data:\n  prompts_per_step: [1, 2\n  seed: 3\n", encoding="utf-8")
    line = _cli_error(monkeypatch, capsys, "--config", str(config))
    assert str(config) in line and re.search(r"line 3\b", line) and "<unicode string>" not in line


@pytest.mark.parametrize(
    ("arg", "option"),
    [
        ("--model.grpo.group_size=1", "model.grpo.group_size=1"),
        ("--model.grpo.micro_batch_size=0", "model.grpo.micro_batch_size=0"),
        ("--data.prompts_per_step=0", "data.prompts_per_step=0"),
        ("--data.task.init_args.train_size=-1", "data.task.init_args.train_size=-1"),
        ("--data.task.init_args.max_target=0", "data.task.init_args.max_target=0"),
        ("--model.rollout.temperature=-1", "model.rollout.temperature=-1"),
        ("--data.screening=8", "data.screening=8 must be smaller than data.group_size=8"),
        ("--data.sampler=speed_rl --model.grpo.group_size=4", "data.screening=4 (the default of SpeedRLSampler)"),
    ],
)
def test_each_range_error_names_the_option(monkeypatch, capsys, arg, option):
    assert _cli_error(monkeypatch, capsys, *arg.split()).startswith(f"error: {option}")


def test_a_sampler_range_error_names_the_option(monkeypatch, capsys):
    line = _cli_error(monkeypatch, capsys, "--data.sampler=MoPPSSampler", "--data.sampler.target=2")
    assert line.startswith("error: data.sampler.init_args.target=2.0 ")


# ---------------------------------------------------------------- sampling settings


@pytest.mark.parametrize(
    ("setting", "name"),
    [({"temperature": 0.0}, "temperature"), ({"temperature": 1e-4}, "temperature"), ({"top_k": 1}, "top_k")]
    + [({"top_p": 0.001}, "top_p")],
)
def test_near_greedy_training_rollouts_warn_with_the_reason(setting, name):
    with pytest.warns(UserWarning, match=rf"model\.rollout\.{name}=.*greedy.*advantages are 0") as record:
        GRPOModule(rollout=RolloutConfig(**setting))
    assert len([w for w in record if "greedy" in str(w.message)]) == 1


def test_ordinary_sampling_settings_do_not_warn():
    with warnings.catch_warnings(record=True) as record:
        warnings.simplefilter("always")
        GRPOModule(rollout=RolloutConfig(temperature=0.7, top_p=0.95, top_k=50))
    assert not [w for w in record if "greedy" in str(w.message)]
