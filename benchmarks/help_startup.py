"""Start-up time of ``nerkd --help`` against ``python -c "import torch"`` (issue #12, item 13).

Each command runs as a whole process (interpreter start, imports, help rendering, exit), in
interleaved rounds so that a change of machine load hits every command alike; the first round is
a discarded warm-up (disk cache). Prints the medians, the min-max spread, each command's ratio to
``import torch`` and the machine (platform, CPU model, cores, load average before and after).

    python benchmarks/help_startup.py [--runs 15]

Target: ``nerkd --help`` and ``nerkd <command> --help`` take at most 25% of ``import torch``'s time.
"""

from __future__ import annotations

import argparse
import os
import platform
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

TARGET = 0.25


def nerkd_command() -> list[str]:
    """The console script installed beside this interpreter (as a user runs it), else ``python -m nerkd``."""
    script = Path(sys.executable).with_name("nerkd")
    if script.is_file():
        return [str(script)]
    found = shutil.which("nerkd")
    return [found] if found else [sys.executable, "-m", "nerkd"]


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text(encoding="utf-8").splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def load() -> str:
    try:
        return " ".join(f"{x:.2f}" for x in os.getloadavg())
    except OSError:
        return "n/a"


def run_once(argv: list[str]) -> float:
    start = time.perf_counter()
    subprocess.run(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=True)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=15, help="timed rounds (after one warm-up round)")
    args = parser.parse_args()

    nerkd = nerkd_command()
    commands = {
        "nerkd --help": [*nerkd, "--help"],
        "nerkd distill --help": [*nerkd, "distill", "--help"],
        'python -c "import torch"': [sys.executable, "-c", "import torch"],
    }
    print(f"machine: {platform.platform()}, Python {platform.python_version()}")
    print(f"cpu: {cpu_model()}, {os.cpu_count()} logical cores")
    print(f"load average before: {load()}")
    times: dict[str, list[float]] = {name: [] for name in commands}
    for round_ in range(args.runs + 1):
        names = list(commands)
        order = names[round_ % len(names):] + names[:round_ % len(names)]  # rotate who goes first
        for name in order:
            t = run_once(commands[name])
            if round_ > 0:
                times[name].append(t)
    print(f"load average after:  {load()}")
    torch_median = statistics.median(times['python -c "import torch"'])
    print(f"\n{args.runs} interleaved runs each (after one warm-up round); times in seconds")
    print(f"{'command':<26} {'median':>7} {'min':>7} {'max':>7} {'vs import torch':>16}")
    for name, ts in times.items():
        med = statistics.median(ts)
        print(f"{name:<26} {med:>7.3f} {min(ts):>7.3f} {max(ts):>7.3f} {med / torch_median:>15.0%}")
    worst = max(statistics.median(times[n]) for n in commands if n.startswith("nerkd")) / torch_median
    verdict = "met" if worst <= TARGET else "NOT met"
    print(f"\ntarget: nerkd help <= {TARGET:.0%} of import torch: {verdict} (worst {worst:.0%})")


if __name__ == "__main__":
    main()
