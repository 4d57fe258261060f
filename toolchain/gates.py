"""Gates: limits that turn a validation row into pass or fail.

They come from flags or from an `edgecnn.toml`:

    [gates]
    max_accuracy_drop = 0.3   # points below the fp32 reference accuracy
    min_agreement = 99.5      # % of test images whose top-1 matches the fp32 reference
    max_latency_ms = 5.0      # p90 batch-1 latency
    max_size_kb = 512         # file size, KiB
    drop_significance = 0.05  # fail when McNemar's exact test finds the artifact worse at this level

A flag overrides the file. Unknown sections and keys are refused, since a misspelt gate
that silently checks nothing is worse than no gate.
"""
from __future__ import annotations

import math
import operator
import tomllib
from pathlib import Path

from . import crosscheck
from .errors import BadInput, brief

CONFIG_NAME = "edgecnn.toml"

# name -> (how it is measured, unit, value from a result, comparison that passes)
GATES = {
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


def load_config(path: Path | None) -> tuple[dict, str | None]:
    """Gates from `path`, or from ./edgecnn.toml when there is one; ({}, None) otherwise."""
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
    for key in table:
        if key not in GATES:
            raise BadInput(f"{path}: unknown gate {key!r}; known gates: {', '.join(GATES)}")
    return {k: _number(k, v, str(path)) for k, v in table.items()}, str(path)


def merge(config: dict, flags: dict) -> dict:
    gates = dict(config)
    for k, v in flags.items():
        if v is not None:
            gates[k] = _number(k, v, f"--{k.replace('_', '-')}")
    return {k: gates[k] for k in GATES if k in gates}


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
    if result.get("precision") == "fp32":
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
        what, unit, measure, passes = known[name]
        value = measure(result)
        entry = {"gate": name, "limit": limit, "unit": unit, "value": value}
        if value is None:
            entry.update(passed=False, message=f"{what} was not measured")
        else:
            ok = bool(passes(value, limit))
            entry.update(passed=ok, message=f"{what} {value:.4g} {unit} "
                                            f"({'within' if ok else 'FAILS'} {_sign(passes)} {limit:g} {unit})")
        out.append(entry)
    return out
