"""Warm start (mfoml.warm, mfoml.warm_server): jobs as forks of a preloaded interpreter.

Real servers and real client processes: each test starts a server on a copy of
``workflow/scripts`` and runs small job scripts through ``python job.py``, as Snakemake runs a
rule script (a job script sets ``__real_file__`` as Snakemake's preamble does). The workflow-level
checks (the tiny run's jobs ran warm; a cold rerun gives the same numbers) are at the end and in
tests/test_reproducibility.py.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from mfoml.warm_launch import refusal
from warm_utils import job, job_env, log_of, read_pid, run_job, serving, wait_gone
from workflow_utils import completed_tiny_run

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="warm start: Linux")


@pytest.fixture()
def server(scripts: Path, tmp_path: Path):
    yield from serving(scripts, tmp_path)


def test_job_runs_in_a_fork_with_the_clients_context(server, scripts, tmp_path):
    work = tmp_path / "cwd"
    work.mkdir()
    path = job(
        tmp_path,
        scripts,
        """
        import os
        import numpy as np
        from threadpoolctl import threadpool_info
        blas = [i["num_threads"] for i in threadpool_info() if i["user_api"] == "blas"]
        print(os.getppid(), os.getcwd(), sys.argv[1:], os.environ["X"], blas,
              np.random.randint(1 << 30))
        print("to stderr", file=sys.stderr)
        sys.exit(int(os.environ["CODE"]))
        """,
    )
    out = []
    for code in ("0", "3"):
        proc = run_job(
            path,
            server,
            "a",
            "b c",
            env={"X": "x1", "CODE": code, "OMP_NUM_THREADS": "2"},
            cwd=work,
        )
        assert proc.returncode == int(code), proc.stderr
        assert proc.stderr == "to stderr\n"
        out.append(proc.stdout.split())
    for ppid, cwd, *_ in out:
        assert int(ppid) == server.proc.pid  # a child of the server, not of the client
        assert cwd == str(work)
    assert out[0][2:6] == ["['a',", "'b", "c']", "x1"]
    assert out[0][6] == "[2]"  # the job's OMP/OpenBLAS threads, not the server's 1
    assert out[0][7] != out[1][7]  # numpy's global generator reseeded per job, as per process
    assert "ended with status 3" in log_of(tmp_path)


def test_child_collects_its_garbage_but_not_the_servers(server, scripts, tmp_path):
    """gc.freeze before the fork: the job's collections skip the preloaded objects (no copy on
    write of their pages), and the job still collects its own garbage."""
    path = job(
        tmp_path,
        scripts,
        """
        import gc
        import weakref
        class Node:
            pass
        a, b = Node(), Node()
        a.other, b.other = b, a  # a reference cycle: only the collector frees it
        probe = weakref.ref(a)
        del a, b
        gc.collect()
        print(gc.isenabled(), gc.get_freeze_count() > 1000, probe() is None)
        """,
    )
    proc = run_job(path, server)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.split() == ["True", "True", "True"]


def test_uncaught_exception_and_exit_message(server, scripts, tmp_path):
    boom = job(tmp_path, scripts, "raise ValueError('bad layer fc9')\n", "boom.py")
    proc = run_job(boom, server)
    assert proc.returncode == 1
    assert "Traceback" in proc.stderr and "ValueError: bad layer fc9" in proc.stderr
    msg = job(tmp_path, scripts, "sys.exit('config key probe.x: unknown')\n", "msg.py")
    proc = run_job(msg, server)
    assert proc.returncode == 1
    assert "config key probe.x: unknown" in proc.stderr


def test_imports_are_preloaded_for_later_jobs(server, scripts, tmp_path):
    path = job(
        tmp_path,
        scripts,
        """
        print("colorsys" in sys.modules, "xml.dom.minidom" in sys.modules)
        import colorsys

        def later():
            import xml.dom.minidom
        later()
        """,
    )
    first = run_job(path, server)
    second = run_job(path, server)
    assert first.returncode == second.returncode == 0, first.stderr + second.stderr
    # top-level imports are preloaded before the first fork, later ones after the first job
    assert first.stdout.split() == ["True", "False"]
    assert second.stdout.split() == ["True", "True"]


def test_changed_module_makes_jobs_cold(server, scripts, tmp_path):
    path = job(tmp_path, scripts, "import mfoml.io\nimport os\nprint(os.getppid())\n")
    warm = run_job(path, server)
    assert int(warm.stdout) == server.proc.pid
    io_py = scripts / "mfoml" / "io.py"
    io_py.write_text(io_py.read_text() + "\n# edited\n")
    cold = run_job(path, server)
    assert cold.returncode == 0
    assert int(cold.stdout) != server.proc.pid  # ran in the client itself
    assert "running this job cold" in cold.stderr and "io.py changed" in cold.stderr


def test_another_checkouts_mfoml_runs_cold(server, scripts, tmp_path):
    other = tmp_path / "other"
    shutil.copytree(scripts, other)
    path = job(tmp_path, other, "import os\nprint(os.getppid())\n")
    proc = run_job(path, server)
    assert proc.returncode == 0
    assert int(proc.stdout) != server.proc.pid
    assert "is not the server's" in proc.stderr


def test_other_python_or_container_runs_cold(server, scripts, tmp_path):
    """A rule with its own conda environment (another interpreter) or a container runs cold."""
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    path = job(tmp_path, scripts, "import os\nprint(os.getppid())\n")
    env = dict(os.environ, MFOML_WARM_SOCKET=server.socket_path)
    proc = subprocess.run(
        [str(venv / "bin" / "python"), str(path)], env=env, capture_output=True, text=True
    )
    assert proc.returncode == 0, proc.stderr
    assert int(proc.stdout) != server.proc.pid
    assert "is not the server's" in proc.stderr and "conda" in proc.stderr
    proc = run_job(path, server, env={"APPTAINER_CONTAINER": "/img.sif"})
    assert proc.returncode == 0 and int(proc.stdout) != server.proc.pid
    assert "runs in a container" in proc.stderr


def test_thread_starting_import_makes_server_cold(server, scripts, tmp_path):
    (scripts / "spawns_thread.py").write_text(
        "import threading, time\nthreading.Thread(target=time.sleep, args=(30,), daemon=True).start()\n"
    )
    path = job(tmp_path, scripts, "import spawns_thread\nimport os\nprint(os.getppid())\n")
    for _ in range(2):
        proc = run_job(path, server)
        assert proc.returncode == 0
        assert int(proc.stdout) != server.proc.pid
        assert "started a thread in the server" in proc.stderr


def test_no_server_on_a_gpu_machine_unless_device_cpu(tmp_path):
    """CUDA does not survive a fork once initialized, and warm start has not run on a GPU yet."""
    dev = tmp_path / "dev"
    dev.mkdir()
    (dev / "null").touch()
    assert refusal("auto", str(dev)) == ""
    (dev / "nvidiactl").touch()
    assert "NVIDIA GPU" in refusal("auto", str(dev))
    assert "NVIDIA GPU" in refusal("cuda", str(dev))
    assert refusal("cpu", str(dev)) == ""


def test_no_server_runs_cold(scripts, tmp_path):
    path = job(tmp_path, scripts, "print('ran')\n")
    env = dict(os.environ, MFOML_WARM_SOCKET=str(tmp_path / "nothing"))
    proc = subprocess.run([sys.executable, str(path)], env=env, capture_output=True, text=True)
    assert proc.returncode == 0 and proc.stdout == "ran\n"
    assert "cannot reach the server" in proc.stderr


def _start_sleeper(server, scripts, tmp_path) -> tuple[subprocess.Popen, int]:
    pidfile = tmp_path / "child.pid"
    path = job(
        tmp_path,
        scripts,
        f"""
        import os, time
        open({str(pidfile)!r}, "w").write(str(os.getpid()))
        time.sleep(60)
        """,
    )
    client = subprocess.Popen([sys.executable, str(path)], env=job_env(server))
    return client, read_pid(pidfile)


def test_sigterm_is_forwarded_to_the_job(server, scripts, tmp_path):
    client, child = _start_sleeper(server, scripts, tmp_path)
    assert child != client.pid
    client.send_signal(signal.SIGTERM)
    assert client.wait(30) == -signal.SIGTERM  # the client dies by the job's signal
    assert wait_gone(child)


def test_killed_client_kills_its_job(server, scripts, tmp_path):
    client, child = _start_sleeper(server, scripts, tmp_path)
    client.kill()
    client.wait(30)
    assert wait_gone(child)
    assert "is gone: terminating the job" in log_of(tmp_path)


def test_server_exits_with_its_parent(scripts, tmp_path):
    """``kill -9`` of the workflow process (here a driver standing in for snakemake): the server
    notices, kills its running job and removes its socket directory."""
    driver = tmp_path / "driver.py"
    driver.write_text(
        textwrap.dedent(
            f"""
            import sys, time
            sys.path.insert(0, {str(scripts)!r})
            from mfoml.warm_launch import start_server
            srv = start_server({str(scripts)!r}, {str(tmp_path / "warm.log")!r})
            print(srv.proc.pid, srv.tmpdir, flush=True)
            time.sleep(60)
            """
        )
    )
    proc = subprocess.Popen([sys.executable, str(driver)], stdout=subprocess.PIPE, text=True)
    server_pid, tmpdir = proc.stdout.readline().split()
    assert os.path.isdir(tmpdir)
    srv = type("Srv", (), {"socket_path": os.path.join(tmpdir, "socket")})()
    client, child = _start_sleeper(srv, scripts, tmp_path)
    proc.kill()  # no atexit, no onsuccess: the server must notice by itself
    proc.wait()
    assert wait_gone(int(server_pid))
    assert wait_gone(child)
    assert client.wait(30) != 0
    assert "the workflow process is gone" in log_of(tmp_path)
    assert not os.path.exists(tmpdir)


@pytest.mark.slow
def test_tiny_run_jobs_ran_warm(tmp_path_factory):
    wd = completed_tiny_run(tmp_path_factory.getbasetemp())
    log = (wd / "logs" / "warm_start.log").read_text()
    assert "cold from now on" not in log and "unsafe" not in log
    train_logs = sorted((wd / "logs" / "runs").rglob("train.log"))
    assert train_logs
    for path in [*train_logs, *(wd / "logs" / "runs").rglob("probe.log")]:
        assert path.read_text().splitlines()[-1].startswith("warm start: job CPU time"), path
    assert log.count(" ended with status 0") == log.count("): rule ")


def test_numba_target_is_set_up_in_the_server(server, scripts, tmp_path):
    """A job that imports numba finds its CPU target set up by the server (so its first kernel
    skips numba's registries), its threading layer not launched, the server still warm, and
    the fast builder's trees equal to scikit-learn's in the child."""
    path = job(
        tmp_path,
        scripts,
        """
        import os
        import numba
        import numpy as np
        from numba.core.registry import cpu_target
        from numba.np.ufunc import parallel
        from sklearn.ensemble import RandomForestRegressor
        from mfoml.wavelets.fasttree import FastForestRegressor
        ready = len(cpu_target.target_context._registries) > 0
        launched = parallel._is_initialized
        X = np.random.default_rng(0).random((300, 8)).astype(np.float16)
        Y = np.eye(3)[(X[:, 0] > 0.5).astype(int) + (X[:, 1] > 0.7)]
        fast = FastForestRegressor(2, random_state=4).fit(X, Y)
        ref = RandomForestRegressor(2, random_state=4).fit(X, Y)
        same = all(
            np.array_equal(a.tree_.threshold, b.tree_.threshold)
            and np.array_equal(a.tree_.value, b.tree_.value)
            for a, b in zip(fast.estimators_, ref.estimators_)
        )
        print(os.getppid(), ready, launched, same)
        """,
    )
    for _ in range(2):
        proc = run_job(path, server)
        assert proc.returncode == 0, proc.stderr
        ppid, ready, launched, same = proc.stdout.split()
        assert int(ppid) == server.proc.pid  # warm: forked by the server
        assert (ready, launched, same) == ("True", "False", "True")
