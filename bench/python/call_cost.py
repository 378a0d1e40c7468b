#!/usr/bin/env python3
"""Per-call cost on the calling thread: stagelog from Python beside Python's own logging.

    PYTHONPATH=build/release/python python3 bench/python/call_cost.py [--iterations N]

Measured in one run, each case writing to its own file in a temporary folder:
  stage pair         `with stagelog.stage("AGENT", item=n): pass` (a start and an end event)
  Handler info       `logger.info("...", extra=...)` through stagelog.Handler
  FileHandler x2     two `logger.info` calls to a logging.FileHandler (what a stage pair
                     costs with logging: a Starting and a Complete line)
  QueueHandler x2    the same through a QueueHandler (a QueueListener thread writes the file)
Prints nanoseconds per operation (the median of 5 rounds) and the ratio the issue's goal is
about: FileHandler x2 / stage pair (goal: at least 5).
"""

import argparse
import logging
import logging.handlers
import os
import queue
import statistics
import sys
import tempfile
import time

import stagelog


def rounds(fn, iterations, count=5):
    results = []
    for _ in range(count):
        start = time.perf_counter_ns()
        fn(iterations)
        results.append((time.perf_counter_ns() - start) / iterations)
    return statistics.median(results)


def plain_logger(name, handler):
    logger = logging.getLogger(name)
    logger.handlers[:] = [handler]
    logger.setLevel(logging.INFO)
    logger.propagate = False
    return logger


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--iterations", type=int, default=200_000)
    args = parser.parse_args()
    if args.iterations < 1:
        parser.error("--iterations must be at least 1")
    n_iter = args.iterations

    with tempfile.TemporaryDirectory() as tmp:
        rec = stagelog.Recorder(jsonl=os.path.join(tmp, "stagelog.jsonl"),
                                text=os.path.join(tmp, "stagelog.log"), server=False)
        rec.set_worker("T0_00")

        def stage_pair(n):
            stage = stagelog.stage
            for i in range(n):
                with stage("AGENT", recorder=rec, item=i):
                    pass

        handler_logger = plain_logger("bench.stagelog", stagelog.Handler(rec))

        def handler_info(n):
            for i in range(n):
                handler_logger.info("Claimed task", extra={"item": i})

        file_logger = plain_logger("bench.file", logging.FileHandler(os.path.join(tmp, "f.log")))
        file_logger.handlers[0].setFormatter(
            logging.Formatter("%(asctime)s [%(threadName)s] %(message)s"))

        def file_twice(n):
            for i in range(n):
                file_logger.info("Stage: AGENT - Starting item=%d", i)
                file_logger.info("Stage: AGENT - Complete (%.1fs)", 0.0)

        q = queue.SimpleQueue()
        target = logging.FileHandler(os.path.join(tmp, "q.log"))
        target.setFormatter(logging.Formatter("%(asctime)s [%(threadName)s] %(message)s"))
        listener = logging.handlers.QueueListener(q, target)
        listener.start()
        queue_logger = plain_logger("bench.queue", logging.handlers.QueueHandler(q))

        def queue_twice(n):
            for i in range(n):
                queue_logger.info("Stage: AGENT - Starting item=%d", i)
                queue_logger.info("Stage: AGENT - Complete (%.1fs)", 0.0)

        results = {}
        for name, fn in [("stage pair", stage_pair), ("Handler info", handler_info),
                         ("FileHandler x2", file_twice), ("QueueHandler x2", queue_twice)]:
            results[name] = rounds(fn, n_iter)
            rec.flush()  # Each case starts with the backend idle.
        listener.stop()
        rec.flush()

    print(f"python {sys.version.split()[0]}, {n_iter} iterations, median of 5 rounds")
    for name, ns in results.items():
        print(f"  {name:16} {ns:10.0f} ns/op")
    ratio = results["FileHandler x2"] / results["stage pair"]
    print(f"  FileHandler x2 / stage pair: {ratio:.1f}x (goal: >= 5x)")


if __name__ == "__main__":
    main()
