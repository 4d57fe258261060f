"""One artifact's answers on two machines: how far they agree, and when they do not,
which machine deviates from the fp32 reference, by how much, and the likely cause.

The local run is the yardstick other targets are compared with, but it is not always
the right one: an x86 host without VNNI computes int8 with saturating kernels that an
ARM device does not have (runtime/cpu.py). So a disagreement is judged against the
trained model's own fp32 answers on the same images: the machine further from them is
the one that deviates.
"""
from __future__ import annotations

import numpy as np

from edgecnn import converters
from edgecnn.runtime import cpu as cpus

LOCAL = "local"


def against_host(logits: np.ndarray, host: np.ndarray | None, reference: np.ndarray | None,
                 target: str, target_cpu: dict | None, host_cpu: dict | None, precision: str) -> dict:
    """Fidelity of `target`'s answers to the local run's, image by image, with the
    deviation judged against `reference` (fp32 logits) when they disagree."""
    if host is None or len(host) < len(logits):
        return {"host_agreement": None, "host_max_abs_diff": None}
    n = len(logits)
    mine, theirs = logits.argmax(1), host[:n].argmax(1)
    out = {"host_agreement": float((mine == theirs).mean()),
           "host_max_abs_diff": float(np.abs(logits - host[:n]).max())}
    if out["host_agreement"] < 1.0 and reference is not None and len(reference) >= n:
        ref = reference[:n].argmax(1)
        on_target, on_host = float((mine == ref).mean()), float((theirs == ref).mean())
        deviates = target if on_target < on_host else LOCAL if on_host < on_target else None
        cpu = {target: target_cpu, LOCAL: host_cpu}.get(deviates)
        out["host_deviation"] = {
            "images": n, "differ": int((mine != theirs).sum()), "deviates": deviates,
            "target_vs_reference": on_target, "local_vs_reference": on_host,
            "cause": likely_cause(deviates, cpu, precision)}
    return out


def likely_cause(who: str | None, cpu: dict | None, precision: str) -> str:
    if who is None:
        return "both machines agree with the fp32 reference on as many images, so which is right cannot be told"
    name = "this machine" if who == LOCAL else who
    if precision not in converters.FLOAT_PRECISIONS and cpus.saturates(cpu):
        return (f"{name}'s x86 int8 kernels have no VNNI: they add pairs of u8 x s8 products into a saturating "
                f"int16 (vpmaddubsw); quantize with 7-bit weights (edgecnn's default) to avoid it")
    if precision in converters.FLOAT_PRECISIONS:
        return f"{name}'s float kernels differ beyond rounding: a kernel or the emulation computes wrongly"
    return f"{name}'s int8 kernels compute differently: a kernel or the emulation computes wrongly"


def summary(row: dict) -> str:
    """One line for a row whose answers differ from the local run's."""
    d = row["host_deviation"]
    pct = lambda v: f"{100 * v:.2f} %"  # noqa: E731
    return (f"{row['target']} and local differ on {d['differ']} of {d['images']} images; against the fp32 "
            f"reference {row['target']} agrees on {pct(d['target_vs_reference'])}, local on "
            f"{pct(d['local_vs_reference'])}: "
            + (f"{d['deviates']} deviates. " if d["deviates"] else "") + f"Likely cause: {d['cause']}")
