"""Bookkeeping of the training loop: loss sums kept on the device, and ``metrics.jsonl``."""

from __future__ import annotations

from pathlib import Path

import torch

from nerkd.io import dumps_line
from nerkd.train import ddp


class Accumulator:
    """Running sums of the loss and the objective's terms, without host synchronisation.

    Tensor terms are summed on the device, float terms on the host; :meth:`mean` (a log point)
    is the only place that reads the device, averaging over steps and ranks. Batches of another
    kind are added with a ``prefix`` (``"u_"``: ``u_loss``, ``u_kd``...) and averaged over the
    batches of their kind only.
    """

    def __init__(self, device: torch.device):
        self.device = device
        self.reset()

    def reset(self) -> None:
        self.tensors: dict[str, torch.Tensor] = {}
        self.floats: dict[str, float] = {}
        self.counts: dict[str, int] = {"": 0}    # batches per prefix ("" = gold)

    @property
    def count(self) -> int:
        return self.counts[""]

    def add(self, loss: torch.Tensor, terms: dict, prefix: str = "") -> None:
        self.counts[prefix] = self.counts.get(prefix, 0) + 1
        for key, value in (("loss", loss), *terms.items()):
            key = prefix + key
            if isinstance(value, torch.Tensor):
                value = value.detach().float()
                prev = self.tensors.get(key)
                self.tensors[key] = value if prev is None else prev + value
            else:
                self.floats[key] = self.floats.get(key, 0.0) + float(value)

    def _group(self, key: str) -> str:
        return next((p for p in self.counts if p and key.startswith(p)), "")

    def _reduced(self, env: ddp.DistEnv) -> tuple[dict[str, float], dict[str, int]]:
        counts = {p: n * env.world_size for p, n in self.counts.items()}
        keys = sorted(set(self.tensors) | set(self.floats))
        if not keys:
            return {}, counts
        zero = torch.zeros((), device=self.device)
        values = [self.tensors.get(k, zero).to(self.device) + self.floats.get(k, 0.0) for k in keys]
        total = ddp.all_reduce(torch.stack(values).float(), env).tolist()
        return dict(zip(keys, total, strict=True)), counts

    def mean(self, env: ddp.DistEnv) -> dict[str, float]:
        sums, counts = self._reduced(env)
        return {k: v / max(counts[self._group(k)], 1) for k, v in sums.items()}

    def state(self, env: ddp.DistEnv) -> dict:
        sums, counts = self._reduced(env)
        state = {"sums": sums, "count": counts.pop("")}
        if counts:
            state["counts"] = counts
        return state

    def load(self, state: dict | None, world_size: int = 1) -> None:
        """Restore :meth:`state` (global sums), split evenly over ``world_size`` ranks."""
        self.reset()
        if not state:
            return
        self.counts[""] = int(state["count"]) // world_size
        for prefix, n in state.get("counts", {}).items():
            self.counts[prefix] = int(n) // world_size
        for k, v in state["sums"].items():
            self.floats[k] = float(v) / world_size


class MetricsLog:
    """``metrics.jsonl``: one orjson line per log step and per epoch (rank 0 only)."""

    def __init__(self, path: Path, enabled: bool):
        self.path = Path(path)
        self.enabled = enabled

    def write(self, record: dict) -> None:
        if self.enabled:
            with self.path.open("ab") as f:
                f.write(dumps_line(record))

    def size(self) -> int:
        return self.path.stat().st_size if self.enabled and self.path.exists() else 0

    def truncate(self, size: int) -> int:
        """Drop lines written after a checkpoint (resume) or all of them (a fresh run).

        Never grows the file (``truncate`` past the end would pad it with NUL bytes): a file
        shorter than ``size`` is kept up to its last whole line, and the number of bytes missing
        is returned."""
        if not self.enabled:
            return 0
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with self.path.open("a+b") as f:
            current = f.seek(0, 2)
            if size <= current:
                f.truncate(size)
                return 0
            f.truncate(_last_line_end(f, current))   # new lines must not be glued to a cut one
        return size - current


def _last_line_end(f, end: int, block: int = 1 << 16) -> int:
    """Offset just after the last newline before ``end`` (0 when there is none)."""
    while end > 0:
        start = max(0, end - block)
        f.seek(start)
        chunk = f.read(end - start)
        cut = chunk.rfind(b"\n")
        if cut >= 0:
            return start + cut + 1
        end = start
    return 0
