"""Raspberry Pi-class CPUs, and an x86 CPU without VNNI, under QEMU user-mode emulation:
the same artifacts must give the same answers on their kernels as here, and a broken ARM
kernel must be caught."""
import os
from pathlib import Path

from conftest import FAST_BENCH, assert_bad_input, edgecnn


def test_setup_is_reused_and_doctor_sees_it(emulated_env):
    again = edgecnn("device", "setup", "emulated", "--json", env=emulated_env)
    assert again.code == 0 and again.json["reused"] is True, again
    assert set(again.json["versions"]["wheels"]) == {"numpy", "onnxruntime", "onnx", "ai-edge-litert"}
    assert again.json["x86"]["x86-avx2"]["reused"] is True
    r = edgecnn("doctor", "--json", env=emulated_env)
    targets = {t["target"]: t for t in r.json["targets"]}
    for cpu, board in (("cortex-a72", "Raspberry Pi 4"), ("cortex-a76", "Raspberry Pi 5"),
                       ("x86-avx2", "AVX2 and no VNNI")):
        assert targets[f"emulated:{cpu}"]["usable"] and board in targets[f"emulated:{cpu}"]["detail"]
        assert "ready" in targets[f"emulated:{cpu}"]["detail"]
    # the counting plugin was built by the first setup, and seen to count
    assert targets["emulated:cortex-a72"]["pi_estimates"] and targets["emulated:cortex-a76"]["pi_estimates"]
    assert targets["local"]["int8"]["int8_accumulation"] in targets["local"]["detail"]


def test_without_the_torch_opt_in_the_skip_says_which_command_adds_it(monkeypatch, tmp_path):
    from edgecnn.runtime import RUNNERS, runner_class
    from edgecnn.toolchain.targets import parse_target
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))  # nothing provisioned
    pi = parse_target("emulated:cortex-a72", 1)
    opt_in = [f for f in RUNNERS if runner_class(f).emulated_extra == "torch"]
    assert len(opt_in) == 2
    for fmt in RUNNERS:
        why = pi.why_not(fmt)
        if fmt in opt_in:
            assert "edgecnn device setup emulated --with torch" in why, fmt
        else:
            assert why is None, (fmt, why)


def test_setting_up_again_keeps_the_opt_in_and_a_killed_one_is_cleared(emulated_env, tmp_path):
    """No download: a current stamp is all the base setup reads of an extra."""
    import json
    import shutil
    from edgecnn.toolchain import emulation
    root = tmp_path / "emulated"
    shutil.copytree(Path(emulated_env["XDG_CACHE_HOME"]) / "edgecnn" / "emulated", root, symlinks=True,
                    copy_function=os.link)
    site = emulation.extra_site("torch", root)
    site.mkdir()
    (site / emulation.STAMP).write_text(json.dumps({"versions": emulation.extra_versions("torch")}))
    assert emulation.status(root)["extras"] == {"torch": False}  # from before its bytecode: set up again
    (site / emulation.STAMP).write_text(json.dumps(emulation.extra_stamp("torch")))
    assert emulation.status(root)["extras"] == {"torch": True}
    assert str(site) in emulation.command("cortex-a72", [], root)[1]["PYTHONPATH"]
    emulation.setup(force=True, root=root, log=lambda _: None)  # the base again, from nothing
    assert emulation.status(root)["extras"] == {"torch": True}
    (site / emulation.STAMP).write_text(json.dumps({"versions": {"torch": "0.1"}}))  # stale: not on the path
    assert emulation.status(root)["extras"] == {"torch": False}
    assert str(site) not in emulation.command("cortex-a72", [], root)[1]["PYTHONPATH"]


def test_mnist_artifacts_answer_the_same_on_pi4_and_pi5(emulated_torch, mnist_artifacts, mnist_pte, tmp_path):
    """The PyTorch run's artifacts, with the torch opt-in provisioned, so every format runs:
    the Keras run's use the same kernels, and CI time is better spent elsewhere than
    running them twice under emulation. The x86 CPU without VNNI runs every int8 format
    of both frameworks in test_int8_hosts.py. 400 images of the 1,000 a user's run
    compares: the rows' imports and benchmarks cost the same either way."""
    from edgecnn.runtime import runner_class
    # the download size was stated before anything was fetched; PyPI's aarch64 torch
    # brings NVIDIA's CUDA libraries, whatever the board
    setup = emulated_torch["setup"]
    assert setup["reused"] is True and setup["extras"]["torch"]["reused"] is False
    assert "GB to download" in emulated_torch["announced"] and setup["extras"]["torch"]["download_bytes"] > 1e9
    # installed with its bytecode, for the board's Python: an emulated import compiles nothing
    from edgecnn.toolchain.emulation import BOARD_PYTHON
    site = Path(setup["extras"]["torch"]["root"])
    assert (site / "torch" / "__pycache__" / f"__init__.cpython-{BOARD_PYTHON.replace('.', '')}.pyc").is_file(), site
    env = emulated_torch["env"]
    doctor = {t["target"]: t["detail"] for t in edgecnn("doctor", "--json", env=env).json["targets"]
              if t["target"].startswith("emulated:cortex")}
    assert set(doctor) == {"emulated:cortex-a72", "emulated:cortex-a76"}
    assert all("; with torch" in d for d in doctor.values()), doctor
    r = edgecnn("validate", mnist_artifacts["torch"], mnist_pte, "--target", "emulated:cortex-a72",
                "--target", "emulated:cortex-a76", "--json",
                "--emulated-samples", "400", "--report", tmp_path / "rep", *FAST_BENCH, env=env, timeout=2400)
    assert r.code == 0, r
    rows = r.json["results"]
    ran = [x for x in rows if x["status"] != "skipped"]
    assert len(ran) == len(rows) == 16  # tflite, onnx, ptl and pte x 2 precisions x 2 CPUs
    for x in ran:
        assert x["status"] == "pass" and x["emulated"] and x["target"] in ("emulated:cortex-a72",
                                                                            "emulated:cortex-a76"), x
        assert x["samples"] == 400 and x["accuracy"] > 0.97
        if x["precision"] == "int8":
            assert x["host_agreement"] == 1.0, x
        else:
            assert x["host_max_abs_diff"] <= 1e-4, x
        # emulated time is kept under its own name, never beside real latencies
        assert "latency_ms" not in x and x["emulated_latency_ms"]["p50"] > 0
        # the instructions of a warmed inference, counted three times, repeat within 0.5 % (a
        # .ptl's regions span the cycle of inferences over which qnnpack's work repeats)
        count = x["pi_count"]
        assert count["inferences_per_region"] == runner_class(x["format"]).count_window, count
        assert len(count["regions"]) == 3 and count["spread"] <= 0.005 and count["cycles"] > 0, count
        assert "regions" not in x and "inferences_per_region" not in x  # told once, in pi_count
        est = x["pi_estimate"]
        assert est["calibrated"] and est["core"] == x["target"].split(":")[1], est
        for board in est["boards"].values():
            for at in board["clocks"].values():  # never below the core's peak, never without its band
                assert at["ms"] >= at["lower_bound_ms"] > 0 and at["band_ms"][0] < at["ms"] < at["band_ms"][1], at
    # the seed CNN's fp32 LiteRT kernels on the A72 are 4-lane FMLAs: one per 4 MACs
    tflite = next(x for x in ran if x["file"] == "model.fp32.tflite" and x["target"] == "emulated:cortex-a72")
    assert abs(tflite["pi_count"]["mix"]["fmla.4s"] / (tflite["macs"] / 4) - 1) <= 0.02, tflite["pi_count"]
    page = (tmp_path / "rep" / "index.html").read_text()
    assert "emulated:cortex-a76" in page and "under QEMU user-mode emulation" in page


def test_explain_reads_the_layers_on_an_emulated_pi(emulated_env, digits_artifacts):
    """The Pi 5's kernels give the same int8 answers as this machine's, so its layers
    compare with fp32 as closely as here; the .ptl exposes no layers anywhere."""
    r = edgecnn("explain", digits_artifacts, "--target", "local", "--target", "emulated:cortex-a76", "--no-alone",
                "--samples", "64", "--json", env=emulated_env)
    assert r.code == 0, r
    rows = {(a["target"], a["format"]): a for a in r.json["artifacts"]}
    for fmt in ("tflite", "onnx"):
        here, pi = rows[("local", fmt)], rows[("emulated:cortex-a76", fmt)]
        assert pi["exposed"] and pi["jump"] is None and len(pi["layers"]) == len(here["layers"]) >= 6, pi
        for a, b in zip(here["layers"], pi["layers"]):
            assert a["layer"] == b["layer"] and abs(a["sqnr_db"] - b["sqnr_db"]) < 1.0, (fmt, a, b)
    assert not rows[("emulated:cortex-a76", "ptl")]["exposed"]
    assert "on emulated:cortex-a76 (cortex-a76 (Raspberry Pi 5)" in edgecnn(
        "explain", digits_artifacts, "--target", "emulated:cortex-a76", "--no-alone", "--samples", "16",
        "--formats", "tflite", env=emulated_env).out


def test_a_broken_arm_kernel_is_caught(emulated_env, digits_artifacts, tmp_path):
    """QEMU's default CPU model computes int8 TFLite wrongly (../shared/notes/arm64.md)."""
    junit = tmp_path / "junit.xml"
    r = edgecnn("validate", digits_artifacts, "--target", "emulated:max", "--formats", "tflite", *FAST_BENCH,
                "--junit", junit, "--json", env=emulated_env)
    assert r.code == 1, r
    rows = {x["precision"]: x for x in r.json["results"]}
    assert rows["fp32"]["status"] == "pass"
    assert rows["int8"]["status"] == "fail" and rows["int8"]["host_agreement"] < 0.5
    failed = [g for g in rows["int8"]["gates"] if not g["passed"]]
    assert [g["gate"] for g in failed] == ["min_host_agreement"]
    assert "tflite int8 min_host_agreement" in junit.read_text()


def test_without_qemu_the_error_says_how_to_install_it(digits_artifacts, tmp_path):
    bare = tmp_path / "bin"
    bare.mkdir()
    assert_bad_input(edgecnn("validate", digits_artifacts, "--target", "emulated:cortex-a72",
                             env={"PATH": str(bare), "XDG_CACHE_HOME": str(tmp_path)}),
                     "QEMU user-mode emulation is not installed", "apt-get install qemu-user-static")
    assert_bad_input(edgecnn("validate", digits_artifacts, "--target", "emulated:x86-avx2",
                             env={"PATH": str(bare), "XDG_CACHE_HOME": str(tmp_path)}),
                     "x86-64 user-mode emulator is not installed", "apt-get install qemu-user-static")
    assert_bad_input(edgecnn("validate", digits_artifacts, "--target", "emulated:cortex-m4"), "unknown emulated CPU")


def test_mobilenet_int8_ptl_is_right_on_the_pi_s_own_qnnpack(emulated_torch, tmp_path):
    """Quantized ReLU6 on the channels_last tensors that qnnpack's convolutions give is
    wrong in PyTorch (../shared/notes/models.md), and the emulated A72's aarch64 torch
    shows the same fault. The mobilenet's int8 .ptl, made for qnnpack, must give this
    machine's answers on the Pi's own engine, where a user's device runs it."""
    run, arts = tmp_path / "run", tmp_path / "arts"
    assert edgecnn("train", "--model", "mobilenet", "--epochs", "2", "--out", run).code == 0
    assert edgecnn("export", run, "--formats", "ptl", "--precisions", "int8", "--out", arts).code == 0
    r = edgecnn("validate", arts, "--target", "emulated:cortex-a72", "--json", *FAST_BENCH, "--no-pi-estimates",
                env=emulated_torch["env"], timeout=1200)
    assert r.code == 0, r
    row, = [x for x in r.json["results"] if x["target"] == "emulated:cortex-a72"]
    assert "qnnpack engine" in row["runtime_version"] and row["samples"] == 360, row
    assert row["host_agreement"] == 1.0 and row["host_max_abs_diff"] == 0.0, row


def test_without_the_counting_tools_the_pi_rows_say_which_apt_command_adds_them(emulated_env, digits_artifacts,
                                                                                 tmp_path):
    """A machine with the static QEMU alone: the Pi rows run and pass, without an estimate
    and with the reason and the apt command; doctor says the same."""
    import shutil
    tools = tmp_path / "bin"
    tools.mkdir()
    (tools / "qemu-aarch64-static").symlink_to(shutil.which("qemu-aarch64-static") or shutil.which("qemu-aarch64"))
    env = dict(emulated_env, PATH=str(tools))
    args = ("validate", digits_artifacts, "--formats", "tflite", "--precisions", "int8", "--target",
            "emulated:cortex-a72", "--emulated-samples", "50", *FAST_BENCH)
    r = edgecnn(*args, "--json", env=env)
    assert r.code == 0, r
    row = next(x for x in r.json["results"] if x["target"] == "emulated:cortex-a72")
    assert row["status"] == "pass" and "pi_estimate" not in row, row
    assert row["pi_estimate_skipped"].endswith("apt-get install qemu-user gcc libc6-dev llvm"), row["pi_estimate_skipped"]
    text = edgecnn(*args, env=env)
    assert "Traceback" not in text.err and "estimates: none: Pi latency estimates need" in text.out, text
    doctor = {t["target"]: t for t in edgecnn("doctor", "--json", env=env).json["targets"]}
    assert doctor["emulated:cortex-a76"]["pi_estimates"] is False
    assert "apt-get install qemu-user gcc libc6-dev llvm" in doctor["emulated:cortex-a76"]["detail"]
