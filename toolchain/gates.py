"""Gates: limits that turn a validation row into pass or fail.

They come from flags or from an `edgecnn.toml`:

    [gates]
    min_accuracy = 97.0       # % of the test images classified right
    max_accuracy_drop = 0.3   # points below the fp32 reference accuracy
    min_agreement = 99.5      # % of test images whose top-1 matches the fp32 reference
    max_latency_ms = 5.0      # p90 batch-1 latency
    max_size_kb = 512         # file size, KiB
    drop_significance = 0.05  # fail when McNemar's exact test finds the artifact worse at this level
    max_est_pi4_ms = 2.0      # estimated Pi 4 latency (on --target emulated:cortex-a72); also pi5

    [gates.int8]              # a precision's own limits,
    max_accuracy_drop = 1.0
    [gates.tflite]            # a format's,
    max_size_kb = 256
    [gates."tflite.int8"]     # and one artifact kind's
    max_latency_ms = 2.0

An artifact gets the most specific limit for each gate: its "format.precision" table,
then its format's, then its precision's, then [gates]. A flag overrides the file for
every artifact. Unknown sections, tables and keys are refused, since a misspelt gate that
silently checks nothing is worse than no gate.
"""
from __future__ import annotations

import math
import operator
import tomllib
from pathlib import Path

from .. import converters
from . import crosscheck, pi_latency
from .errors import BadInput, brief

CONFIG_NAME = "edgecnn.toml"

# name -> (how it is measured, unit, value from a result, comparison that passes)
GATES = {
    "min_accuracy": ("accuracy", "%",
                     lambda r: None if r.get("accuracy") is None else 100 * r["accuracy"], operator.ge),
    "max_accuracy_drop": ("accuracy drop vs fp32", "points",
                          lambda r: r.get("accuracy_drop"), operator.le),
    "min_agreement": ("top-1 agreement with fp32", "%",
                      lambda r: None if r.get("agreement") is None else 100 * r["agreement"], operator.ge),
    "max_latency_ms": ("p90 latency", "ms",
                       lambda r: (r.get("latency_ms") or {}).get("p90"), operator.le),
    "max_size_kb": ("file size", "KB",
                    lambda r: None if r.get("size_bytes") is None else r["size_bytes"] / 1024, operator.le),
    # passes unless the artifact is worse than its fp32 reference with a p below the limit
    "drop_significance": ("p of an accuracy drop vs fp32 (McNemar exact, one-sided)", "",
                          lambda r: r.get("drop_p_value"), operator.ge),
}


def _estimated(board: str):
    def value(r):
        clocks = ((r.get("pi_estimate") or {}).get("boards", {}).get(board) or {}).get("clocks") or {}
        return next(iter(clocks.values()), {}).get("ms")  # the board's first clock: its stock one
    return value


# Estimated Pi latencies (toolchain/pi_latency.py), one gate per board, held by the rows
# of the emulated core that is in it: max_est_pi4_ms, max_est_pi5_ms
ESTIMATE_GATES = {f"max_est_{board}_ms": core for board, (core, _, _) in pi_latency.BOARDS.items()}
GATES.update({f"max_est_{board}_ms": (f"estimated {label} latency at {clocks[0]:g} GHz", "ms", _estimated(board),
                                      operator.le)
              for board, (_, label, clocks) in pi_latency.BOARDS.items()})


def estimate_flags(given) -> dict:
    """--max-est-latency-ms BOARD=MS (repeatable) as gates: {"max_est_pi4_ms": 2.0}."""
    out = {}
    for text in given:
        board, sep, ms = text.partition("=")
        if not sep or board not in pi_latency.BOARDS:
            raise BadInput(f"--max-est-latency-ms takes BOARD=MS with a board of {', '.join(pi_latency.BOARDS)}, "
                           f"not {text!r}")
        try:
            out[f"max_est_{board}_ms"] = float(ms)
        except ValueError:
            raise BadInput(f"--max-est-latency-ms {text}: {ms!r} is not a number of milliseconds") from None
    return out


def _sign(passes) -> str:
    return ">=" if passes is operator.ge else "<="


def describe(name: str, limit: float) -> str:
    what, unit, _, passes = GATES[name]
    return f"{what} {_sign(passes)} {limit:g} {unit}"


def _number(name: str, value, where: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value < 0:
        raise BadInput(f"{where}: gate {name} must be a number of 0 or more, not {value!r}")
    if name == "drop_significance" and not 0 < value < 1:
        raise BadInput(f"{where}: gate {name} is a significance level between 0 and 1, not {value!r}")
    return float(value)


def scopes() -> list[str]:
    """The tables [gates] may hold, most specific first: "format.precision", format, precision."""
    return ([f"{f}.{p}" for f in converters.FORMATS for p in converters.PRECISIONS]
            + list(converters.FORMATS) + list(converters.PRECISIONS))


def _limits(table: dict, where: str) -> dict:
    for key in table:
        if key not in GATES:
            raise BadInput(f"{where}: unknown gate {key!r}; known gates: {', '.join(GATES)}")
    return {k: _number(k, v, where) for k, v in table.items()}


def load_config(path: Path | None) -> tuple[dict, str | None]:
    """Gates from `path`, or from ./edgecnn.toml when there is one; ({}, None) otherwise.
    The result maps a scope ("" for [gates], else a table's name) to its limits."""
    if path is None:
        path = Path(CONFIG_NAME)
        if not path.is_file():
            return {}, None
    elif Path(path).is_dir():
        raise BadInput(f"--config {path} is a folder, not a TOML file")
    try:
        doc = tomllib.loads(Path(path).read_text())
    except FileNotFoundError:
        raise BadInput(f"{path}: no such file") from None
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as e:
        raise BadInput(f"{path} is not valid TOML ({brief(e)})") from None
    unknown = sorted(set(doc) - {"gates"})
    if unknown:
        raise BadInput(f"{path}: unknown section {unknown[0]!r}; edgecnn.toml holds only [gates]")
    table = doc.get("gates", {})
    if not isinstance(table, dict):
        raise BadInput(f"{path}: gates must be a table ([gates])")
    known = scopes()
    out = {"": _limits({k: v for k, v in table.items() if not isinstance(v, dict)}, str(path))}
    for scope, limits in table.items():
        if not isinstance(limits, dict):
            continue
        if scope not in known:
            raise BadInput(f"{path}: unknown table [gates.{scope}]; a table is named by a format, a precision or "
                           f"\"format.precision\" ({', '.join(known[-len(converters.FORMATS) - 2:])}, ...)")
        out[scope] = _limits(limits, f"{path} [gates.{scope}]")
    return {k: v for k, v in out.items() if v or k == ""}, str(path)


def merge(config: dict, flags: dict) -> dict:
    """The file's scopes with the flags laid over every one of them."""
    given = {k: _number(k, v, f"--{k.replace('_', '-')}") for k, v in flags.items() if v is not None}
    merged = {scope: {**limits, **given} for scope, limits in ({"": {}} | config).items()}
    return {scope: {k: limits[k] for k in GATES if k in limits} for scope, limits in merged.items()}


def for_artifact(gates: dict, fmt: str, precision: str) -> dict:
    """The limits one artifact is held to: for each gate, its most specific scope's."""
    out = {}
    for scope in (f"{fmt}.{precision}", fmt, precision, ""):
        for k, v in gates.get(scope, {}).items():
            out.setdefault(k, v)
    return {k: out[k] for k in GATES if k in out}


def any_set(gates: dict) -> bool:
    return any(gates.values())


# Another machine (an emulated ARM CPU, a device) must give this machine's answers for
# the same file: ARM kernels that compute wrongly are what these targets exist to catch.
# int8 outputs are integers on both, so every top-1 must match; fp32 may differ in the
# last bits of a sum's order, never by more than 1e-4.
HOST_GATES = {
    "min_host_agreement": ("top-1 agreement with the local run", "%",
                           lambda r: None if r.get("host_agreement") is None else 100 * r["host_agreement"],
                           operator.ge),
    "max_host_diff": ("max abs logit difference from the local run", "",
                      lambda r: r.get("host_max_abs_diff"), operator.le),
}


def check_host(result: dict) -> list[dict]:
    """Another machine against the local run. Where their top-1 answers differ and the
    local run is the one further from the fp32 reference, this machine is not at fault:
    its agreement gate passes, saying so, and the local row fails instead
    (check_against_targets)."""
    limits = {"min_host_agreement": 100.0}
    if result.get("precision") in converters.FLOAT_PRECISIONS:
        limits["max_host_diff"] = 1e-4
    out = check(result, limits, HOST_GATES)
    deviation = result.get("host_deviation")
    for g in out:
        if g["gate"] != "min_host_agreement" or g["passed"] or not deviation:
            continue
        if deviation["deviates"] == "local":
            g.update(passed=True, message=f"top-1 agreement with the local run {g['value']:.4g} % (below 100 %, "
                                          f"but the local run is the one that deviates from the fp32 reference: "
                                          f"{deviation['cause']})")
        else:
            g["message"] += f"; {crosscheck.summary(result)}"
    return out


def check_against_targets(others: list[dict]) -> list[dict]:
    """The local row of an artifact, failed by every other machine whose answers are closer
    to the fp32 reference than this machine's."""
    out = []
    for r in others:
        deviation = r.get("host_deviation") or {}
        if deviation.get("deviates") == "local":
            out.append({"gate": f"agrees_with_{r['target']}", "limit": 100.0, "unit": "%",
                        "value": 100 * r["host_agreement"], "passed": False,
                        "message": f"FAILS: {crosscheck.summary(r)}"})
    return out


def check(result: dict, gates: dict, known: dict = GATES) -> list[dict]:
    """One entry per gate: its limit, the measured value and whether it passed. A latency
    gate does not apply to emulated runs: emulated time is not a device's."""
    out = []
    for name, limit in gates.items():
        if name == "max_latency_ms" and result.get("emulated"):
            continue
        if name in ESTIMATE_GATES and result.get("target") != f"emulated:{ESTIMATE_GATES[name]}":
            continue  # an estimate gate holds the rows of its board's emulated core alone
        what, unit, measure, passes = known[name]
        value = measure(result)
        entry = {"gate": name, "limit": limit, "unit": unit, "value": value}
        if value is None:
            why = result.get("pi_estimate_skipped") or (result.get("pi_count") or {}).get("error") \
                or (result.get("pi_estimate") or {}).get("why_uncalibrated") if name in ESTIMATE_GATES else None
            entry.update(passed=False, message=f"{what} was not measured" + (f": {why}" if why else ""))
        else:
            ok = bool(passes(value, limit))
            entry.update(passed=ok, message=f"{what} {value:.4g} {unit} "
                                            f"({'within' if ok else 'FAILS'} {_sign(passes)} {limit:g} {unit})")
        out.append(entry)
    return out
