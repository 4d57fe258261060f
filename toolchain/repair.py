"""export --max-accuracy-drop: an int8 artifact that loses more test accuracy than the
budget keeps its most harmful layers in float, one more layer per step, until the drop
fits or every conv2d and dense layer is float. Each quantizer keeps a layer in float its
own way, through the converters' FLOAT_LAYERS option (export --float-layers): TFLite's
debugger denylist, ONNX Runtime's nodes_to_exclude, a torch.ao qconfig of None.

Harm is measured, not guessed. Each layer is put back to float on its own and the
artifact made again; the more that brings its logits towards the fp32 model's (SQNR on
the calibration images, never the test images that judge the budget), the more harmful
the layer. That costs one conversion per layer, then one per step; the manifest records
the ranking, and each step's float layers, test accuracy, size and latency.
"""
from __future__ import annotations

import os
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np

from edgecnn.runtime import runner_for
from edgecnn.runtime.bench import bench
from edgecnn.runtime.evaluate import evaluate, scale

from .columns import columns
from .errors import BadInput, brief
from .stats import compare

# a step's latency: enough batch-1 runs for a stable median, quick beside a conversion
LATENCY_RUNS, LATENCY_SECONDS, LATENCY_WARMUP = 100, 0.25, 10


@dataclass
class Images:
    """Raw uint8 NHWC images, their labels, the model's scaling and the fp32 model's logits."""
    raw: np.ndarray
    labels: np.ndarray
    scaling: dict
    reference: np.ndarray

    @property
    def reference_accuracy(self) -> float:
        return float((self.reference.argmax(1) == self.labels).mean())


def check_budget(budget, precisions, native: bool) -> float | None:
    if budget is None:
        return None
    if not np.isfinite(budget) or budget < 0:
        raise BadInput(f"--max-accuracy-drop is in points of accuracy, 0 or more, not {budget:g}")
    if "int8" not in precisions:
        raise BadInput("--max-accuracy-drop repairs int8 artifacts; add --int8")
    if native:
        raise BadInput("--max-accuracy-drop keeps layers of edgecnn's graph in float; this model was imported "
                       "in its own framework, without one")
    return float(budget)


def measure(fmt: str, path: Path, images: Images, latency: bool = False) -> dict:
    runner = runner_for(fmt, path).load()
    result = evaluate(runner, images.raw, images.labels, images.scaling, images.reference, keep_logits=True)
    out = {"accuracy": result["accuracy"], "logits_sqnr_db": compare(images.reference, result["logits"])["sqnr_db"]}
    if latency:
        timing = bench(runner, scale(images.raw[:1], images.scaling), min_runs=LATENCY_RUNS,
                       min_seconds=LATENCY_SECONDS, warmup=LATENCY_WARMUP)
        out["latency_ms"] = round(timing["latency_ms"]["p50"], 4)
    return out


def fit(fmt: str, make: Callable[[dict, Path], dict], path: Path, layers: list[str], start: dict,
        chain: Callable[[str], list[str]], budget: float, test: Images, rank_on: Images,
        log: Callable[[str], None]) -> tuple[dict, dict | None]:
    """Repair the int8 file at `path`, made with the float layers `start`. `make(floats,
    dest)` converts again with those float layers ({layer: its folded chain}) and returns
    the converter's metadata. Returns the manifest's record and, when the file at `path`
    was replaced, the metadata of the file now there."""
    base = test.reference_accuracy

    def step(floats: dict, file: Path) -> dict:
        m = measure(fmt, file, test, latency=True)
        return {"float_layers": list(floats), "accuracy": m["accuracy"],
                "drop": round(100 * (base - m["accuracy"]), 4), "bytes": file.stat().st_size,
                "latency_ms": m["latency_ms"]}

    steps = [step(start, path)]
    record = {"budget": budget, "reference_accuracy": base, "test_images": int(len(test.labels)),
              "ranked_on": f"{len(rank_on.labels)} calibration images", "steps": steps}
    if steps[0]["drop"] <= budget:
        return dict(record, met=True), None
    log(f"  {fmt} int8 loses {steps[0]['drop']:.2f} points, more than {budget:g}: ranking "
        f"{len(layers) - len(start)} layers by what keeping each in float gives back")
    meta = None
    with tempfile.TemporaryDirectory(dir=path.parent, prefix=".repair-") as tmp:
        baseline = measure(fmt, path, rank_on)["logits_sqnr_db"]
        ranking = []
        for i, layer in enumerate(layer for layer in layers if layer not in start):
            trial = Path(tmp) / f"rank{i}{path.suffix}"
            try:
                make({**start, layer: chain(layer)}, trial)
            except Exception as e:  # a layer its quantizer cannot keep in float is not a candidate
                ranking.append({"layer": layer, "error": brief(e, 200)})
                continue
            gain = measure(fmt, trial, rank_on)["logits_sqnr_db"] - baseline
            ranking.append({"layer": layer, "sqnr_gain_db": round(gain, 2)})
        ranking.sort(key=lambda r: -r.get("sqnr_gain_db", -np.inf))
        record["ranking"] = ranking
        floats, best = dict(start), None
        for r in (r for r in ranking if "error" not in r):
            floats[r["layer"]] = chain(r["layer"])
            trial = Path(tmp) / f"step{len(steps)}{path.suffix}"
            try:
                made = make(floats, trial)
                steps.append(step(floats, trial))
            except Exception as e:  # the file of the last good step is kept, and the reason recorded
                record["error"] = f"with {', '.join(floats)} in float: {brief(e, 200)}"
                log(f"  {fmt} int8 repair stopped: {record['error']}")
                break
            meta, best = made, trial
            s = steps[-1]
            log(f"  {fmt} int8 with {r['layer']} also float: {s['accuracy']:.2%}, drop {s['drop']:.2f} points, "
                f"{s['bytes'] / 1024:.0f} KB, p50 {s['latency_ms']:.3f} ms")
            if s["drop"] <= budget:
                break
        if best is not None:
            os.replace(best, path)
    return dict(record, met=steps[-1]["drop"] <= budget), meta


def table(fmt: str, record: dict) -> str:
    """One artifact's repair, step by step, for the export table."""
    head = (f"repair of {fmt} int8 (budget {record['budget']:g} points below fp32's "
            f"{record['reference_accuracy']:.2%} on {record['test_images']} test images): "
            + ("met" if record["met"] else
               f"NOT met, {len(record['steps']) - 1} of {len(record.get('ranking', []))} layers tried in float"))
    rows = [("float layers", "accuracy", "drop", "size", "p50 latency")]
    for s in record["steps"]:
        rows.append((", ".join(s["float_layers"]) or "(none)", f"{s['accuracy']:.2%}", f"{s['drop']:.2f}",
                     f"{s['bytes'] / 1024:,.0f} KB", f"{s['latency_ms']:.3f} ms"))
    return "\n".join([head] + ["  " + line for line in columns(rows)])
