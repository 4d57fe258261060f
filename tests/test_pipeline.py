"""`edgecnn pipeline`: train -> export -> validate -> report in one command, on digits."""
import json
import xml.etree.ElementTree as ET

from conftest import FAST_BENCH, assert_bad_input, edgecnn


def test_pipeline_both_frameworks_side_by_side(tmp_path):
    out = tmp_path / "pipe"
    r = edgecnn("pipeline", "--framework", "both", "--dataset", "digits", "--epochs", "8", "--int8",
                "--out", out, *FAST_BENCH)
    assert r.code == 0, r
    assert f"html report: {out / 'report' / 'index.html'}" in r.out
    table = [ln.split() for ln in r.out.splitlines() if ln.startswith(("PyTorch", "TensorFlow"))]
    assert len(table) == 12
    assert {row[0] for row in table} == {"PyTorch", "TensorFlow"}
    doc = json.loads((out / "report" / "results.json").read_text())
    assert [t["framework"] for t in doc["pipeline"]["trained"]] == ["torch", "tf"]
    for fw in ("torch", "tf"):
        assert (out / "runs" / fw / "run.json").is_file()
        assert (out / "artifacts" / fw / "manifest.json").is_file()
    for row in doc["results"]:
        assert row["status"] == "pass" and row["accuracy"] > 0.8
        if row["precision"] == "fp32":
            assert row["agreement"] == 1.0
    page = (out / "report" / "index.html").read_text()
    assert page.count("<svg") == 2 and "TensorFlow" in page and "PyTorch" in page
    assert len(list(ET.parse(out / "report" / "junit.xml").iter("testcase"))) == 12

    # the folder is not replaced without --force, and nothing in it is touched
    before = (out / "report" / "results.json").read_bytes()
    assert_bad_input(edgecnn("pipeline", "--framework", "torch", "--out", out), "already exists", "--force")
    assert (out / "report" / "results.json").read_bytes() == before
    # a --force run that fails puts the earlier folder back whole
    r = edgecnn("pipeline", "--framework", "torch", "--epochs", "0", "--out", out, "--force")
    assert r.code == 2, r
    assert (out / "report" / "results.json").read_bytes() == before
    assert (out / "artifacts" / "tf" / "manifest.json").is_file()
    assert [p.name for p in tmp_path.iterdir()] == ["pipe"]  # nothing left aside


def test_pipeline_bad_input_fails_before_training(tmp_path):
    assert_bad_input(edgecnn("pipeline", "--dataset", "nope", "--out", tmp_path / "p"), "unknown dataset")
    assert_bad_input(edgecnn("pipeline", "--formats", "tflite,coreml", "--out", tmp_path / "p"), "unknown format")
    assert_bad_input(edgecnn("pipeline", "--target", "ssh:/x", "--out", tmp_path / "p"), "unknown target")
    assert not (tmp_path / "p").exists()
    assert_bad_input(edgecnn("pipeline", "--train-threads", "0", "--out", tmp_path / "p"), "threads")
    assert_bad_input(edgecnn("pipeline", "--lr", "-1", "--out", tmp_path / "p"), "learning rate")
    assert_bad_input(edgecnn("pipeline", "--precisions", "fp8", "--out", tmp_path / "p"), "precision")
    assert not (tmp_path / "p").exists()


def test_pipeline_takes_the_train_and_export_options(tmp_path):
    out = tmp_path / "p"
    r = edgecnn("pipeline", "--framework", "torch", "--epochs", "1", "--lr", "0.01", "--batch-size", "32",
                "--train-threads", "1", "--formats", "tflite,ptl", "--precisions", "fp32,dynamic", "--int8",
                "--engine", "x86", "--bench-runs", "5", "--bench-seconds", "0", "--json", "--out", out)
    assert r.code in (0, 1), r
    run = json.loads((out / "runs" / "torch" / "run.json").read_text())
    assert (run["lr"], run["batch_size"], run["threads"]) == (0.01, 32, 1)
    made = {(x["format"], x["precision"]) for x in r.json["results"]}
    assert made == {("tflite", "fp32"), ("tflite", "dynamic"), ("tflite", "int8"), ("ptl", "fp32"), ("ptl", "int8")}
    manifest = json.loads((out / "artifacts" / "torch" / "manifest.json").read_text())
    ptl = next(a for a in manifest["artifacts"] if a["format"] == "ptl" and a["precision"] == "int8")
    assert ptl["notes"]["engine"] == "x86"
