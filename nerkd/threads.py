"""CPU thread defaults that do not oversubscribe: one torch thread per *free* physical core.

torch's own default is one thread per *logical* CPU of the machine, which oversubscribes with
hyper-threading, inside a CPU-limited container, or next to a busy neighbour. On a 2-core VM with
one busy neighbour, 2 threads ran at a quarter of the 1-thread speed (issue #11): a parallel op
waits for its slowest thread, and a thread that shares its core with the neighbour gets a
time-slice now and then.

The default here (:func:`choose_default`) counts

* the physical cores this process may run on (its CPU affinity mapped through ``/proc/cpuinfo``),
  capped by a cgroup CPU quota, falling back to the logical CPUs;
* minus the CPUs kept busy by other processes, sampled from ``/proc/stat`` over
  :data:`SAMPLE_SECONDS` at start (the 1-minute load average where there is no ``/proc/stat``).
  Time of *niced* processes (``/proc/stat``'s ``nice`` column) is not counted when this process
  runs at niceness 0: the scheduler gives our threads the core first. Next to a busy loop at nice
  19 (and at nice 5), 2 threads ran 1.5x (1.2x) faster than 1 on the 2-core VM, while a neighbour
  at nice 0 halved them (``benchmarks/thread_contention.py --neighbour-nice``, BENCHMARKS.md).

and never goes below 1. The count is chosen once, at start, and the run's first log line says
why, e.g. ``1 thread (physical cores 2, 1 busy: others used 1.0 of 2 CPUs)``.

OpenMP's wait policy is left as it is (spinning): ``OMP_WAIT_POLICY=PASSIVE`` softened a neighbour
arriving after start but cost 38% of the 2-thread speed on the quiet machine
(``benchmarks/thread_contention.py``, BENCHMARKS.md); counting the busy cores at start is what
keeps the default from collapsing.
"""

from __future__ import annotations

import math
import os
import time
from pathlib import Path

SAMPLE_SECONDS = 0.1
"""How long :func:`others_busy` watches ``/proc/stat`` (10 clock ticks per CPU at the usual 100 Hz)."""


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


def cpu_ticks(stat: str, cpus: set[int] | None = None) -> dict[int, tuple[int, int, int]]:
    """``{cpu: (busy, nice, total)}`` clock ticks of each logical CPU line (``cpuN``) of a ``/proc/stat``
    text, only the ``cpus`` given. Busy: user, system, irq, softirq, steal; nice: niced processes' user
    time; total adds idle and iowait."""
    ticks = {}
    for line in stat.splitlines():
        name, _, rest = line.partition(" ")
        if not name.startswith("cpu") or not name[3:].isdigit():
            continue
        cpu = int(name[3:])
        if cpus is not None and cpu not in cpus:
            continue
        v = [int(x) for x in rest.split()[:8]] + [0] * 8
        busy = v[0] + v[2] + v[5] + v[6] + v[7]
        ticks[cpu] = (busy, v[1], busy + v[1] + v[3] + v[4])
    return ticks


def busy_cpus(before: str, after: str, cpus: set[int] | None = None, own_share: float = 0.0,
              count_nice: bool = True) -> tuple[float, float] | None:
    """``(busy, niced)``: CPUs (among ``cpus``) kept busy by *other* processes between two ``/proc/stat``
    texts, the busy share of their ticks times their number, less ``own_share`` (this process's CPU
    seconds per second over the same span), niced processes' time included when ``count_nice``; and the
    CPUs of niced processes' time left out (0 when ``count_nice``). ``None`` when no tick passed."""
    a, b = cpu_ticks(before, cpus), cpu_ticks(after, cpus)
    common = a.keys() & b.keys()
    busy = sum(b[c][0] - a[c][0] for c in common)
    nice = sum(b[c][1] - a[c][1] for c in common)
    total = sum(b[c][2] - a[c][2] for c in common)
    if total <= 0:
        return None
    niced = len(common) * nice / total
    if count_nice:
        return max(0.0, len(common) * busy / total + niced - own_share), 0.0
    return max(0.0, len(common) * busy / total - own_share), niced


def _niced() -> bool:
    """Whether this process runs at a niceness above 0 (its own time then counts in ``nice``)."""
    try:
        return os.getpriority(os.PRIO_PROCESS, 0) > 0
    except (AttributeError, OSError):
        return False


def others_busy(cpus: set[int] | None = None, seconds: float = SAMPLE_SECONDS,
                stat_path: str | Path = "/proc/stat") -> tuple[float | None, str, float]:
    """``(busy CPUs, how it was measured, niced CPUs left out)``: a ``/proc/stat`` sample over ``seconds``
    less this process's own CPU time (niced processes' time left out unless this process is niced too),
    else the 1-minute load average, else ``(None, "", 0.0)``."""
    try:
        start, own, t = Path(stat_path).read_text(), time.process_time(), time.monotonic()
        time.sleep(seconds)
        end = Path(stat_path).read_text()
        share = (time.process_time() - own) / max(time.monotonic() - t, 1e-6)
        got = busy_cpus(start, end, cpus, share, count_nice=_niced())
        if got is not None:
            return got[0], "stat", got[1]
    except (OSError, ValueError):
        pass
    try:
        return os.getloadavg()[0], "load", 0.0
    except (AttributeError, OSError):
        return None, "", 0.0


def choose_threads(physical: int | None, cpus: int, quota: int | None, busy: float | None,
                   source: str = "stat", niced: float = 0.0) -> tuple[int, str]:
    """The default thread count and why: the physical cores (else the ``cpus``), capped by the cgroup
    ``quota``, and by the ``cpus`` not kept ``busy`` by others (half a CPU counts as one); at least 1.
    ``niced``: the CPUs of niced processes left out of ``busy`` (said when half a CPU or more)."""
    n = physical if physical is not None else cpus
    why = [f"physical cores {n}" if physical is not None else f"CPUs {cpus}"]
    if quota is not None and quota < n:
        n = quota
        why.append(f"CPU quota {quota}")
    if busy is not None:
        taken = math.floor(busy + 0.5)
        n = min(n, cpus - taken)
        measured = f"load {busy:.1f}" if source == "load" else f"others used {busy:.1f} of {cpus} CPUs"
        why.append(f"{taken} busy: {measured}" if taken else "none busy")
    if niced >= 0.5:
        why.append(f"niced processes' {niced:.1f} CPUs not counted")
    return max(1, n), ", ".join(why)


def choose_default() -> tuple[int, str]:
    """:func:`choose_threads` on this machine now (affinity, ``/proc/cpuinfo``, cgroup, ``/proc/stat``)."""
    allowed = _affinity()
    cpus = len(allowed) if allowed else (os.cpu_count() or 1)
    busy, source, niced = others_busy(allowed)
    return choose_threads(physical_cores(allowed=allowed), cpus, cgroup_cpu_limit(), busy, source, niced)


def default_threads() -> int:
    """The count of :func:`choose_default`."""
    return choose_default()[0]


def set_threads(threads: int | None) -> tuple[int, str]:
    """Set torch's intra-op threads to ``threads``, or to :func:`choose_default`'s count when ``None``.

    Returns ``(count, why)`` for the run's first log line, e.g. ``(2, "physical cores 2, none busy")``.
    """
    import torch

    if threads:
        torch.set_num_threads(threads)
        return threads, "--threads"
    n, why = choose_default()
    torch.set_num_threads(n)
    return n, why


def describe_threads(count: int, why: str) -> str:
    return f"{count} thread{'s' if count != 1 else ''} ({why})"
