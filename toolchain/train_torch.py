"""Training the PyTorch twin. The loop is deliberately bare (index a pre-scaled tensor,
step, accumulate on-tensor), so that it costs no more than a hand-written loop of the
same model: benchmarks/train.py measures the ratio."""
from __future__ import annotations

import numpy as np

from edgecnn.runtime.evaluate import nchw

from . import models
from .augment import random_shift


def to_nchw_float(x_uint8: np.ndarray):
    import torch
    x = torch.from_numpy(nchw(x_uint8))
    return x.float().div_(255.0)


class Trained:
    weights_file = "model.safetensors"

    def __init__(self, model, spec):
        self.model, self.spec = model, spec
        self.params = models.count_params_torch(model)

    def predict(self, x_uint8: np.ndarray, batch: int = 1000) -> np.ndarray:
        import torch
        self.model.eval()
        outs = []
        with torch.inference_mode():
            for i in range(0, len(x_uint8), batch):
                outs.append(self.model(to_nchw_float(x_uint8[i:i + batch])).numpy())
        return np.concatenate(outs)

    def save(self, folder) -> str:
        from safetensors.torch import save_file
        state = {k: v.detach().contiguous() for k, v in self.model.state_dict().items()}
        save_file(state, str(folder / self.weights_file))
        return self.weights_file


def set_threads(threads: int) -> None:
    import torch
    torch.set_num_threads(threads)


def fit(ds, spec, cfg, progress_factory) -> tuple[Trained, list[dict]]:
    import torch
    # deterministic kernels for training only: the setting is process-wide, and int8
    # conversion after it in the same process (pipeline) uses ops that have none
    was = torch.are_deterministic_algorithms_enabled(), torch.is_deterministic_algorithms_warn_only_enabled()
    torch.use_deterministic_algorithms(True)
    try:
        return _fit(ds, spec, cfg, progress_factory)
    finally:
        torch.use_deterministic_algorithms(was[0], warn_only=was[1])


def _fit(ds, spec, cfg, progress_factory) -> tuple[Trained, list[dict]]:
    import torch
    import torch.nn.functional as F

    set_threads(cfg.threads)
    torch.manual_seed(cfg.seed)
    model = models.build_torch(spec)
    y = torch.from_numpy(ds.y_train)
    n, bs = len(y), cfg.batch_size
    steps = (n + bs - 1) // bs
    opt = torch.optim.Adam(model.parameters(), lr=cfg.lr)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=steps * cfg.epochs)
    gen = torch.Generator().manual_seed(cfg.seed)
    rng = np.random.default_rng(cfg.seed)
    history = []
    every = 20
    for epoch in range(1, cfg.epochs + 1):
        model.train()
        bar = progress_factory(epoch, cfg.epochs, steps)
        x = to_nchw_float(random_shift(ds.x_train, cfg.shift, rng))
        perm = torch.randperm(n, generator=gen)
        loss_sum = torch.zeros((), dtype=torch.float64)
        correct = torch.zeros((), dtype=torch.int64)
        lr = sched.get_last_lr()[0]
        for step, start in enumerate(range(0, n, bs), 1):
            idx = perm[start:start + bs]
            xb, yb = x[idx], y[idx]
            out = model(xb)
            loss = F.cross_entropy(out, yb)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            with torch.no_grad():
                loss_sum += loss.detach() * len(idx)
                correct += (out.argmax(1) == yb).sum()
            if step % every == 0 and bar.enabled:
                seen = min(start + bs, n)
                bar.update(every, loss_sum.item() / seen, correct.item() / seen)
        loss_mean, acc = loss_sum.item() / n, correct.item() / n
        seconds = bar.close(loss_mean, acc)
        history.append({"epoch": epoch, "loss": loss_mean, "accuracy": acc,
                        "seconds": round(seconds, 3), "lr_start": lr})
    return Trained(model, spec), history
