# Seed 001's agent and seed 002's workflow observer through Python: the C++ lines and files.
import json
import os

import pytest
import stagelog
from conftest import read_jsonl


def lifecycle(path):
    return [e["message"] for e in read_jsonl(path) if e["kind"] == "lifecycle"]


def test_gpu_agent_lifecycle_tasks_and_heartbeat(tmp_path):
    rec = stagelog.Recorder(jsonl=tmp_path / "a.jsonl", text=tmp_path / "a.log", server=False)
    with stagelog.Agent("gpu-1", recorder=rec) as agent:
        agent.initialized(gpu=1, port=11435, model="qwen2.5:7b")
        agent.starting()
        agent.claimed("d5de16d7", "load_llm")
        agent.model_loaded = True
        agent.completed("d5de16d7")
        agent.claimed("a1", "llm", "summarise")
        agent.failed("a1", "timeout")
        agent.heartbeat(gpu_util=0.93)
        agent.nothing_claimed([("llm", 125)], ["resource", "llm"], True)
    rec.flush()
    assert lifecycle(tmp_path / "a.jsonl") == [
        "GPU agent initialized: gpu-1 (GPU 1), port 11435, model qwen2.5:7b",
        "GPU agent gpu-1 starting",
        "GPU gpu-1 shutting down - completed 1, failed 1",
    ]
    events = read_jsonl(tmp_path / "a.jsonl")
    messages = [e["message"] for e in events]
    assert "Claimed meta task: d5de16d7 (load_llm)" in messages
    beat = [e for e in events if e["kind"] == "heartbeat"]
    assert beat and beat[0]["fields"]["gpu_util"] == 0.93
    assert beat[0]["fields"]["model_loaded"] is True
    assert {e["worker"] for e in events if e["kind"] != "log"} == {"gpu-1"}


def test_agent_block_left_by_an_exception_records_the_crash(tmp_path):
    rec = stagelog.Recorder(jsonl=tmp_path / "a.jsonl", server=False)
    with pytest.raises(KeyError):
        with stagelog.Agent("gpu-1", recorder=rec) as agent:
            agent.initialized(gpu=1)
            {}["model_name"]
    rec.flush()
    crashed, shutdown = lifecycle(tmp_path / "a.jsonl")[1:]
    assert crashed.startswith("GPU agent crashed: KeyError('model_name') | stack: "), crashed
    assert '{}["model_name"]' in crashed
    assert shutdown == "GPU gpu-1 shutting down - completed 0, failed 0"


def test_workflow_observer_writes_the_seed_files(tmp_path, capfd):
    rec = stagelog.Recorder(jsonl=tmp_path / "w.jsonl", server=False)
    wf = stagelog.Workflow("step_04_populate_mpd", tmp_path / "out", 2, recorder=rec)
    wf.node_start("n1", 0)
    wf.node_success("n1", 1.5, stagelog.hash_output({"rows": 3}), json.dumps({"rows": 3}))
    wf.node_start("n2", 1)
    wf.node_failure("n2", "boom", 0.5)
    wf.complete(0.25)
    rec.flush()
    assert wf.step_number == "04"
    assert (wf.nodes_completed, wf.nodes_failed) == (1, 1)
    for path in (wf.log_file, wf.trace_file, wf.metadata_file):
        assert os.path.isfile(path), path
    assert os.path.basename(wf.metadata_file) == "metadata_04.json"
    trace = read_jsonl(wf.trace_file)
    assert any(e.get("output_hash") == stagelog.hash_output({"rows": 3})
               or e.get("details", {}).get("output_hash") == stagelog.hash_output({"rows": 3})
               for e in trace), trace
    assert "step_04_populate_mpd" in capfd.readouterr().out
    with pytest.raises(stagelog.Error, match="/proc/nope"):
        stagelog.Workflow("w", "/proc/nope", 1, print=False)


def test_claim_loop_and_requests(tmp_path, monkeypatch):
    monkeypatch.setenv("WORKER_LOG_LEVEL", "DEBUG")
    rec = stagelog.Recorder(jsonl=tmp_path / "a.jsonl", server=False)
    with stagelog.Agent("gpu-3", recorder=rec) as agent:
        agent.attempt("t1")
        agent.lost_race("t1")
        agent.lock_timeout("t2")
        agent.all_claimed_by_others(197, ["resource", "llm"])
        agent.request("9a3f", "load_llm", ["gpu-1", "gpu-3"])
        agent.request("9a40", "load_llm", ["gpu-3"], tasks_waiting=125, task_class="llm")
        agent.fulfilled("9a3f")
    rec.flush()
    text = "\n".join(e["message"] for e in read_jsonl(tmp_path / "a.jsonl"))
    for expected in ("t1", "t2", "197 tasks available in ['resource', 'llm']",
                     "Request 9a3f (load_llm) for workers", "LLM tasks waiting (125)"):
        assert expected in text, (expected, text)
