"""Gates a shipping CI needs: an accuracy floor, limits per artifact kind in edgecnn.toml,
JUnit cases that carry what they measured, and a per-device run timeout."""
import xml.etree.ElementTree as ET

from conftest import FAST_BENCH, assert_bad_input, edgecnn


def test_min_accuracy_fails_a_model_on_the_wrong_data(mnist_artifacts):
    """An MNIST model scored on Fashion-MNIST runs fine and answers badly: without a floor
    it passes, with one it fails."""
    args = ("validate", mnist_artifacts["torch"], "--dataset", "fashion-mnist", "--formats", "onnx",
            "--precisions", "fp32", *FAST_BENCH, "--json")
    r = edgecnn(*args)
    assert r.code == 0 and r.json["results"][0]["accuracy"] < 0.5, r
    r = edgecnn(*args, "--min-accuracy", "90")
    assert r.code == 1, r
    (gate,) = r.json["results"][0]["gates"]
    assert gate["gate"] == "min_accuracy" and not gate["passed"] and gate["value"] < 50
    assert "accuracy" in gate["message"] and "FAILS >= 90 %" in gate["message"]


def test_the_most_specific_table_wins_and_flags_override_it(digits_artifacts, tmp_path):
    (tmp_path / "edgecnn.toml").write_text(
        "[gates]\nmin_accuracy = 50\n"
        "[gates.int8]\nmax_size_kb = 1\n"               # every int8 file fails this ...
        "[gates.tflite]\nmin_accuracy = 10\n"
        "[gates.\"tflite.int8\"]\nmax_size_kb = 100000\n")  # ... but the int8 .tflite
    args = ("validate", digits_artifacts, "--formats", "tflite,onnx", *FAST_BENCH, "--json")
    r = edgecnn(*args, cwd=tmp_path)
    assert r.code == 1, r
    limits = {(x["format"], x["precision"]): {g["gate"]: (g["limit"], g["passed"]) for g in x["gates"]}
              for x in r.json["results"]}
    assert limits[("tflite", "int8")] == {"min_accuracy": (10.0, True), "max_size_kb": (100000.0, True)}
    assert limits[("onnx", "int8")] == {"min_accuracy": (50.0, True), "max_size_kb": (1.0, False)}
    assert limits[("onnx", "fp32")] == {"min_accuracy": (50.0, True)}
    assert limits[("tflite", "fp32")] == {"min_accuracy": (10.0, True)}
    assert r.json["gate_tables"]["tflite.int8"] == {"max_size_kb": 100000.0}
    # a flag is the last word for every artifact
    r = edgecnn(*args, "--max-size-kb", "100000", "--report", tmp_path / "rep", cwd=tmp_path)
    assert r.code == 0, r
    assert "int8: file size <= 100000 KB" in (tmp_path / "rep" / "report.md").read_text()


def test_an_unknown_table_or_gate_in_a_table_is_refused(digits_artifacts, tmp_path):
    (tmp_path / "edgecnn.toml").write_text("[gates.tflite-int8]\nmax_size_kb = 1\n")
    assert_bad_input(edgecnn("validate", digits_artifacts, cwd=tmp_path), "unknown table [gates.tflite-int8]")
    (tmp_path / "edgecnn.toml").write_text("[gates.int8]\nmax_size = 1\n")
    assert_bad_input(edgecnn("validate", digits_artifacts, cwd=tmp_path), "[gates.int8]", "unknown gate 'max_size'")
    assert_bad_input(edgecnn("validate", digits_artifacts, "--min-accuracy", "-1"), "min_accuracy")


def test_junit_cases_carry_value_and_limit_and_pipeline_names_its_file(tmp_path):
    junit = tmp_path / "ci" / "junit.xml"
    r = edgecnn("pipeline", "--framework", "torch", "--epochs", "2", "--formats", "onnx", "--out", tmp_path / "p",
                "--min-accuracy", "10", "--junit", junit, *FAST_BENCH)
    assert r.code == 0, r
    assert f"junit report: {junit}" in r.out
    cases = [c for c in ET.parse(junit).getroot().iter("testcase") if c.get("name").endswith("min_accuracy")]
    assert cases and all(c.find("failure") is None for c in cases)
    props = {p.get("name"): p.get("value") for p in cases[0].iter("property")}
    assert float(props["value"]) > 10 and float(props["limit"]) == 10 and props["unit"] == "%"
    assert "within >= 10 %" in cases[0].find("system-out").text


def test_device_timeout(digits_artifacts):
    # 1 ms: no harness starts its Python in less (0.2 s was once not long enough to fail)
    r = edgecnn("validate", digits_artifacts, "--formats", "onnx", "--precisions", "fp32", "--device-timeout", "0.001",
                *FAST_BENCH)
    assert r.code == 2, r
    assert "ran past 0.001 s on local (--device-timeout)" in r.err
    assert_bad_input(edgecnn("validate", digits_artifacts, "--device-timeout", "0"), "--device-timeout")
    assert_bad_input(edgecnn("validate", digits_artifacts, "--emulated-samples", "0"), "--emulated-samples")


def test_int8_speed_is_a_ratio_to_fp32_with_a_warning_when_slower(digits_artifacts, tmp_path):
    r = edgecnn("validate", digits_artifacts, "--formats", "tflite,onnx", *FAST_BENCH, "--json",
                "--report", tmp_path / "rep")
    assert r.code == 0, r
    p50 = {(x["format"], x["precision"]): x["latency_ms"]["p50"] for x in r.json["results"]}
    slower = []
    for x in r.json["results"]:
        if x["precision"] == "fp32":
            assert "latency_vs_fp32" not in x
            continue
        ratio = x["latency_vs_fp32"]
        assert abs(ratio - p50[(x["format"], x["precision"])] / p50[(x["format"], "fp32")]) < 2e-3
        assert bool(x.get("warnings")) == (ratio > 1), x
        if ratio > 1:
            slower.append(f"{x['format']} int8 on local: int8 is slower than fp32 here")
    assert all(s in r.err for s in slower)
    page = (tmp_path / "rep" / "report.md").read_text()
    assert "vs fp32" in page and ("## Warnings" in page) == bool(slower)


def test_a_baseline_judges_accuracy_by_a_paired_test_and_latency_beyond_noise(digits_artifacts, tmp_path):
    import json
    base = tmp_path / "base"
    args = ("validate", digits_artifacts, "--formats", "onnx", *FAST_BENCH)
    assert edgecnn(*args, "--report", base).code == 0
    # the same artifacts again: nothing lost, nothing gained; a huge tolerance so that a
    # loaded machine cannot fail it (tests never judge timings)
    r = edgecnn(*args, "--baseline", base / "results.json", "--latency-tolerance", "100000", "--json")
    assert r.code == 0, r
    for row in r.json["results"]:
        b = row["baseline"]
        assert (b["lost"], b["gained"], b["p_value"]) == (0, 0, 1.0) and b["ratio"] > 0
        assert {g["gate"] for g in row["gates"]} == {"baseline_accuracy", "baseline_latency"}
    # an old run 1000x faster: the new one regressed far beyond any noise
    doc = json.loads((base / "results.json").read_text())
    for row in doc["results"]:
        row["latency_ms"]["rounds_p50"] = [x / 1000 for x in row["latency_ms"]["rounds_p50"]]
    (tmp_path / "fast.json").write_text(json.dumps(doc))
    r = edgecnn(*args, "--baseline", tmp_path / "fast.json", "--json")
    assert r.code == 1, r
    failed = {g["gate"] for row in r.json["results"] for g in row["gates"] if not g["passed"]}
    assert failed == {"baseline_latency"}
    # a model trained 1 epoch instead of 10, on the same test images: significantly worse
    weak = tmp_path / "weak"
    assert edgecnn("pipeline", "--framework", "torch", "--epochs", "1", "--formats", "onnx", "--out", weak,
                   *FAST_BENCH).code == 0
    r = edgecnn("validate", weak / "artifacts" / "torch", *FAST_BENCH, "--baseline", base / "results.json",
                "--latency-tolerance", "100000", "--report", tmp_path / "rep")
    assert r.code == 1, r
    assert "FAIL baseline_accuracy" in r.out and "Against the run of" in r.out
    assert "## Against the baseline" in (tmp_path / "rep" / "report.md").read_text()


def test_a_bad_baseline_is_one_line(digits_artifacts, tmp_path):
    (tmp_path / "x.json").write_text("{}")
    assert_bad_input(edgecnn("validate", digits_artifacts, "--baseline", tmp_path / "x.json"), "not an edgecnn results")
    assert_bad_input(edgecnn("validate", digits_artifacts, "--baseline", tmp_path / "none.json"), "no such file")
    assert_bad_input(edgecnn("validate", digits_artifacts, "--latency-tolerance", "5"), "add --baseline")


def test_estimate_gates_hold_their_board_s_rows_and_need_its_target(digits_artifacts):
    from edgecnn.toolchain import gates
    assert_bad_input(edgecnn("validate", digits_artifacts, "--max-est-latency-ms", "pi4=2"),
                     "needs --target emulated:cortex-a72")
    assert_bad_input(edgecnn("validate", digits_artifacts, "--max-est-latency-ms", "pi9=2"), "BOARD=MS", "pi4, pi5")
    assert_bad_input(edgecnn("validate", digits_artifacts, "--max-est-latency-ms", "pi4=fast"), "not a number")
    est = {"boards": {"pi4": {"clocks": {"1.5": {"ms": 2.5}, "1.8": {"ms": 2.1}}}}}
    row = {"target": "emulated:cortex-a72", "pi_estimate": est}
    [g] = gates.check(row, {"max_est_pi4_ms": 2.0})  # at the stock clock, 1.5 GHz
    assert not g["passed"] and g["value"] == 2.5 and "estimated Pi 4 latency at 1.5 GHz" in g["message"], g
    assert gates.check(row, {"max_est_pi4_ms": 3.0})[0]["passed"]
    assert gates.check(dict(row, target="local"), {"max_est_pi4_ms": 2.0}) == []  # not this row's board
    [missing] = gates.check({"target": "emulated:cortex-a72"}, {"max_est_pi4_ms": 2.0})
    assert not missing["passed"] and "was not measured" in missing["message"]
