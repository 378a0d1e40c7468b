import asyncio
import enum
import re
import threading

import pytest
import stagelog
from conftest import read_jsonl, read_lines


def make(tmp_path, **kw):
    rec = stagelog.Recorder(text=tmp_path / "run.log", jsonl=tmp_path / "run.jsonl",
                            server=False, **kw)
    return rec


def stages(events):
    return [(e["stage"], e["status"]) for e in events if e["kind"] == "stage"]


def test_stage_context_manager_writes_seed_lines_and_fields(tmp_path):
    rec = make(tmp_path)
    rec.set_worker("T0_00")
    with stagelog.stage("AGENT", recorder=rec, model="qwen2.5:7b") as s:
        s.complete(tokens=1247, ratio=0.5, ok=True, obj=[1, 2])
    rec.flush()
    lines = read_lines(tmp_path / "run.log")
    assert re.search(r"\dZ \[T0_00\] Stage: AGENT - Starting", lines[0]), lines
    assert re.search(r"\[T0_00\] Stage: AGENT - Complete \(\d+\.\ds\)", lines[1]), lines
    events = read_jsonl(tmp_path / "run.jsonl")
    assert stages(events) == [("AGENT", "starting"), ("AGENT", "completed")]
    assert events[0]["fields"] == {"model": "qwen2.5:7b"}
    assert events[1]["fields"] == {"tokens": 1247, "ratio": 0.5, "ok": True, "obj": "[1, 2]"}
    assert events[1]["worker"] == "T0_00"


def test_enum_stage_names_use_the_value(tmp_path):
    class ExecutionStage(enum.Enum):
        AGENT = "AGENT"
        JUDGE = "JUDGE"

    rec = make(tmp_path)
    with rec.stage(ExecutionStage.JUDGE):
        pass
    rec.flush()
    assert stages(read_jsonl(tmp_path / "run.jsonl")) == [("JUDGE", "starting"),
                                                         ("JUDGE", "completed")]


def test_exception_fails_the_stage_with_type_message_and_traceback(tmp_path):
    rec = make(tmp_path)
    with pytest.raises(ValueError, match="bad judge"):
        with rec.stage("JUDGE"):
            raise ValueError("bad judge")
    rec.flush()
    end = read_jsonl(tmp_path / "run.jsonl")[1]
    assert end["status"] == "failed"
    assert end["message"] == "ValueError: bad judge"
    assert end["fields"]["exception"] == "ValueError"
    assert end["fields"]["error"] == "bad judge"
    assert "raise ValueError" in end["fields"]["traceback"]
    assert "Stage: JUDGE - Failed (" in read_lines(tmp_path / "run.log")[1]


def test_fail_and_skip_end_the_stage_once(tmp_path):
    rec = make(tmp_path)
    with rec.stage("A") as a:
        a.fail("timeout after 480000ms", retry_attempt=2)
        a.complete()  # Already ended: nothing.
    with rec.stage("B") as b:
        b.skip("cached")
    assert a.ended and b.ended
    rec.flush()
    events = read_jsonl(tmp_path / "run.jsonl")
    assert stages(events) == [("A", "starting"), ("A", "failed"), ("B", "starting"),
                              ("B", "skipped")]
    assert events[1]["message"] == "timeout after 480000ms"
    assert events[1]["fields"] == {"retry_attempt": 2}
    assert events[3]["message"] == "cached"


def test_decorator_on_sync_and_async_functions(tmp_path):
    rec = make(tmp_path)

    @stagelog.stage("JUDGE", recorder=rec)
    def judge(x):
        if x < 0:
            raise KeyError("negative")
        return x * 2

    @stagelog.stage("AGENT", recorder=rec)
    async def agent(x):
        await asyncio.sleep(0)
        return x + 1

    assert judge(2) == 4
    with pytest.raises(KeyError):
        judge(-1)
    assert asyncio.run(agent(1)) == 2
    assert judge.__name__ == "judge" and agent.__name__ == "agent"
    rec.flush()
    events = read_jsonl(tmp_path / "run.jsonl")
    assert stages(events) == [("JUDGE", "starting"), ("JUDGE", "completed"),
                              ("JUDGE", "starting"), ("JUDGE", "failed"),
                              ("AGENT", "starting"), ("AGENT", "completed")]
    assert events[3]["fields"]["exception"] == "KeyError"


def test_asyncio_tasks_each_have_their_own_stage(tmp_path):
    rec = make(tmp_path)

    async def item(i, gate):
        with rec.stage("AGENT", item=i):
            await gate.wait()  # All three stages are open at once.
            if i == 1:
                raise RuntimeError("item 1 broke")

    async def main():
        gate = asyncio.Event()
        tasks = [asyncio.create_task(item(i, gate)) for i in range(3)]
        await asyncio.sleep(0)
        gate.set()
        return await asyncio.gather(*tasks, return_exceptions=True)

    results = asyncio.run(main())
    assert isinstance(results[1], RuntimeError)
    rec.flush()
    ends = {e["fields"].get("item"): e for e in read_jsonl(tmp_path / "run.jsonl")
            if e["kind"] == "stage" and e["status"] != "starting"}
    starts = [e for e in read_jsonl(tmp_path / "run.jsonl") if e["status"] == "starting"]
    assert [s["fields"]["item"] for s in starts] == [0, 1, 2]
    statuses = sorted(e["status"] for e in read_jsonl(tmp_path / "run.jsonl")
                      if e["kind"] == "stage" and e["status"] != "starting")
    assert statuses == ["completed", "completed", "failed"]
    assert ends  # ends carry the end fields only


def test_run_writes_the_complete_line_and_run_ids(tmp_path):
    rec = make(tmp_path)
    rec.set_worker("T0_01")
    with stagelog.run("item-07", recorder=rec):
        with rec.stage("AGENT"):
            pass
    with pytest.raises(OSError):
        with rec.run("item-08"):
            raise OSError("disk gone")
    rec.flush()
    lines = read_lines(tmp_path / "run.log")
    assert any(re.search(r"\[T0_01\] Stage: COMPLETE - All stages complete \(\d+\.\ds\)", l)
               for l in lines), lines
    assert any("Stage: COMPLETE - Failed" in l and "OSError: disk gone" in l for l in lines), lines
    events = read_jsonl(tmp_path / "run.jsonl")
    agent = [e for e in events if e["stage"] == "AGENT"]
    assert {e["run"] for e in agent} == {"item-07"}


def test_threads_log_under_their_own_workers(tmp_path):
    rec = make(tmp_path)
    barrier = threading.Barrier(4, timeout=30)

    def work(i):
        rec.set_worker(f"T0_{i:02d}")
        barrier.wait()
        for n in range(200):
            with rec.stage("AGENT", n=n):
                pass

    threads = [threading.Thread(target=work, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    rec.flush()
    events = [e for e in read_jsonl(tmp_path / "run.jsonl") if e["kind"] == "stage"]
    for i in range(4):
        mine = [e for e in events if e["worker"] == f"T0_{i:02d}"]
        assert len(mine) == 400
        assert [e["fields"]["n"] for e in mine if e["status"] == "starting"] == list(range(200))


def test_component_levels_come_from_the_environment(tmp_path, monkeypatch):
    monkeypatch.setenv("BRAIN_LOG_LEVEL", "DEBUG")
    rec = make(tmp_path)
    rec.log("DEBUG", "brain detail", component="brain", tasks=3)
    rec.log("DEBUG", "worker detail", component="worker")
    rec.flush()
    messages = [e["message"] for e in read_jsonl(tmp_path / "run.jsonl") if e["kind"] == "log"]
    assert "brain detail" in messages
    assert "worker detail" not in messages


def test_bad_sink_paths_and_levels_are_clear_errors(tmp_path):
    with pytest.raises(stagelog.Error, match="/no/such/dir/x.log"):
        stagelog.Recorder(text="/no/such/dir/x.log", server=False)
    rec = make(tmp_path)
    with pytest.raises(ValueError, match="unknown level 'LOUD'"):
        rec.log("LOUD", "x")
    with pytest.raises(ValueError, match="stream must be"):
        rec.add_console_sink(stream="stdnull")
    with pytest.raises(stagelog.Error, match="ftp://x"):
        rec.add_network_sink("ftp://x")


def test_worker_file_sink_and_console(tmp_path, capfd):
    rec = stagelog.Recorder(worker_dir=tmp_path / "logs", worker="3", console="WARNING",
                            server=False)
    rec.info("claimed task", task="d5de16d7")
    rec.warning("slow disk")
    rec.flush()
    lines = read_lines(tmp_path / "logs" / "worker_3.log")
    assert any(" - Worker 3 - app - INFO - claimed task" in l for l in lines), lines
    err = capfd.readouterr().err
    assert "slow disk" in err and "claimed task" not in err


def test_flush_releases_the_gil(tmp_path):
    # A thread blocked on a tiny full ring must not stop this one: with the GIL held, the
    # other thread's counter below could not advance.
    rec = stagelog.Recorder(jsonl=tmp_path / "run.jsonl", server=False, queue_capacity=4096)
    done = threading.Event()

    def spam():
        for n in range(20000):
            rec.info("x" * 200, n=n)
        done.set()

    t = threading.Thread(target=spam)
    t.start()
    ticks = 0
    while not done.wait(0.001) and ticks < 100000:
        ticks += 1
    t.join(60)
    rec.flush()
    assert rec.dropped == 0
    assert len(read_jsonl(tmp_path / "run.jsonl")) >= 20000
