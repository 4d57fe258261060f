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
artifact: the layer where the error jumps (the largest fall in SQNR from the layer
before it in graph order, for the first layer from the best SQNR anywhere, when it is
JUMP_DB or more and leaves the layer below CLEAN_DB).
"""
from __future__ import annotations

import numpy as np

from edgecnn.converters import bridge
from edgecnn.runtime import ArtifactError, RuntimeMissing, runner_class
from edgecnn.runtime.evaluate import scale

from . import data, outdir
from .columns import columns
from .errors import BadInput
from .export import BUILDERS
from .runs import Run
from .stats import compare

SAMPLES = 256  # test images: enough for stable SQNR, quick on every runtime
JUMP_DB = 6.0  # a fall in SQNR that counts as a jump: the error's energy grows fourfold
CLEAN_DB = 30.0  # ... down to below this (int8 gives about 6 dB a bit; 30 dB is 5 good bits)


def _reference_net(run: Run):
    """The run's fp32 model as the NumPy twin, which keeps every layer's output."""
    source, model = run.load_twin()
    if source == "numpy":
        return model
    net = BUILDERS["numpy"](run.spec)
    bridge.copy_weights(source, model, "numpy", net, run.spec.graph)
    return net


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


def explain(art_dir, samples: int = SAMPLES, data_dir=None) -> dict:
    from .validate import open_artifact
    if samples < 1:
        raise BadInput(f"--samples {samples}: give 1 or more test images")
    folder = open_artifact(art_dir, precisions=["int8"])
    if not folder.entries:
        raise BadInput(f"{art_dir}: no int8 artifacts to explain; export them with --int8")
    folder.verify()  # nothing is loaded that is not the file export wrote
    run_dir = folder.model.get("run")
    run = Run(run_dir) if isinstance(run_dir, str) else None
    if run is None or run.native:
        raise BadInput(f"{art_dir}: explain compares layers of edgecnn's graph, and this folder's model "
                       f"{'has no run folder' if run is None else 'was imported in its own framework'}")
    graph = run.spec.graph
    ds = data.load(run.dataset, data_dir or run.data_dir)
    if ds.input_shape != run.spec.input_shape:
        raise BadInput(f"dataset {run.dataset!r} has {ds.input_shape} images; the run takes {run.spec.input_shape}")
    x = scale(ds.x_test[:samples], run.spec.scaling)
    reference = _reference_net(run).forward(x, keep=True)
    _same_model(folder, reference[graph.output], art_dir)
    order = {n["name"]: i for i, n in enumerate(graph.nodes)}
    artifacts = []
    for entry in folder.entries:
        row = {"format": entry["format"], "file": entry["file"], "exposed": False}
        cls = runner_class(entry["format"])
        if entry.get("status") != "ok":
            row["reason"] = f"export failed: {entry.get('reason', 'no file')}"
        elif not cls.has_taps():  # not loaded at all: a .ptl runs code when it loads
            row["reason"] = cls.no_taps
        if "reason" in row:
            artifacts.append(row)
            continue
        try:
            runner = cls(folder.folder / entry["file"]).load()
            taps = runner.taps(x)
        except (ArtifactError, RuntimeMissing) as e:
            raise BadInput(f"{entry['file']}: {e}") from None
        row["exposed"] = taps is not None
        if taps is None:
            row["reason"] = runner.no_taps
            artifacts.append(row)
            continue
        channels_first = runner.input_spec.layout == "NCHW"
        found = {}
        for i, (scopes, value) in enumerate(taps):
            name = layer_of(scopes, graph) or (graph.output if i == len(taps) - 1 else None)
            if name in reference and reference[name].shape == value.shape:
                found[name] = value  # the last tensor tied to a layer is its output
        row["layers"] = [dict(layer=name, **compare(_as_run(reference, graph, name, channels_first), value))
                         for name, value in sorted(found.items(), key=lambda kv: order[kv[0]])]
        row["jump"] = _jump(row["layers"])
        artifacts.append(row)
    return {"folder": str(folder.folder), "samples": int(len(x)), "graph": [n["name"] for n in graph.nodes],
            "artifacts": artifacts}


def table(doc: dict) -> str:
    shown = [a for a in doc["artifacts"] if a["exposed"]]
    by = [{lay["layer"]: lay for lay in a["layers"]} for a in shown]
    names = [n for n in doc["graph"] if any(n in b for b in by)]
    rows = [("layer", *(f"{a['format']} SQNR dB" for a in shown), *(f"{a['format']} cosine" for a in shown))]
    for n in names:
        rows.append((n, *(f"{b[n]['sqnr_db']:.1f}" if n in b else "-" for b in by),
                     *(f"{b[n]['cosine']:.4f}" if n in b and b[n]["cosine"] is not None else "-" for b in by)))
    lines = columns(rows)
    for a in doc["artifacts"]:
        if not a["exposed"]:
            lines.append(f"{a['format']}: not explained: {a['reason']}")
        elif a["jump"]:
            j = a["jump"]
            lines.append(f"{a['format']}: the error jumps at {j['layer']} (SQNR {j['from_db']:.1f} -> {j['to_db']:.1f} dB)")
        else:
            lines.append(f"{a['format']}: no jump (no layer's SQNR falls by {JUMP_DB:g} dB or more to below "
                         f"{CLEAN_DB:g} dB)")
    return "\n".join(lines)
