"""The runtime harness on real artifacts: evaluate, bench, and one process per artifact."""
import json
import subprocess
import sys

import numpy as np
import pytest

from edgecnn.runtime import runner_for
from edgecnn.runtime.bench import bench, latency_stats
from edgecnn.runtime.evaluate import evaluate
from edgecnn.toolchain import data

FILES = ["model.fp32.tflite", "model.int8.tflite", "model.fp32.ptl", "model.int8.ptl", "model.fp32.onnx",
         "model.int8.onnx"]


def test_latency_stats_keep_every_run():
    ns = np.array([1_000_000] * 98 + [50_000_000, 90_000_000])  # two slow outliers stay in
    s = latency_stats(ns)
    assert s["p50"] == 1.0 and s["min"] == 1.0 and s["max"] == 90.0
    assert s["mean"] == pytest.approx((98 + 50 + 90) / 100)
    assert s["p99"] > 50  # not clipped away
    assert s["std"] == pytest.approx(np.std(ns / 1e6, ddof=1))


@pytest.mark.parametrize("name", FILES)
def test_evaluate_matches_a_plain_loop(digits_artifacts, name):
    ds = data.load("digits")
    ref = np.load(digits_artifacts / "reference.npz")
    runner = runner_for(name.split(".")[-1], digits_artifacts / name)
    got = evaluate(runner, ds.x_test, ds.y_test, {"divide_by": 255.0}, ref["logits"], batch=100)
    # the same numbers, one image at a time with the runner's plain infer
    logits = np.concatenate([runner.infer(ds.x_test[i:i + 1].astype(np.float32) / 255) for i in range(len(ds.x_test))])
    pred = logits.argmax(1)
    assert got["samples"] == len(ds.x_test) == 360
    assert got["accuracy"] == pytest.approx((pred == ds.y_test).mean())
    assert got["agreement"] == pytest.approx((pred == ref["logits"].argmax(1)).mean())
    assert got["max_abs_diff"] == pytest.approx(np.abs(logits - ref["logits"]).max(), abs=1e-4)
    for c in range(10):
        assert got["per_class_accuracy"][c] == pytest.approx((pred[ds.y_test == c] == c).mean())
    if ".fp32." in name:
        assert got["agreement"] == 1.0 and got["max_abs_diff"] < 1e-3


def test_bench_runs_long_enough_and_reports_the_tail(digits_artifacts):
    runner = runner_for("onnx", digits_artifacts / "model.fp32.onnx")
    sample = data.load("digits").x_test[:1].astype(np.float32) / 255
    b = bench(runner, sample, min_runs=50, min_seconds=0.3)
    assert b["runs"] >= 50
    lat = b["latency_ms"]
    assert b["bench_seconds"] >= 0.3
    assert 0 < lat["min"] <= lat["p50"] <= lat["p90"] <= lat["p99"] <= lat["max"]
    assert b["load_ms"] > 0 and b["first_ms"] > 0 and b["infer_ms"]["p50"] > 0


def _harness(job, tmp_path):
    path = tmp_path / "job.json"
    path.write_text(json.dumps(job))
    proc = subprocess.run([sys.executable, "-m", "edgecnn.runtime.harness", str(path)], capture_output=True,
                          text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout)


def _data_file(tmp_path, x, y):
    path = tmp_path / "eval.npz"
    np.savez(path, sample=x[:1], images=x, labels=y)
    return str(path)


def test_harness_process_reports_a_whole_row(digits_artifacts, tmp_path):
    ds = data.load("digits")
    job = {"artifact": str(digits_artifacts / "model.int8.tflite"), "format": "tflite", "threads": 1,
           "data": _data_file(tmp_path, ds.x_test, ds.y_test), "scaling": {"divide_by": 255.0},
           "bench": {"min_runs": 30, "min_seconds": 0.05}}
    r = _harness(job, tmp_path)
    assert r["status"] == "ok", r
    assert r["accuracy"] > 0.9 and r["agreement"] is None  # no reference in this data file
    assert 5 < r["peak_rss_mb"] < 2000 and r["runtime_version"].startswith("ai_edge_litert")
    assert r["runs"] >= 30 and r["machine"]


def test_harness_names_a_shape_mismatch(digits_artifacts, tmp_path):
    x = np.zeros((4, 28, 28, 1), np.uint8)
    job = {"artifact": str(digits_artifacts / "model.fp32.onnx"), "format": "onnx",
           "data": _data_file(tmp_path, x, np.zeros(4, int)), "scaling": {"divide_by": 255.0}}
    r = _harness(job, tmp_path)
    assert r["status"] == "error"
    assert "model.fp32.onnx takes 8x8x1 inputs but the images are 28x28x1" in r["reason"]
