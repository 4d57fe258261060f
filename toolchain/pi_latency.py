"""Raspberry Pi latency estimated from counted instructions, with its error band.

An inference's guest instructions are counted under emulation (toolchain/counting.py);
each hot translation block is turned into cycles by a model of the board's core, a
memory term is added for weights that do not fit its caches, and the sum, at the board's
clock, is scaled by one correction per core fitted to published Pi latencies
(benchmarks/pi_calibration.py writes pi_calibration.json beside this file). The band is
the calibration's leave-one-out error, never a guess; and beside every estimate stands a
lower bound: the MACs at the core's peak MAC rate.

The core models (written here: no library models these cores):
- Cortex-A72 (Pi 4): llvm-mca's own cortex-a72 model on each hot block.
- Cortex-A76 (Pi 5): an execution-port model, because Debian's llvm-mca (14) has no real
  A76 model (its cortex-a76 is the A57's schedule: one FMLA pipe where the A76 has two).
  The ports are those of Arm's Cortex-A76 Software Optimization Guide: 4-wide decode, two
  ASIMD/FP pipes (V0, V1; integer multiplies on V0 alone), two load pipes, one store pipe,
  three integer pipes and one branch pipe. A block's cycles are its busiest resource's.
"""
from __future__ import annotations

import ast
import functools
import hashlib
import inspect
import json
import re
import statistics
import subprocess
import tempfile
import textwrap
from pathlib import Path

from . import counting

CALIBRATION = Path(__file__).with_name("pi_calibration.json")
MIB = 1 << 20
# Per core: the boards it is in (name, label, clocks in GHz), its peak MACs per cycle
# (fp32: 128-bit FMLAs, 4 lanes; int8: 128-bit dot products or widening multiply-adds,
# the most any instruction does), the last cache level the weights can stay in, and
# the sustained single-core DRAM read rate assumed when they do not (a fraction of
# the LPDDR4's peak: 12.8 GB/s on the Pi 4, 17 GB/s on the Pi 5).
CORES = {
    "cortex-a72": {"boards": (("pi4", "Pi 4", (1.5, 1.8)),), "macs_per_cycle": {"fp32": 4, "int8": 16},
                   "cache_bytes": 1 * MIB, "dram_bytes_per_s": 4.5e9, "model": "llvm-mca cortex-a72"},
    "cortex-a76": {"boards": (("pi5", "Pi 5", (2.4,)),), "macs_per_cycle": {"fp32": 8, "int8": 32},
                   "cache_bytes": 2 * MIB, "dram_bytes_per_s": 8.5e9, "model": "A76 port model"},
}
BOARDS = {name: (core, label, clocks) for core, spec in CORES.items() for name, label, clocks in spec["boards"]}
COVERAGE = 0.99  # the hottest blocks that hold this share of the instructions get a core model; the rest IPC 1
MCA_ITERATIONS = 100

# The A76's ports: (decode width, resource -> pipes)
A76_WIDTH = 4
A76_PIPES = {"V": 2, "V0": 1, "L": 2, "S": 1, "I": 3, "B": 1}
_VECTOR = re.compile(r"\b[vqdsbh]\d+\b|\bz\d+")
_INT_MUL = ("mul", "mla", "mls", "smlal", "umlal", "smull", "umull", "sqdmulh", "sqrdmulh", "smlsl", "umlsl")
_BRANCH = ("b", "b.", "bl", "blr", "br", "ret", "cbz", "cbnz", "tbz", "tbnz")


def peak_kind(precision: str) -> str:
    """Which peak bounds an artifact: fp32 compute for fp32 and fp16 files (fp16 weights
    are widened on the CPU), int8 for int8 and dynamic-range files."""
    return "fp32" if precision in ("fp32", "fp16") else "int8"


def _a76_uses(asm: str) -> dict[str, int]:
    op, _, operands = asm.partition(" ")
    quad = bool(re.search(r"\.(16b|8h|4s|2d)\b|\bq\d+", operands))
    if op.startswith(("ld", "prfm")):
        return {"L": 2 if op == "ldp" and quad else 1}
    if op.startswith("st"):
        return {"S": 2 if op == "stp" and quad else 1}
    if op in _BRANCH or op.startswith("b."):
        return {"B": 1}
    if _VECTOR.search(operands) or op.startswith(("f", "sdot", "udot")):
        if op.rstrip("2") in _INT_MUL:
            return {"V": 1, "V0": 1}
        return {"V": 1}
    return {"I": 1}


def a76_cycles(asm: list[str]) -> float:
    """One pass of a block on the A76 ports: the busiest resource's cycles."""
    use = dict.fromkeys(A76_PIPES, 0)
    for line in asm:
        for k, v in _a76_uses(line).items():
            use[k] += v
    return max(len(asm) / A76_WIDTH, *(use[k] / A76_PIPES[k] for k in A76_PIPES))


def _for_mca(asm: str) -> str:
    # a call ends a block: llvm-mca would charge it 100 cycles of latency, where the
    # core predicts it as a branch
    op, _, rest = asm.partition(" ")
    return {"bl": "b", "blr": "br"}.get(op, op) + (" " + rest if rest else "")


def mca_cycles(blocks: list[list[str]], cpu: str) -> list[float]:
    """Each block's cycles per pass, from one llvm-mca run with a code region per block."""
    text = "".join(f"# LLVM-MCA-BEGIN b{i}\n" + "".join(_for_mca(a) + "\n" for a in asm) + "# LLVM-MCA-END\n"
                   for i, asm in enumerate(blocks))
    with tempfile.NamedTemporaryFile("w", suffix=".s") as f:
        f.write(text)
        f.flush()
        proc = subprocess.run(["llvm-mca", "-mtriple=aarch64", f"-mcpu={cpu}", f"-iterations={MCA_ITERATIONS}",
                               "-all-views=false", "-summary-view", f.name],
                              capture_output=True, text=True, timeout=600)
    totals = [int(m) for m in re.findall(r"Total Cycles:\s+(\d+)", proc.stdout)]
    if len(totals) != len(blocks):
        last = (proc.stderr.strip().splitlines() or ["no output"])[-1]
        raise RuntimeError(f"llvm-mca read {len(totals)} of {len(blocks)} blocks: {last}")
    return [t / MCA_ITERATIONS for t in totals]


def cycles(profile: counting.Profile, core: str) -> dict:
    """Cycles per inference on `core`, from the profile's hottest blocks (by
    instructions executed) and IPC 1 for the rest; and the instruction mix."""
    regions = max(len(profile.regions), 1)
    hot = sorted(profile.blocks.items(), key=lambda b: -len(b[0]) * b[1])
    total = sum(len(words) * n for words, n in hot)
    chosen, covered = [], 0
    for words, n in hot:
        if covered >= COVERAGE * total:
            break
        chosen.append((words, n))
        covered += len(words) * n
    asm = counting.disassemble([w for words, _ in hot for w in words])
    blocks = [[asm[w] for w in words] for words, _ in chosen]
    per_pass = mca_cycles(blocks, core) if core == "cortex-a72" else [a76_cycles(b) for b in blocks]
    modelled = sum(c * n for c, (_, n) in zip(per_pass, chosen))
    mix: dict[str, float] = {}
    for words, n in hot:
        for w in words:
            op, _, operands = asm[w].partition(" ")
            arrangement = re.search(r"\.(16b|8b|8h|4h|4s|2s|2d)\b", operands)
            key = op + (f".{arrangement[1]}" if arrangement else "")
            mix[key] = mix.get(key, 0) + n / regions
    # the blocks' executions are summed over the regions: scaled from their mean to their
    # median, the count an estimate is made of (one odd inference must not move it)
    to_median = statistics.median(profile.regions) / (sum(profile.regions) / regions) if profile.regions else 1.0
    return {"cycles": (modelled + (total - covered)) / regions * to_median, "instructions": total / regions,
            "modelled_share": covered / total if total else 0.0, "blocks": len(chosen),
            "mix": dict(sorted(mix.items(), key=lambda kv: -kv[1]))}


def _code(function) -> str:
    """A function's code without its docstring and comments: what it computes."""
    tree = ast.parse(textwrap.dedent(inspect.getsource(function)))
    body = tree.body[0].body
    if body and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant):
        body.pop(0)
    return ast.unparse(tree)


@functools.lru_cache(maxsize=1)
def cycle_model() -> dict:
    """What a calibration's corrections hold for: these core models (a digest of the code
    and constants that turn a profile into milliseconds) and this machine's llvm-mca,
    whose cortex-a72 schedule the A72's model is."""
    code = "".join(_code(f) for f in (_a76_uses, a76_cycles, _for_mca, mca_cycles, cycles, memory_ms, model_ms))
    code += repr((CORES, COVERAGE, MCA_ITERATIONS, A76_WIDTH, A76_PIPES, _VECTOR.pattern, _INT_MUL, _BRANCH,
                  counting.MATTR))
    try:
        out = subprocess.run(["llvm-mca", "--version"], capture_output=True, text=True, timeout=30).stdout
        mca = re.search(r"LLVM version (\S+)", out)[1]
    except (OSError, subprocess.SubprocessError, TypeError):
        mca = None
    return {"digest": hashlib.sha256(code.encode()).hexdigest()[:16], "llvm_mca": mca}


def calibration() -> dict:
    """The fitted corrections and their leave-one-out errors, per core, as
    benchmarks/pi_calibration.py wrote them; {} before it has run."""
    try:
        return json.loads(CALIBRATION.read_text())
    except (OSError, ValueError):
        return {}


def memory_ms(core: str, weight_bytes: int) -> float:
    """The time to stream weights that do not fit the core's last cache from DRAM."""
    spec = CORES[core]
    return weight_bytes / spec["dram_bytes_per_s"] * 1e3 if weight_bytes > spec["cache_bytes"] else 0.0


def model_ms(core: str, cycles_per_inference: float, weight_bytes: int, ghz: float) -> float:
    """Milliseconds before the correction: the modelled cycles at this clock, and the memory term."""
    return cycles_per_inference / (ghz * 1e6) + memory_ms(core, weight_bytes)


def estimate(core: str, cycles_per_inference: float, macs: int | None, weight_bytes: int, precision: str) -> dict:
    """Milliseconds on each board with this core, at each of its clocks: the modelled
    cycles and the memory term, scaled by the core's correction, with the band of its
    leave-one-out error and the lower bound of its peak MAC rate."""
    spec = CORES[core]
    cal = calibration()
    fit = cal.get("cores", {}).get(core)
    fitted_to = cal.get("cycle_model") or {}
    why = None
    if not fit:
        why = f"no calibration for {core} in {CALIBRATION.name} (benchmarks/pi_calibration.py in edgecnn's source writes it)"
    elif fitted_to.get("digest") != cycle_model()["digest"]:
        why = (f"{CALIBRATION.name} was fitted to another version of the core models: "
               "benchmarks/pi_calibration.py --write fits it again")
        fit = None
    # the A72's cycles are llvm-mca's: another version may schedule them otherwise
    caveat = (f"calibrated with llvm-mca {fitted_to.get('llvm_mca')}; this machine has {cycle_model()['llvm_mca']}"
              if fit and core == "cortex-a72" and fitted_to.get("llvm_mca") != cycle_model()["llvm_mca"] else None)
    peak = spec["macs_per_cycle"][peak_kind(precision)]
    boards = {}
    for name, label, clocks in spec["boards"]:
        at = {}
        for ghz in clocks:
            raw_ms = model_ms(core, cycles_per_inference, weight_bytes, ghz)
            # a file made elsewhere has no MAC count in a manifest, so no bound
            bound = None if macs is None else round(macs / (peak * ghz * 1e6), 4)
            entry = {"ghz": ghz, "model_ms": round(raw_ms, 4), "lower_bound_ms": bound}
            if fit:
                ms = raw_ms * fit["correction"]
                err = fit["band"]
                entry.update(ms=round(ms, 4), band_ms=[round(ms * (1 - err), 4), round(ms * (1 + err), 4)],
                             band=err)
            at[f"{ghz:g}"] = entry
        boards[name] = {"board": label, "clocks": at}
    return {"core": core, "model": spec["model"], "memory_ms": round(memory_ms(core, weight_bytes), 4),
            "calibrated": bool(fit), **({"band_from": fit["band_from"]} if fit and fit.get("band_from") else {}),
            **({"why_uncalibrated": why} if why else {}), **({"caveat": caveat} if caveat else {}),
            "boards": boards}


def headline(est: dict) -> tuple[str, dict] | None:
    """The board and the entry shown in tables: the board's first (stock) clock. None
    when the estimate is uncalibrated, as an estimate is never shown without its band."""
    if not est or not est.get("calibrated"):
        return None
    name, board = next(iter(est["boards"].items()))
    return name, next(iter(board["clocks"].values()))


def column(name: str) -> str:
    """The table column of a board's estimates: "est. Pi 4 ms"."""
    return f"est. {BOARDS[name][1]} ms"


def cell(entry: dict) -> str:
    lo, hi = entry["band_ms"]
    return f"{entry['ms']:.3g} ({lo:.2g}–{hi:.2g})"


def median_spread(counts: list[float]) -> tuple[float, float]:
    """The median of repeated counts and their spread, (max - min) / median."""
    mid = statistics.median(counts)
    return mid, (max(counts) - min(counts)) / mid if mid else 0.0
