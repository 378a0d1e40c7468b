# python/examples/demo_pipeline.py, the Python part of `make demo`, run as make runs it (here
# without a server): its text log holds both items, the second failing in JUDGE.
import os
import re
import subprocess
import sys

from conftest import read_lines

DEMO = os.path.join(os.path.dirname(__file__), "..", "..", "python", "examples",
                    "demo_pipeline.py")


def test_the_demo_pipeline(tmp_path):
    log = tmp_path / "python.log"
    result = subprocess.run([sys.executable, DEMO, str(log)], capture_output=True, text=True,
                            timeout=120)
    assert result.returncode == 0, result.stderr
    text = "\n".join(read_lines(log))
    for stage in ("WORKTREE", "AGENT", "JUDGE"):
        assert re.search(rf"\[py-0\] Stage: {stage} - Complete \(\d+\.\ds\)", text), text
    assert "Stage: COMPLETE - All stages complete" in text, text
    assert re.search(r"Stage: JUDGE - Failed \(\d+\.\ds\): ValueError: the judge found no answer",
                     text), text
    assert text.count("Stage: JUDGE - Complete") == 1, text


def test_the_demo_pipeline_wants_its_log(tmp_path):
    result = subprocess.run([sys.executable, DEMO], capture_output=True, text=True, timeout=120)
    assert result.returncode != 0
    assert "usage: demo_pipeline.py TEXT_LOG" in result.stderr
