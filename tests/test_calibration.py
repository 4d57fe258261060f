"""export --calibration: how each int8 quantizer estimates activation ranges, chosen
where the quantizer offers it; a quantizer that does not keeps its own and the manifest
and table say so."""
import json

from conftest import FAST_BENCH, assert_bad_input, edgecnn


def _int8(out, fmt):
    manifest = json.loads((out / "manifest.json").read_text())
    return next(a for a in manifest["artifacts"] if a["format"] == fmt and a["precision"] == "int8")


def test_each_quantizer_uses_the_calibration_it_offers(digits_run, tmp_path):
    entropy, minmax = tmp_path / "entropy", tmp_path / "minmax"
    r = edgecnn("export", digits_run, "--int8", "--calibration", "entropy", "--formats", "onnx,ptl", "--out", entropy)
    assert r.code == 0, r
    onnx = _int8(entropy, "onnx")
    assert onnx["calibration"]["ranges"] == "entropy" and "asked" not in onnx["calibration"], onnx
    assert "Entropy" in onnx["notes"]["quantization"]
    ptl = _int8(entropy, "ptl")  # torch.ao has no entropy observer: its own, and said
    assert ptl["calibration"]["ranges"] == "histogram" and ptl["calibration"]["asked"] == "entropy", ptl
    assert "calibration: histogram (entropy not offered)" in r.out, r.out
    r = edgecnn("validate", entropy, *FAST_BENCH, "--json")
    assert r.code == 0 and all(row["status"] == "pass" for row in r.json["results"]), r

    r = edgecnn("export", digits_run, "--int8", "--calibration", "minmax", "--formats", "onnx,ptl", "--out", minmax)
    assert r.code == 0, r
    assert "minmax observers" in _int8(minmax, "ptl")["notes"]["quantization"]
    # the estimator changes the ranges, so the files differ
    for fmt in ("onnx", "ptl"):
        assert _int8(minmax, fmt)["sha256"] != _int8(entropy, fmt)["sha256"], fmt


def test_bad_calibrations_are_refused(digits_run, tmp_path):
    assert_bad_input(edgecnn("export", digits_run, "--int8", "--calibration", "median", "--out", tmp_path / "a"),
                     "unknown calibration 'median'", "entropy")
    assert_bad_input(edgecnn("export", digits_run, "--calibration", "minmax", "--out", tmp_path / "b"),
                     "--calibration", "add --int8")
    assert not (tmp_path / "a").exists() and not (tmp_path / "b").exists()


def test_more_calibration_images_than_exist_is_clamped_before_training(tmp_path):
    """A 60-image CSV set has 48 training images: asking for 500 warns before training
    starts and calibrates on all 48."""
    import numpy as np
    from edgecnn.toolchain import data
    ds = data.load("digits")
    rows = np.concatenate([ds.y_test[:60, None], ds.x_test[:60].reshape(60, -1)], axis=1)
    np.savetxt(tmp_path / "small.csv", rows, fmt="%d", delimiter=",")
    r = edgecnn("pipeline", "--framework", "torch", "--dataset", f"csv:{tmp_path / 'small.csv'}", "--epochs", "1",
                "--formats", "tflite", "--int8", "--calib-samples", "500", "--out", tmp_path / "p", *FAST_BENCH)
    assert r.code in (0, 1), r
    warning = "--calib-samples 500 is more than the 48 training images; calibrating on all 48"
    assert warning in r.err and r.err.index(warning) < r.err.index("epoch")
    manifest = json.loads(next((tmp_path / "p" / "artifacts").glob("*/manifest.json")).read_text())
    assert manifest["calibration"]["samples"] == 48
    assert_bad_input(edgecnn("export", next((tmp_path / "p" / "runs").iterdir()), "--int8", "--calib-samples", "5",
                             "--out", tmp_path / "e"), "too few")
