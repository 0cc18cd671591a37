"""Warm start under faults a user's machine produces (issue 23), with real servers and clients.

Each test starts a server (mfoml.warm_launch.start_server) on a private copy of the package and
runs job scripts through ``python job.py`` as Snakemake runs a rule script; the processes are
then signalled, killed or fed odd input as a terminal, ``nohup``, the kernel or another user
would. The whole-workflow faults (``kill -9`` of the server under Snakemake, benchmark files,
``warm_start: false``) are in tests/test_warm_workflow.py.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest
from mfoml.warm_launch import start_server
from warm_utils import (
    alive,
    group_pids,
    job,
    job_env,
    log_of,
    read_pid,
    run_job,
    serving,
    state,
    wait_for,
    wait_gone,
)

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="warm start: Linux")
NOBODY = 65534


@pytest.fixture()
def server(scripts: Path, tmp_path: Path, monkeypatch):
    monkeypatch.delenv("PYTHONHASHSEED", raising=False)
    yield from serving(scripts, tmp_path, grace=1.0)


def sleeper(tmp_path: Path, scripts: Path, name: str, seconds: float = 60, extra: str = "") -> Path:
    """A job that writes its pid to ``<name>.pid``, sleeps, then writes ``<name>.out``."""
    return job(
        tmp_path,
        scripts,
        f"""
        import os, signal, time
        {extra}
        open({str(tmp_path / (name + ".pid"))!r}, "w").write(str(os.getpid()))
        time.sleep({seconds})
        open({str(tmp_path / (name + ".out"))!r}, "w").write("written")
        """,
        f"tmp{name}.{name}.py",
    )


def start_client(path: Path, srv, **kw) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, str(path)],
        env=job_env(srv, kw.pop("env", None)),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        **kw,
    )


def test_server_killed_client_fails_only_after_its_job_is_gone(server, scripts, tmp_path):
    """``kill -9`` of the server during two jobs: each client kills its job's process group and
    reports failure only once no process of it is left; nothing is written afterwards."""
    spawn = (
        "import subprocess; subprocess.Popen([sys.executable, '-c', "
        "'import time; time.sleep(60)'])  # a process of the job's group"
    )
    paths = [sleeper(tmp_path, scripts, f"j{i}", seconds=30, extra=spawn) for i in range(2)]
    clients = [start_client(p, server) for p in paths]
    jobs = [read_pid(tmp_path / f"j{i}.pid") for i in range(2)]
    assert all(os.getpgid(pid) == pid for pid in jobs)  # each job leads its own group
    os.kill(server.proc.pid, signal.SIGKILL)
    for client, pid in zip(clients, jobs, strict=True):
        _, err = client.communicate(timeout=30)
        assert client.returncode == 1, err
        assert not alive(pid)  # gone before its client reported the failure
        assert group_pids(pid) == []  # nor any other process of its group
    assert not list(tmp_path.glob("*.out"))  # and no process is left that could write one
    server.proc.wait(10)
    # the killed server could not remove its directory; the next start_server does
    assert os.path.isdir(server.tmpdir)
    again = start_server(str(scripts), str(tmp_path / "warm2.log"))
    assert again is not None
    try:
        assert not os.path.exists(server.tmpdir)
    finally:
        again.stop()
    assert not os.path.exists(again.tmpdir)


def test_killed_client_job_gets_sigkill_after_the_grace_period(server, scripts, tmp_path):
    path = sleeper(
        tmp_path, scripts, "stubborn", extra="signal.signal(signal.SIGTERM, signal.SIG_IGN)"
    )
    client = start_client(path, server)
    pid = read_pid(tmp_path / "stubborn.pid")
    client.kill()
    client.wait(10)
    assert wait_gone(pid, 10)  # SIGTERM ignored; SIGKILL after 1 s of grace
    wait_for(lambda: "did not end within 1.0 s of SIGTERM: SIGKILL" in log_of(tmp_path), 10)


def test_ignored_sighup_stays_ignored_under_nohup(server, scripts, tmp_path):
    path = job(
        tmp_path,
        scripts,
        f"""
        import os, signal, time
        print(signal.getsignal(signal.SIGHUP) == signal.SIG_IGN, flush=True)
        open({str(tmp_path / "hup.pid")!r}, "w").write(str(os.getpid()))
        time.sleep(1.5)
        """,
    )
    client = start_client(
        path, server, preexec_fn=lambda: signal.signal(signal.SIGHUP, signal.SIG_IGN)
    )
    pid = read_pid(tmp_path / "hup.pid")
    client.send_signal(signal.SIGHUP)  # a hang-up: to the client and to the job
    os.kill(pid, signal.SIGHUP)
    out, err = client.communicate(timeout=30)
    assert client.returncode == 0, err
    assert out.split() == ["True"]


def test_ctrl_z_stops_the_job_and_fg_continues_it(server, scripts, tmp_path):
    path = sleeper(tmp_path, scripts, "tstp", seconds=60)
    # its own process group in the suite's session, as a shell's foreground job: in a group
    # the kernel counts as orphaned (the suite started in the background) Ctrl-Z stops nothing
    client = start_client(path, server, process_group=0)
    pid = read_pid(tmp_path / "tstp.pid")
    client.send_signal(signal.SIGTSTP)
    wait_for(lambda: state(pid) == "T" and state(client.pid) == "T", 10, "both stopped")
    client.send_signal(signal.SIGCONT)
    wait_for(lambda: state(pid) == "S" and state(client.pid) == "S", 10, "both running")
    client.send_signal(signal.SIGTERM)
    assert client.wait(30) == -signal.SIGTERM
    assert wait_gone(pid)


def test_sigint_ends_the_job_at_once_and_the_client_dies_by_it(server, scripts, tmp_path):
    path = sleeper(tmp_path, scripts, "int", seconds=60)
    client = start_client(path, server)
    pid = read_pid(tmp_path / "int.pid")
    start = time.monotonic()
    client.send_signal(signal.SIGINT)
    _, err = client.communicate(timeout=30)
    assert client.returncode == -signal.SIGINT  # as Python dies of an uncaught Ctrl-C
    assert time.monotonic() - start < 20  # the job sleeps 60 s
    assert "KeyboardInterrupt" in err
    assert not alive(pid)


def test_segfault_is_reported_as_sigsegv(server, scripts, tmp_path):
    path = job(tmp_path, scripts, "import os, signal\nos.kill(os.getpid(), signal.SIGSEGV)\n")
    proc = run_job(path, server)
    assert proc.returncode == -signal.SIGSEGV, proc.stderr
    assert not list(tmp_path.glob("core*"))
    assert "ended with status 139" in log_of(tmp_path)


def test_request_too_large_falls_back_to_a_cold_start(server, scripts, tmp_path):
    path = job(
        tmp_path,
        scripts,
        "import os\nprint(os.getppid(), sum(len(v) for k, v in os.environ.items() if 'BIG' in k))\n",
    )
    big = {f"BIG{i}": "x" * (100 << 10) for i in range(3)}  # 300 KiB: over a datagram's 208
    proc = run_job(path, server, env=big)
    assert proc.returncode == 0, proc.stderr
    ppid, size = proc.stdout.split()
    assert int(ppid) != server.proc.pid and int(size) == 300 << 10  # ran in the client
    assert "running this job cold" in proc.stderr and "could not be sent" in proc.stderr


def test_connection_that_sends_nothing_is_dropped_and_stalls_no_job(server, scripts, tmp_path):
    silent = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    silent.connect(server.socket_path)
    start = time.monotonic()
    path = job(tmp_path, scripts, "import os\nprint(os.getppid())\n")
    proc = run_job(path, server)
    assert proc.returncode == 0 and int(proc.stdout) == server.proc.pid, proc.stderr
    silent.settimeout(30)
    assert silent.recv(16) == b""  # closed by the server
    assert time.monotonic() - start >= 1.9  # after its 2 s, not before
    silent.close()
    wait_for(lambda: "sent no request within 2.0 s" in log_of(tmp_path), 10, "the drop")
    log = log_of(tmp_path)
    # served while the silent connection was still open: the job is logged before the drop
    assert log.index("): rule job") < log.index("sent no request within 2.0 s")


def test_child_state_is_a_new_process_s_torch_seed_and_tz(server, scripts, tmp_path):
    path = job(
        tmp_path,
        scripts,
        """
        import os, time
        import torch
        print(os.getppid(), torch.randn(1).item(), time.strftime("%z", time.localtime(0)))
        """,
    )
    runs = [
        run_job(path, server, env={"TZ": tz}).stdout.split() for tz in ("UTC", "Asia/Tokyo", "UTC")
    ]
    assert [int(r[0]) for r in runs] == [server.proc.pid] * 3
    assert len({r[1] for r in runs}) == 3  # torch's global generator reseeded per job
    assert [r[2] for r in runs] == ["+0000", "+0900", "+0000"]


def test_pythonhashseed_other_than_the_servers_runs_cold(server, scripts, tmp_path):
    path = job(tmp_path, scripts, "import os\nprint(os.getppid(), hash('mfoml'))\n")
    cold = [run_job(path, server, env={"PYTHONHASHSEED": "123"}) for _ in range(2)]
    for proc in cold:
        assert proc.returncode == 0 and int(proc.stdout.split()[0]) != server.proc.pid
        assert "PYTHONHASHSEED (123) is not the server's (None)" in proc.stderr
    assert cold[0].stdout.split()[1] == cold[1].stdout.split()[1]  # the seed took effect
    warm = run_job(path, server)
    assert int(warm.stdout.split()[0]) == server.proc.pid


def test_job_process_title_names_the_rule(server, scripts, tmp_path):
    path = job(
        tmp_path,
        scripts,
        """
        print(open("/proc/self/cmdline", "rb").read().replace(b"\\0", b" ").decode().strip())
        print(open("/proc/self/comm").read().strip())
        """,
        "tmpx1y2.train.py",  # Snakemake's name for a copy of the rule script train.py
    )
    proc = run_job(path, server)
    assert proc.returncode == 0, proc.stderr
    cmdline, comm = proc.stdout.splitlines()
    assert cmdline == "mfoml job train"
    assert comm.startswith("mfoml job")


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root, to connect as another user")
def test_server_refuses_another_users_connection(server, scripts, tmp_path):
    os.chmod(server.tmpdir, 0o755)  # only the directory's mode kept others out until now
    os.chmod(server.socket_path, 0o777)
    code = (
        "import os, socket, sys\n"
        f"os.setgid({NOBODY}); os.setuid({NOBODY})\n"
        "s = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)\n"
        "s.connect(sys.argv[1]); s.settimeout(10)\n"
        "try:\n"
        "    s.send(b'{}')\n"
        "    print(repr(s.recv(100)))\n"
        "except (BrokenPipeError, ConnectionResetError):  # closed before or after the send\n"
        "    print(repr(b''))\n"
    )
    proc = subprocess.run(
        [sys.executable, "-c", code, server.socket_path], capture_output=True, text=True
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "b''"  # closed, nothing served
    assert f"refused a connection from uid {NOBODY}" in log_of(tmp_path)


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root, to run a server as another user")
def test_client_refuses_a_server_of_another_user(scripts, tmp_path):
    sock_dir = Path(tempfile.mkdtemp(prefix="mfoml-test-other-"))  # reachable by nobody
    os.chmod(sock_dir, 0o755)
    os.chown(sock_dir, NOBODY, NOBODY)
    path = sock_dir / "socket"
    code = (
        "import os, socket, sys, time\n"
        f"os.setgid({NOBODY}); os.setuid({NOBODY})\n"
        "s = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)\n"
        "s.bind(sys.argv[1]); os.chmod(sys.argv[1], 0o777); s.listen(4)\n"
        "print('ready', flush=True)\n"
        "c, _ = s.accept(); time.sleep(5)\n"
    )
    fake = subprocess.Popen(
        [sys.executable, "-c", code, str(path)], stdout=subprocess.PIPE, text=True
    )
    try:
        assert fake.stdout.readline().strip() == "ready"
        script = job(tmp_path, scripts, "print('ran')\n")
        fake_srv = type("Srv", (), {"socket_path": str(path)})()
        proc = run_job(script, fake_srv)
    finally:
        fake.kill()
        fake.wait()
        shutil.rmtree(sock_dir)
    assert proc.returncode == 0 and proc.stdout == "ran\n"
    assert f"runs as uid {NOBODY}" in proc.stderr and "running this job cold" in proc.stderr


def test_stop_ends_jobs_and_removes_the_socket_directory(server, scripts, tmp_path):
    path = sleeper(tmp_path, scripts, "stop", extra="signal.signal(signal.SIGTERM, signal.SIG_IGN)")
    client = start_client(path, server)
    pid = read_pid(tmp_path / "stop.pid")
    server.stop()
    assert not alive(pid)
    assert client.wait(30) != 0
    assert not os.path.exists(server.tmpdir)
    log = log_of(tmp_path)
    assert "SIGKILL" in log and "stopping after 1 jobs" in log


def test_job_logging_is_a_new_processs(server, scripts, tmp_path):
    """The server's log handler stays in the server: a job's records go where the job says."""
    path = job(
        tmp_path,
        scripts,
        """
        import logging
        print(logging.getLogger().handlers, logging.getLogger("mfoml.warm_server").handlers)
        logging.getLogger("mfoml.warm_server").warning("from the job")
        """,
    )
    proc = run_job(path, server)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.split() == ["[]", "[]"]
    assert proc.stderr == "from the job\n"  # Python's last-resort handler, as in a new process
    assert "from the job" not in log_of(tmp_path)
