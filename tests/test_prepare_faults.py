"""prepare under faults: signals, a full disk, leftovers of a killed run. Real processes, real signals, real writes."""

import os
import resource
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import default_sigint, run, wait_for

REPO = Path(__file__).resolve().parents[1]
HANG = 600  # seconds: only a hang gets this far
QUICK = ["--chunk-seconds", "0.05", "--pad-min-seconds", "0", "--pad-max-seconds", "0.01", "--puzzles", "20", "--quiet"]


def _prepare_process(folder, *args, **popen):
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    command = [sys.executable, "-m", "audiosort.cli", "prepare", *map(str, args), *QUICK]
    return subprocess.Popen(command, cwd=folder, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, **popen)


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_a_signal_during_prepare_leaves_no_partial_folder(tmp_path, signum):
    proc = _prepare_process(tmp_path, "--synthetic", "noise", "--duration", "4h", "--track-seconds", "60", "--jobs", "1", "--out", "corpus",
                            preexec_fn=default_sigint)
    try:
        wait_for(lambda: list(tmp_path.glob(".corpus.partial-*/decoded/*.npy")), what="decoded track", process=proc)
        proc.send_signal(signum)
        proc.communicate(timeout=HANG)
    finally:
        proc.kill()
    assert proc.returncode == 128 + signum  # the shell's code for the signal, not 1 (a check found a problem)
    assert list(tmp_path.iterdir()) == []


def test_a_full_disk_is_one_line_and_leaves_nothing(tmp_path):
    def small_disk():
        # Writes past 1 MiB fail with EFBIG, as a full disk fails with ENOSPC (SIGXFSZ ignored so the write returns).
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (1 << 20, 1 << 20))

    proc = _prepare_process(
        tmp_path, "--synthetic", "noise", "--duration", "2m", "--track-seconds", "60", "--out", "corpus",
        preexec_fn=small_disk,
    )
    _, stderr = proc.communicate(timeout=300)
    lines = [line for line in stderr.decode().splitlines() if line.strip()]
    assert proc.returncode == 2, stderr.decode()
    assert len(lines) == 1 and lines[0].startswith("Error: cannot write corpus corpus: "), lines
    assert lines[0].endswith("; nothing was written"), lines
    assert list(tmp_path.iterdir()) == []


def test_a_later_prepare_removes_partial_folders_of_dead_processes(tmp_path, monkeypatch):
    dead = subprocess.Popen(["true"])
    dead.wait()
    stale = tmp_path / f".corpus.partial-{dead.pid}"
    (stale / "decoded").mkdir(parents=True)
    (stale / "decoded" / "000000.npy").write_bytes(b"left by a killed prepare")
    alive = tmp_path / f".corpus.partial-{os.getppid()}"
    alive.mkdir()
    monkeypatch.chdir(tmp_path)
    result = run("prepare", "--synthetic", "noise", "--duration", "30s", "--track-seconds", "10", "--out", "corpus", *QUICK)
    assert result.exit_code == 0, result.output
    assert sorted(p.name for p in tmp_path.iterdir()) == [alive.name, "corpus"]
