"""Training benchmark on MNIST (needs $EDGECNN_DATA_DIR or --data-dir).

Prints, measured side by side in one run on this machine:
- torch seconds per step at 1 and at 2 threads (how the default thread count was chosen);
- seconds per MNIST epoch for each framework, with edgecnn's own training loops;
- the ratio of edgecnn's PyTorch epoch to a plain hand-written loop of the same model,
  batch and optimizer (target <= 1.05), with and without edgecnn's shift augmentation,
  for each --models (zoo names; the first also gets the thread and Keras timings).

Rounds alternate between the contenders so that drift in machine load hits both alike;
medians are reported. Usage: python benchmarks/train.py [--rounds 3] [--data-dir DIR]
[--models cnn,mobilenet] [--steps 200]
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
    ap.add_argument("--models", default="cnn", help="comma-separated zoo models whose loop ratio to measure")
    ap.add_argument("--steps", type=int, default=200, help="batches per timed epoch slice")
    args = ap.parse_args()
    ds = data.load("mnist", args.data_dir)
    names = args.models.split(",")
    threads = train.default_threads()
    base = dict(framework="torch", epochs=1, batch_size=64, lr=2e-3, seed=0, threads=threads)
    print(f"MNIST, {len(ds.x_train)} training images, batch 64, {threads} threads, "
          f"{args.rounds} alternating rounds; medians", flush=True)
    first = models.ModelSpec(names[0], ds.input_shape, ds.classes)

    per_thread = {1: [], 2: []}
    for _ in range(args.rounds):
        for t in per_thread:
            per_thread[t].append(ms_per_step(first, t))
    for t, v in per_thread.items():
        print(f"{names[0]}: torch step, {t} thread{'s' if t > 1 else ''}: {statistics.median(v):.1f} ms")
    print(f"  2 threads / 1 thread: {statistics.median(per_thread[2]) / statistics.median(per_thread[1]):.2f}")

    torch.set_num_threads(threads)
    for name in names:
        loop_ratio(name, ds, base, args.rounds, args.steps)

    full = edgecnn_epoch(ds, first, train.TrainConfig(**base, shift=1, model=names[0]))
    print(f"{names[0]}: torch epoch (60,000 images, defaults): {full:.2f} s")
    from edgecnn.toolchain import train_keras
    cfg = train.TrainConfig(**dict(base, framework="tf", epochs=args.rounds + 1), model=names[0])
    _, history = train_keras.fit(ds, first, cfg, no_progress)
    first_s, rest = history[0]["seconds"], [h["seconds"] for h in history[1:]]
    print(f"{names[0]}: keras epoch: {statistics.median(rest):.2f} s (first epoch, with tracing: {first_s:.2f} s)")
    print(f"torch epoch / keras epoch: {full / statistics.median(rest):.2f}")


def loop_ratio(name, ds, base, rounds, steps) -> None:
    """Whole epochs on a slice of `steps` batches: short enough to alternate the
    contenders many times, and each round starts with a different one."""
    spec = models.ModelSpec(name, ds.input_shape, ds.classes)
    n = steps * base["batch_size"]
    sub = data.Dataset(f"mnist[:{n}]", ds.x_train[:n], ds.y_train[:n], ds.x_test, ds.y_test, ds.classes)
    x = train_torch.to_nchw_float(sub.x_train)
    y = torch.from_numpy(sub.y_train)
    contenders = {
        "plain": lambda r: plain_epoch(spec, x, y, base["batch_size"], base["lr"], r),
        "edgecnn (shift 0)": lambda r: edgecnn_epoch(sub, spec, train.TrainConfig(**base, shift=0, model=name)),
        "edgecnn (shift 1, default)": lambda r: edgecnn_epoch(sub, spec,
                                                              train.TrainConfig(**base, shift=1, model=name)),
    }
    order0 = list(contenders)
    times = {k: [] for k in order0}
    for r in range(rounds * 3):
        for k in order0[r % 3:] + order0[:r % 3]:
            times[k].append(contenders[k](r))
    med = {k: statistics.median(v) for k, v in times.items()}
    for k, v in med.items():
        print(f"{name}: torch, {steps} steps, {k}: {v:.3f} s (spread {min(times[k]):.3f}-{max(times[k]):.3f})")
    print(f"{name}: ratio edgecnn loop / plain loop: {med['edgecnn (shift 0)'] / med['plain']:.3f} (target <= 1.05)")
    print(f"{name}: ratio edgecnn loop with augmentation / plain loop: "
          f"{med['edgecnn (shift 1, default)'] / med['plain']:.3f}", flush=True)


if __name__ == "__main__":
    main()
