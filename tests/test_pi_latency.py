"""The pieces of the Pi latency estimates that need no emulator: the core models, the
plugin's build, the counted file's reader and the reason given when a tool is missing.
Counting itself is checked on the emulated boards in test_emulated.py."""
import shutil
from pathlib import Path

import pytest

from edgecnn.toolchain import counting, pi_latency
from edgecnn.toolchain.errors import BadInput

needs_llvm = pytest.mark.skipif(shutil.which("llvm-mca") is None or shutil.which("llvm-mc") is None,
                                reason="LLVM's llvm-mc and llvm-mca are not installed (apt-get install llvm)")


def fitted(**a72) -> dict:
    """A calibration of the A72 alone, fitted to these core models and this llvm-mca."""
    return {"cores": {"cortex-a72": a72}, "cycle_model": pi_latency.cycle_model()}


@needs_llvm
def test_the_a76_issues_two_fmlas_a_cycle_where_the_a72_issues_one():
    """16 independent 128-bit FMLAs: the A72 runs one a cycle (a Q-form FMLA takes both
    of its 64-bit pipes), the A76 two (two 128-bit pipes)."""
    block = [f"fmla v{i}.4s, v{16 + i % 8}.4s, v{24 + i % 8}.4s" for i in range(16)]
    a72 = pi_latency.mca_cycles([block], "cortex-a72")[0]
    a76 = pi_latency.a76_cycles(block)
    assert 15.5 <= a72 <= 17 and a76 == 8, (a72, a76)
    # integer multiplies go to V0 alone on the A76
    assert pi_latency.a76_cycles([f"smlal v{i}.4s, v16.4h, v17.4h" for i in range(8)]) == 8


@needs_llvm
def test_the_profile_is_read_back_and_a_block_translated_twice_counts_once(tmp_path):
    fmla, add, ret = 0x4E22CC20, 0x91000400, 0xD65F03C0  # fmla v0.4s,v1.4s,v2.4s; add x0,x0,#1; ret
    path = tmp_path / "count.txt"
    path.write_text(f"region 30\nregion 30\ntb 6 4000 {fmla:08x} {add:08x}\ntb 4 4000 {fmla:08x} {add:08x}\n"
                    f"tb 10 5000 {ret:08x}\n")
    profile = counting.read_profile(path)
    assert profile.regions == [30, 30] and len(profile.blocks) == 2 and profile.per_region == 15
    asm = counting.disassemble([fmla, add, ret])
    assert asm[fmla] == "fmla v0.4s, v1.4s, v2.4s" and asm[ret] == "ret"
    model = pi_latency.cycles(profile, "cortex-a76")
    assert model["instructions"] == 15 and model["mix"]["fmla.4s"] == 5
    # regions of 3 inferences each (a runner's count_window): the same profile per inference
    one = counting.Profile([10, 10], {k: n / 3 for k, n in profile.blocks.items()})
    assert profile.per_inference(3) == one and profile.per_inference(1) is profile
    each = pi_latency.cycles(profile.per_inference(3), "cortex-a76")
    assert each["instructions"] == 5 and abs(each["cycles"] - model["cycles"] / 3) < 1e-9


def test_a_missing_tool_is_named_with_the_apt_command(monkeypatch):
    real = shutil.which
    monkeypatch.setattr(shutil, "which", lambda t: None if t in ("cc", "llvm-mca") else real(t))
    why = counting.why_not()
    assert "cc" in why and "llvm-mca" in why and why.endswith("apt-get install gcc libc6-dev llvm"), why
    with pytest.raises(BadInput, match="apt-get install gcc libc6-dev llvm"):
        counting.build_plugin(Path("/nonexistent"), check=lambda plugin: None)


@pytest.mark.skipif(shutil.which("cc") is None, reason="no C compiler")
def test_the_plugin_builds_once_per_source(tmp_path, monkeypatch):
    monkeypatch.setattr(counting, "why_not", lambda: None)
    lines, checked = [], []
    path = counting.build_plugin(tmp_path, checked.append, log=lines.append)
    assert path.is_file() and counting.plugin_ready(tmp_path) and checked == [path] and len(lines) == 1
    assert counting.build_plugin(tmp_path, checked.append, log=lines.append) == path and len(checked) == 1  # reused
    path.with_suffix(".stamp").write_text("another source or QEMU\n")
    assert not counting.plugin_ready(tmp_path)

    def refuses(plugin):
        raise BadInput("qemu-aarch64 could not count with the plugin")
    path.unlink()
    with pytest.raises(BadInput, match="could not count"):  # never stamped as ready
        counting.build_plugin(tmp_path, refuses)
    assert not counting.plugin_ready(tmp_path)


def test_the_table_has_a_board_s_column_whatever_row_comes_last(monkeypatch):
    from edgecnn.toolchain import report
    monkeypatch.setattr(pi_latency, "calibration", lambda: fitted(correction=1.0, band=0.2))
    est = pi_latency.estimate("cortex-a72", 3_000_000, 4_000_000, 1000, "fp32")
    base = {"model": "m", "target": "emulated:cortex-a72", "format": "f", "precision": "fp32", "status": "pass"}
    doc = {"results": [dict(base, pi_estimate=est), dict(base, pi_estimate_skipped="the runtime is missing")]}
    header, first, second = report.rows(doc)
    col = header.index("est. Pi 4 ms")
    assert first[col] == "2 (1.6–2.4)" and second[col] == "-"
    assert "est. Pi 4 ms at 1.5 GHz" in report.estimates_line(doc) and "the runtime is missing" in report.estimates_line(doc)


def test_every_estimate_carries_its_band_and_its_lower_bound(monkeypatch):
    monkeypatch.setattr(pi_latency, "calibration", lambda: fitted(correction=1.2, band=0.3))
    est = pi_latency.estimate("cortex-a72", 3_000_000, 4_000_000, 2 * pi_latency.MIB, "fp32")
    at = est["boards"]["pi4"]["clocks"]["1.5"]
    memory_ms = 2 * pi_latency.MIB / 4.5e9 * 1e3  # weights over the Pi 4's 1 MB L2 stream from DRAM
    assert est["memory_ms"] == pytest.approx(memory_ms, abs=1e-4)
    assert at["ms"] == pytest.approx((2.0 + memory_ms) * 1.2, abs=1e-3)
    assert at["band_ms"] == pytest.approx([at["ms"] * 0.7, at["ms"] * 1.3], abs=1e-3)
    assert at["lower_bound_ms"] == pytest.approx(4e6 / (4 * 1.5e6), abs=1e-3)
    assert pi_latency.headline(est) == ("pi4", at)
    uncalibrated = pi_latency.estimate("cortex-a76", 3_000_000, None, 1000, "int8")
    monkeypatch.setattr(pi_latency, "calibration", lambda: {})
    assert pi_latency.headline(pi_latency.estimate("cortex-a76", 3e6, None, 1000, "int8")) is None
    assert "ms" not in pi_latency.estimate("cortex-a76", 3e6, None, 1000, "int8")["boards"]["pi5"]["clocks"]["2.4"]
    assert uncalibrated["boards"]["pi5"]["clocks"]["2.4"]["lower_bound_ms"] is None  # no MACs known


def test_a_calibration_fitted_to_other_core_models_gives_no_milliseconds(monkeypatch):
    """The corrections hold for the core models they were fitted to: a calibration of
    other code is refused with the command that fits it again, and another llvm-mca is
    said beside the A72's estimate."""
    here = pi_latency.cycle_model()
    monkeypatch.setattr(pi_latency, "calibration", lambda: dict(fitted(correction=1.2, band=0.3),
                                                                cycle_model=dict(here, digest="0" * 16)))
    est = pi_latency.estimate("cortex-a72", 3e6, 4e6, 1000, "fp32")
    assert not est["calibrated"] and pi_latency.headline(est) is None
    assert "pi_calibration.py --write" in est["why_uncalibrated"], est
    monkeypatch.setattr(pi_latency, "calibration", lambda: dict(fitted(correction=1.2, band=0.3),
                                                                cycle_model=dict(here, llvm_mca="99.0")))
    est = pi_latency.estimate("cortex-a72", 3e6, 4e6, 1000, "fp32")
    assert est["calibrated"] and est["caveat"].startswith("calibrated with llvm-mca 99.0"), est


def test_the_installed_calibration_was_fitted_to_these_core_models():
    """A change to the core models without a new fit makes every estimate uncalibrated:
    benchmarks/pi_calibration.py --write fits the corrections again."""
    cal = pi_latency.calibration()
    assert cal["cycle_model"]["digest"] == pi_latency.cycle_model()["digest"], (
        "the core models changed since toolchain/pi_calibration.json was fitted: run benchmarks/pi_calibration.py --write")
    assert {"cortex-a72", "cortex-a76"} <= set(cal["cores"])
