# The README's Python snippets, run as written (with run_agent defined first).
import os
import re
import subprocess
import sys
import textwrap

from conftest import read_jsonl, read_lines

README = os.path.join(os.path.dirname(__file__), "..", "..", "README.md")


def snippets():
    text = open(README, encoding="utf-8").read()
    section = text.split("\n## Python\n", 1)[1].split("\n## ", 1)[0]
    return re.findall(r"```python\n(.*?)```", section, re.S)


def run(code, cwd):
    return subprocess.run([sys.executable, "-c", code], cwd=cwd, capture_output=True, text=True,
                          timeout=120)


def test_the_five_line_stage_log(tmp_path):
    code = snippets()[0]
    assert len(code.strip().splitlines()) == 5
    result = run("def run_agent():\n    return 1247\n" + code, tmp_path)
    assert result.returncode == 0, result.stderr
    lines = read_lines(tmp_path / "pipeline.log")
    assert re.search(r"\[T0_00\] Stage: AGENT - Starting", lines[0]), lines
    assert re.search(r"\[T0_00\] Stage: AGENT - Complete \(\d+\.\ds\)", lines[1]), lines
    assert "Stage: COMPLETE - All stages complete" in lines[-1], lines
    assert "Stage: AGENT - Complete" in result.stderr  # console=True


def test_the_three_line_logging_setup(tmp_path):
    code = snippets()[1]
    assert len(code.strip().splitlines()) == 3
    result = run(code + textwrap.dedent("""
        log = logging.getLogger("worker")
        log.debug("hidden: WORKER_LOG_LEVEL is INFO")
        log.info("claimed %s", "d5de16d7", extra={"task": "d5de16d7"})
    """), tmp_path)
    assert result.returncode == 0, result.stderr
    events = [e for e in read_jsonl(tmp_path / "app.jsonl") if e["kind"] == "log"]
    assert [(e["component"], e["message"], e["fields"]) for e in events] == [
        ("worker", "claimed d5de16d7", {"task": "d5de16d7"})]
    assert "worker: claimed d5de16d7" in open(tmp_path / "app.log").read()
