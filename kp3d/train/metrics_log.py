"""Progress bar and metrics log (CSV; TensorBoard when installed)."""

import csv
import os
import sys
import time


class MetricsLog:
    """Appends rows {step, time, images_per_s, lr, loss, <terms>} to DIR/metrics.csv; mirrors them
    to TensorBoard under DIR/tensorboard when `torch.utils.tensorboard` is importable.

    On resume, rows of steps after the resumed step are dropped (a run that died after logging
    but before its next checkpoint would otherwise log those steps twice)."""

    def __init__(self, folder, resume_step=None, tensorboard=True):
        os.makedirs(folder, exist_ok=True)
        self.path = os.path.join(folder, "metrics.csv")
        self.fields = None
        self.rows = []
        if resume_step is not None and os.path.exists(self.path):
            with open(self.path, newline="") as f:
                reader = csv.DictReader(f)
                self.fields = reader.fieldnames
                self.rows = [r for r in reader if int(float(r["step"])) <= resume_step]
        else:
            self.rows = []
        self._rewrite()
        self.writer = None
        if tensorboard:
            try:
                from torch.utils.tensorboard import SummaryWriter
                self.writer = SummaryWriter(os.path.join(folder, "tensorboard"))
            except Exception:  # tensorboard not installed
                self.writer = None

    def _rewrite(self):
        with open(self.path, "w", newline="") as f:
            if self.fields:
                w = csv.DictWriter(f, fieldnames=self.fields)
                w.writeheader()
                w.writerows(self.rows)

    def log(self, step, values: dict):
        row = {"step": step, **{k: (f"{v:.6g}" if isinstance(v, float) else v)
                                for k, v in values.items()}}
        if self.fields is None or any(k not in self.fields for k in row):
            self.fields = list(dict.fromkeys((self.fields or []) + list(row)))
            self.rows.append(row)
            self._rewrite()
        else:
            self.rows.append(row)
            with open(self.path, "a", newline="") as f:
                csv.DictWriter(f, fieldnames=self.fields).writerow(row)
        if self.writer is not None:
            for k, v in values.items():
                if isinstance(v, (int, float)):
                    self.writer.add_scalar(k, v, step)

    def close(self):
        if self.writer is not None:
            self.writer.close()


class Progress:
    """A tqdm bar (steps, loss terms, images/s, ETA); a plain line every `every` steps when tqdm
    is missing or disabled."""

    def __init__(self, total, initial=0, enabled=True, every=50):
        self.total, self.every = total, every
        self.bar = None
        self.enabled = enabled
        self.start = time.time()
        self.initial = initial
        if enabled:
            try:
                from tqdm import tqdm
                self.bar = tqdm(total=total, initial=initial, desc="train", unit="step",
                                dynamic_ncols=True, file=sys.stderr)
            except ImportError:
                self.bar = None

    def update(self, step, terms: dict, images_per_s: float):
        short = {k[:5]: f"{v:.4f}" for k, v in terms.items()}
        short["img/s"] = f"{images_per_s:.1f}"
        if self.bar is not None:
            self.bar.set_postfix(short, refresh=False)
            self.bar.update(1)
        elif self.enabled and (step % self.every == 0 or step == self.total):
            done = step - self.initial
            rate = done / max(time.time() - self.start, 1e-9)
            eta = (self.total - step) / max(rate, 1e-9)
            parts = " ".join(f"{k}={v}" for k, v in short.items())
            print(f"step {step}/{self.total} {parts} eta {eta:.0f}s", file=sys.stderr, flush=True)

    def close(self):
        if self.bar is not None:
            self.bar.close()
