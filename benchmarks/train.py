"""Training benchmark on MNIST (needs $EDGECNN_DATA_DIR or --data-dir).

Prints, measured side by side in one run on this machine:
- torch seconds per step at 1 and at 2 threads (how the default thread count was chosen);
- seconds per MNIST epoch for each framework, with edgecnn's own training loops;
- the ratio of edgecnn's PyTorch epoch to a plain hand-written loop of the same model,
  batch and optimizer (target <= 1.05), with and without edgecnn's shift augmentation.

Rounds alternate between the contenders so that drift in machine load hits both alike;
medians are reported. Usage: python benchmarks/train.py [--rounds 3] [--data-dir DIR]
"""
from __future__ import annotations

import argparse
import os
import statistics
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "0")

import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402

from edgecnn.toolchain import data, models, train, train_torch  # noqa: E402


def no_progress(epoch, epochs, steps):
    from edgecnn.toolchain.progress import EpochProgress
    return EpochProgress(epoch, epochs, steps, enabled=False)


def plain_epoch(spec, x, y, batch_size, lr, seed) -> float:
    """What a user would write by hand: shuffled minibatches, Adam, cross-entropy."""
    torch.manual_seed(seed)
    model = models.build_torch(spec)
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    t = time.perf_counter()
    perm = torch.randperm(len(x))
    for i in range(0, len(x), batch_size):
        idx = perm[i:i + batch_size]
        loss = F.cross_entropy(model(x[idx]), y[idx])
        opt.zero_grad()
        loss.backward()
        opt.step()
    return time.perf_counter() - t


def edgecnn_epoch(ds, spec, cfg) -> float:
    _, history = train_torch.fit(ds, spec, cfg, no_progress)
    return history[0]["seconds"]


def ms_per_step(spec, threads, steps=150, batch_size=64) -> float:
    torch.set_num_threads(threads)
    model = models.build_torch(spec)
    opt = torch.optim.Adam(model.parameters())
    x, y = torch.rand(batch_size, 1, 28, 28), torch.randint(0, 10, (batch_size,))
    times = []
    for _ in range(steps):
        t = time.perf_counter()
        loss = F.cross_entropy(model(x), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
        times.append(time.perf_counter() - t)
    return statistics.median(times[20:]) * 1000


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--data-dir", default=None)
    args = ap.parse_args()
    ds = data.load("mnist", args.data_dir)
    spec = models.ModelSpec("cnn", ds.input_shape, ds.classes)
    threads = train.default_threads()
    base = dict(framework="torch", epochs=1, batch_size=64, lr=2e-3, seed=0, threads=threads)
    print(f"MNIST, {len(ds.x_train)} training images, batch 64, {threads} threads, "
          f"{args.rounds} alternating rounds; medians", flush=True)

    per_thread = {1: [], 2: []}
    for _ in range(args.rounds):
        for t in per_thread:
            per_thread[t].append(ms_per_step(spec, t))
    for t, v in per_thread.items():
        print(f"torch step, {t} thread{'s' if t > 1 else ''}: {statistics.median(v):.1f} ms")
    print(f"  2 threads / 1 thread: {statistics.median(per_thread[2]) / statistics.median(per_thread[1]):.2f}")

    torch.set_num_threads(threads)
    # Whole epochs on a 12,800-image slice (200 steps): short enough to alternate the
    # contenders many times, and each round starts with a different one.
    n = 12800
    sub = data.Dataset("mnist[:12800]", ds.x_train[:n], ds.y_train[:n], ds.x_test, ds.y_test, ds.classes)
    x = train_torch.to_nchw_float(sub.x_train)
    y = torch.from_numpy(sub.y_train)
    contenders = {
        "plain": lambda r: plain_epoch(spec, x, y, 64, 2e-3, r),
        "edgecnn (shift 0)": lambda r: edgecnn_epoch(sub, spec, train.TrainConfig(**base, shift=0)),
        "edgecnn (shift 1, default)": lambda r: edgecnn_epoch(sub, spec, train.TrainConfig(**base, shift=1)),
    }
    names = list(contenders)
    times = {k: [] for k in names}
    for r in range(args.rounds * 3):
        order = names[r % 3:] + names[:r % 3]
        for k in order:
            times[k].append(contenders[k](r))
    med = {k: statistics.median(v) for k, v in times.items()}
    for k, v in med.items():
        print(f"torch, 200 steps, {k}: {v:.3f} s (spread {min(times[k]):.3f}-{max(times[k]):.3f})")
    print(f"ratio edgecnn loop / plain loop: {med['edgecnn (shift 0)'] / med['plain']:.3f} (target <= 1.05)")
    print(f"ratio edgecnn loop with augmentation / plain loop: "
          f"{med['edgecnn (shift 1, default)'] / med['plain']:.3f}")
    full = edgecnn_epoch(ds, spec, train.TrainConfig(**base, shift=1))
    print(f"torch epoch (60,000 images, defaults): {full:.2f} s")

    from edgecnn.toolchain import train_keras
    cfg = train.TrainConfig(**dict(base, framework="tf", epochs=args.rounds + 1))
    _, history = train_keras.fit(ds, spec, cfg, no_progress)
    first, rest = history[0]["seconds"], [h["seconds"] for h in history[1:]]
    print(f"keras epoch: {statistics.median(rest):.2f} s (first epoch, with tracing: {first:.2f} s)")
    print(f"torch epoch / keras epoch: {full / statistics.median(rest):.2f}")


if __name__ == "__main__":
    main()
