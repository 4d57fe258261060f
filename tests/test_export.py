"""`edgecnn export` and `edgecnn inspect` on a small digits run: the CLI, partial
failure, and every kind of bad input."""
import json

import numpy as np

from conftest import FAST_BENCH, assert_bad_input, edgecnn


def test_inspect_shows_tensors_and_operators(digits_run, tmp_path):
    out = tmp_path / "arts"
    assert edgecnn("export", digits_run, "--int8", "--formats", "tflite,ptl", "--out", out).code == 0
    r = edgecnn("inspect", out / "model.int8.tflite")
    assert r.code == 0, r
    assert "precision  int8" in r.out and "NHWC  int8, scale 0.00392157, zero point -128" in r.out
    assert "CONV_2D x2" in r.out and "FULLY_CONNECTED x2" in r.out
    info = edgecnn("inspect", out / "model.int8.ptl", "--json").json
    assert info["operators"]["quantized::conv2d_relu"] == 2
    assert info["input"]["shape"] == [-1, 1, 8, 8] and "trust" in info["warning"]


def test_x86_engine_is_recorded(digits_run, tmp_path):
    out = tmp_path / "arts"
    r = edgecnn("export", digits_run, "--formats", "ptl", "--int8", "--engine", "x86", "--out", out)
    assert r.code == 0, r
    m = json.loads((out / "manifest.json").read_text())
    int8 = [a for a in m["artifacts"] if a["precision"] == "int8"][0]
    assert int8["notes"]["engine"] == "x86" and int8["notes"]["per_channel_weights"] is True


def test_one_format_failing_keeps_the_others(digits_run, tmp_path, monkeypatch):
    """Fault injection: the ONNX quantizer raises. The others are written, the failure is
    recorded with its reason, no fp32 stands in for the failed int8, exit status 1."""
    from edgecnn.converters import onnx as onnx_converter
    from edgecnn.toolchain import export

    real = onnx_converter.export

    def failing(model, precision, calib, path, options):
        if precision == "int8":
            path.write_bytes(b"half a file")
            raise RuntimeError("quantizer exploded")
        return real(model, precision, calib, path, options)

    monkeypatch.setattr(onnx_converter, "export", failing)
    out = tmp_path / "arts"
    manifest, code = export.export(digits_run, ["tflite", "onnx"], ["fp32", "int8"], out, log=lambda m: None)
    assert code == 1
    status = {(a["format"], a["precision"]): a["status"] for a in manifest["artifacts"]}
    assert status == {("tflite", "fp32"): "ok", ("tflite", "int8"): "ok",
                      ("onnx", "fp32"): "ok", ("onnx", "int8"): "failed"}
    failed = [a for a in manifest["artifacts"] if a["status"] == "failed"][0]
    assert "quantizer exploded" in failed["reason"]
    assert not (out / "model.int8.onnx").exists() and (out / "model.fp32.onnx").exists()
    assert "failed: RuntimeError: quantizer exploded" in export.table(manifest)
    assert json.loads((out / "manifest.json").read_text())["artifacts"][3]["status"] == "failed"


def test_bad_input_missing_run(tmp_path):
    assert_bad_input(edgecnn("export", tmp_path / "nope", "--out", tmp_path / "a"), "does not exist")
    assert not (tmp_path / "a").exists()


def test_bad_input_incomplete_run(digits_run, tmp_path):
    import shutil
    run = tmp_path / "run"
    shutil.copytree(digits_run, run)
    (run / "model.safetensors").unlink()
    assert_bad_input(edgecnn("export", run, "--out", tmp_path / "a"), "incomplete", "model.safetensors")
    shutil.copy(digits_run / "model.safetensors", run)
    (run / "spec.json").unlink()
    assert_bad_input(edgecnn("export", run, "--out", tmp_path / "a"), "incomplete", "spec.json")
    (run / "spec.json").write_text("{not json")
    assert_bad_input(edgecnn("export", run, "--out", tmp_path / "a"), "not valid JSON")
    shutil.copy(digits_run / "spec.json", run)
    (run / "model.safetensors").write_bytes(b"\x00" * 100)
    assert_bad_input(edgecnn("export", run, "--out", tmp_path / "a"), "cannot load the weights")
    assert not (tmp_path / "a").exists()


def test_a_model_file_swapped_into_a_run_is_refused(digits_run, digits_tf_run, tmp_path):
    """A model.keras or model.safetensors of another network, copied over a run's, exits 2
    naming the mismatch: export never passes another network off as the spec's."""
    import shutil
    for run, fw, weights in ((digits_tf_run, "tf", "model.keras"), (digits_run, "torch", "model.safetensors")):
        other = tmp_path / f"other-{fw}"
        r = edgecnn("train", "--framework", fw, "--model", "resnet", "--epochs", "1", "--out", other)
        assert r.code == 0, r
        swapped = tmp_path / f"swapped-{fw}"
        shutil.copytree(run, swapped)
        shutil.copy(other / weights, swapped / weights)
        before = sorted((q.name, q.stat().st_size) for q in swapped.iterdir())
        r = edgecnn("export", swapped, "--formats", "onnx", "--out", tmp_path / f"a-{fw}")
        assert_bad_input(r, "not the cnn network that spec.json describes", "conv1" if fw == "tf" else "conv1.")
        assert not (tmp_path / f"a-{fw}").exists()
        assert sorted((q.name, q.stat().st_size) for q in swapped.iterdir()) == before


def test_bad_input_unknown_format_or_precision(digits_run, tmp_path):
    assert_bad_input(edgecnn("export", digits_run, "--formats", "tflite,coreml", "--out", tmp_path / "a"),
                     "unknown format 'coreml'")
    assert_bad_input(edgecnn("export", digits_run, "--precisions", "bf16", "--out", tmp_path / "a"),
                     "unknown precision 'bf16'")
    assert_bad_input(edgecnn("export", digits_run, "--formats", "onnx", "--precisions", "dynamic",
                             "--out", tmp_path / "a"), "'dynamic' is not supported by onnx")
    assert not (tmp_path / "a").exists()


def test_bad_input_dataset_gone(tmp_path):
    p = tmp_path / "set.npz"
    rng = np.random.default_rng(0)
    np.savez(p, x_train=rng.integers(0, 256, (60, 8, 8), dtype=np.uint8), y_train=np.arange(60) % 3,
             x_test=rng.integers(0, 256, (30, 8, 8), dtype=np.uint8), y_test=np.arange(30) % 3)
    run = tmp_path / "run"
    assert edgecnn("train", "--dataset", f"npz:{p}", "--epochs", "1", "--out", run).code == 0
    p.unlink()
    assert_bad_input(edgecnn("export", run, "--int8", "--out", tmp_path / "a"),
                     "dataset is needed for calibration", "does not exist")
    assert not (tmp_path / "a").exists()


def test_bad_input_too_few_calibration_samples(digits_run, tmp_path):
    assert_bad_input(edgecnn("export", digits_run, "--int8", "--calib-samples", "5", "--out", tmp_path / "a"),
                     "at least 10")
    assert not (tmp_path / "a").exists()
    r = edgecnn("export", digits_run, "--int8", "--formats", "onnx", "--calib-samples", "50",
                "--out", tmp_path / "b")
    assert r.code == 0, r
    assert "warning: 50 calibration images is few" in r.err


def test_existing_artifact_folder_needs_force(digits_run, tmp_path):
    out = tmp_path / "a"
    assert edgecnn("export", digits_run, "--formats", "onnx", "--out", out).code == 0
    before = (out / "manifest.json").read_bytes()
    assert_bad_input(edgecnn("export", digits_run, "--formats", "tflite", "--out", out), "already exists")
    assert (out / "manifest.json").read_bytes() == before
    assert edgecnn("export", digits_run, "--formats", "tflite", "--out", out, "--force").code == 0
    assert {p.name for p in out.iterdir()} == {"manifest.json", "reference.npz", "model.fp32.tflite"}
    assert [p.name for p in tmp_path.iterdir()] == ["a"]


def test_inspect_bad_files(tmp_path):
    bad = tmp_path / "garbage.tflite"
    bad.write_bytes(b"\x00garbage" * 50)
    assert_bad_input(edgecnn("inspect", bad), "garbage.tflite", "cannot load")
    assert_bad_input(edgecnn("inspect", tmp_path / "missing.onnx"), "no such file")
    assert_bad_input(edgecnn("inspect", tmp_path), "is a folder", "one artifact file")


def test_tflite_fp16_is_half_the_file_and_answers_as_fp32(digits_run, emulated_env, tmp_path):
    """float16 weights, float32 compute: at most 52 % of the fp32 file, no calibration,
    and top-1 agreement with fp32 of at least 99.9 % (on digits' 360 test images: all);
    the emulated Pi 5 gives this machine's outputs to 1e-4, as for fp32."""
    out = tmp_path / "arts"
    r = edgecnn("export", digits_run, "--formats", "tflite", "--precisions", "fp32,fp16", "--out", out)
    assert r.code == 0, r
    made = {a["precision"]: a for a in json.loads((out / "manifest.json").read_text())["artifacts"]}
    fp16 = made["fp16"]
    assert fp16["file"] == "model.fp16.tflite" and fp16["bytes"] <= 0.52 * made["fp32"]["bytes"], made
    assert fp16["calibration"] is None and "float16 weights" in fp16["notes"]["quantization"], fp16
    info = edgecnn("inspect", out / "model.fp16.tflite", "--json").json
    assert info["precision"] == "fp16" and "DEQUANTIZE" in info["operators"], info
    r = edgecnn("validate", out, *FAST_BENCH, "--min-agreement", "99.9", "--target", "local",
                "--target", "emulated:cortex-a76", "--json", env=emulated_env)
    assert r.code == 0, r
    row, pi = [x for x in r.json["results"] if x["precision"] == "fp16"]
    assert row["status"] == "pass" and row["agreement"] >= 0.999 and row["accuracy_drop"] is not None, row
    assert 0 < row["max_abs_diff"] < 0.05, row  # float16 weights move the logits, a little
    assert pi["target"] == "emulated:cortex-a76" and pi["status"] == "pass" and pi["host_max_abs_diff"] <= 1e-4, pi
    assert_bad_input(edgecnn("export", digits_run, "--formats", "onnx", "--precisions", "fp16",
                             "--out", tmp_path / "b"), "'fp16' is not supported by onnx")
