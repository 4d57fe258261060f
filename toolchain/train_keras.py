"""Training the Keras twin with Keras' own fit loop, seeded and with deterministic ops."""
from __future__ import annotations

import keras
import numpy as np
import tensorflow as tf

from . import models
from .augment import random_shift


class Trained:
    weights_file = "model.keras"

    def __init__(self, model, spec):
        self.model, self.spec = model, spec
        self.params = int(model.count_params())

    def predict(self, x_uint8: np.ndarray, batch: int = 1000) -> np.ndarray:
        x = x_uint8.astype(np.float32) / 255.0
        return np.asarray(self.model.predict(x, batch_size=batch, verbose=0))

    def save(self, folder) -> str:
        self.model.save(folder / self.weights_file)
        return self.weights_file


def set_threads(threads: int) -> None:
    try:
        tf.config.threading.set_intra_op_parallelism_threads(threads)
        tf.config.threading.set_inter_op_parallelism_threads(threads)
    except RuntimeError:
        pass  # TF already initialised in this process (tests, notebooks): keep its setting


def fit(ds, spec, cfg, progress_factory) -> tuple[Trained, list[dict]]:
    set_threads(cfg.threads)
    keras.utils.set_random_seed(cfg.seed)
    tf.config.experimental.enable_op_determinism()
    model = models.build_keras(spec)
    n, bs = len(ds.x_train), cfg.batch_size
    steps = (n + bs - 1) // bs
    schedule = keras.optimizers.schedules.CosineDecay(cfg.lr, decay_steps=steps * cfg.epochs)
    model.compile(optimizer=keras.optimizers.Adam(schedule),
                  loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
                  metrics=["accuracy"])
    history: list[dict] = []
    progress = _Progress(progress_factory, cfg.epochs, steps, history, schedule)
    rng = np.random.default_rng(cfg.seed)
    for epoch in range(cfg.epochs):
        # Each epoch gets freshly shifted images in a new order, made in NumPy as in the
        # PyTorch loop; a PyDataset doing the same was 2.5x slower on 2 cores.
        order = rng.permutation(n)
        x = random_shift(ds.x_train[order], cfg.shift, rng).astype(np.float32) / 255.0
        model.fit(x, ds.y_train[order], batch_size=bs, initial_epoch=epoch, epochs=epoch + 1,
                  shuffle=False, verbose=0, callbacks=[progress])
    return Trained(model, spec), history


class _Progress(keras.callbacks.Callback):
    def __init__(self, factory, epochs, steps, history, schedule):
        super().__init__()
        self.factory, self.epochs, self.steps = factory, epochs, steps
        self.history, self.schedule = history, schedule
        self.bar = None
        self.done = 0

    def on_epoch_begin(self, epoch, logs=None):
        self.bar = self.factory(epoch + 1, self.epochs, self.steps)
        self.done = 0
        self.lr = float(self.schedule(epoch * self.steps))

    def on_train_batch_end(self, batch, logs=None):
        if self.bar.enabled and (batch + 1) % 20 == 0:
            self.bar.update(batch + 1 - self.done, float(logs["loss"]), float(logs["accuracy"]))
            self.done = batch + 1

    def on_epoch_end(self, epoch, logs=None):
        loss, acc = float(logs["loss"]), float(logs["accuracy"])
        seconds = self.bar.close(loss, acc)
        self.history.append({"epoch": epoch + 1, "loss": loss, "accuracy": acc,
                             "seconds": round(seconds, 3), "lr_start": self.lr})
