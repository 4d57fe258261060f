"""`edgecnn explain ART_DIR`: where an int8 artifact loses accuracy, layer by layer.

Each int8 artifact runs on test images with its intermediate tensors exposed (its
runner's taps: TFLite keeps every tensor, ONNX Runtime gets the tensors as extra graph
outputs; the PyTorch lite interpreter exposes none, and the table says so). Each tensor
is tied to a layer of edgecnn's graph by the names the converter left on it, and
compared with the fp32 model's output at that layer: the run's own model, copied through
the weight bridge into the NumPy twin, which keeps every layer's output. A tensor that
a converter fused (conv + batchnorm + relu) is compared at the last layer of the fused
chain. One table then shows each layer across formats.

Per layer: SQNR (signal-to-quantization-noise ratio, dB: 10 log10 of the reference's
energy over the error's), cosine similarity and the largest absolute error. Per
artifact, two layers are named:
- where the error jumps: the largest fall in SQNR from the layer before it in graph
  order (for the first layer, from the best SQNR anywhere), when it is JUMP_DB or more
  and leaves the layer below CLEAN_DB. This reads the file as it is, damage included.
- what costs the most accuracy when it alone is quantized: the artifact is made again
  once per conv2d and dense layer, with the same options and calibration images (its
  manifest entry records them) and every other such layer kept in float, and each
  variant's test accuracy is measured on this host's runtime (ties go to the lower
  logit SQNR). This needs no taps, so a .ptl gets it too.
"""
from __future__ import annotations

import sys
import tempfile
from pathlib import Path

import numpy as np

from edgecnn.converters import FORMATS, bridge, converter
from edgecnn.runtime import ArtifactError, RuntimeMissing, runner_class
from edgecnn.runtime.evaluate import scale

from . import convert, data, outdir, repair
from .columns import columns
from .errors import BadInput, brief
from .runs import Run
from .stats import compare

SAMPLES = 256  # test images: enough for stable SQNR, quick on every runtime
ALONE_IMAGES = 1000  # test images each one-layer variant is scored on (all of a smaller split)
NOISE_IMAGES = 1  # a layer alone must lose more net images than this to be named the costliest
JUMP_DB = 6.0  # a fall in SQNR that counts as a jump: the error's energy grows fourfold
CLEAN_DB = 30.0  # ... down to below this (int8 gives about 6 dB a bit; 30 dB is 5 good bits)


def layer_of(scopes: list[str], graph) -> str | None:
    """The graph layer whose output a tensor holds: the latest in graph order of the
    layers it is named after, where any layer of a folded chain (conv, batchnorm, relu)
    stands for the whole chain: a converter fuses it into one op, whose output is the
    chain's. Where a runtime keeps the activation apart, its own tensor comes later and
    is the one kept."""
    order = {n["name"]: i for i, n in enumerate(graph.nodes)}
    names = [s for s in scopes if s in order]
    for w in graph.weighted_layers():
        chain = graph.folded_chain(w)
        if set(chain) & set(names):
            names += chain
    # a relu that is its input's only reader is folded into it too (ONNX Runtime's QDQ
    # drops it and clips in the quantize step, after an add as after a conv)
    for name in list(names):
        readers = graph.consumers(name)
        if len(readers) == 1 and readers[0]["op"] in ("relu", "relu6"):
            names.append(readers[0]["name"])
    return max(names, key=order.get) if names else None


def _as_run(reference: dict, graph, name: str, channels_first: bool) -> np.ndarray:
    """The reference output of layer `name` as the artifact holds it: features
    flattened from an (H, W, C) map come channel first in an NCHW runtime, through any
    elementwise layers after the flatten (the weight bridge's own rule)."""
    value = reference[name]
    hwc = bridge.flattened_map(graph, {"inputs": [name]}) if channels_first and value.ndim == 2 else None
    if hwc is None:
        return value
    h, w, c = hwc
    return value[:, np.arange(h * w * c).reshape(h, w, c).transpose(2, 0, 1).ravel()]


def _jump(layers: list[dict]) -> dict | None:
    """The layer with the largest fall in SQNR from the one before it."""
    if not layers:
        return None
    best = max(lay["sqnr_db"] for lay in layers)
    before = [best] + [lay["sqnr_db"] for lay in layers[:-1]]
    falls = [b - lay["sqnr_db"] for b, lay in zip(before, layers)]
    jumps = [i for i, (fall, lay) in enumerate(zip(falls, layers)) if fall >= JUMP_DB and lay["sqnr_db"] < CLEAN_DB]
    if not jumps:
        return None
    i = max(jumps, key=lambda k: falls[k])
    return {"layer": layers[i]["layer"], "from_db": before[i], "to_db": layers[i]["sqnr_db"]}


def _same_model(folder, logits: np.ndarray, art_dir) -> None:
    """The run folder still holds the model these artifacts were exported from: its
    logits are export's fp32 reference (reference.npz, checked by its sha256)."""
    ref = folder.manifest.get("reference") or {}
    path = folder.folder / str(ref.get("file", "reference.npz"))
    if not path.is_file():
        return
    if ref.get("sha256") and outdir.file_digests(path, "sha256")[0] != ref["sha256"]:
        raise BadInput(f"{path}: it is not the reference export wrote (sha256 differs)")
    with np.load(path) as z:
        want = z["logits"][:len(logits)]
    if want.shape != logits.shape or not np.abs(want - logits).max() <= bridge.TOLERANCE * 10:
        raise BadInput(f"{art_dir}: the run folder's model is not the one these artifacts were exported from "
                       f"(its logits differ from the export's reference); export again")


def explain(art_dir, samples: int = SAMPLES, data_dir=None, alone: bool = True, targets=None, formats=None,
            log=None) -> dict:
    """`targets`: where the artifacts' layers are read (toolchain.targets; this machine,
    in this process, when none). `alone`: also make each artifact once per layer
    quantized alone (the module's docstring), here, one conversion per layer and format.
    `formats`: the int8 artifacts to explain [default: all]."""
    from .targets import LocalTarget
    from .validate import _closing, open_artifact
    log = log or (lambda msg: print(msg, file=sys.stderr, flush=True))
    if samples < 1:
        raise BadInput(f"--samples {samples}: give 1 or more test images")
    targets = list(targets or [LocalTarget()])
    folder = open_artifact(art_dir, formats=formats or FORMATS, precisions=["int8"])
    if not folder.entries:
        raise BadInput(f"{art_dir}: no int8 artifacts to explain; export them with --int8")
    folder.verify()  # nothing is loaded that is not the file export wrote
    run_dir = folder.model.get("run")
    run = Run(run_dir) if isinstance(run_dir, str) else None
    if run is None or run.native:
        raise BadInput(f"{art_dir}: explain compares layers of edgecnn's graph, and this folder's model "
                       f"{'has no run folder' if run is None else 'was imported in its own framework'}")
    graph = run.spec.graph
    ds = data.load(run.dataset, data_dir or run.data_dir, resize=run.resize)
    if ds.input_shape != run.spec.input_shape:
        raise BadInput(f"dataset {run.dataset!r} has {ds.input_shape} images; the run takes {run.spec.input_shape}")
    x = scale(ds.x_test[:samples], run.spec.scaling)
    # the NumPy twin keeps every layer's output; the one-layer variants are made from the others
    twins = convert.twins(run, {"numpy"} | ({converter(e["format"]).TWIN for e in folder.entries} if alone else set()),
                          x, log=None)
    reference = twins[2]["numpy"].forward(x, keep=True)
    _same_model(folder, reference[graph.output], art_dir)
    artifacts = []
    with tempfile.TemporaryDirectory(prefix="edgecnn-explain-") as tmp, _closing(targets):
        for t in targets:
            if hasattr(t, "setup"):
                t.setup(log=log)
        images = Path(tmp) / "images.npz"
        np.savez(images, sample=ds.x_test[:1], images=ds.x_test[:samples], labels=ds.y_test[:samples])
        for target in targets:
            for entry in folder.entries:
                row = {"target": target.name, "format": entry["format"], "file": entry["file"], "exposed": False}
                try:
                    taps = _taps(target, folder, entry, x, images, run.spec.scaling, Path(tmp))
                except _NotRead as e:
                    artifacts.append(dict(row, reason=str(e)))
                    continue
                channels_first = (entry.get("input") or {}).get("layout") == "NCHW"
                artifacts.append(dict(row, exposed=True, **_layers(taps, reference, graph, channels_first)))
    doc = {"folder": str(folder.folder), "samples": int(len(x)), "graph": [n["name"] for n in graph.nodes],
           "targets": [t.describe() for t in targets], "artifacts": artifacts}
    if alone:
        doc["alone"] = _quantized_alone(run, folder, ds, twins, log)
    return doc


class _NotRead(Exception):
    """Why an artifact's layers were not read on a target: the explain row's reason."""


def _taps(target, folder, entry, x, images: Path, scaling: dict, work: Path) -> list:
    """The artifact's intermediate tensors on the target: in this process for local, else
    through the target's harness (runtime/harness.py's taps_out)."""
    from .preprocess import for_job
    cls = runner_class(entry["format"])
    if entry.get("status") != "ok":
        raise _NotRead(f"export failed: {entry.get('reason', 'no file')}")
    if not cls.has_taps():  # not loaded at all: a .ptl runs code when it loads
        raise _NotRead(cls.no_taps)
    path = folder.folder / entry["file"]
    if target.name == "local":
        try:
            runner = cls(path).load()
            taps = runner.taps(x)
        except (ArtifactError, RuntimeMissing) as e:
            raise _NotRead(str(e)) from None
        if taps is None:
            raise _NotRead(runner.no_taps)
        return taps
    from edgecnn.runtime.harness import load_taps
    why = target.why_not(entry["format"])
    if why:
        raise _NotRead(f"{target.name} does not run {entry['format']}: {why}")
    jobdir = Path(tempfile.mkdtemp(prefix="job-", dir=work))
    out = jobdir / "taps.npz"
    job = {"artifact": str(path.resolve()), "format": entry["format"], "data": str(images),
           "scaling": for_job(scaling), "taps_out": str(out)}
    result = target.run(job, jobdir / "work")
    if result.get("status") != "ok":
        reason = result.get("reason") or f"{target.name}: the harness failed"
        hint = result.get("hint")
        raise _NotRead(reason + (f" ({hint})" if hint and hint not in reason else ""))
    if not result.get("exposed"):
        raise _NotRead(result.get("no_taps") or cls.no_taps)
    if not out.is_file():
        raise _NotRead(f"{target.name}: its layers' outputs did not come back")
    return load_taps(out)


def _layers(taps: list, reference: dict, graph, channels_first: bool) -> dict:
    """Each tensor tied to a graph layer, compared with the reference at that layer (on
    as many images as the target ran: an emulated one runs the first ones), in graph
    order, and where the error jumps."""
    order = {n["name"]: i for i, n in enumerate(graph.nodes)}
    n = len(taps[-1][1])
    found = {}
    for i, (scopes, value) in enumerate(taps):
        name = layer_of(scopes, graph) or (graph.output if i == len(taps) - 1 else None)
        if name in reference and reference[name].shape[1:] == value.shape[1:]:
            found[name] = value  # the last tensor tied to a layer is its output
    layers = [dict(layer=name, **compare(_as_run(reference, graph, name, channels_first)[:n], value))
              for name, value in sorted(found.items(), key=lambda kv: order[kv[0]])]
    return {"samples": int(n), "layers": layers, "jump": _jump(layers)}


def _quantized_alone(run: Run, folder, ds, twins: tuple, log) -> dict:
    """Each int8 artifact made again once per conv2d and dense layer, that layer alone
    int8 and the others float, and scored here on the first ALONE_IMAGES test images:
    each layer's accuracy, drop and logit SQNR, and the costliest layer, per artifact."""
    graph = run.spec.graph
    layers = graph.weighted_layers()
    indices = (folder.manifest.get("calibration") or {}).get("indices")
    n = min(ALONE_IMAGES, len(ds.x_test))
    x = scale(ds.x_test[:n], run.spec.scaling)
    rows, todo = [], []
    for entry in folder.entries:
        row = {"format": entry["format"], "file": entry["file"]}
        if entry.get("status") != "ok":
            row["reason"] = f"export failed: {entry.get('reason', 'no file')}"
        elif not isinstance(entry.get("options"), dict) or not indices:
            row["reason"] = ("its manifest does not record the options and calibration images it was made with "
                             "(an export by an older edgecnn); export it again")
        else:
            todo.append((row, entry))
        rows.append(row)
    if not todo:
        return {"images": n, "artifacts": rows}
    picked = np.asarray(indices, dtype=int)
    if picked.min() < 0 or picked.max() >= len(ds.x_train):
        raise BadInput(f"{folder.folder}: its manifest's calibration images reach image {int(picked.max())} of a "
                       f"training split of {len(ds.x_train)}: the dataset is not the one it was exported with")
    calib = scale(ds.x_train[picked], run.spec.scaling)
    source, model, made, _ = twins
    images = repair.Images(ds.x_test[:n], ds.y_test[:n], run.spec.scaling, bridge.logits(source, model, x))
    base = images.reference_accuracy
    with tempfile.TemporaryDirectory(prefix="edgecnn-explain-") as tmp:
        for row, entry in todo:
            fmt = row["format"]
            with convert.maker(run, source, model, made, calib, fmt, "int8", entry["options"]) as make:
                log(f"{fmt} int8: making it again with each of its {len(layers)} layers alone quantized ...")
                results = []
                for layer in layers:
                    dest = Path(tmp) / f"alone{Path(entry['file']).suffix}"
                    try:
                        make({name: graph.folded_chain(name) for name in layers if name != layer}, dest)
                        m = repair.measure(fmt, dest, images)
                    except Exception as e:  # a layer its quantizer cannot make alone int8 is reported, not fatal
                        results.append({"layer": layer, "error": brief(e, 200)})
                        continue
                    results.append({"layer": layer, "accuracy": m["accuracy"],
                                    "drop": round(100 * (base - m["accuracy"]), 4),
                                    "logits_sqnr_db": round(m["logits_sqnr_db"], 2)})
            scored = [r for r in results if "error" not in r]
            for r in scored:
                r["images_lost"] = round(r["drop"] * n / 100)
            worst = max(scored, key=lambda r: (r["drop"], -r["logits_sqnr_db"])) if scored else None
            furthest = min(scored, key=lambda r: r["logits_sqnr_db"]) if scored else None
            row.update(layers=results, costliest=worst["layer"] if worst and worst["images_lost"] > NOISE_IMAGES else None,
                       furthest=furthest and furthest["layer"])
    return {"images": n, "reference_accuracy": base, "artifacts": rows}


def sections(doc: dict) -> list[tuple[str, list[tuple], list[str]]]:
    """What explain shows, as (title, table rows with the header first, lines under the
    table): one section per target, then the one-layer variants. The terminal table and
    the validation report both render these."""
    out = []
    names = list(dict.fromkeys(a["target"] for a in doc["artifacts"]))
    for target in names:
        about = next((t for t in doc.get("targets", []) if t["name"] == target), {})
        ran = [a["samples"] for a in doc["artifacts"] if a["target"] == target and a.get("samples")]
        title = f"each layer's output against fp32's on {max(ran, default=doc['samples'])} test images, on {target}" + (
            f" ({about['cpu']})" if about.get("cpu") else "")
        out.append((title, *_layer_table([a for a in doc["artifacts"] if a["target"] == target], doc["graph"])))
    alone = doc.get("alone")
    if alone:
        made = [a for a in alone["artifacts"] if "layers" in a]
        by = [{r["layer"]: r for r in a["layers"]} for a in made]
        rows = [("layer", *(f"{a['format']} drop" for a in made))]
        for layer in (by[0] if by else []):
            rows.append((layer, *("error" if "error" in b[layer] else f"{b[layer]['drop']:.2f}" for b in by)))
        lines = []
        for a in alone["artifacts"]:
            by_name = {r["layer"]: r for r in a.get("layers", [])}
            if a.get("costliest"):
                worst = by_name[a["costliest"]]
                lines.append(f"{a['format']}: alone int8, {worst['layer']} costs the most: {worst['drop']:.2f} points, "
                             f"net {worst['images_lost']} of {alone['images']} images (logit SQNR "
                             f"{worst['logits_sqnr_db']:.1f} dB)")
            elif a.get("furthest"):
                far = by_name[a["furthest"]]
                lines.append(f"{a['format']}: alone int8, no layer costs more than {NOISE_IMAGES} net image of "
                             f"{alone['images']}; {far['layer']}'s logits are the furthest from fp32's (SQNR "
                             f"{far['logits_sqnr_db']:.1f} dB)")
            elif "layers" in a:
                lines.append(f"{a['format']}: not one layer could be made int8 alone: {a['layers'][0]['error']}")
            elif "reason" in a:
                lines.append(f"{a['format']}: not made layer by layer: {a['reason']}")
        fp32 = f" (fp32: {alone['reference_accuracy']:.2%})" if "reference_accuracy" in alone else ""
        out.append((f"each layer alone int8, the others float: accuracy lost, in points, on {alone['images']} "
                    f"test images{fp32}", rows if made else [], lines))
    return out


def table(doc: dict) -> str:
    lines = []
    for title, rows, notes in sections(doc):
        lines += ([""] if lines else []) + [title] + (columns(rows) if rows else []) + notes
    return "\n".join(lines)


def _layer_table(artifacts: list[dict], graph: list[str]) -> tuple[list[tuple], list[str]]:
    """One target's artifacts, layer by layer, and where each one's error jumps."""
    shown = [a for a in artifacts if a["exposed"]]
    by = [{lay["layer"]: lay for lay in a["layers"]} for a in shown]
    names = [n for n in graph if any(n in b for b in by)]
    rows = [("layer", *(f"{a['format']} SQNR dB" for a in shown), *(f"{a['format']} cosine" for a in shown))]
    for n in names:
        rows.append((n, *(f"{b[n]['sqnr_db']:.1f}" if n in b else "-" for b in by),
                     *(f"{b[n]['cosine']:.4f}" if n in b and b[n]["cosine"] is not None else "-" for b in by)))
    lines = []
    for a in artifacts:
        if not a["exposed"]:
            lines.append(f"{a['format']}: not explained: {a['reason']}")
        elif a["jump"]:
            j = a["jump"]
            lines.append(f"{a['format']}: the error jumps at {j['layer']} (SQNR {j['from_db']:.1f} -> {j['to_db']:.1f} dB)")
        else:
            lines.append(f"{a['format']}: no jump (no layer's SQNR falls by {JUMP_DB:g} dB or more to below "
                         f"{CLEAN_DB:g} dB)")
    return (rows if shown else []), lines


def for_report(art_dirs, data_dir, targets, formats, log=None) -> list[dict]:
    """validate --explain: explain each folder validated that has int8 artifacts of
    edgecnn's graph; one that cannot be explained says why, and the others go on."""
    docs = []
    for art_dir in art_dirs:
        try:
            docs.append(explain(art_dir, data_dir=data_dir, targets=targets, formats=formats, log=log))
        except Exception as e:  # the validation's own report is written whatever happens here
            docs.append({"folder": str(art_dir), "reason": str(e) if isinstance(e, BadInput) else brief(e, 300)})
    return docs
