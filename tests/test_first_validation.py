"""The first validation of the default config, rerun at reduced size, equals the stored one: a change that silently
alters results fails here (docs/results/first_validation.json, written by benchmarks/first_validation.py --write)."""

from conftest import ROOT, TINY_WARM_START, load_script

BENCH = load_script(ROOT / "benchmarks" / "first_validation.py")


def test_the_first_validation_of_the_default_config_is_the_stored_one(warmstart_cache):
    record = BENCH.stored()
    assert record["values"]["val/accuracy"] > 0 and record["values"]["val/reward"] > 0  # a check that can see scoring
    mode, problems = BENCH.differences(BENCH.measure(warmstart_cache), record)
    assert not problems, "results changed; if on purpose: python benchmarks/first_validation.py --write\n" + "\n".join(
        problems
    )


def test_the_tiny_fits_share_this_warm_start(tmp_path):
    # equal settings, so one cache entry serves both; a drift would train a second warm-start every session
    args = BENCH.fit_args(tmp_path, tmp_path / "cache")
    options = {args[i]: args[i + 1] for i in range(len(args) - 1) if args[i].startswith("--model.warm_start.")}
    tiny = dict(zip(TINY_WARM_START[::2], TINY_WARM_START[1::2]))
    assert {name: options[name] for name in tiny} == tiny


def shifted(record: dict, by: float) -> dict[str, float]:
    return {name: value + by for name, value in record["values"].items()}


def test_a_matching_cpu_signature_compares_exactly(monkeypatch):
    record = BENCH.stored()
    monkeypatch.setattr(BENCH, "cpu_signature", lambda: dict(record["machine"]["signature"]))
    assert BENCH.differences(shifted(record, 0.0), record) == ("exact", [])
    mode, problems = BENCH.differences(shifted(record, 1e-4), record)  # the AVX2-vs-AVX-512 size of difference
    assert mode == "exact" and len(problems) == len(record["values"])


def test_another_vector_extension_takes_the_tolerance_path(monkeypatch):
    record = BENCH.stored()
    other = {**record["machine"]["signature"], "capability": "AVX2"}  # same vendor, family, model and torch
    monkeypatch.setattr(BENCH, "cpu_signature", lambda: other)
    assert BENCH.differences(shifted(record, 1e-4), record) == ("tolerance", [])
    mode, problems = BENCH.differences(shifted(record, 0.3), record)  # beyond every tolerance: a gross change
    assert mode == "tolerance" and len(problems) == len(record["values"])


def test_the_signature_reads_the_first_processor_of_cpuinfo():
    from insight_lightning.race.cpu_signature import cpuinfo_fields

    text = "processor\t: 0\nvendor_id\t: AuthenticAMD\ncpu family\t: 25\nmodel\t: 1\n\nprocessor\t: 1\nmodel\t: 17\n"
    fields = cpuinfo_fields(text)
    assert (fields["vendor_id"], fields["cpu family"], fields["model"]) == ("AuthenticAMD", "25", "1")
