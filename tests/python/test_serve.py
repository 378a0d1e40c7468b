# A Python program reporting to a real `stagelog serve` (STAGELOG_SERVER/STAGELOG_TOKEN): its
# runs become executions whose steps and failures the HTTP API serves in seed 004's shape.
import json
import os
import re
import select
import signal
import subprocess
import sys
import textwrap
import time
import urllib.error
import urllib.request

import pytest

CLI = os.environ.get("STAGELOG_CLI")
pytestmark = pytest.mark.skipif(not CLI, reason="STAGELOG_CLI (the stagelog executable) unset")


class Serve:
    def __init__(self, data):
        self.proc = subprocess.Popen([CLI, "serve", "--data", str(data), "--listen",
                                      "127.0.0.1:0"], stdout=subprocess.PIPE,
                                     stderr=subprocess.STDOUT)
        self.port, self.token, text = None, None, b""
        deadline = time.monotonic() + 30
        while self.port is None and time.monotonic() < deadline:
            ready, _, _ = select.select([self.proc.stdout], [], [], 1)
            if ready:
                chunk = os.read(self.proc.stdout.fileno(), 4096)
                if not chunk:
                    break
                text += chunk
            m = re.search(rb"listening on http://127\.0\.0\.1:([0-9]+)", text)
            if m:
                self.port = int(m.group(1))
        assert self.port, text.decode(errors="replace")
        # The first admin token: in a 0600 file of the data folder (printed only on a terminal).
        self.token = (data / "admin-token").read_text().strip()
        assert self.token.startswith("slg_"), self.token

    def get(self, path):
        req = urllib.request.Request(f"http://127.0.0.1:{self.port}{path}",
                                     headers={"Authorization": f"Bearer {self.token}"})
        try:
            with urllib.request.urlopen(req, timeout=30) as r:
                return r.status, json.loads(r.read())
        except urllib.error.HTTPError as e:
            return e.code, e.read().decode(errors="replace")

    def stop(self):
        self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(30)
        finally:
            self.proc.stdout.close()


PROGRAM = """
    import stagelog
    rec = stagelog.Recorder()  # STAGELOG_SERVER and STAGELOG_TOKEN from the environment
    rec.set_worker("T0_00")
    with stagelog.run("py-item-01"):
        with stagelog.stage("AGENT") as s:
            s.complete(tokens=1247)
        with stagelog.stage("JUDGE"):
            pass
    try:
        with stagelog.run("py-item-02"):
            with stagelog.stage("AGENT"):
                pass
            with stagelog.stage("JUDGE"):
                raise TimeoutError("AI generation timeout after 480000ms")
    except TimeoutError:
        pass
"""


@pytest.fixture
def serve(tmp_path):
    server = Serve(tmp_path / "data")
    yield server
    assert server.stop() == 0


def execution(serve, run_id):
    deadline = time.monotonic() + 30
    while True:
        status, body = serve.get(f"/api/execution-logs/{run_id}")
        if status == 200 or time.monotonic() > deadline:
            return status, body
        time.sleep(0.1)  # Polling for the stored execution, bounded by the deadline.


def test_a_python_program_reports_its_runs_steps_and_failures(serve, tmp_path, monkeypatch):
    monkeypatch.setenv("STAGELOG_SERVER", f"http://127.0.0.1:{serve.port}")
    monkeypatch.setenv("STAGELOG_TOKEN", serve.token)
    monkeypatch.setenv("STAGELOG_SPOOL", str(tmp_path / "spool" / "py.spool"))
    result = subprocess.run([sys.executable, "-c", textwrap.dedent(PROGRAM)], cwd=tmp_path,
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr

    status, body = execution(serve, "py-item-01")
    assert status == 200, body
    doc = body["data"]
    assert doc["tracking_id"] == "py-item-01"
    assert doc["final_status"] == "completed"
    steps = [(s["step"], s["status"]) for s in doc["steps"]]
    # A stage is a step when it starts and another when it ends, as for a C++ program.
    assert [s for s in steps if s[0] in ("AGENT", "JUDGE")] == [
        ("AGENT", "in_progress"), ("AGENT", "completed"),
        ("JUDGE", "in_progress"), ("JUDGE", "completed")], steps
    assert doc["total_steps"] == len(doc["steps"])

    status, body = execution(serve, "py-item-02")
    assert status == 200, body
    doc = body["data"]
    assert doc["final_status"] == "failed"
    judge = [s for s in doc["steps"] if s["step"] == "JUDGE"]
    assert judge and judge[-1]["status"] == "failed", doc["steps"]
    assert judge[-1]["error_details"] == "TimeoutError: AI generation timeout after 480000ms"
    assert [s["step"] for s in doc["steps"]] == ["AGENT", "AGENT", "JUDGE", "JUDGE"]
