"""CPU thread defaults that do not oversubscribe: one torch thread per physical core.

torch's own default is one thread per *logical* CPU of the machine, which oversubscribes with
hyper-threading, inside a CPU-limited container, or next to a busy neighbour (issue #11: 2
threads on 2 cores with one busy neighbour fell to a sixth of the 1-thread speed). The default
here counts the physical cores this process may run on (its CPU affinity mapped through
``/proc/cpuinfo``), capped by a cgroup CPU quota, falling back to ``os.cpu_count()``.
"""

from __future__ import annotations

import math
import os
from pathlib import Path


def _affinity() -> set[int] | None:
    try:
        return set(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return None


def physical_cores(cpuinfo: str | None = None, allowed: set[int] | None = None) -> int | None:
    """Distinct (package, core) pairs among the ``allowed`` logical CPUs, read from ``/proc/cpuinfo``
    (or the ``cpuinfo`` text given); ``None`` when the file has no core ids (not Linux, some VMs)."""
    if cpuinfo is None:
        try:
            cpuinfo = Path("/proc/cpuinfo").read_text(encoding="utf-8", errors="replace")
        except OSError:
            return None
    cores: set[tuple[str, str]] = set()
    seen_core_id = False
    for block in cpuinfo.split("\n\n"):
        fields = {}
        for line in block.splitlines():
            key, sep, value = line.partition(":")
            if sep:
                fields[key.strip()] = value.strip()
        if "processor" not in fields:
            continue
        try:
            cpu = int(fields["processor"])
        except ValueError:
            continue
        if allowed is not None and cpu not in allowed:
            continue
        if "core id" in fields:
            seen_core_id = True
            cores.add((fields.get("physical id", "0"), fields["core id"]))
        else:
            cores.add(("cpu", str(cpu)))  # no core ids: count logical CPUs
    if not cores or not seen_core_id:
        return None
    return len(cores)


def cgroup_cpu_limit(root: str | Path = "/sys/fs/cgroup") -> int | None:
    """CPUs allowed by a cgroup v2 quota (``cpu.max`` "quota period"), rounded up; ``None`` when unlimited."""
    try:
        quota, _, period = (Path(root) / "cpu.max").read_text().strip().partition(" ")
    except OSError:
        return None
    if quota == "max" or not period:
        return None
    try:
        return max(1, math.ceil(int(quota) / int(period)))
    except (ValueError, ZeroDivisionError):
        return None


def default_threads() -> int:
    """Physical cores available to this process (affinity, cgroup quota), at least 1."""
    allowed = _affinity()
    n = physical_cores(allowed=allowed)
    if n is None:
        n = len(allowed) if allowed else (os.cpu_count() or 1)
    limit = cgroup_cpu_limit()
    if limit is not None:
        n = min(n, limit)
    return max(1, n)


def set_threads(threads: int | None) -> tuple[int, str]:
    """Set torch's intra-op threads to ``threads``, or to :func:`default_threads` when ``None``.

    Returns ``(count, why)`` for the run's first log line, e.g. ``(2, "physical cores")``.
    """
    import torch

    if threads:
        torch.set_num_threads(threads)
        return threads, "--threads"
    n = default_threads()
    torch.set_num_threads(n)
    return n, "physical cores"


def describe_threads(count: int, why: str) -> str:
    return f"{count} thread{'s' if count != 1 else ''} ({why})"
