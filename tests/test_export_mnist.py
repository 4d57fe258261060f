"""Every artifact, run in its own runtime on the full MNIST test set, against the trained
model itself (computed here, not read back from the manifest)."""
import hashlib
import json

import keras
import numpy as np
import pytest
from conftest import edgecnn
from safetensors.torch import load_file

from edgecnn.converters import bridge
from edgecnn.runtime import runner_for
from edgecnn.toolchain import data, models

FILES = ["model.fp32.tflite", "model.int8.tflite", "model.fp32.ptl", "model.int8.ptl",
         "model.fp32.onnx", "model.int8.onnx"]


@pytest.fixture(scope="module")
def mnist_test(shared_data):
    ds = data.load("mnist", shared_data)
    return ds.x_test.astype(np.float32) / 255.0, ds.y_test


def trained_logits(run, x):
    spec = models.ModelSpec.from_json(json.loads((run / "spec.json").read_text()))
    if (run / "model.safetensors").exists():
        m = models.build_torch(spec)
        m.load_state_dict(load_file(run / "model.safetensors"))
        return bridge.torch_logits(m, x)
    m = keras.saving.load_model(run / "model.keras", safe_mode=True)
    return np.concatenate([np.asarray(m(x[i:i + 1000])) for i in range(0, len(x), 1000)])


def run_artifact(path, x):
    runner = runner_for(path.suffix[1:], path)
    step = 500 if runner.batchable else 1  # an ExecuTorch file is planned for one image
    return np.concatenate([runner.infer(x[i:i + step]) for i in range(0, len(x), step)])


def assert_fp32_and_int8_within_bounds(art, fmt, ref, x, y) -> dict:
    """fp32 within 1e-4 of the trained model, int8 within 0.3 points with 99.5 %
    agreement, in at most 30 % of the fp32 file; what was measured."""
    fp32, int8 = run_artifact(art / f"model.fp32.{fmt}", x), run_artifact(art / f"model.int8.{fmt}", x)
    diff = float(np.abs(fp32 - ref).max())
    fp32_acc, int8_acc = (fp32.argmax(1) == y).mean(), (int8.argmax(1) == y).mean()
    agree = (int8.argmax(1) == fp32.argmax(1)).mean()
    ratio = (art / f"model.int8.{fmt}").stat().st_size / (art / f"model.fp32.{fmt}").stat().st_size
    report = dict(format=fmt, diff=diff, fp32=fp32_acc, int8=int8_acc, agree=agree, size=ratio)
    assert diff <= 1e-4, report
    assert (fp32.argmax(1) == ref.argmax(1)).all(), report
    assert abs(int8_acc - fp32_acc) <= 0.003, report
    assert agree >= 0.995, report
    assert ratio <= 0.30, report
    return report


@pytest.mark.parametrize("framework", ["torch", "tf"])
def test_all_six_artifacts_in_their_runtimes(mnist_runs, mnist_artifacts, mnist_test, framework):
    x, y = mnist_test
    run, _ = mnist_runs[framework]
    art = mnist_artifacts[framework]
    assert sorted(p.name for p in art.iterdir()) == sorted(FILES + ["manifest.json", "reference.npz"])
    ref = trained_logits(run, x)
    print(framework, [assert_fp32_and_int8_within_bounds(art, fmt, ref, x, y) for fmt in ("tflite", "ptl", "onnx")])


@pytest.mark.parametrize("framework", ["torch", "tf"])
def test_executorch_files_from_both_frameworks(mnist_runs, mnist_test, framework, tmp_path):
    """ExecuTorch, which export makes when asked (--formats pte), from the PyTorch twin:
    from a Keras run through the weight bridge. The same bounds as the other formats."""
    x, y = mnist_test
    run, _ = mnist_runs[framework]
    r = edgecnn("export", run, "--formats", "pte", "--int8", "--out", tmp_path / "arts")
    assert r.code == 0, r
    print(framework, assert_fp32_and_int8_within_bounds(tmp_path / "arts", "pte", trained_logits(run, x), x, y))


@pytest.mark.parametrize("framework", ["torch", "tf"])
def test_manifest_describes_every_artifact(mnist_runs, mnist_artifacts, framework):
    art = mnist_artifacts[framework]
    m = json.loads((art / "manifest.json").read_text())
    assert m["model"]["source_framework"] == framework and m["model"]["input_shape"] == [28, 28, 1]
    assert m["model"]["scaling"]["divide_by"] == 255.0
    assert m["calibration"]["samples"] == 500 and len(m["calibration"]["indices"]) == 500
    # the weight bridge was needed (TFLite from torch, or ptl/onnx from Keras) and proven
    proof, = m["bridge"]
    assert proof["direction"] == {"torch": "torch -> keras", "tf": "keras -> torch"}[framework]
    assert proof["max_abs_diff"] <= 1e-4 and proof["images"] == 256
    ref = np.load(art / "reference.npz")
    assert ref["logits"].shape == (10000, 10)
    assert hashlib.sha256((art / "reference.npz").read_bytes()).hexdigest() == m["reference"]["sha256"]
    for a in m["artifacts"]:
        blob = (art / a["file"]).read_bytes()
        assert a["status"] == "ok" and a["sha256"] == hashlib.sha256(blob).hexdigest()
        assert a["bytes"] == len(blob) and a["versions"] and a["converter"]
        assert a["input"]["layout"] == ("NHWC" if a["format"] == "tflite" else "NCHW")
        if a["precision"] == "int8":
            assert a["calibration"]["samples"] == 500
        if a["format"] == "tflite" and a["precision"] == "int8":
            assert a["input"]["dtype"] == "int8" and a["input"]["scale"] > 0
            assert a["output"]["dtype"] == "int8" and a["output"]["scale"] > 0
        if a["format"] == "ptl":
            assert "optimize_for_mobile" in a["notes"]
            if a["precision"] == "int8":
                assert a["notes"]["engine"] == "qnnpack" and a["notes"]["per_channel_weights"] is True
