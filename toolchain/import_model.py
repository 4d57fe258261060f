"""`edgecnn import MODEL --dataset D --out RUN_DIR`: a model edgecnn did not train,
made into a run folder that `export` and `pipeline` take like any other.

A `.keras` file is loaded in Keras's safe mode (a Lambda layer's code never runs) and
read as edgecnn's graph vocabulary (keras_import.py). The run folder then holds the
graph (spec.json), the graph's own Keras twin with the model's weights (model.keras),
and in run.json where it came from and how closely the twin reproduces it, measured on
the dataset's first test images. Every format is then made through the weight bridge,
as for a trained run. The dataset calibrates int8 and is the fp32 reference.
"""
from __future__ import annotations

from datetime import datetime, timezone
from pathlib import Path

import numpy as np

from . import data, keras_import, models, outdir, preprocess, zoo
from edgecnn.runtime.evaluate import scale

from .errors import BadInput, brief
from .inspect import shape_text
from .train import RUN_SCHEMA, evaluate_logits, versions

SUFFIXES = (".keras",)
PROOF_IMAGES = 256
TOLERANCE = 1e-4


def _load_keras(path: Path):
    import keras
    try:
        return keras.saving.load_model(path, safe_mode=True, compile=False)
    except Exception as e:  # Keras raises many types for a bad file
        if "safe_mode" in str(e) or "lambda" in str(e).lower():
            raise BadInput(f"{path}: cannot load the model: it holds Python code (a Lambda layer), "
                           f"which Keras's safe mode refuses to run") from None
        raise BadInput(f"{path}: cannot load the model ({brief(e)})") from None


def _class_names(names: str | None, ds, units: int, path: Path) -> list[str]:
    classes = [c.strip() for c in names.split(",")] if names else list(ds.classes)
    if names and (len(set(classes)) != len(classes) or not all(classes)):
        raise BadInput("--classes: the names must be distinct and not empty")
    if units != len(classes):
        raise BadInput(f"{path}: its output has {units} values, not one logit per class of "
                       f"{'--classes' if names else 'dataset ' + repr(ds.name)} ({len(classes)})")
    if len(classes) != ds.num_classes:
        raise BadInput(f"--classes names {len(classes)} classes; the dataset has {ds.num_classes}")
    return classes


def _softmax(z: np.ndarray) -> np.ndarray:
    e = np.exp(z - z.max(1, keepdims=True))
    return e / e.sum(1, keepdims=True)


def import_model(model_path, dataset: str, out, data_dir=None, classes: str | None = None,
                 force: bool = False, divide_by=None, mean=None, std=None) -> dict:
    """`divide_by`, `mean`, `std`: the preprocessing the model was trained with, over
    what a MODEL.toml beside the file says (preprocess.declared); divide by 255 when
    neither says anything."""
    path = Path(model_path)
    if path.suffix.lower() not in SUFFIXES:
        raise BadInput(f"{path}: edgecnn imports {', '.join(SUFFIXES)} files; .pt2, .onnx and module:factory "
                       f"entry points are not supported yet")
    if not path.is_file():
        raise BadInput(f"{path}: no such model file")
    out = Path(out)
    outdir.check_free(out, force, "run folder")
    scaling = preprocess.declared(path, divide_by, mean, std)
    ds = data.load(dataset, data_dir)
    preprocess.check(scaling, ds.input_shape[2], "the preprocessing")
    model = _load_keras(path)
    shape = tuple(model.inputs[0].shape[1:]) if getattr(model, "inputs", None) else None
    if shape != tuple(ds.input_shape):
        raise BadInput(f"{path}: it takes {shape_text(shape) if shape else 'unknown'} images; dataset "
                       f"{ds.name!r} has {shape_text(ds.input_shape)}")
    try:
        nodes, sources, dropped_softmax = keras_import.to_nodes(model)
    except keras_import.NotVocabulary as e:
        raise BadInput(f"{path}: {e}; only models made of edgecnn's graph vocabulary import so far") from None
    units = int(model.outputs[0].shape[-1])
    spec = models.ModelSpec(arch=zoo.CUSTOM, input_shape=ds.input_shape,
                            classes=_class_names(classes, ds, units, path), scaling=scaling,
                            nodes=nodes, source=path.name)
    models.check(spec)
    twin = models.build_keras(spec)
    keras_import.copy_weights(model, twin, sources)

    x_test = scale(ds.x_test, scaling)
    probe = x_test[:PROOF_IMAGES]
    want = np.asarray(model(probe, training=False))
    got = np.asarray(twin(probe, training=False))
    diff = float(np.abs((_softmax(got) if dropped_softmax else got) - want).max())
    if diff > TOLERANCE:
        raise BadInput(f"{path}: edgecnn's graph of it differs from the model by {diff:.2e} "
                       f"(tolerance {TOLERANCE:g}) on {len(probe)} test images; it was not imported")
    metrics = evaluate_logits(twin.predict(x_test, verbose=0), ds.y_test, spec.classes)
    digest, = outdir.file_digests(path, "sha256")
    with outdir.staged(out, force, "run folder") as tmp:
        twin.save(tmp / "model.keras")
        run = {
            "schema": RUN_SCHEMA, "framework": "tf", "dataset": data.canonical_name(dataset),
            "data_dir": str(Path(data_dir).resolve()) if data_dir else None, "weights": "model.keras",
            "params": spec.graph.count_params(), "macs": spec.graph.macs(), "seed": 0, "epochs": None,
            "model": zoo.CUSTOM,
            "imported": {"file": str(path.resolve()), "sha256": digest, "format": "keras",
                         "read_as": "edgecnn graph", "final_softmax_dropped": dropped_softmax,
                         "proof": {"images": int(len(probe)), "max_abs_diff": diff, "tolerance": TOLERANCE,
                                   "compared": "softmax of the graph's logits" if dropped_softmax else "outputs"}},
            "versions": versions("tf"),
            "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        }
        outdir.write_json(tmp / "run.json", run)
        outdir.write_json(tmp / "spec.json", spec.to_json())
        outdir.write_json(tmp / "metrics.json", metrics)
    return {"run_dir": str(out), "model": path.name, "dataset": run["dataset"], "layers": len(nodes),
            "params": run["params"], "macs": run["macs"], "test_accuracy": metrics["test_accuracy"],
            "final_softmax_dropped": dropped_softmax, "max_abs_diff": diff}

