"""`validate --baseline OLD/results.json`: each artifact against the same artifact kind in
an earlier run (matched by model, format, precision and target), on two counts.

Accuracy, paired: where both runs scored the same test images (the same sha256), the
images only the old run got right (`lost`) and only the new one got right (`gained`)
go through McNemar's exact one-sided test (stats.mcnemar_p); the gate fails when the
new run is worse with p below ALPHA.

Latency, with a noise model: each run's steady state is cut into rounds and each round
has its p50 (runtime/bench.py). The new median of round p50s over the old one may exceed
1 + tolerance (10 % unless --latency-tolerance says) plus the noise both runs showed:
the larger of their round spreads, (max - min) / median. One slow sample cannot fail it;
a shift bigger than the runs' own wobble does. Latency is compared only between runs on
the same CPU model, never for emulated rows.
"""
from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from edgecnn.runtime.evaluate import decode_top1

from . import outdir, stats
from .errors import BadInput

ALPHA = 0.05
DEFAULT_TOLERANCE_PCT = 10.0


def check_tolerance(tolerance_pct: float) -> None:
    if not (math.isfinite(tolerance_pct) and tolerance_pct >= 0):
        raise BadInput(f"--latency-tolerance must be a percentage of 0 or more, not {tolerance_pct:g}")


def load(path: Path) -> dict:
    doc = outdir.read_json_object(Path(path))
    rows = doc.get("results")
    if not isinstance(rows, list) or not all(isinstance(r, dict) for r in rows) or "host" not in doc:
        raise BadInput(f"--baseline {path} is not an edgecnn results.json (validate --report writes one)")
    return doc


def _key(r: dict) -> tuple:
    return r.get("model"), r.get("format"), r.get("precision"), r.get("target")


def _noise(rounds) -> float:
    rounds = [x for x in rounds or [] if isinstance(x, (int, float)) and x > 0]
    return (max(rounds) - min(rounds)) / float(np.median(rounds)) if len(rounds) > 1 else 0.0


def _accuracy(old: dict, new: dict) -> dict | None:
    if new.get("accuracy") is None or old.get("accuracy") is None:
        return None
    out = {"accuracy_old": old["accuracy"], "accuracy_new": new["accuracy"]}
    same = old.get("test_sha256") and old.get("test_sha256") == new.get("test_sha256")
    if not (same and old.get("top1") and new.get("top1")):
        out["paired"] = "not paired: the runs scored different test images" if not same else \
            "not paired: a run kept no per-image answers"
        return out
    a, b = decode_top1(old["top1"]), decode_top1(new["top1"])
    n = min(len(a), len(b))  # an emulated run scores the first images
    labels = new.get("_labels")
    if labels is None or len(labels) < n:
        out["paired"] = "not paired: the labels are not at hand"
        return out
    right_old, right_new = a[:n] == labels[:n], b[:n] == labels[:n]
    lost, gained = int((right_old & ~right_new).sum()), int((right_new & ~right_old).sum())
    return dict(out, images=n, lost=lost, gained=gained, p_value=stats.mcnemar_p(gained, lost))


def _latency(old_host: dict, new_host: dict, old: dict, new: dict, tolerance_pct: float) -> dict | None:
    lo, ln = old.get("latency_ms") or {}, new.get("latency_ms") or {}
    if not lo.get("p50") or not ln.get("p50"):
        return None
    cpu_old, cpu_new = (old_host or {}).get("cpu"), (new_host or {}).get("cpu")
    if new["target"] == "local" and (cpu_old or {}).get("model") != (cpu_new or {}).get("model"):
        return {"latency": f"not compared: the baseline ran on {(cpu_old or {}).get('model') or 'another CPU'}"}
    old_p50 = float(np.median(lo.get("rounds_p50") or [lo["p50"]]))
    new_p50 = float(np.median(ln.get("rounds_p50") or [ln["p50"]]))
    noise = max(_noise(lo.get("rounds_p50")), _noise(ln.get("rounds_p50")))
    return {"p50_old": old_p50, "p50_new": new_p50, "ratio": new_p50 / old_p50, "noise": noise,
            "limit": 1 + tolerance_pct / 100 + noise}


def compare(rows: list[dict], host: dict, base: dict, labels: dict,
            tolerance_pct: float = DEFAULT_TOLERANCE_PCT) -> dict:
    """Adds `baseline` and its gates to each row that the baseline also has, failing the
    row where one fails, and returns the document's summary. `labels` maps a
    test_sha256 to the labels of those images; `host` is this run's."""
    check_tolerance(tolerance_pct)
    old_rows = {_key(r): r for r in base["results"]}
    matched = 0
    for r in rows:
        old = old_rows.get(_key(r))
        if old is None or r["status"] not in ("pass", "fail"):
            continue
        matched += 1
        acc = _accuracy(old, dict(r, _labels=labels.get(r.get("test_sha256"))))
        lat = None if r.get("emulated") else _latency(base.get("host"), host, old, r, tolerance_pct)
        r["baseline"] = {**(acc or {}), **(lat or {})}
        if acc and "p_value" in acc:
            ok = acc["p_value"] >= ALPHA or acc["lost"] <= acc["gained"]
            r["gates"].append({
                "gate": "baseline_accuracy", "limit": ALPHA, "unit": "", "value": acc["p_value"], "passed": ok,
                "message": f"accuracy {acc['accuracy_new']:.2%} against {acc['accuracy_old']:.2%} in the baseline: "
                           f"{acc['lost']} images lost, {acc['gained']} gained, McNemar p {acc['p_value']:.3g} "
                           f"({'within' if ok else 'FAILS'} >= {ALPHA})"})
        if lat and "ratio" in lat:
            ok = lat["ratio"] <= lat["limit"]
            r["gates"].append({
                "gate": "baseline_latency", "limit": round(lat["limit"], 4), "unit": "x", "value": lat["ratio"],
                "passed": ok,
                "message": f"p50 {lat['p50_new']:.4g} ms against {lat['p50_old']:.4g} ms in the baseline "
                           f"({lat['ratio']:.2f}x; {'within' if ok else 'FAILS'} <= {lat['limit']:.2f}x: "
                           f"{tolerance_pct:g} % tolerance + {lat['noise']:.2f} round noise)"})
        if r["status"] == "pass" and not all(g["passed"] for g in r["gates"]):
            r["status"] = "fail"
    if not matched:
        raise BadInput("--baseline: none of its rows is an artifact of this run (matched by model, format, "
                       "precision and target)")
    return {"created": base.get("created"), "tolerance_pct": tolerance_pct, "alpha": ALPHA, "matched": matched}


def rows(doc: dict) -> list[tuple[str, ...]]:
    """The report's old-against-new table."""
    out = [("artifact", "accuracy old", "accuracy new", "lost", "gained", "p", "p50 old ms", "p50 new ms", "ratio",
            "limit")]
    for r in doc["results"]:
        b = r.get("baseline")
        if b is None:
            continue
        name = f"{r.get('model')} {r['format']} {r['precision']}" + (f" on {r['target']}" if r["target"] != "local"
                                                                        else "")

        def f(key, fmt):
            return "-" if b.get(key) is None else format(b[key], fmt)
        out.append((name, f("accuracy_old", ".2%"), f("accuracy_new", ".2%"), f("lost", "d"), f("gained", "d"),
                    f("p_value", ".3g"), f("p50_old", ".4f"), f("p50_new", ".4f"), f("ratio", ".2f"),
                    f("limit", ".2f")))
    return out
