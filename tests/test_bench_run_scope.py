"""benchmarks/run_scope.py: a benchmark run leaves no temporary directory and no process behind."""

from __future__ import annotations

import os
import signal
import subprocess
import tempfile

import pytest

from benchmarks.run_scope import processes_under, run_benchmark, run_scope
from processors.devservices import ServiceUnavailable


def test_the_scope_is_the_temp_dir_of_the_run_and_its_children() -> None:
    before = os.environ.get("TMPDIR"), tempfile.gettempdir()
    with run_scope() as root:
        assert os.environ["TMPDIR"] == tempfile.gettempdir() == str(root)
        inherited = subprocess.run(["sh", "-c", 'echo "$TMPDIR"'], capture_output=True, text=True, check=True)
        assert inherited.stdout.strip() == str(root)
    assert (os.environ.get("TMPDIR"), tempfile.gettempdir()) == before


def test_leaving_the_scope_removes_the_directory_and_stops_what_still_runs() -> None:
    with run_scope() as root:
        (root / "nested").mkdir()
        (root / "nested" / "data").write_text("x")
        # in its own session, as the services are: a Ctrl-C would not reach it
        child = subprocess.Popen(["sleep", "60"], start_new_session=True)
        worker_dir = subprocess.Popen(["sleep", "60"], cwd=root / "nested", env={"PATH": os.environ["PATH"]})
        assert {child.pid, worker_dir.pid} <= set(processes_under(root))
    assert not root.exists()
    assert child.wait(5) == -signal.SIGTERM
    assert worker_dir.wait(5) == -signal.SIGTERM


def test_a_signal_interrupts_the_run_and_the_clean_up_still_happens() -> None:
    handler = signal.getsignal(signal.SIGTERM)
    with pytest.raises(KeyboardInterrupt, match="SIGTERM"), run_scope() as root:
        os.kill(os.getpid(), signal.SIGTERM)
        pytest.fail("SIGTERM did not interrupt the run")
    assert not root.exists()
    assert signal.getsignal(signal.SIGTERM) is handler


def test_interruption_and_missing_service_are_one_line_and_an_exit_code(capsys: pytest.CaptureFixture[str]) -> None:
    def missing() -> int:
        raise ServiceUnavailable("redis-server is not installed: apt-get install redis-server")

    def interrupted() -> int:
        raise KeyboardInterrupt

    assert run_benchmark("bench_x", missing) == 1
    assert run_benchmark("bench_x", interrupted) == 130
    assert run_benchmark("bench_x", lambda: 0) == 0
    assert capsys.readouterr().err.splitlines() == [
        "bench_x: redis-server is not installed: apt-get install redis-server",
        "bench_x: interrupted; what it started is stopped and its temporary files are removed",
    ]
