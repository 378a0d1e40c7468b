"""The Python part of `make demo`: seed 000's pipeline through `import stagelog`.

Two items go through WORKTREE -> AGENT -> JUDGE; the second fails in JUDGE. Each is a run on
the demo's stagelog serve (STAGELOG_SERVER and STAGELOG_TOKEN from demo-out/serve/env) and in
the text log named by the one argument.
"""

import sys

import stagelog

if len(sys.argv) != 2:
    sys.exit("usage: demo_pipeline.py TEXT_LOG")
rec = stagelog.Recorder(text=sys.argv[1])  # + the server, from STAGELOG_SERVER if set
rec.set_worker("py-0")
for item in ("py-item-1", "py-item-2"):
    try:
        with stagelog.run(item):
            for name in ("WORKTREE", "AGENT", "JUDGE"):
                with stagelog.stage(name) as s:
                    if (item, name) == ("py-item-2", "JUDGE"):
                        raise ValueError("the judge found no answer")
                    s.complete(output_hash=stagelog.hash_output([item, name, float("nan")]))
    except ValueError:
        pass  # Recorded: the failed stage, with its traceback, and the failed run.
rec.flush()
