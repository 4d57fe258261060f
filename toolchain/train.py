"""`edgecnn train`: a dataset and a framework in, a run folder out.

A run folder holds the weights (model.safetensors or model.keras), spec.json (the model
spec with its input scaling), history.json (per epoch), metrics.json (test split) and
run.json (framework, dataset, hyper-parameters, seed, library versions, timings).
"""
from __future__ import annotations

import importlib
import os
import platform
import time
from dataclasses import asdict, dataclass
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

from . import data, models, outdir
from .errors import BadInput
from .progress import EpochProgress

FRAMEWORKS = {"torch": "train_torch", "tf": "train_keras", "numpy": "train_numpy"}
NUMPY_ONLY = "numpy"  # the framework that trains the mlp spec and offers --optimizer sgd
DEFAULT_HIDDEN = (128,)  # mlp: one hidden layer of 128 units when --hidden is not given
OPTIMIZERS = ("adam", "sgd")  # train_numpy.OPTIMIZERS implements both; the others use Adam
RUN_SCHEMA = 1

# Epochs when --epochs is not given. MNIST-size sets need few passes; digits has 1,437
# training images, so one epoch is 23 batches; xor has 4, so one epoch is one step.
DEFAULT_EPOCHS = {"digits": 30, "xor": 10000}
DEFAULT_EPOCHS_OTHER = 3
# Random translation when --shift is not given: none for xor, whose two "pixels" are its inputs.
DEFAULT_SHIFT = {"xor": 0}
DEFAULT_SHIFT_OTHER = 1


@dataclass
class TrainConfig:
    framework: str
    epochs: int
    batch_size: int
    lr: float
    seed: int
    threads: int
    shift: int = 1  # random translation, pixels each way (0: none)
    model: str = "cnn"            # a zoo name, or the path of a .toml / .json architecture file
    width: float = 1.0            # mobilenet: channel multiplier
    hidden: tuple[int, ...] = ()  # mlp: units per hidden layer
    activation: str = "relu"      # mlp: after each hidden layer
    optimizer: str = "adam"


def default_threads() -> int:
    """Measured on the 2-core machine this is built on (benchmarks/train.py prints it):
    torch at 2 threads took 0.6-0.7x the time per step of 1 thread when the machine was
    otherwise idle, so every usable core is the default. --threads overrides it."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


def default_epochs(dataset: str) -> int:
    return DEFAULT_EPOCHS.get(dataset, DEFAULT_EPOCHS_OTHER)


def default_shift(dataset: str) -> int:
    return DEFAULT_SHIFT.get(dataset, DEFAULT_SHIFT_OTHER)


def validate_config(cfg: TrainConfig) -> None:
    if cfg.framework not in FRAMEWORKS:
        raise BadInput(f"unknown framework {cfg.framework!r}; choose one of {', '.join(FRAMEWORKS)}")
    for name, value in (("epochs", cfg.epochs), ("batch size", cfg.batch_size),
                        ("threads", cfg.threads)):
        if value <= 0:
            raise BadInput(f"{name} must be a positive integer, got {value}")
    if cfg.shift < 0:
        raise BadInput(f"shift must be 0 or more pixels, got {cfg.shift}")
    if not (cfg.lr > 0 and np.isfinite(cfg.lr)):
        raise BadInput(f"learning rate must be a positive number, got {cfg.lr}")
    if cfg.seed < 0:
        raise BadInput(f"seed must be 0 or more, got {cfg.seed}")
    if cfg.model not in models.ARCHS and not cfg.model.endswith(models.ARCH_FILE_SUFFIXES):
        raise BadInput(f"unknown model {cfg.model[:60]!r}; choose one of {', '.join(models.ARCHS)}, "
                       f"or give an architecture file ({' or '.join(models.ARCH_FILE_SUFFIXES)})")
    if cfg.optimizer not in OPTIMIZERS:
        raise BadInput(f"unknown optimizer {cfg.optimizer!r}; choose one of {', '.join(OPTIMIZERS)}")
    if cfg.framework != NUMPY_ONLY and cfg.model == "mlp":
        raise BadInput(f"the {cfg.model} model trains only with --framework {NUMPY_ONLY}")
    if cfg.width != 1.0 and cfg.model != "mobilenet":
        raise BadInput("--width scales the mobilenet model; add --model mobilenet")
    if cfg.framework != NUMPY_ONLY and cfg.optimizer != "adam":
        raise BadInput(f"--optimizer {cfg.optimizer} is offered only with --framework {NUMPY_ONLY}")
    if cfg.model != "mlp" and (cfg.hidden or cfg.activation != "relu"):
        raise BadInput("--hidden and --activation shape the mlp model; add --model mlp")


def make_spec(cfg: TrainConfig, input_shape, classes) -> models.ModelSpec:
    if cfg.model not in models.ARCHS:
        return models.from_file(cfg.model, input_shape, classes)
    extra = {"hidden": list(cfg.hidden), "activation": cfg.activation} if cfg.model == "mlp" else {}
    spec = models.ModelSpec(cfg.model, input_shape, classes, width=cfg.width, **extra)
    models.check(spec)
    return spec


def evaluate_logits(logits: np.ndarray, labels: np.ndarray, classes: list[str]) -> dict:
    pred = logits.argmax(1)
    shifted = logits - logits.max(1, keepdims=True)
    log_probs = shifted - np.log(np.exp(shifted).sum(1, keepdims=True))
    per_class = {c: float((pred[labels == i] == i).mean()) if (labels == i).any() else None
                 for i, c in enumerate(classes)}
    return {"test_accuracy": float((pred == labels).mean()),
            "test_loss": float(-log_probs[np.arange(len(labels)), labels].mean()),
            "test_samples": int(len(labels)),
            "per_class_accuracy": per_class}


def versions(framework: str) -> dict:
    v = {"python": platform.python_version(), "numpy": np.__version__}
    if framework == "torch":
        import torch
        v["torch"] = torch.__version__
    elif framework == "tf":
        import keras
        import tensorflow as tf
        v["tensorflow"], v["keras"] = tf.__version__, keras.__version__
    elif framework == "onnx":  # an imported ONNX file
        import onnx
        import onnxruntime
        v["onnx"], v["onnxruntime"] = onnx.__version__, onnxruntime.__version__
    return v


def train(dataset: str, cfg: TrainConfig, out: Path, force: bool = False,
          data_dir=None, progress: bool = True, resize: tuple[int, int] | None = None) -> dict:
    validate_config(cfg)
    out = Path(out)
    outdir.check_free(out, force, "run folder")  # fail before minutes of training
    if cfg.model not in models.ARCHS:
        models.read_arch_file(cfg.model)  # an unreadable file fails before the data loads
    ds = data.load(dataset, data_dir, resize=resize)
    spec = make_spec(cfg, ds.input_shape, ds.classes)
    trainer = importlib.import_module(f"{__package__}.{FRAMEWORKS[cfg.framework]}")

    def bar(epoch, epochs, steps):
        return EpochProgress(epoch, epochs, steps, enabled=progress)

    with outdir.staged(out, force, "run folder") as tmp:
        t0 = time.perf_counter()
        trained, history = trainer.fit(ds, spec, cfg, bar)
        train_seconds = time.perf_counter() - t0
        metrics = evaluate_logits(trained.predict(ds.x_test), ds.y_test, ds.classes)
        weights = trained.save(tmp)
        run = {
            "schema": RUN_SCHEMA,
            "framework": cfg.framework,
            "dataset": data.canonical_name(dataset),
            # where the data was found (--data-dir, $EDGECNN_DATA_DIR or the cache): looked in
            # first by export and validate, so a fresh shell finds it again
            "data_dir": ds.read_from or (str(Path(data_dir).resolve()) if data_dir else None),
            "resize": list(resize) if resize else None,  # a folder's images, resized to (height, width)
            "weights": weights,
            "params": trained.params,
            "macs": spec.graph.macs(),
            "train_seconds": round(train_seconds, 3),
            "schedule": "cosine",
            **asdict(cfg),
            "train_samples": int(len(ds.x_train)),
            "versions": versions(cfg.framework),
            "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        }
        outdir.write_json(tmp / "run.json", run)
        outdir.write_json(tmp / "spec.json", spec.to_json())
        outdir.write_json(tmp / "history.json", history)
        outdir.write_json(tmp / "metrics.json", metrics)
    return {"framework": cfg.framework, "model": cfg.model, "dataset": run["dataset"], "epochs": cfg.epochs,
            "batch_size": cfg.batch_size, "lr": cfg.lr, "seed": cfg.seed, "threads": cfg.threads,
            "test_accuracy": metrics["test_accuracy"], "test_loss": metrics["test_loss"],
            "params": trained.params, "macs": spec.graph.macs(), "train_seconds": run["train_seconds"],
            "run_dir": str(out)}
