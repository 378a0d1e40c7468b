import logging

import stagelog
from conftest import read_jsonl


def make_logger(tmp_path, name, level=logging.DEBUG):
    rec = stagelog.Recorder(jsonl=tmp_path / "run.jsonl", server=False)
    logger = logging.getLogger(name)
    logger.handlers[:] = [stagelog.Handler(rec)]
    logger.setLevel(level)
    logger.propagate = False
    return rec, logger


def logs(tmp_path):
    return [e for e in read_jsonl(tmp_path / "run.jsonl") if e["kind"] == "log"]


def test_records_level_logger_name_message_and_extra(tmp_path):
    rec, log = make_logger(tmp_path, "gpu_agent")
    rec.set_worker("gpu-1")
    log.info("Claimed task: %s (%s)", "d5de16d7", "llm", extra={"task_id": "d5de16d7", "n": 3})
    log.warning("slow")
    rec.flush()
    events = logs(tmp_path)
    assert [e["level"] for e in events] == ["info", "warning"]
    assert events[0]["message"] == "Claimed task: d5de16d7 (llm)"
    assert events[0]["component"] == "gpu_agent"
    assert events[0]["worker"] == "gpu-1"
    assert events[0]["fields"] == {"task_id": "d5de16d7", "n": 3}


def test_exception_info_becomes_fields(tmp_path):
    rec, log = make_logger(tmp_path, "brain")
    try:
        {}["model_name"]
    except KeyError:
        log.exception("Worker crashed in main loop")
    rec.flush()
    (event,) = logs(tmp_path)
    assert event["level"] == "error"
    assert event["fields"]["exception"] == "KeyError"
    assert event["fields"]["error"] == "'model_name'"
    assert 'in test_exception_info_becomes_fields' in event["fields"]["traceback"]


def test_component_level_from_environment_filters(tmp_path, monkeypatch):
    monkeypatch.setenv("WORKER_LOG_LEVEL", "WARNING")
    rec, log = make_logger(tmp_path, "worker")
    log.info("hidden")
    log.error("shown")
    rec.flush()
    assert [e["message"] for e in logs(tmp_path)] == ["shown"]


def test_handler_level_is_respected(tmp_path):
    rec = stagelog.Recorder(jsonl=tmp_path / "run.jsonl", server=False)
    log = logging.getLogger("handler_level")
    log.handlers[:] = [stagelog.Handler(rec, level=logging.ERROR)]
    log.setLevel(logging.DEBUG)
    log.propagate = False
    log.warning("no")
    log.error("yes")
    rec.flush()
    assert [e["message"] for e in logs(tmp_path)] == ["yes"]
