"""Faults: `kill -9` at many moments of train, export and validate; two exports into one
folder at once; a disk that fills during an export. Each leaves every final name either
absent or complete (an old folder replaced with --force is never lost), and a rerun
works without anyone cleaning up."""
import hashlib
import json
import os
import shutil
import signal
import subprocess
import tempfile
import time
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest
from conftest import EDGECNN, FAST_BENCH, edgecnn

# moments to kill at, as fractions of an uninterrupted run of the same command
KILL_AT = (0.2, 0.55, 0.95)


@pytest.fixture(autouse=True)
def killed_scratch(monkeypatch):
    """A process killed with SIGKILL cannot remove its scratch folder (validate's is in
    TMPDIR): the commands of these tests get a TMPDIR of their own, removed after the
    test (a short path: sockets made under it must fit 108 bytes)."""
    scratch = tempfile.mkdtemp(prefix="edgecnn-faults-")
    monkeypatch.setenv("TMPDIR", scratch)
    yield
    shutil.rmtree(scratch, ignore_errors=True)


def run_killed_at(args, delay: float) -> int | None:
    """Start the CLI and SIGKILL it after `delay` seconds; its exit status if it had
    already finished, else None."""
    proc = subprocess.Popen([str(EDGECNN), *map(str, args)], stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        return proc.wait(timeout=delay)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)  # the CLI and any harness it started
        proc.wait()
        return None


def timed(*args) -> float:
    t = time.perf_counter()
    r = edgecnn(*args)
    assert r.code == 0, r
    return time.perf_counter() - t


def digest(folder: Path) -> dict:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.iterdir())}


def no_leftovers(parent: Path, name: str) -> None:
    """Nothing of a writer's bookkeeping beside the destination after a clean run."""
    extra = [p.name for p in parent.iterdir() if p.name.startswith(f".{name}.")]
    assert not extra, extra


def assert_complete_run(folder: Path) -> None:
    from edgecnn.toolchain.runs import Run
    run = Run(folder)
    run.load_torch()
    assert {"test_accuracy"} <= set(run.metrics)
    assert json.loads((folder / "history.json").read_text())


def assert_complete_artifacts(folder: Path) -> None:
    """The manifest is there and every file it lists has its size and sha256."""
    manifest = json.loads((folder / "manifest.json").read_text())
    assert manifest["artifacts"] and all(a["status"] == "ok" for a in manifest["artifacts"])
    for a in manifest["artifacts"]:
        data = (folder / a["file"]).read_bytes()
        assert len(data) == a["bytes"] and hashlib.sha256(data).hexdigest() == a["sha256"], a["file"]
    assert hashlib.sha256((folder / "reference.npz").read_bytes()).hexdigest() == manifest["reference"]["sha256"]


def kill_over_and_into(args, full: float, out: Path, assert_complete) -> list:
    """Kill the command at each moment while it replaces a complete `out` (--force), then
    at every other moment while it writes a new one. After each kill `out` is complete:
    the old one or the new one, never half of one; a new one may also be absent."""
    outcomes = []
    for frac in KILL_AT:
        outcomes.append(run_killed_at([*args, "--force"], frac * full))
        assert_complete(out)
    for frac in KILL_AT[1::2]:
        shutil.rmtree(out, ignore_errors=True)
        outcomes.append(run_killed_at(args, frac * full))
        if out.exists():
            assert_complete(out)
    return outcomes


def test_kill9_during_train(tmp_path):
    out = tmp_path / "run"
    args = ("train", "--epochs", "4", "--out", out)
    full = timed(*args)
    outcomes = kill_over_and_into(args, full, out, assert_complete_run)
    assert None in outcomes, "every run finished before its kill: nothing was tested"
    assert timed(*args, "--force") > 0  # a rerun needs no clean-up
    assert_complete_run(out)
    no_leftovers(tmp_path, "run")


def test_kill9_during_export(digits_run, tmp_path):
    out = tmp_path / "artifacts"
    # tflite and ptl, fp32 and int8: the kill points cover both converters and calibration
    # at half the time of all three formats (ONNX is the slow one to export)
    args = ("export", digits_run, "--int8", "--formats", "tflite,ptl", "--out", out)
    full = timed(*args)
    outcomes = kill_over_and_into(args, full, out, assert_complete_artifacts)
    assert None in outcomes
    timed(*args, "--force")
    assert_complete_artifacts(out)
    no_leftovers(tmp_path, "artifacts")


def assert_complete_reports(report: Path, junit: Path) -> None:
    """Each report file is absent or whole."""
    if (report / "results.json").exists():
        assert json.loads((report / "results.json").read_text())["results"]
    if (report / "index.html").exists():
        assert (report / "index.html").read_text().rstrip().endswith("</html>")
    if (report / "report.md").exists():
        assert "|" in (report / "report.md").read_text()
    if junit.exists():
        assert ET.parse(junit).getroot().iter("testcase")


def test_kill9_during_validate(digits_artifacts, tmp_path):
    report, junit = tmp_path / "report", tmp_path / "junit.xml"
    args = ("validate", digits_artifacts, "--report", report, "--junit", junit, *FAST_BENCH)
    full = timed(*args)
    outcomes = []
    for frac in KILL_AT:
        outcomes.append(run_killed_at(args, frac * full))
        assert_complete_reports(report, junit)
    assert None in outcomes
    timed(*args)
    assert_complete_reports(report, junit)
    assert sorted(p.name for p in report.iterdir()) == ["index.html", "report.md", "results.json"]


def test_two_exports_into_one_folder(digits_run, tmp_path):
    """Started together, one export takes the folder and the other is refused at once."""
    out = tmp_path / "artifacts"
    procs = [subprocess.Popen([str(EDGECNN), "export", str(digits_run), "--out", str(out), "--force"],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for _ in range(2)]
    results = [(p.wait(timeout=600), p.stderr.read()) for p in procs]
    codes = sorted(code for code, _ in results)
    assert codes == [0, 2], results
    loser = next(err for code, err in results if code == 2)
    lines = [line for line in loser.splitlines() if line.strip()]
    assert lines[-1].startswith("edgecnn: error:") and "being written by another edgecnn process" in lines[-1]
    assert "Traceback" not in loser
    assert_complete_artifacts(out)
    no_leftovers(tmp_path, "artifacts")


@pytest.fixture
def small_disk(tmp_path):
    """A 1 MiB tmpfs: room for one digits export folder of tflite and ptl (about 0.63 MiB),
    not two."""
    mount = tmp_path / "disk"
    mount.mkdir()
    r = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(mount)], capture_output=True)
    if r.returncode != 0:
        pytest.skip(f"cannot mount a small tmpfs here ({r.stderr.decode().strip()})")
    yield mount
    subprocess.run(["umount", "-l", str(mount)], check=False)


def test_disk_full_during_export(digits_run, small_disk):
    first = small_disk / "artifacts"
    r = edgecnn("export", digits_run, "--formats", "tflite,ptl", "--int8", "--out", first)
    assert r.code == 0, r
    before = digest(first)
    # replacing it, and writing beside it: both run out of space part-way
    for out, extra in ((first, ["--force"]), (small_disk / "second", [])):
        r = edgecnn("export", digits_run, "--formats", "tflite,ptl", "--int8", "--out", out, *extra)
        assert r.code == 2 and "Traceback" not in r.err, r  # after the progress lines, one error line
        last = r.err.strip().splitlines()[-1]
        assert last.startswith("edgecnn: error: the disk is full") and "nothing was replaced" in last, r
        assert digest(first) == before  # the earlier artifacts are intact
        assert_complete_artifacts(first)
        assert sorted(p.name for p in small_disk.iterdir()) == ["artifacts"]  # no partial folder left


def test_kill9_during_pipeline_puts_the_old_folder_back(tmp_path):
    """A pipeline folder is built in place; killed half-way with --force, the next run
    removes the half-built one and puts back the complete one it was replacing."""
    out = tmp_path / "pipeline"
    args = ("pipeline", "--framework", "torch", "--epochs", "2", "--formats", "tflite", "--out", out)
    full = timed(*args)
    before = digest(out / "artifacts" / "torch")
    assert run_killed_at([*args, "--force"], 0.5 * full) is None
    assert (out / ".edgecnn-incomplete").exists()  # what a reader sees: marked half-built
    r = edgecnn(*args)  # no --force: the old folder is back, so it is refused
    assert r.code == 2 and "already exists" in r.err, r
    assert not (out / ".edgecnn-incomplete").exists()
    assert digest(out / "artifacts" / "torch") == before
    timed(*args, "--force")
    no_leftovers(tmp_path, "pipeline")
