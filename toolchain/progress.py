"""Progress on stderr: a tqdm bar per epoch on a terminal; when stderr is a file or a CI
log (where a redrawn bar would be noise), one summary line per epoch and, within a long
epoch, a line every HEARTBEAT_S seconds, so that a log never goes quiet for minutes."""
from __future__ import annotations

import sys
import time

HEARTBEAT_S = 20.0


class EpochProgress:
    def __init__(self, epoch: int, epochs: int, steps: int, enabled: bool = True):
        self.epoch, self.epochs, self.steps = epoch, epochs, steps
        self.enabled = enabled
        self.start = self.said = time.perf_counter()
        self.done = 0
        self.bar = None
        if enabled and sys.stderr.isatty():
            from tqdm import tqdm
            self.bar = tqdm(total=steps, desc=f"epoch {epoch}/{epochs}", unit="batch",
                            file=sys.stderr, leave=True, dynamic_ncols=True, mininterval=0.25)

    def update(self, n: int, loss: float, acc: float) -> None:
        """Called every few batches with running means; cheap when no bar is shown."""
        if self.bar is not None:
            self.bar.set_postfix(loss=f"{loss:.4f}", acc=f"{acc:.4f}", refresh=False)
            self.bar.update(n)
            return
        self.done += n
        now = time.perf_counter()
        if self.enabled and now - self.said >= HEARTBEAT_S:
            self.said = now
            print(f"epoch {self.epoch}/{self.epochs}  {self.done}/{self.steps} batches  loss {loss:.4f}  "
                  f"acc {acc:.4f}  {now - self.start:.0f}s", file=sys.stderr, flush=True)

    def close(self, loss: float, acc: float) -> float:
        seconds = time.perf_counter() - self.start
        if self.bar is not None:
            self.bar.set_postfix(loss=f"{loss:.4f}", acc=f"{acc:.4f}", time=f"{seconds:.1f}s")
            self.bar.close()
        elif self.enabled:
            print(f"epoch {self.epoch}/{self.epochs}  loss {loss:.4f}  acc {acc:.4f}  "
                  f"{seconds:.1f}s", file=sys.stderr, flush=True)
        return seconds
