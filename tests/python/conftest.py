# The stagelog package under test comes from the build tree: ctest sets PYTHONPATH to
# <build>/python, and STAGELOG_CLI to the stagelog executable for the server test.
import json
import os

import pytest


@pytest.fixture(autouse=True)
def _isolated_env(monkeypatch, tmp_path):
    # No test talks to a server or reads levels unless it says so.
    for name in list(os.environ):
        if name.startswith("STAGELOG_") and name != "STAGELOG_CLI" or name.endswith("_LOG_LEVEL"):
            monkeypatch.delenv(name)
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "state"))


def read_jsonl(path):
    with open(path, encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]


def read_lines(path):
    with open(path, encoding="utf-8") as f:
        return f.read().splitlines()
