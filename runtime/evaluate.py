"""Accuracy and fidelity of one artifact on a labelled test split.

Fidelity compares the artifact's logits with the fp32 reference logits that export
stored from the trained model (reference.npz): top-1 agreement and the largest
absolute logit difference.
"""
from __future__ import annotations

import time

import numpy as np

from .runner import ArtifactError, Runner

EVAL_BATCH = 1000


def scale(images: np.ndarray, scaling: dict) -> np.ndarray:
    """Raw uint8 NHWC images as the model takes them: divided by `divide_by`, then, where
    the model was trained on normalised inputs, less `mean` and over `std` per channel."""
    x = images.astype(np.float32)
    x /= np.float32(scaling.get("divide_by", 255.0))
    if scaling.get("mean") is not None:
        x -= np.asarray(scaling["mean"], np.float32)
        x /= np.asarray(scaling["std"], np.float32)
    return x


def nchw(batch: np.ndarray) -> np.ndarray:
    """An NHWC batch as NCHW, in a new array with the standard C-order strides. A plain
    transpose does not do: numpy keeps a one-channel transpose's strides (a size-1 axis may
    have any), PyTorch reads those as channels_last, its convolutions then answer in
    channels_last, and a model that calls .view() on their output fails."""
    n, h, w, c = batch.shape
    out = np.empty((n, c, h, w), batch.dtype)
    np.copyto(out, batch.transpose(0, 3, 1, 2))
    return out


def encode_top1(pred: np.ndarray) -> str:
    """Each image's top-1 class, uint16 little-endian, base64: what a paired comparison
    with another run needs, in 2 bytes an image (decode_top1 reads it back)."""
    import base64
    return base64.b64encode(np.asarray(pred, "<u2").tobytes()).decode("ascii")


def decode_top1(text: str) -> np.ndarray:
    import base64
    return np.frombuffer(base64.b64decode(text), "<u2").astype(np.int64)


def infer_all(runner: Runner, images: np.ndarray, scaling: dict, batch: int = EVAL_BATCH,
              classes: int | None = None) -> np.ndarray:
    """The logits of raw uint8 NHWC `images`, scaled and run a batch at a time (one at a
    time where the artifact takes batch 1). With `classes`, an artifact whose output is
    not one value per class is an ArtifactError."""
    if not runner.batchable:
        batch = 1
    chunks = []
    for i in range(0, len(images), batch):
        chunks.append(runner.infer(scale(images[i:i + batch], scaling)))
        if classes and (chunks[-1].ndim != 2 or chunks[-1].shape[1] != classes):
            raise ArtifactError(f"{runner.path.name} gives outputs of shape {list(chunks[-1].shape[1:])} per "
                                f"image, not one logit per class ({classes})")
    return np.concatenate(chunks) if chunks else np.zeros((0, 0), np.float32)


def evaluate(runner: Runner, images: np.ndarray, labels: np.ndarray, scaling: dict,
             reference: np.ndarray | None = None, batch: int = EVAL_BATCH, keep_logits: bool = False,
             classes: int | None = None) -> dict:
    """`images` are the raw uint8 NHWC test images; scaling happens a batch at a time so a
    device never holds the whole split as float32. With keep_logits the result also
    holds the logits, for comparing one artifact across machines. With `classes`, an
    artifact whose output is not one value per class is an ArtifactError."""
    n = len(images)
    if not runner.batchable:
        batch = 1
    t = time.perf_counter()
    logits = infer_all(runner, images, scaling, batch, classes)
    seconds = time.perf_counter() - t
    pred = logits.argmax(1)
    correct = pred == labels
    classes = max(int(labels.max()) + 1, logits.shape[1]) if n else 0
    per_class = [float(correct[labels == c].mean()) if (labels == c).any() else None
                 for c in range(classes)]
    result = {"samples": int(n), "batch": int(batch), "eval_seconds": round(seconds, 4),
              "top1": encode_top1(pred),
              "accuracy": float(correct.mean()), "per_class_accuracy": per_class,
              "agreement": None, "max_abs_diff": None}
    if reference is not None:
        ref_pred = reference.argmax(1)
        ref_correct = ref_pred == labels
        result["agreement"] = float((pred == ref_pred).mean())
        result["reference_accuracy"] = float(ref_correct.mean())  # on these images
        result["max_abs_diff"] = float(np.abs(logits - reference).max())
        # the paired counts behind McNemar's test on the host: images only this artifact
        # gets right, and images only the reference gets right
        result["paired"] = {"gained": int((correct & ~ref_correct).sum()), "lost": int((~correct & ref_correct).sum())}
    if keep_logits:
        result["logits"] = logits
    return result
