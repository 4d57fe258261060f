"""`edgecnn predict ARTIFACT IMAGE_OR_FOLDER...`: each image's most likely classes.

The images are read as images.py says, to the artifact's input size and channels, and
the artifact is run with its own preprocessing (runtime/predict.py): here in this
process, importing only its runtime, or on a target through the harness.
"""
from __future__ import annotations

import json
import tempfile
from pathlib import Path

import numpy as np

from edgecnn.runtime import ArtifactError, RuntimeMissing

from . import images, inspect, layout
from .errors import BadInput


def load_model(artifact: Path, threads: int = 1, preprocessing: dict | None = None, classes=None):
    """The runtime's Model for `artifact`, its file checked against its manifest first."""
    from edgecnn.runtime.predict import Model
    if artifact.is_dir():
        raise BadInput(layout.hint(artifact, "predict") or f"{artifact} is a folder; predict takes one artifact file")
    entry = inspect.manifest_entry(artifact)
    if entry:
        inspect.verify(artifact, entry)
    else:  # made elsewhere: a malformed file can crash its runtime, so it is opened in a child first
        inspect.describe(artifact)
    scaling = None
    if not entry or any(v is not None for v in (preprocessing or {}).values()):
        from .preprocess import declared
        scaling = declared(artifact, **(preprocessing or {}))
    try:
        return Model(artifact, threads, scaling, classes)
    except ArtifactError as e:
        raise BadInput(str(e)) from None


def _input_hwc(model) -> tuple[int, int, int]:
    if model.input_shape:
        return tuple(model.input_shape)
    spec = model.runner.input_spec
    dims = list(spec.shape[1:4])
    hwc = dims if spec.layout == "NHWC" else dims[1:] + dims[:1]
    if len(hwc) != 3 or not all(isinstance(d, int) and d > 0 for d in hwc):
        raise BadInput(f"{model.path} does not declare a fixed HxWxC input ({spec.shape})")
    return tuple(hwc)


def predict(artifact, inputs, top_k: int = 1, target=None, resize: str | None = None,
            preprocessing: dict | None = None, classes: list[str] | None = None, threads: int = 1,
            log=None) -> dict:
    artifact = Path(artifact)
    if top_k < 1:
        raise BadInput(f"--top-k must be 1 or more, not {top_k}")
    model = load_model(artifact, threads, preprocessing, classes)
    try:
        h, w, c = _input_hwc(model)
    except ArtifactError as e:
        raise BadInput(str(e)) from None
    files = images.files_in(inputs)
    x = images.to_array([(f, images.open_image(f)) for f in files], channels=c, size=(h, w),
                        resize=images.parse_size(resize))
    where = "local" if target is None else target.name
    counted = {}
    try:
        if target is None or where == "local":
            logits = model.logits(x)
        else:
            logits, counted = _on_target(target, model, x, log)
        probs = model.as_probabilities(logits)
        top = model.top(probs, min(top_k, probs.shape[1]))
    except RuntimeMissing as e:
        raise BadInput(f"{artifact}: {e}") from None
    except ArtifactError as e:
        raise BadInput(str(e)) from None
    return {"artifact": str(artifact), "format": model.format, "target": where,
            "classes_from": "the manifest" if model.made_by_edgecnn else ("--classes" if classes else "output indices"),
            "predictions": [{"image": str(f), "top": [{"class": k, "probability": round(p, 6)} for k, p in t]}
                            for f, t in zip(files, top)],
            **_estimate(target, artifact, counted)}


def _estimate(target, artifact: Path, result: dict) -> dict:
    """The Pi latency estimate of the first image's inference, when the target counted it."""
    if result.get("pi_count", {}).get("cycles"):
        from . import pi_latency
        entry = inspect.manifest_entry(artifact) or {}
        manifest = artifact.with_name("manifest.json")
        macs = json.loads(manifest.read_text()).get("model", {}).get("macs") if entry else None
        # without a manifest the precision is unknown: the int8 peak, the higher, keeps the bound a bound
        return {"pi_estimate": pi_latency.estimate(target.cpu, result["pi_count"]["cycles"], macs,
                                                   artifact.stat().st_size, entry.get("precision", "int8"))}
    return {k: result[k] for k in ("pi_count", "pi_estimate_skipped") if k in result}


def _on_target(target, model, x: np.ndarray, log) -> np.ndarray:
    """The logits from the target's harness (runtime/harness.py's predict job)."""
    from .preprocess import for_job
    why = target.why_not(model.format)
    if why:
        raise BadInput(f"{target.name} does not run {model.format} artifacts: {why}")
    if hasattr(target, "setup"):
        target.setup(log=log)
    with tempfile.TemporaryDirectory(prefix="edgecnn-predict-") as tmp:
        work = Path(tmp)
        data = work / "images.npz"
        np.savez(data, images=x, labels=np.zeros(len(x), np.int64), sample=x[:1])
        out = work / "logits.npy"
        job = {"artifact": str(model.path.resolve()), "format": model.format, "data": str(data),
               "scaling": for_job(model.scaling), "predict": True, "logits_out": str(out)}
        try:
            result = target.run(job, work / "job")
        finally:
            if hasattr(target, "close"):
                target.close()
        if result.get("status") != "ok":
            reason = result.get("reason") or f"{target.name}: the harness failed"
            raise BadInput(reason + (f" ({result['hint']})" if result.get("hint") else ""))
        if not out.is_file():
            raise BadInput(f"{target.name}: the answers did not come back")
        return np.load(out), result


def render(doc: dict) -> str:
    from . import pi_latency
    lines = []
    for p in doc["predictions"]:
        lines.append(f"{p['image']}: " + ", ".join(f"{t['class']} {t['probability']:.1%}" for t in p["top"]))
    shown = pi_latency.headline(doc.get("pi_estimate"))
    if shown:
        name, at = shown
        bound = f"; lower bound {at['lower_bound_ms']:.3g} ms" if at["lower_bound_ms"] is not None else ""
        lines.append(f"{pi_latency.column(name)} at {at['ghz']:g} GHz: {pi_latency.cell(at)}, one image at batch 1, "
                     f"band ±{at['band']:.0%}{bound}" + (f" ({doc['pi_estimate']['caveat']})"
                                                          if doc["pi_estimate"].get("caveat") else ""))
    elif doc.get("pi_estimate"):
        lines.append(f"no Pi latency estimate: {doc['pi_estimate']['why_uncalibrated']}")
    elif doc.get("pi_estimate_skipped") or (doc.get("pi_count") or {}).get("error"):
        lines.append(f"no Pi latency estimate: {doc.get('pi_estimate_skipped') or doc['pi_count']['error']}")
    return "\n".join(lines)
