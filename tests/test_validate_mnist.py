"""The question a user has before shipping, on real MNIST: do all 12 artifacts (3 formats
x fp32/int8 x PyTorch/TensorFlow sources) still classify like the trained model?"""
import xml.etree.ElementTree as ET

from conftest import edgecnn


def test_all_twelve_artifacts_validate_in_one_command(mnist_artifacts, tmp_path):
    r = edgecnn("validate", mnist_artifacts["torch"], mnist_artifacts["tf"], "--json", "--report", tmp_path / "rep")
    assert r.code == 0, r
    rows = r.json["results"]
    assert len(rows) == 12 and all(x["status"] == "pass" for x in rows)
    assert {(x["source_framework"], x["format"], x["precision"]) for x in rows} == {
        (fw, f, p) for fw in ("torch", "tf") for f in ("tflite", "ptl", "onnx") for p in ("fp32", "int8")}
    twins = {(x["source_framework"], x["format"]): x for x in rows if x["precision"] == "fp32"}
    for x in rows:
        assert x["samples"] == 10_000 and x["runs"] >= 200
        assert x["bench_seconds"] >= 1.0  # the default steady state: at least 200 runs and 1 s
        if x["precision"] == "fp32":
            assert x["agreement"] == 1.0, x
            assert x["max_abs_diff"] < 1e-3, x
        else:
            fp32 = twins[x["source_framework"], x["format"]]
            assert abs(x["accuracy"] - fp32["accuracy"]) <= 0.003, (x, fp32)
            assert x["agreement"] >= 0.995, x
            assert x["size_bytes"] < 0.35 * fp32["size_bytes"]
        assert x["accuracy"] > 0.985


def test_a_gate_tighter_than_measured_fails_and_junit_says_which(mnist_artifacts, tmp_path):
    art = mnist_artifacts["torch"]
    r = edgecnn("validate", art, "--formats", "onnx", "--precisions", "int8", "--json",
                "--bench-runs", "50", "--bench-seconds", "0.1")
    assert r.code == 0, r
    measured = r.json["results"][0]["agreement"] * 100
    junit = tmp_path / "junit.xml"
    r = edgecnn("validate", art, "--formats", "onnx", "--precisions", "int8", "--min-agreement",
                f"{measured + 0.01:.4f}", "--max-accuracy-drop", "1", "--junit", junit,
                "--bench-runs", "50", "--bench-seconds", "0.1")
    assert r.code == 1, r
    assert "FAIL min_agreement" in r.out and r.out.strip().endswith("verdict: FAIL")
    failures = [(c.get("name"), c.find("failure").get("message")) for c in ET.parse(junit).iter("testcase")
                if c.find("failure") is not None]
    assert len(failures) == 1
    name, message = failures[0]
    assert name == "onnx int8 min_agreement" and "top-1 agreement" in message and "FAILS >=" in message
