"""ssh:// targets against a real OpenSSH server on loopback, treated as the device: a
throwaway host key and user key, a high port, and the system ssh client."""
import os
import subprocess
from pathlib import Path

from conftest import FAST_BENCH, edgecnn, free_port, keygen

PYTHON = str(Path(os.sys.executable))  # the project's own Python has numpy and every runtime


def _workdirs(device) -> set:
    out = subprocess.run(["ssh", "-F", device["config"], "pi", "ls -d /tmp/edgecnn.* 2>/dev/null"],
                         capture_output=True, text=True).stdout
    return set(out.split())


def test_validate_on_a_device_over_ssh(device, digits_artifacts):
    before = _workdirs(device)
    r = edgecnn("validate", digits_artifacts, "--target", "ssh://pi", "--target", "local", "--ssh-config",
                device["config"], "--remote-python", PYTHON, *FAST_BENCH, "--json")
    assert r.code == 0, r
    rows = r.json["results"]
    remote = [x for x in rows if x["target"] == "ssh://pi"]
    assert len(remote) == 6 and all(x["status"] == "pass" for x in remote), remote
    for x in remote:
        assert x["host_agreement"] == 1.0 and x["latency_ms"]["p50"] > 0 and not x["emulated"]
    # the device's working folder is gone afterwards
    assert _workdirs(device) == before


def test_validate_explain_reads_the_layers_on_the_device_into_the_report(device, digits_artifacts, tmp_path):
    before = _workdirs(device)
    r = edgecnn("validate", digits_artifacts, "--formats", "onnx", "--precisions", "int8", "--target", "ssh://pi",
                "--ssh-config", device["config"], "--remote-python", PYTHON, *FAST_BENCH, "--explain",
                "--report", tmp_path / "rep", "--json")
    assert r.code == 0, r
    ex, = r.json["explain"]
    row, = ex["artifacts"]
    assert row["target"] == "ssh://pi" and row["exposed"] and row["jump"] is None, row
    assert len(row["layers"]) >= 6 and all(lay["sqnr_db"] > 25 for lay in row["layers"]), row
    made, = ex["alone"]["artifacts"]
    assert made["format"] == "onnx" and made["furthest"] in ("conv1", "conv2", "fc1", "fc2"), made
    page = (tmp_path / "rep" / "index.html").read_text()
    assert "Where int8 loses accuracy, layer by layer" in page and "on ssh://pi" in page, page
    assert "onnx: alone int8," in page
    assert "### each layer alone int8, the others float" in (tmp_path / "rep" / "report.md").read_text()
    assert _workdirs(device) == before  # the second use of the device cleaned up too


def test_one_device_down_the_other_still_reports(device, digits_artifacts, tmp_path):
    cfg = tmp_path / "two.cfg"
    cfg.write_text(Path(device["config"]).read_text()
                   + f"Host down\n  HostName 127.0.0.1\n  Port {free_port()}\n  User root\n")
    r = edgecnn("validate", digits_artifacts, "--formats", "onnx", "--target", "ssh://pi", "--target",
                "ssh://down", "--ssh-config", cfg, "--remote-python", PYTHON, *FAST_BENCH, "--json")
    assert r.code == 2, r
    by_target = {}
    for x in r.json["results"]:
        by_target.setdefault(x["target"], []).append(x)
    assert [x["status"] for x in by_target["ssh://pi"]] == ["pass", "pass"]
    assert all(x["status"] == "error" and "ssh://down: it is unreachable" in x["reason"]
               for x in by_target["ssh://down"])
    assert "ssh://down: it is unreachable (connection refused)" in r.err.strip().splitlines()[-1]


def _error_line(r):
    assert r.code == 2 and "Traceback" not in r.err, r
    return r.err.strip().splitlines()[-1]


def test_unreachable_refused_key_changed_host_key_and_missing_runtime(device, digits_artifacts, tmp_path):
    base = ["validate", digits_artifacts, "--formats", "onnx", *FAST_BENCH, "--remote-python", PYTHON]
    # nothing listens on this port
    cfg = tmp_path / "closed"
    cfg.write_text(Path(device["config"]).read_text().replace(f"Port {device['port']}", f"Port {free_port()}"))
    assert "unreachable (connection refused)" in _error_line(
        edgecnn(*base, "--target", "ssh://pi", "--ssh-config", cfg))
    # a key the device does not know
    keygen(tmp_path / "stranger")
    cfg = tmp_path / "stranger.cfg"
    cfg.write_text(Path(device["config"]).read_text().replace(str(device["dir"] / "user_key"),
                                                               str(tmp_path / "stranger")))
    assert "refused the key" in _error_line(edgecnn(*base, "--target", "ssh://pi", "--ssh-config", cfg))
    # the device's host key is not the one we know
    keygen(tmp_path / "other_host")
    known = tmp_path / "known_hosts"
    key = (tmp_path / "other_host.pub").read_text().split()
    known.write_text(f"[127.0.0.1]:{device['port']} {key[0]} {key[1]}\n")
    cfg = tmp_path / "changed.cfg"
    cfg.write_text(Path(device["config"]).read_text().replace(str(device["dir"] / "known_hosts"), str(known)))
    line = _error_line(edgecnn(*base, "--target", "ssh://pi", "--ssh-config", cfg))
    assert "host key" in line and "refused" in line
    # an unknown host key is refused too, unless the user allows a first connection
    known.write_text("")
    assert "host key" in _error_line(edgecnn(*base, "--target", "ssh://pi", "--ssh-config", cfg))
    r = edgecnn(*base, "--target", "ssh://pi", "--ssh-config", cfg, "--ssh-accept-new-host-key")
    assert r.code == 0, r
    # a device whose Python lacks a runtime: shadow onnxruntime there
    shadow = tmp_path / "shadow" / "onnxruntime"
    shadow.mkdir(parents=True)
    (shadow / "__init__.py").write_text("raise ImportError('no onnxruntime here')\n")
    wrapper = tmp_path / "python-without-ort"
    wrapper.write_text(f"#!/bin/sh\nPYTHONPATH=\"$PYTHONPATH:{shadow.parent}\" exec {PYTHON} \"$@\"\n")
    wrapper.chmod(0o755)
    r = edgecnn("validate", digits_artifacts, "--formats", "onnx,tflite", *FAST_BENCH, "--target", "ssh://pi",
                "--ssh-config", device["config"], "--remote-python", wrapper, "--json")
    line = _error_line(r)
    assert "lacks ONNX Runtime" in line and "pip install onnxruntime" in line
    statuses = {(x["format"], x["precision"]): x["status"] for x in r.json["results"]}
    assert statuses[("tflite", "fp32")] == "pass"  # the rest of the device still reports
    # doctor says what the device lacks and how to install it
    r = edgecnn("doctor", "--target", "ssh://pi", "--ssh-config", device["config"], "--remote-python", wrapper)
    assert r.code == 1 and "MISSING" in r.out and "pip install onnxruntime" in r.out, r
    r = edgecnn("doctor", "--target", "ssh://pi", "--ssh-config", device["config"], "--remote-python", PYTHON)
    assert r.code == 0 and "MISSING" not in r.out, r


def test_the_device_can_be_an_emulated_pi(device, emulated_env, digits_artifacts, tmp_path):
    """A faithful stand-in for a Pi reached over the network: the device's Python is the
    emulated aarch64 one (Cortex-A72), behind a real sshd."""
    import shlex
    from edgecnn.toolchain import emulation
    cmd, env = emulation.command("cortex-a72", [], root=Path(emulated_env["XDG_CACHE_HOME"]) / "edgecnn" / "emulated")
    pi_python = tmp_path / "pi-python"
    pi_python.write_text(f"#!/bin/sh\nexport PYTHONPATH=\"$PYTHONPATH:{env['PYTHONPATH']}\" PYTHONNOUSERSITE=1\n"
                         f"exec {' '.join(map(shlex.quote, cmd))} \"$@\"\n")
    pi_python.chmod(0o755)
    r = edgecnn("validate", digits_artifacts, "--formats", "tflite,onnx", "--target", "ssh://pi", "--ssh-config",
                device["config"], "--remote-python", pi_python, *FAST_BENCH, "--json")
    assert r.code == 0, r
    assert r.json["targets"][0]["machine"] == "aarch64"
    for x in r.json["results"]:
        assert x["status"] == "pass" and x["host_agreement"] == 1.0, x


def test_a_device_with_numpy_alone_runs_numpy_artifacts(device, digits_run, tmp_path):
    """What the NumPy runtime is for: a device where no ML runtime installs. Its Python
    here has numpy and nothing else that edgecnn could use (the others shadowed)."""
    art = tmp_path / "art"
    assert edgecnn("export", digits_run, "--formats", "tflite,numpy", "--out", art).code == 0
    shadow = tmp_path / "shadow"
    for pkg in ("onnxruntime", "ai_edge_litert", "torch", "tensorflow"):
        (shadow / pkg).mkdir(parents=True)
        (shadow / pkg / "__init__.py").write_text(f"raise ImportError('no {pkg} here')\n")
    wrapper = tmp_path / "numpy-only-python"
    wrapper.write_text(f"#!/bin/sh\nPYTHONPATH=\"$PYTHONPATH:{shadow}\" exec {PYTHON} \"$@\"\n")
    wrapper.chmod(0o755)
    ssh = ["--target", "ssh://pi", "--ssh-config", device["config"], "--remote-python", wrapper]
    r = edgecnn("doctor", *ssh, "--json")
    assert r.code == 1, r
    assert {x["format"]: x["usable"] for x in r.json["runtimes"]} == {
        "tflite": False, "ptl": False, "onnx": False, "pte": False, "numpy": True}
    r = edgecnn("validate", art, "--formats", "numpy", *ssh, *FAST_BENCH, "--json")
    assert r.code == 0, r
    row, = [x for x in r.json["results"] if x["target"] == "ssh://pi"]
    assert row["status"] == "pass" and row["host_agreement"] == 1.0 and row["host_max_abs_diff"] <= 1e-4, row
    assert row["latency_ms"]["p50"] > 0 and not row["emulated"]


def _fake_pi_sysfs(root: Path, governor: str, cur_khz: int, temp_mc: int, flags: list[str]) -> None:
    """A Raspberry Pi's sysfs and firmware as the harness reads them; `flags` are what
    successive `vcgencmd get_throttled` calls answer (before the run, after it)."""
    cpufreq = root / "sys/devices/system/cpu/cpu0/cpufreq"
    cpufreq.mkdir(parents=True)
    (cpufreq / "scaling_governor").write_text(f"{governor}\n")
    (cpufreq / "scaling_cur_freq").write_text(f"{cur_khz}\n")
    (cpufreq / "cpuinfo_max_freq").write_text("2400000\n")
    (root / "sys/class/thermal/thermal_zone0").mkdir(parents=True)
    (root / "sys/class/thermal/thermal_zone0/temp").write_text(f"{temp_mc}\n")
    (root / "usr/bin").mkdir(parents=True)
    counter = root / "calls"
    answers = " ".join(flags)
    (root / "usr/bin/vcgencmd").write_text(
        "#!/bin/sh\nn=$(cat %s 2>/dev/null || echo 0); echo $((n+1)) > %s\n"
        "set -- %s\nshift $(( n < $# ? n : $# - 1 ))\necho throttled=$1\n" % (counter, counter, answers))
    (root / "usr/bin/vcgencmd").chmod(0o755)


def test_the_device_state_is_read_and_a_throttled_run_is_marked(device, digits_artifacts, tmp_path):
    args = ("validate", digits_artifacts, "--formats", "onnx", "--precisions", "fp32", "--target", "ssh://pi",
            "--ssh-config", device["config"], "--remote-python", PYTHON, *FAST_BENCH)
    cool = tmp_path / "cool"
    _fake_pi_sysfs(cool, "performance", 2400000, 48312, ["0x0", "0x0"])
    r = edgecnn(*args, "--json", env={"EDGECNN_SYSFS_ROOT": str(cool)})
    assert r.code == 0, r
    state = r.json["results"][0]["device_state"]
    assert state["before"] == {"governor": "performance", "cur_mhz": 2400.0, "max_mhz": 2400.0, "temp_c": 48.3,
                               "throttled": 0}
    assert state["throttled"] is None
    # soft temperature limit hit during the run, and the clock capped now (the local
    # reference run reads the same fake tree first: its two readings come before)
    hot = tmp_path / "hot"
    _fake_pi_sysfs(hot, "ondemand", 1500000, 82000, ["0x0", "0x0", "0x0", "0x80002"])
    r = edgecnn(*args, env={"EDGECNN_SYSFS_ROOT": str(hot)})
    assert r.code == 0, r
    assert "pass, throttled" in r.out
    assert "measured while throttled (ARM frequency capped (now); soft temperature limit (during the run))" in r.err
    assert "governor ondemand, 1500.0 of 2400.0 MHz" in r.err
