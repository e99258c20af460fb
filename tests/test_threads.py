"""Thread defaults (issue #11 item 5): one torch thread per physical core, said in the run's first log line."""

from __future__ import annotations

import os

import pytest
import torch

import nerkd.threads as threads
from nerkd.cli.app import app
from tests.helpers import DATA

# 4 logical CPUs on 2 hyper-threaded cores of one package
HT_CPUINFO = "\n\n".join(f"processor\t: {cpu}\nphysical id\t: 0\ncore id\t\t: {cpu % 2}\ncpu cores\t: 2"
                         for cpu in range(4)) + "\n"


def test_physical_cores_counts_cores_not_hyperthreads():
    assert threads.physical_cores(HT_CPUINFO) == 2
    assert threads.physical_cores(HT_CPUINFO, allowed={0, 2}) == 1       # both siblings of core 0
    assert threads.physical_cores(HT_CPUINFO, allowed={0, 1, 2, 3}) == 2
    two_sockets = HT_CPUINFO + "\n" + "\n\n".join(
        f"processor\t: {cpu}\nphysical id\t: 1\ncore id\t\t: 0" for cpu in (4, 5))
    assert threads.physical_cores(two_sockets) == 3
    assert threads.physical_cores("processor\t: 0\n\nprocessor\t: 1\n") is None   # no core ids: unknown


def test_cgroup_quota(tmp_path):
    assert threads.cgroup_cpu_limit(tmp_path) is None
    (tmp_path / "cpu.max").write_text("max 100000\n")
    assert threads.cgroup_cpu_limit(tmp_path) is None
    (tmp_path / "cpu.max").write_text("150000 100000\n")
    assert threads.cgroup_cpu_limit(tmp_path) == 2


def test_default_threads(monkeypatch):
    monkeypatch.setattr(threads, "physical_cores", lambda cpuinfo=None, allowed=None: 3)
    monkeypatch.setattr(threads, "cgroup_cpu_limit", lambda root=None: None)
    assert threads.default_threads() == 3
    monkeypatch.setattr(threads, "cgroup_cpu_limit", lambda root=None: 1)
    assert threads.default_threads() == 1
    monkeypatch.setattr(threads, "cgroup_cpu_limit", lambda root=None: None)
    monkeypatch.setattr(threads, "physical_cores", lambda cpuinfo=None, allowed=None: None)
    assert threads.default_threads() == len(os.sched_getaffinity(0))


@pytest.fixture
def restore_threads():
    before = torch.get_num_threads()
    yield
    torch.set_num_threads(before)


@pytest.mark.parametrize("command", ["infer", "bench"])
def test_cli_default_is_physical_cores_and_logged(command, runner, in_tmp, tiny_bio, monkeypatch, restore_threads):
    args = {"infer": ["infer", "--model", str(tiny_bio), "--no-progress"],
            "bench": ["bench", "--model", str(tiny_bio), "-n", "2", "--json", "b.json", "--set",
                      f"data.test={DATA / 'test.jsonl'}", "--set", "bench.warmup=0", "--set", "bench.blocks=1"],
            }[command]
    monkeypatch.setattr(threads, "default_threads", lambda: 1)   # "one physical core"
    torch.set_num_threads(2)
    res = runner.invoke(app, args, input=b"Mme Lefevre\n")
    assert res.exit_code == 0, res.output
    assert "(1 thread (physical cores))" in res.stderr.splitlines()[0]
    assert torch.get_num_threads() == 1
    res = runner.invoke(app, [*args, "--threads", "2"], input=b"Mme Lefevre\n")
    assert res.exit_code == 0, res.output
    assert "(2 threads (--threads))" in res.stderr.splitlines()[0]
    assert torch.get_num_threads() == 2
