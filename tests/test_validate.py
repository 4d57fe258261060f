"""`edgecnn validate` and `edgecnn doctor` through the installed CLI, on digits artifacts."""
import json
import re
import shutil
import xml.etree.ElementTree as ET
from html.parser import HTMLParser

import pytest

from conftest import FAST_BENCH, assert_bad_input, edgecnn


@pytest.fixture()
def arts(digits_artifacts, tmp_path):
    """A private copy that a test may damage."""
    out = tmp_path / "arts"
    shutil.copytree(digits_artifacts, out)
    return out


def test_validate_writes_table_json_junit_and_reports(digits_artifacts, tmp_path):
    report, junit = tmp_path / "report", tmp_path / "ci" / "junit.xml"
    r = edgecnn("validate", digits_artifacts, *FAST_BENCH, "--report", report, "--junit", junit)
    assert r.code == 0, r
    lines = r.out.splitlines()
    assert lines[0].split()[:4] == ["model", "format", "precision", "size"]
    assert sum(1 for ln in lines if ln.startswith("PyTorch")) == 6
    assert lines[-1] == "verdict: PASS"
    assert "validating [6/6]" in r.err  # progress goes to stderr

    doc = json.loads((report / "results.json").read_text())
    assert len(doc["results"]) == 6 and doc["passed"]
    for row in doc["results"]:
        for key in ("artifact", "format", "precision", "target", "accuracy", "agreement", "max_abs_diff",
                    "latency_ms", "load_ms", "first_ms", "peak_rss_mb", "size_bytes", "status", "gates"):
            assert key in row, key
        assert set(row["latency_ms"]) >= {"p50", "p90", "p99", "mean", "std"}
        assert row["target"] == "local" and row["status"] == "pass" and row["gates"] == []
        if row["precision"] == "fp32":
            assert row["agreement"] == 1.0 and row["accuracy_drop"] == 0.0

    cases = ET.parse(junit).getroot().findall(".//testcase")
    assert len(cases) == 6 and not ET.parse(junit).getroot().findall(".//failure")

    md = (report / "report.md").read_text()
    assert "| PyTorch | onnx | int8 |" in md and "## Accuracy per class" in md
    page = (report / "index.html").read_text()
    _check_self_contained(page, rows=6)


class _Page(HTMLParser):
    VOID = {"meta", "br", "img", "link", "input", "hr"}

    def __init__(self):
        super().__init__()
        self.stack, self.tags, self.urls, self.svg = [], [], [], 0

    def handle_starttag(self, tag, attrs):
        self.tags.append(tag)
        self.svg += tag == "svg"
        self.urls += [v for k, v in attrs if k in ("src", "href", "xlink:href") and v and not v.startswith("#")]
        if tag not in self.VOID:
            self.stack.append(tag)

    def handle_startendtag(self, tag, attrs):
        self.tags.append(tag)
        self.urls += [v for k, v in attrs if k in ("src", "href", "xlink:href") and v and not v.startswith("#")]

    def handle_endtag(self, tag):
        assert self.stack and self.stack[-1] == tag, (tag, self.stack[-5:])
        self.stack.pop()


def _check_self_contained(page: str, rows: int):
    p = _Page()
    p.feed(page)
    assert not p.stack, p.stack  # every element closed
    assert p.urls == [], p.urls  # nothing to fetch: no scripts, fonts, images or links
    assert not re.findall(r"url\((?!#)", page) and "@import" not in page and "<script" not in page
    assert p.svg == 2  # the accuracy-against-latency plot and the size chart
    assert page.count("<tr>") >= rows + 1
    assert "Accuracy against latency" in page and "Artifact size" in page


def test_tight_gates_exit_1_and_junit_names_the_gate(digits_artifacts, tmp_path):
    junit = tmp_path / "junit.xml"
    r = edgecnn("validate", digits_artifacts, "--formats", "tflite", *FAST_BENCH, "--max-latency-ms", "0.000001",
                "--max-size-kb", "10000", "--junit", junit, "--json")
    assert r.code == 1, r
    doc = r.json
    assert not doc["passed"] and doc["gates"] == {"max_latency_ms": 1e-6, "max_size_kb": 10000.0}
    for row in doc["results"]:
        assert row["status"] == "fail"
        gates = {g["gate"]: g for g in row["gates"]}
        assert not gates["max_latency_ms"]["passed"] and gates["max_size_kb"]["passed"]
    root = ET.parse(junit).getroot()
    assert root.get("tests") == "6" and root.get("failures") == "2"  # 2 artifacts x (runs + 2 gates)
    failed = [c.get("name") for c in root.iter("testcase") if c.find("failure") is not None]
    assert failed == ["tflite fp32 max_latency_ms", "tflite int8 max_latency_ms"]
    assert "FAILS <= 1e-06 ms" in root.find(".//failure").get("message")


def test_gates_from_edgecnn_toml_and_flags_override(digits_artifacts, tmp_path):
    (tmp_path / "edgecnn.toml").write_text("[gates]\nmax_accuracy_drop = 50\nmin_agreement = 100.0\n")
    r = edgecnn("validate", digits_artifacts, "--formats", "onnx", *FAST_BENCH, "--json", cwd=tmp_path)
    assert r.code == (0 if r.json["passed"] else 1), r
    assert "gates from edgecnn.toml" in r.err
    assert r.json["gates"] == {"max_accuracy_drop": 50.0, "min_agreement": 100.0}
    fp32 = next(x for x in r.json["results"] if x["precision"] == "fp32")
    assert fp32["status"] == "pass"  # fp32 agrees 100 %
    r = edgecnn("validate", digits_artifacts, "--formats", "onnx", *FAST_BENCH, "--json", "--min-agreement", "0",
                cwd=tmp_path)
    assert r.code == 0, r
    assert r.json["gates"]["min_agreement"] == 0.0


def test_unknown_gate_in_toml_is_refused(digits_artifacts, tmp_path):
    (tmp_path / "edgecnn.toml").write_text("[gates]\nmax_latency = 5\n")
    assert_bad_input(edgecnn("validate", digits_artifacts, cwd=tmp_path), "unknown gate 'max_latency'",
                     "max_latency_ms")
    (tmp_path / "edgecnn.toml").write_text("[gate]\nmax_latency_ms = 5\n")
    assert_bad_input(edgecnn("validate", digits_artifacts, cwd=tmp_path), "unknown section 'gate'")
    (tmp_path / "edgecnn.toml").write_text("[gates]\nmax_latency_ms = 'fast'\n")
    assert_bad_input(edgecnn("validate", digits_artifacts, cwd=tmp_path), "must be a number")
    (tmp_path / "edgecnn.toml").write_text("[gates\n")
    assert_bad_input(edgecnn("validate", digits_artifacts, cwd=tmp_path), "not valid TOML")


def test_bad_input_manifest_missing_or_not_json(arts, tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    assert_bad_input(edgecnn("validate", empty), "no manifest.json")
    assert_bad_input(edgecnn("validate", tmp_path / "nowhere"), "no such artifact folder")
    (arts / "manifest.json").write_text("{ not json")
    assert_bad_input(edgecnn("validate", arts), "manifest.json is not valid JSON")
    (arts / "manifest.json").write_text('{"schema": 1}')
    assert_bad_input(edgecnn("validate", arts), "not an edgecnn manifest")


def test_bad_input_sha_mismatch_and_truncation(arts):
    f = arts / "model.int8.onnx"
    blob = bytearray(f.read_bytes())
    blob[len(blob) // 2] ^= 0xFF  # same size, one byte changed
    f.write_bytes(bytes(blob))
    assert_bad_input(edgecnn("validate", arts), "model.int8.onnx", "sha256", "does not match", "refusing")
    f.write_bytes(bytes(blob[: len(blob) // 3]))
    assert_bad_input(edgecnn("validate", arts), "model.int8.onnx", "truncated")
    # the other artifacts still validate when the damaged one is left out
    r = edgecnn("validate", arts, "--formats", "tflite", *FAST_BENCH)
    assert r.code == 0, r


def test_bad_input_garbage_artifact_that_matches_its_manifest(arts):
    """Checksums prove a file is the one export wrote, not that it runs: a garbage file
    re-hashed into the manifest is still caught, by name, with exit 2."""
    import hashlib
    f = arts / "model.fp32.tflite"
    f.write_bytes(b"this is not a flatbuffer" * 100)
    m = json.loads((arts / "manifest.json").read_text())
    entry = next(a for a in m["artifacts"] if a["file"] == f.name)
    entry["sha256"], entry["bytes"] = hashlib.sha256(f.read_bytes()).hexdigest(), f.stat().st_size
    (arts / "manifest.json").write_text(json.dumps(m))
    r = edgecnn("validate", arts, "--formats", "tflite", *FAST_BENCH, "--report", arts / "report")
    assert r.code == 2, r
    assert "Traceback" not in r.err
    last = r.err.strip().splitlines()[-1]
    assert last.startswith("edgecnn: error:") and "model.fp32.tflite" in last and "LiteRT cannot load it" in last
    assert "error: model.fp32.tflite: LiteRT cannot load it" in r.out  # its row in the table
    assert "int8" in r.out and "pass" in r.out  # the good one still ran
    assert "LiteRT cannot load it" in (arts / "report" / "index.html").read_text()
    r = edgecnn("validate", arts, "--formats", "tflite", *FAST_BENCH, "--json")
    assert r.code == 2 and [x["status"] for x in r.json["results"]] == ["error", "pass"], r


def test_export_failure_is_a_failed_row_and_paths_may_have_spaces(digits_artifacts, tmp_path):
    arts = tmp_path / "my artifacts"
    shutil.copytree(digits_artifacts, arts)
    m = json.loads((arts / "manifest.json").read_text())
    entry = next(a for a in m["artifacts"] if a["file"] == "model.int8.onnx")
    entry.update(status="failed", reason="RuntimeError: calibration diverged")
    (arts / "model.int8.onnx").unlink()
    (arts / "manifest.json").write_text(json.dumps(m))
    junit = tmp_path / "j unit.xml"
    r = edgecnn("validate", arts, "--formats", "onnx", *FAST_BENCH, "--junit", junit, "--report", arts / "r")
    assert r.code == 1, r
    assert "FAIL export failed: RuntimeError: calibration diverged" in r.out
    failures = [c.find("failure").get("message") for c in ET.parse(junit).iter("testcase")
                if c.find("failure") is not None]
    assert failures == ["export failed: RuntimeError: calibration diverged"]


def test_bad_input_damaged_manifest_fields(arts):
    m = json.loads((arts / "manifest.json").read_text())
    del m["artifacts"][0]["bytes"]
    (arts / "manifest.json").write_text(json.dumps(m))
    assert_bad_input(edgecnn("validate", arts), "no valid bytes and sha256")
    m["model"]["input_shape"] = "8x8"
    (arts / "manifest.json").write_text(json.dumps(m))
    assert_bad_input(edgecnn("validate", arts), "input_shape")
    m["model"]["input_shape"] = [8, 8, 1]
    m["artifacts"][0]["file"] = "../../etc/passwd"
    (arts / "manifest.json").write_text(json.dumps(m))
    assert_bad_input(edgecnn("validate", arts), "not a plain file name")


def test_bad_input_shape_mismatch(shared_data, mnist_artifacts):
    assert_bad_input(edgecnn("validate", mnist_artifacts["torch"], "--dataset", "digits"),
                     "take 28x28x1 images", "'digits' has 8x8x1")


def test_bad_input_usage(digits_artifacts):
    assert_bad_input(edgecnn("validate", digits_artifacts, "--target", "pi"), "unknown target 'pi'", "local")
    assert_bad_input(edgecnn("validate", digits_artifacts, "--formats", "coreml"), "unknown format")
    assert_bad_input(edgecnn("validate", digits_artifacts, "--threads", "0"), "--threads")
    assert_bad_input(edgecnn("validate", digits_artifacts, "--min-agreement", "-1"), "min_agreement")
    assert_bad_input(edgecnn("validate", digits_artifacts, "--formats", "onnx", "--precisions", "dynamic"),
                     "no artifacts match")
    assert_bad_input(edgecnn("validate", digits_artifacts / "model.fp32.pt"), "no such artifact folder")


def test_one_artifact_file_can_be_validated_alone(digits_artifacts):
    r = edgecnn("validate", digits_artifacts / "model.int8.tflite", *FAST_BENCH, "--json")
    assert r.code == 0, r
    assert [x["file"] for x in r.json["results"]] == ["model.int8.tflite"]


def _no_runtime(tmp_path, *modules):
    """A PYTHONPATH on which importing these modules fails, as if they were not installed."""
    shadow = tmp_path / "shadow"
    for m in modules:
        (shadow / m).mkdir(parents=True)
        (shadow / m / "__init__.py").write_text(f"raise ImportError(\"No module named {m!r}\")\n")
    return {"PYTHONPATH": str(shadow)}


def test_missing_runtime_is_skipped_with_a_hint(digits_artifacts, tmp_path):
    env = _no_runtime(tmp_path, "onnxruntime")
    r = edgecnn("validate", digits_artifacts, "--formats", "onnx,tflite", *FAST_BENCH, "--json", env=env)
    assert r.code == 0, r
    rows = {(x["format"], x["precision"]): x for x in r.json["results"]}
    for p in ("fp32", "int8"):
        assert rows["onnx", p]["status"] == "skipped"
        assert rows["onnx", p]["reason"] == "ONNX Runtime is not installed"
        assert rows["onnx", p]["hint"] == "pip install onnxruntime"
        assert rows["tflite", p]["status"] == "pass"
    # with a gate set, an artifact that was never run must not read as green
    r = edgecnn("validate", digits_artifacts, "--formats", "onnx,tflite", *FAST_BENCH, "--max-size-kb", "9999",
                env=env)
    assert r.code == 1 and r.out.strip().endswith("verdict: FAIL"), r
    # and nothing run at all is never a pass
    r = edgecnn("validate", digits_artifacts, "--formats", "onnx", *FAST_BENCH, env=env)
    assert r.code == 1 and "skipped: ONNX Runtime is not installed (pip install onnxruntime)" in r.out, r
    r = edgecnn("doctor", env=env)
    assert r.code == 1, r
    assert "MISSING" in r.out and "pip install onnxruntime" in r.out


def test_doctor_lists_runtimes_and_targets():
    r = edgecnn("doctor", "--json")
    assert r.code == 0, r
    runtimes = {x["format"]: x for x in r.json["runtimes"]}
    assert runtimes["tflite"]["version"].startswith("ai_edge_litert")
    assert runtimes["onnx"]["usable"] and runtimes["ptl"]["usable"]
    targets = {x["target"]: x for x in r.json["targets"]}
    assert targets["local"]["usable"]
