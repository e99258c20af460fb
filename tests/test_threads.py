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


def stat(*cpus: tuple[int, ...]) -> str:
    """A /proc/stat text: an aggregate line, then ``cpuN user nice system idle iowait irq softirq steal``
    with ``(busy, idle[, nice])`` ticks per CPU (busy split over user and system)."""
    lines = ["cpu  1 2 3 4 5 6 7 8 0 0"]
    lines += [f"cpu{i} {c[0] - c[0] // 3} {c[2] if len(c) > 2 else 0} {c[0] // 3} {c[1]} 0 0 0 0 0 0"
              for i, c in enumerate(cpus)]
    return "\n".join([*lines, "intr 123 4 5", "ctxt 99", "procs_running 3"]) + "\n"


def test_busy_cpus_from_two_proc_stat_samples():
    before = stat((100, 900), (200, 800))
    quiet = stat((101, 909), (201, 809))                                 # 1 tick of 10 busy on each
    assert threads.busy_cpus(before, quiet)[0] == pytest.approx(0.2)
    one_busy = stat((110, 900), (201, 809))                              # cpu0 busy all along
    assert threads.busy_cpus(before, one_busy)[0] == pytest.approx(1.1)
    assert threads.busy_cpus(before, one_busy, own_share=0.1)[0] == pytest.approx(1.0)   # this process's own time
    assert threads.busy_cpus(before, one_busy, cpus={1})[0] == pytest.approx(0.1)        # affinity: cpu1 only
    assert threads.busy_cpus(before, quiet, own_share=0.5)[0] == 0.0                     # never negative
    assert threads.busy_cpus(before, before) is None                                     # no tick passed
    assert threads.cpu_ticks(stat((5, 7, 2)))[0] == (5, 2, 14)


def test_niced_neighbours_leave_their_core_to_us():
    """A niced busy loop (``nice`` column) counts as busy only when nerkd runs niced itself: at niceness 0
    the scheduler gives our threads its core (BENCHMARKS: 2 threads 1.5x faster than 1 beside a nice-19 loop)."""
    before = stat((100, 900, 0), (200, 800, 0))
    niced = stat((100, 900, 10), (201, 809, 0))                         # cpu0: a niced process all along
    busy, left_out = threads.busy_cpus(before, niced, count_nice=False)
    assert busy == pytest.approx(0.1) and left_out == pytest.approx(1.0)
    assert threads.busy_cpus(before, niced) == (pytest.approx(1.1), 0.0)               # counted when we are niced
    assert threads.choose_threads(2, 2, None, busy, niced=left_out) == (
        2, "physical cores 2, none busy, niced processes' 1.0 CPUs not counted")
    assert threads.choose_threads(2, 2, None, 1.1)[0] == 1


def test_others_busy_leaves_nice_out_unless_niced_itself(tmp_path, monkeypatch):
    path = tmp_path / "stat"
    path.write_text(stat((100, 900, 0), (200, 800, 0)))
    monkeypatch.setattr(threads.time, "sleep", lambda s: path.write_text(stat((100, 900, 10), (200, 810, 0))))
    monkeypatch.setattr(threads.time, "process_time", lambda: 1.0)
    monkeypatch.setattr(threads.os, "getpriority", lambda which, who: 0)
    assert threads.others_busy({0, 1}, stat_path=path) == (0.0, "stat", pytest.approx(1.0))
    path.write_text(stat((100, 900, 0), (200, 800, 0)))
    monkeypatch.setattr(threads.os, "getpriority", lambda which, who: 10)
    assert threads.others_busy({0, 1}, stat_path=path) == (pytest.approx(1.0), "stat", 0.0)


def test_others_busy_samples_proc_stat_else_load_average(tmp_path, monkeypatch):
    path = tmp_path / "stat"
    path.write_text(stat((100, 900), (200, 800)))
    monkeypatch.setattr(threads.time, "sleep", lambda s: path.write_text(stat((110, 900), (200, 810))))
    monkeypatch.setattr(threads.time, "process_time", lambda: 1.0)          # this process: idle meanwhile
    assert threads.others_busy({0, 1}, stat_path=path) == (1.0, "stat", 0.0)
    monkeypatch.setattr(threads.time, "sleep", lambda s: None)                 # no tick passed: load average
    monkeypatch.setattr(threads.os, "getloadavg", lambda: (1.1, 0.5, 0.2))
    assert threads.others_busy(stat_path=path) == (1.1, "load", 0.0)
    assert threads.others_busy(stat_path=tmp_path / "missing") == (1.1, "load", 0.0)


def test_choose_threads_counts_free_physical_cores():
    assert threads.choose_threads(2, 2, None, 0.03) == (2, "physical cores 2, none busy")       # quiet: all
    assert threads.choose_threads(2, 2, None, 1.02) == (1, "physical cores 2, 1 busy: others used 1.0 of 2 CPUs")
    assert threads.choose_threads(2, 2, None, 2.0)[0] == 1                                     # never below 1
    assert threads.choose_threads(2, 2, None, 7.0)[0] == 1
    assert threads.choose_threads(2, 2, None, 0.4)[0] == 2        # under half a CPU busy: not a busy core
    assert threads.choose_threads(2, 2, None, 0.6)[0] == 1
    assert threads.choose_threads(8, 8, None, 3.0) == (5, "physical cores 8, 3 busy: others used 3.0 of 8 CPUs")
    assert threads.choose_threads(4, 8, None, 1.0)[0] == 4        # hyper-threads: 7 CPUs still free
    assert threads.choose_threads(4, 8, 2, 0.0) == (2, "physical cores 4, CPU quota 2, none busy")
    assert threads.choose_threads(2, 2, None, 1.1, "load") == (1, "physical cores 2, 1 busy: load 1.1")
    assert threads.choose_threads(2, 2, None, None) == (2, "physical cores 2")               # not measurable
    assert threads.choose_threads(None, 3, None, 0.0) == (3, "CPUs 3, none busy")          # no core ids


def test_default_threads(monkeypatch):
    monkeypatch.setattr(threads, "physical_cores", lambda cpuinfo=None, allowed=None: 3)
    monkeypatch.setattr(threads, "cgroup_cpu_limit", lambda root=None: None)
    monkeypatch.setattr(threads, "_affinity", lambda: {0, 1, 2})
    monkeypatch.setattr(threads, "others_busy", lambda cpus=None: (0.0, "stat", 0.0))
    assert threads.choose_default() == (3, "physical cores 3, none busy")
    monkeypatch.setattr(threads, "others_busy", lambda cpus=None: (1.0, "stat", 0.0))
    assert threads.default_threads() == 2
    monkeypatch.setattr(threads, "cgroup_cpu_limit", lambda root=None: 1)
    assert threads.default_threads() == 1
    monkeypatch.setattr(threads, "cgroup_cpu_limit", lambda root=None: None)
    monkeypatch.setattr(threads, "physical_cores", lambda cpuinfo=None, allowed=None: None)
    monkeypatch.setattr(threads, "others_busy", lambda cpus=None: (None, "", 0.0))
    assert threads.choose_default() == (3, "CPUs 3")


@pytest.fixture
def restore_threads():
    before = torch.get_num_threads()
    yield
    torch.set_num_threads(before)


def test_explicit_threads_win(monkeypatch, restore_threads):
    monkeypatch.setattr(threads, "choose_default", lambda: pytest.fail("no default when --threads is given"))
    assert threads.set_threads(3) == (3, "--threads")
    assert torch.get_num_threads() == 3


@pytest.fixture
def no_wait_policy(monkeypatch):
    """OMP_WAIT_POLICY unset during the test, and unset again after it (whatever the CLI set)."""
    monkeypatch.setenv("OMP_WAIT_POLICY", "unset")
    monkeypatch.delenv("OMP_WAIT_POLICY")


@pytest.mark.parametrize("command", ["infer", "bench"])
def test_cli_default_counts_free_cores_and_says_why(command, runner, in_tmp, tiny_bio, monkeypatch, restore_threads,
                                                    no_wait_policy):
    args = {"infer": ["infer", "--model", str(tiny_bio), "--no-progress"],
            "bench": ["bench", "--model", str(tiny_bio), "-n", "2", "--json", "b.json", "--set",
                      f"data.test={DATA / 'test.jsonl'}", "--set", "bench.warmup=0", "--set", "bench.blocks=1"],
            }[command]
    monkeypatch.setattr(threads, "_affinity", lambda: {0, 1})
    monkeypatch.setattr(threads, "physical_cores", lambda cpuinfo=None, allowed=None: 2)
    monkeypatch.setattr(threads, "cgroup_cpu_limit", lambda root=None: None)
    monkeypatch.setattr(threads, "others_busy", lambda cpus=None: (1.0, "stat", 0.0))   # one busy neighbour
    torch.set_num_threads(2)
    res = runner.invoke(app, args, input=b"Mme Lefevre\n")
    assert res.exit_code == 0, res.output
    assert "(1 thread (physical cores 2, 1 busy: others used 1.0 of 2 CPUs))" in res.stderr.splitlines()[0]
    assert torch.get_num_threads() == 1
    assert "OMP_WAIT_POLICY" not in os.environ   # spinning kept: PASSIVE cost 38% of 2 threads on a quiet machine
    res = runner.invoke(app, [*args, "--threads", "2"], input=b"Mme Lefevre\n")
    assert res.exit_code == 0, res.output
    assert "(2 threads (--threads))" in res.stderr.splitlines()[0]
    assert torch.get_num_threads() == 2


def test_cli_leaves_the_openmp_wait_policy_alone(runner, monkeypatch, no_wait_policy):
    for command in ("infer", "bench", "serve", "validate"):
        runner.invoke(app, [command, "--no-such-option"])     # the callback runs, then the option fails
        assert "OMP_WAIT_POLICY" not in os.environ


def test_training_on_cpu_takes_the_free_cores_unless_omp_num_threads(monkeypatch, restore_threads):
    """Training used torch's default (every logical CPU, spinning) and collapsed next to a busy neighbour:
    it now takes the same default as infer, and says why; OMP_NUM_THREADS (the user's, or torchrun's) wins."""
    from nerkd.device import describe
    from nerkd.train import ddp

    monkeypatch.setattr(threads, "choose_default", lambda: (1, "physical cores 2, 1 busy: others used 1.0 of 2 CPUs"))
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    torch.set_num_threads(2)
    device, _ = ddp.setup(ddp.DistEnv(), "cpu")
    assert torch.get_num_threads() == 1
    assert describe(device) == "cpu (1 thread (physical cores 2, 1 busy: others used 1.0 of 2 CPUs))"
    monkeypatch.setenv("OMP_NUM_THREADS", "2")
    torch.set_num_threads(2)
    device, _ = ddp.setup(ddp.DistEnv(), "cpu")
    assert torch.get_num_threads() == 2
    assert describe(device) == "cpu (2 threads (OMP_NUM_THREADS))"


def test_validate_prune_and_report_take_the_free_cores_and_say_it(tiny_crf, tmp_path, monkeypatch, restore_threads,
                                                                    caplog):
    """validate's device row, prune's scoring line and report's first line give the thread count training
    would take (the free physical cores), not torch's all-logical-CPUs default."""
    import logging

    import nerkd.device
    from nerkd.project import Project
    from nerkd.settings import load_settings
    from nerkd.stages.prune import run_prune
    from nerkd.stages.report import build_report, named_models
    from nerkd.stages.validate import ValidateReport, check_device

    why = "physical cores 2, 1 busy: others used 1.0 of 2 CPUs"
    monkeypatch.setattr(threads, "choose_default", lambda: (1, why))
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    monkeypatch.setattr(nerkd.device, "_cpu_threads_why", None)
    torch.set_num_threads(2)
    settings = load_settings(None, ["train.device=cpu", "infer.device=cpu", f"data.train={DATA / 'train.jsonl'}",
                                    f"data.dev={DATA / 'dev.jsonl'}", f"data.label2id={DATA / 'label2id.json'}",
                                    "data.limit=8", "prune.max_sentences=16"])
    report = ValidateReport()
    check_device(report, settings, None)
    assert f"cpu (1 thread ({why}))" in report.checks[0].detail and torch.get_num_threads() == 1

    torch.set_num_threads(2)
    lines: list[str] = []
    run_prune(settings, tiny_crf, tmp_path / "pruned", log=lines.append)
    assert any(f"on cpu (1 thread ({why}))" in line for line in lines), lines

    torch.set_num_threads(2)
    with caplog.at_level(logging.INFO, logger="nerkd"):
        build_report(settings, Project.discover(tmp_path), data=str(DATA / "test.jsonl"),
                     models=named_models([str(tiny_crf)]), bench_files=[], output=tmp_path / "report")
    assert f"report: scoring on cpu (1 thread ({why}))" in caplog.text
