# fork and spawn children, a crashing child, and interpreter shutdown: every event reaches
# the file, under the pid of the process that recorded it.
import multiprocessing
import os
import signal
import subprocess
import sys
import textwrap

import stagelog
from conftest import read_jsonl


def child_work(path, index):
    # A spawn child makes its own recorder; a fork child also finds the parent's, which the
    # test passes as None to make its own the same way. No flush: exit must do it.
    rec = stagelog.Recorder(jsonl=path, server=False)
    rec.set_worker(f"child-{index}")
    for n in range(50):
        with rec.stage("AGENT", n=n, pid=os.getpid()):
            pass


def forked_child_uses_parent_recorder(index):
    rec = stagelog.default_recorder()
    rec.set_worker(f"fork-{index}")
    for n in range(50):
        with rec.stage("JUDGE", n=n, pid=os.getpid()):
            pass


def crashing_child():
    import faulthandler

    # pytest's faulthandler stays (disabling it would put back the handler it found, not
    # stagelog's), but its dump of this expected crash goes nowhere.
    if faulthandler.is_enabled():
        faulthandler.enable(file=open(os.devnull, "w"))
    rec = stagelog.default_recorder()
    rec.set_worker("doomed")
    with rec.stage("AGENT", pid=os.getpid()):
        os.kill(os.getpid(), signal.SIGSEGV)


def check_children(events, stage, prefix, count):
    for i in range(count):
        mine = [e for e in events if e["worker"] == f"{prefix}-{i}" and e["stage"] == stage]
        assert len(mine) == 100, (prefix, i, len(mine))
        pids = {e["pid"] for e in mine}
        assert len(pids) == 1
        assert pids == {e["fields"]["pid"] for e in mine if e["status"] == "starting"}
        assert pids != {os.getpid()}


def run_children(method, target, args_list):
    ctx = multiprocessing.get_context(method)
    procs = [ctx.Process(target=target, args=args) for args in args_list]
    for p in procs:
        p.start()
    for p in procs:
        p.join(60)
    return procs


def test_spawn_children_log_under_their_own_pids(tmp_path):
    path = tmp_path / "spawn.jsonl"
    procs = run_children("spawn", child_work, [(str(path), i) for i in range(3)])
    assert [p.exitcode for p in procs] == [0, 0, 0]
    check_children(read_jsonl(path), "AGENT", "child", 3)


def test_fork_children_of_a_recording_parent_log_under_their_own_pids(tmp_path):
    path = tmp_path / "fork.jsonl"
    rec = stagelog.Recorder(jsonl=path, server=False)
    stagelog.set_default_recorder(rec)
    rec.set_worker("parent")
    with rec.stage("PARENT"):
        procs = run_children("fork", forked_child_uses_parent_recorder, [(i,) for i in range(3)])
    assert [p.exitcode for p in procs] == [0, 0, 0]
    rec.flush()
    events = read_jsonl(path)
    check_children(events, "JUDGE", "fork", 3)
    parent = [e for e in events if e["stage"] == "PARENT"]
    assert [e["status"] for e in parent] == ["starting", "completed"]
    assert {e["pid"] for e in parent} == {os.getpid()}


def test_a_crashing_child_leaves_its_events_and_its_crash_line(tmp_path):
    path = tmp_path / "crash.jsonl"
    rec = stagelog.Recorder(jsonl=path, server=False)
    stagelog.set_default_recorder(rec)
    (proc,) = run_children("fork", crashing_child, [()])
    assert proc.exitcode == -signal.SIGSEGV
    rec.flush()
    events = [e for e in read_jsonl(path) if e["pid"] == proc.pid]
    assert any(e["stage"] == "AGENT" and e["status"] == "starting" for e in events), events
    crash = [e for e in events if e["kind"] == "lifecycle" and "SIGSEGV" in e["message"]]
    assert crash, events


def run_python(code, tmp_path):
    env = dict(os.environ)
    return subprocess.run([sys.executable, "-c", textwrap.dedent(code)], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=120)


def test_interpreter_shutdown_flushes_without_an_explicit_flush(tmp_path):
    result = run_python("""
        import stagelog
        rec = stagelog.Recorder(jsonl="out.jsonl", server=False)
        for n in range(5000):
            rec.info("line", n=n)
    """, tmp_path)
    assert result.returncode == 0, result.stderr
    events = [e for e in read_jsonl(tmp_path / "out.jsonl") if e["kind"] == "log"]
    assert [e["fields"]["n"] for e in events] == list(range(5000))


def test_threads_still_logging_at_exit_do_not_crash_the_interpreter(tmp_path):
    result = run_python("""
        import threading, stagelog
        rec = stagelog.Recorder(jsonl="out.jsonl", server=False, queue_capacity=4096)
        started = threading.Event()
        def spin():
            started.set()
            while True:
                with rec.stage("AGENT"):
                    rec.info("x" * 100)
        for _ in range(2):
            threading.Thread(target=spin, daemon=True).start()
        started.wait(30)
    """, tmp_path)
    assert result.returncode == 0, result.stderr
    assert "Fatal" not in result.stderr
