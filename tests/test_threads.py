"""Thread-count resolution: affinity, cgroup v2 / v1 quotas (fake files), --threads, the environment."""

from __future__ import annotations

import os

import pytest
import torch

from nvcodec import threads as th
from nvcodec.errors import UsageError


def _write(path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)


def test_parse_cpu_max_and_cfs() -> None:
    assert th.parse_cpu_max("max 100000") is None
    assert th.parse_cpu_max("150000 100000") == pytest.approx(1.5)
    assert th.parse_cpu_max("50000") == pytest.approx(0.5)
    assert th.parse_cpu_max("") is None and th.parse_cpu_max("garbage here") is None
    assert th.parse_cpu_max("-1 100000") is None
    assert th.parse_cfs("-1", "100000") is None
    assert th.parse_cfs("200000", "100000") == pytest.approx(2.0)
    assert th.parse_cfs(None, "100000") is None and th.parse_cfs("x", "y") is None


def test_cgroup_v2_quota_of_the_own_cgroup(tmp_path) -> None:
    root = tmp_path / "cg"
    _write(tmp_path / "self_cgroup", "0::/user.slice/job-7\n")
    _write(root / "user.slice" / "job-7" / "cpu.max", "150000 100000\n")
    _write(root / "cpu.max", "max 100000\n")
    assert th.cgroup_cpus(str(root), str(tmp_path / "self_cgroup")) == pytest.approx(1.5)
    n = th.usable_cpus(str(root), str(tmp_path / "self_cgroup"))
    assert n == min(2, len(os.sched_getaffinity(0)), os.cpu_count())  # 1.5 CPUs round up to 2


def test_cgroup_v1_quota(tmp_path) -> None:
    root = tmp_path / "cg"
    _write(tmp_path / "self_cgroup", "4:cpu,cpuacct:/docker/abc\n3:memory:/docker/abc\n")
    _write(root / "cpu,cpuacct" / "docker" / "abc" / "cpu.cfs_quota_us", "100000\n")
    _write(root / "cpu,cpuacct" / "docker" / "abc" / "cpu.cfs_period_us", "100000\n")
    assert th.cgroup_cpus(str(root), str(tmp_path / "self_cgroup")) == pytest.approx(1.0)
    assert th.usable_cpus(str(root), str(tmp_path / "self_cgroup")) == 1


def test_no_cgroup_files_means_affinity(tmp_path) -> None:
    assert th.cgroup_cpus(str(tmp_path / "none"), str(tmp_path / "missing")) is None
    assert th.usable_cpus(str(tmp_path / "none"), str(tmp_path / "missing")) == len(os.sched_getaffinity(0))


def test_resolve_threads_request_env_and_bounds(monkeypatch) -> None:
    monkeypatch.delenv(th.THREADS_ENV, raising=False)
    assert th.resolve_threads(3) == 3
    assert th.resolve_threads() == th.usable_cpus()
    monkeypatch.setenv(th.THREADS_ENV, "5")
    assert th.resolve_threads() == 5 and th.resolve_threads(2) == 2
    monkeypatch.setenv(th.THREADS_ENV, "many")
    with pytest.raises(UsageError, match=th.THREADS_ENV):
        th.resolve_threads()
    with pytest.raises(UsageError, match="--threads"):
        th.resolve_threads(0)


def test_configure_environment_keeps_the_users_settings(monkeypatch) -> None:
    monkeypatch.delenv(th.THREADS_ENV, raising=False)
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    monkeypatch.delenv("MKL_NUM_THREADS", raising=False)
    monkeypatch.delenv("OMP_WAIT_POLICY", raising=False)
    monkeypatch.setattr(th, "usable_cpus", lambda: 2)
    assert th.configure_environment(2, load=0.1, others=0.0) == 2
    assert os.environ["OMP_NUM_THREADS"] == "1" and os.environ["MKL_NUM_THREADS"] == "2"
    assert "OMP_WAIT_POLICY" not in os.environ  # idle: OpenMP's own default
    assert th.configure_environment(2, load=3.5, others=0.0) == 2
    assert "OMP_WAIT_POLICY" not in os.environ  # a high average but nothing else runnable now: idle
    assert th.configure_environment(2, load=3.5, others=2.0) == 2
    assert os.environ["OMP_WAIT_POLICY"] == "PASSIVE"  # busy: workers sleep instead of spinning
    monkeypatch.setenv("OMP_WAIT_POLICY", "ACTIVE")
    th.configure_environment(2, load=9.0, others=2.0)
    assert os.environ["OMP_WAIT_POLICY"] == "ACTIVE"
    assert th.machine_busy(2, 0.0, others=1.0) and not th.machine_busy(2, 9.0, others=0.0)


def test_busy_means_runnable_work_now_not_a_stale_average(monkeypatch, tmp_path) -> None:
    # the 1-minute average still counts an encode that just ended and not yet one that just started
    monkeypatch.setattr(th, "usable_cpus", lambda: 4)
    assert not th.machine_busy(4, load=6.0, others=0.2)
    assert th.machine_busy(4, load=6.0, others=0.6)  # fewer than 4 CPUs free (half a task of slack)
    assert th.machine_busy(4, load=0.1, others=2.0)  # contention that began seconds ago
    assert not th.machine_busy(2, load=6.0, others=2.0) and th.machine_busy(2, load=6.0, others=2.6)
    stat = tmp_path / "stat"
    stat.write_text("cpu  1 2 3\nintr " + "0 " * 5000 + "\nctxt 9\nprocs_running 3\nprocs_blocked 0\n")
    assert th.others_runnable(samples=3, interval=0.0, path=str(stat)) == 2.0  # the reader is not "other"
    stat.write_text("cpu  1 2 3\nprocs_running x\n")
    assert th.others_runnable(samples=2, interval=0.0, path=str(stat)) is None
    assert th.others_runnable(path=str(tmp_path / "missing")) is None
    monkeypatch.setattr(th, "others_runnable", lambda: None)
    assert th.machine_busy(4, load=6.0) and not th.machine_busy(4, load=3.9)  # unreadable: the average
    real = th._procs_running(th.PROC_STAT)
    assert real is None or real >= 1  # this test's own thread is running


def test_use_threads_sets_and_restores(monkeypatch) -> None:
    monkeypatch.delenv(th.THREADS_ENV, raising=False)
    old = torch.get_num_threads()
    with th.use_threads(2) as n:
        assert n == 2 and torch.get_num_threads() == 2
    assert torch.get_num_threads() == old
    with th.use_threads() as n:  # no request: torch's count stands unless it exceeds the usable CPUs
        assert n == torch.get_num_threads() <= max(old, th.usable_cpus())


def test_encode_uses_the_requested_threads_and_restores_them(tiny_clip, tmp_path) -> None:
    from nvcodec.codec.encode import EncodeOptions, encode

    old = torch.get_num_threads()
    s = encode(tiny_clip, str(tmp_path / "t.nvp"), EncodeOptions(psnr=None, epochs=2, params=6000, device="cpu",
                                                                 threads=2))
    assert s["threads"] == 2 and torch.get_num_threads() == old
    with pytest.raises(UsageError, match="--threads"):
        EncodeOptions(threads=0).validate()


def test_cli_threads_option_is_checked(tmp_path, tiny_clip) -> None:
    import subprocess
    import sys

    p = subprocess.run([sys.executable, "-m", "nvcodec_cli.main", "encode", tiny_clip, str(tmp_path / "x.nvp"),
                        "--threads", "0", "--epochs", "1"], capture_output=True, text=True, timeout=300)
    assert p.returncode == 2 and "--threads" in p.stderr and "Traceback" not in p.stderr
    assert not (tmp_path / "x.nvp").exists()


def test_the_cli_sets_up_threads_only_for_commands_that_load_torch(monkeypatch) -> None:
    from click.testing import CliRunner

    from cli.main import app

    calls = []
    monkeypatch.setattr(th, "configure_environment", lambda *a, **k: calls.append(1) or 1)
    golden = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "fixtures", "golden-v1.nvp")
    assert CliRunner().invoke(app, ["info", golden]).exit_code == 0
    assert CliRunner().invoke(app, ["verify", golden]).exit_code == 0
    assert calls == []  # no torch there: no OpenMP set-up, no CPU sampling
    assert CliRunner().invoke(app, ["tasks"]).exit_code == 0
    assert calls == [1]
