"""`python evals/bench.py device` end to end on the tiny model on CPU, and the `gpu` figures it
writes into an inner-loop result."""

import functools
import json

import pytest

from agent.core.errors import SealError
from evals import bench, bench_inner_loop
from evals.bench_device import gpu_figures, record_gpu
from evals.bench_inner_loop import HEADLINE, RATES, SECONDS


@pytest.fixture
def small_peak(monkeypatch):
    # The 2048-wide matmul peak takes seconds on a busy 2-core machine and the tiny model
    # needs no faithful peak: a 256-wide one gives the same keys.
    fast = functools.partial(bench_inner_loop.matmul_peak_gflops, n=256, repeats=2)
    monkeypatch.setattr(bench_inner_loop, "matmul_peak_gflops", fast)


def device_argv(squad_file, out, settings) -> list[str]:
    sizes = ["--passages", "1", "--round-passages", "2", "--candidates", "2"]
    sizes += ["--answer-passages", "2", "--data", str(squad_file)]
    return ["device", *sizes, "--round-data", str(squad_file), "--out", str(out), *settings]


def test_device_writes_the_three_measurements(squad_file, tiny_cli_settings, tmp_path, small_peak):
    out = tmp_path / "bench"
    out.mkdir()
    inner_loop = {"inner_loop_median_s": 9.0, "gpu": None}
    (out / "inner_loop.json").write_text(json.dumps(inner_loop))
    settings = [*tiny_cli_settings, "--set", "self_edit.min_item_chars=1"]

    assert bench.main(device_argv(squad_file, out, settings)) == 0

    result = json.loads((out / "device.json").read_text())
    assert {"machine", "inner_loop", "rest_em_round", "answering", "config"} <= set(result)
    assert result["machine"]["device"] == "cpu" and result["machine"]["dtype"] == "float32"
    assert len(result["inner_loop"]["passages"]) == 1
    assert all(result["inner_loop"][k] > 0 for k in RATES)
    assert all(result["inner_loop"][k] >= 0 for k in SECONDS)  # qa-spans' tools: ~0 s
    round_ = result["rest_em_round"]
    assert (round_["passages"], round_["candidates"]) == (2, 2)
    assert round_["round_s"] > 0 and round_["passage_median_s"] > 0
    answering = result["answering"]
    assert answering["questions"] == 3  # both passages of squad_file
    assert answering["questions_per_s"] > 0 and answering["answer_tokens_per_s"] > 0
    assert result["config"]["model"]["device"] == "cpu"
    # a CPU run leaves the inner-loop result's gpu figures alone
    assert json.loads((out / "inner_loop.json").read_text()) == inner_loop


def test_a_missing_round_data_file_is_named_before_any_model_loads(tmp_path, squad_file):
    argv = device_argv(squad_file, tmp_path, [])
    argv[argv.index("--round-data") + 1] = str(tmp_path / "absent.json")
    with pytest.raises(SealError, match="--round-data .*absent.json does not exist"):
        bench.main(argv)


def test_gpu_figures_replace_only_the_gpu_key(tmp_path):
    result = {
        "machine": {"device": "cpu", "device_name": "x86_64", "dtype": "float32"},
        "inner_loop": {k: 1.0 for k in HEADLINE} | {"passages": [{"index": 0}]},
        "rest_em_round": {"round_s": 3.0},
        "answering": {"questions_per_s": 2.0},
        "config": {"model": {"name": "tiny"}},
    }
    path = tmp_path / "inner_loop.json"
    assert not record_gpu(path, gpu_figures(result))
    assert not path.exists()  # no file: nothing made up

    kept = {"machine": {"device": "cpu"}, "inner_loop_median_s": 9.0, "gpu": None, "config": {}}
    path.write_text(json.dumps(kept))
    assert record_gpu(path, gpu_figures(result))
    merged = json.loads(path.read_text())
    assert {k: v for k, v in merged.items() if k != "gpu"} == {
        k: v for k, v in kept.items() if k != "gpu"
    }
    assert merged["gpu"]["machine"] == result["machine"]
    assert merged["gpu"]["inner_loop"] == {k: 1.0 for k in HEADLINE}
    assert merged["gpu"]["rest_em_round"] == {"round_s": 3.0}
    assert "config" not in merged["gpu"]
