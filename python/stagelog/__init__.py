"""stagelog for Python: the C++ recorder behind ``import stagelog``.

Stages, runs, log lines and agent events are recorded into a per-thread ring buffer in C++
and written by the recorder's own backend thread (text, JSON lines, console, per-worker files,
a ``stagelog serve`` server): a call never formats or writes on the calling thread.

    import stagelog
    rec = stagelog.Recorder(text="run.log", console=True)
    rec.set_worker("T0_00")
    with stagelog.run("item-07"):
        with stagelog.stage("AGENT", model="qwen2.5:7b") as s:
            s.complete(tokens=1247)

The first Recorder made is the default one that ``stage()``, ``run()`` and ``Handler`` use
when not given a recorder; with none made, the first use creates one that writes to the
console (and to ``STAGELOG_SERVER`` when it is set).
"""

from __future__ import annotations

import atexit
import functools
import inspect
import logging
import os
import threading
import weakref
from typing import Any, Callable, Optional, TypeVar, Union

from . import _stagelog
from ._stagelog import Error, Level, hash_output

__all__ = [
    "Agent",
    "Error",
    "Handler",
    "Level",
    "Recorder",
    "Workflow",
    "default_recorder",
    "hash_output",
    "run",
    "set_default_recorder",
    "stage",
]

LevelLike = Union[Level, str, int]
F = TypeVar("F", bound=Callable[..., Any])

_lock = threading.Lock()
_default: Optional["Recorder"] = None
_live: "weakref.WeakSet[Recorder]" = weakref.WeakSet()


class Recorder:
    """A recorder and its sinks.

    Sinks given here are added at once; ``add_*`` methods add more later. ``console`` is
    True (INFO and up on stderr) or a level. ``server`` is a ``stagelog serve`` URL; when
    None, ``STAGELOG_SERVER`` (and ``STAGELOG_TOKEN``) are used if set, and False disables the
    network. ``worker_dir``/``worker`` give seed 003's per-worker file
    ``<worker_dir>/worker_<worker>.log``. Events from a thread carry the worker set by
    ``set_worker`` on that thread ("t<N>" until then). Any thread may use a recorder.

    Raises ``stagelog.Error`` naming the path or value when a sink cannot be set up.
    """

    def __init__(
        self,
        *,
        text: Optional[Union[str, os.PathLike]] = None,
        jsonl: Optional[Union[str, os.PathLike]] = None,
        console: Union[bool, LevelLike] = False,
        worker_dir: Optional[Union[str, os.PathLike]] = None,
        worker: Optional[str] = None,
        server: Union[None, bool, str] = None,
        token: str = "",
        level: LevelLike = Level.TRACE,
        run: str = "",
        queue_capacity: int = 1 << 20,
        drop: bool = False,
        watchdog: bool = True,
    ) -> None:
        self._rec = _stagelog.Recorder(
            queue_capacity=queue_capacity, drop=drop, run=run, watchdog=watchdog
        )
        self._components: dict[str, _stagelog.Logger] = {}
        self._app = self._rec.component("app")
        if text is not None:
            self.add_text_sink(text, level)
        if jsonl is not None:
            self.add_jsonl_sink(jsonl, level)
        if console is not False and console is not None:
            self.add_console_sink(Level.INFO if console is True else console)
        if worker_dir is not None:
            if worker is None:
                raise ValueError("worker_dir needs worker= (the rank or name in the file name)")
            self.add_worker_file_sink(worker_dir, worker)
        if server is None or server is True:
            self._rec.add_network_sink()  # STAGELOG_SERVER, if set.
        elif server:
            self.add_network_sink(server, token)
        if worker is not None:
            self.set_worker(worker)
        global _default
        with _lock:
            _live.add(self)
            if _default is None:
                _default = self

    # --- sinks ---
    def add_text_sink(self, path: Union[str, os.PathLike], level: LevelLike = Level.TRACE) -> None:
        """The seed-000 text lines (``... [T0_00] Stage: AGENT - Complete (13.2s)``)."""
        self._rec.add_text_sink(os.fspath(path), level)

    def add_jsonl_sink(self, path: Union[str, os.PathLike], level: LevelLike = Level.TRACE) -> None:
        """One JSON object per event, every field kept."""
        self._rec.add_jsonl_sink(os.fspath(path), level)

    def add_console_sink(
        self, level: LevelLike = Level.INFO, stream: str = "stderr", color: str = "auto"
    ) -> None:
        """Text lines on stderr (or ``stream="stdout"``), coloured on a terminal."""
        if stream not in ("stdout", "stderr"):
            raise ValueError(f"stream must be 'stdout' or 'stderr', not {stream!r}")
        self._rec.add_console_sink(level, 1 if stream == "stdout" else 2, color)

    def add_worker_file_sink(
        self, log_dir: Union[str, os.PathLike], worker: str, level: LevelLike = Level.INFO
    ) -> str:
        """Seed 003's ``<log_dir>/worker_<worker>.log``; returns its path."""
        return os.fspath(self._rec.add_worker_file_sink(os.fspath(log_dir), str(worker), level))

    def setup_worker_logging(
        self,
        log_dir: Union[str, os.PathLike],
        rank: Union[int, str],
        file_level: LevelLike = Level.INFO,
        console_level: LevelLike = Level.WARNING,
    ) -> str:
        """Seed 003's setup_worker_logging: worker file, console, server; this thread is
        worker ``rank``. Returns the file's path."""
        return os.fspath(
            self._rec.setup_worker_logging(os.fspath(log_dir), str(rank), file_level, console_level)
        )

    def add_network_sink(
        self, url: str, token: str = "", level: LevelLike = Level.TRACE, spool: str = ""
    ) -> None:
        """Batches of events to ``stagelog serve`` at ``url`` (spooled on disk while it is
        unreachable)."""
        if not url:
            raise ValueError("add_network_sink needs a URL such as http://127.0.0.1:8080")
        self._rec.add_network_sink(url, token, level, spool)

    # --- threads and components ---
    def set_worker(self, worker: str) -> None:
        """The calling thread's worker id for its following events ("T0_00", "gpu-1")."""
        self._rec.set_worker(str(worker))

    def set_run(self, run_id: str) -> None:
        """The calling thread's run id for its following events."""
        self._rec.set_run(str(run_id))

    def component(self, name: str) -> "_stagelog.Logger":
        """The logger of a component, its level from ``<NAME>_LOG_LEVEL`` or
        ``STAGELOG_LEVEL`` (else INFO)."""
        logger = self._components.get(name)
        if logger is None:
            logger = self._rec.component(name)
            self._components[name] = logger
        return logger

    def log(self, level: LevelLike, message: str, component: str = "app", **fields: Any) -> None:
        """Records a message with fields, if the component's level lets it through."""
        self.component(component).log(level, message, fields)

    def info(self, message: str, **fields: Any) -> None:
        self._app.log(Level.INFO, message, fields)

    def warning(self, message: str, **fields: Any) -> None:
        self._app.log(Level.WARNING, message, fields)

    def error(self, message: str, **fields: Any) -> None:
        self._app.log(Level.ERROR, message, fields)

    def stage(self, name: Any, component: Optional[str] = None, **fields: Any) -> "stage":
        """``stagelog.stage`` on this recorder."""
        return stage(name, recorder=self, component=component, **fields)

    def run(self, run_id: str, component: Optional[str] = None) -> "run":
        """``stagelog.run`` on this recorder."""
        return run(run_id, recorder=self, component=component)

    def flush(self) -> None:
        """Returns once every event recorded before the call is written and the sinks
        flushed. Releases the GIL while it waits."""
        self._rec.flush()

    @property
    def dropped(self) -> int:
        """Events dropped so far (only with ``drop=True`` and a full buffer)."""
        return self._rec.dropped

    @property
    def pid(self) -> int:
        return self._rec.pid


def default_recorder() -> Recorder:
    """The recorder ``stage()``, ``run()`` and ``Handler`` use when given none: the first one
    made, else a new one writing to the console (and ``STAGELOG_SERVER`` if set)."""
    rec = _default
    if rec is None:
        made = Recorder(console=True)  # Made the default, unless another thread's came first.
        rec = _default if _default is not None else made
    return rec


def set_default_recorder(recorder: Recorder) -> None:
    global _default
    with _lock:
        _default = recorder


def _stage_name(name: Any) -> str:
    # An Enum member such as ExecutionStage.AGENT is named by its value when it is a str
    # (seed 000's stage.value), else by its name.
    value = getattr(name, "value", None)
    if isinstance(value, str):
        return value
    member = getattr(name, "name", None)
    if isinstance(member, str):
        return member
    return str(name)


def _logger(recorder: Optional[Recorder], component: Optional[str]) -> "_stagelog.Logger":
    rec = recorder if recorder is not None else default_recorder()
    return rec._app if component is None else rec.component(component)


class stage:
    """A stage, as a context manager or a decorator.

    ``with stage("AGENT", tokens=0) as s:`` records "Stage: AGENT - Starting" on entry and
    "Complete (13.2s)" on exit, or "Failed (13.2s): ValueError: ..." when an exception leaves
    the block (with fields ``exception``, ``error`` and ``traceback``; the exception goes on).
    Inside, ``s.complete(**fields)``, ``s.fail(message, **fields)`` or
    ``s.skip(reason, **fields)`` end it early. As ``@stage("JUDGE")`` on a function or an
    ``async def``, every call is a stage. Fields are keyword arguments: int, float, bool and
    str keep their type, anything else is recorded as ``str(value)``.
    """

    __slots__ = ("_logger", "_name", "_fields", "_scope")

    def __init__(
        self,
        name: Any,
        *,
        recorder: Optional[Recorder] = None,
        component: Optional[str] = None,
        **fields: Any,
    ) -> None:
        self._logger = _logger(recorder, component)
        self._name = _stage_name(name)
        self._fields = fields
        self._scope: Optional[_stagelog.Stage] = None

    def __enter__(self) -> "_stagelog.Stage":
        scope = _stagelog.Stage(self._logger, self._name, self._fields)
        self._scope = scope
        return scope.__enter__()

    def __exit__(self, exc_type: Any, exc: Any, tb: Any) -> bool:
        scope = self._scope
        self._scope = None
        return scope.__exit__(exc_type, exc, tb) if scope is not None else False

    def __call__(self, fn: F) -> F:
        logger, name, fields = self._logger, self._name, self._fields
        if inspect.iscoroutinefunction(fn):

            @functools.wraps(fn)
            async def async_wrapper(*args: Any, **kwargs: Any) -> Any:
                with _stagelog.Stage(logger, name, fields):
                    return await fn(*args, **kwargs)

            return async_wrapper  # type: ignore[return-value]

        @functools.wraps(fn)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            with _stagelog.Stage(logger, name, fields):
                return fn(*args, **kwargs)

        return wrapper  # type: ignore[return-value]


def run(
    run_id: str, *, recorder: Optional[Recorder] = None, component: Optional[str] = None
) -> "_stagelog.Run":
    """One run of the pipeline (an item through every stage), as a context manager: the
    thread's events carry ``run_id`` meanwhile, and the end is the line "Stage: COMPLETE - All
    stages complete (20.7s)" (or "Failed (...)" when an exception leaves the block, or after
    ``r.fail(message)``). On a server, a run is an execution with its stages as steps."""
    return _stagelog.Run(_logger(recorder, component), str(run_id))


# Python logging ----------------------------------------------------------------------------

# Attributes every LogRecord has; anything else on a record came from ``extra=``.
_RECORD_ATTRS = frozenset(vars(logging.LogRecord("", 0, "", 0, "", (), None))) | {
    "message",
    "asctime",
    "taskName",
}


def _level_of(levelno: int) -> Level:
    if levelno < logging.DEBUG:
        return Level.TRACE
    if levelno < logging.INFO:
        return Level.DEBUG
    if levelno < logging.WARNING:
        return Level.INFO
    if levelno < logging.ERROR:
        return Level.WARNING
    if levelno < logging.CRITICAL:
        return Level.ERROR
    return Level.CRITICAL


class Handler(logging.Handler):
    """A ``logging.Handler`` that records into a stagelog recorder.

    Each logger name is a component ("worker", "brain"), whose level comes from
    ``<NAME>_LOG_LEVEL`` (upper-cased, other characters as ``_``) or ``STAGELOG_LEVEL``; a
    record below it is dropped before anything is copied. The record's level and message go
    to the event, ``extra=`` keys become fields, and ``exc_info`` adds the fields
    ``exception``, ``error`` and ``traceback``.
    """

    def __init__(self, recorder: Optional[Recorder] = None, level: int = logging.NOTSET) -> None:
        super().__init__(level)
        self._recorder = recorder
        self._loggers: dict[str, _stagelog.Logger] = {}

    def emit(self, record: logging.LogRecord) -> None:
        try:
            logger = self._loggers.get(record.name)
            if logger is None:
                rec = self._recorder if self._recorder is not None else default_recorder()
                logger = rec.component(record.name or "root")
                self._loggers[record.name] = logger
            level = _level_of(record.levelno)
            if not logger.enabled(level):
                return
            fields = {k: v for k, v in record.__dict__.items() if k not in _RECORD_ATTRS}
            if record.exc_info and record.exc_info[0] is not None:
                import traceback

                etype, evalue, etb = record.exc_info
                fields["exception"] = etype.__qualname__
                fields["error"] = str(evalue)
                fields["traceback"] = "".join(traceback.format_exception(etype, evalue, etb))
            logger.log(level, record.getMessage(), fields)
        except RecursionError:
            raise
        except Exception:
            self.handleError(record)

    def flush(self) -> None:
        rec = self._recorder if self._recorder is not None else _default
        if rec is not None:
            rec.flush()


# Seed 001 and 002 ---------------------------------------------------------------------------


class Agent:
    """Seed 001's agent (a GPU agent or a claim-loop worker): lifecycle, heartbeats, tasks, the
    claim loop and requests, with the C++ agent's lines. Made on the agent's thread, which
    becomes worker ``name``; ``heartbeat`` may come from any thread. Use as a context manager
    (or call ``close()``): leaving records the shutdown, and an exception leaving the block is
    recorded as the crash first."""

    def __init__(
        self,
        name: str,
        *,
        recorder: Optional[Recorder] = None,
        component: str = "worker",
        seed_wording: bool = True,
        meta_classes: Optional[list[str]] = None,
    ) -> None:
        rec = recorder if recorder is not None else default_recorder()
        self._agent = _stagelog.Agent(
            rec.component(component), str(name), seed_wording, list(meta_classes or [])
        )

    def __getattr__(self, attr: str) -> Any:
        return getattr(self._agent, attr)

    @property
    def model_loaded(self) -> bool:
        """The heartbeat's model_loaded. Any thread."""
        return self._agent.model_loaded

    @model_loaded.setter
    def model_loaded(self, loaded: bool) -> None:
        self._agent.model_loaded = loaded

    def __enter__(self) -> "Agent":
        return self

    def __exit__(self, exc_type: Any, exc: Any, tb: Any) -> bool:
        if exc_type is not None:
            import traceback

            # Seed 001 writes {e!r}, KeyError('model_name'): the argument, not str(e).
            args = getattr(exc, "args", ())
            message = args[0] if len(args) == 1 and isinstance(args[0], str) else str(exc)
            self._agent.crashed(exc_type.__qualname__, message, "".join(traceback.format_tb(tb)))
        self._agent.close()
        return False


def Workflow(
    workflow_id: str,
    output_dir: Union[str, os.PathLike],
    total_nodes: int,
    *,
    recorder: Optional[Recorder] = None,
    print: bool = True,
) -> "_stagelog.Workflow":
    """Seed 002's ExecutionObserver: the same log, trace, audit and metadata files under
    ``output_dir``. ``recorder`` also receives the node events (for the server)."""
    return _stagelog.Workflow(
        workflow_id,
        os.fspath(output_dir),
        total_nodes,
        recorder._rec if recorder is not None else None,
        print,
    )


# Process lifetime -------------------------------------------------------------------------


def _flush_all() -> None:
    for rec in list(_live):
        try:
            rec.flush()
        except Exception:  # A sink's trouble at exit is reported by the recorder itself.
            pass


# Interpreter shutdown flushes every recorder (the GIL is released while it waits).
atexit.register(_flush_all)


def _after_fork_in_child() -> None:
    # multiprocessing's fork children leave through os._exit(), which skips atexit: flush in
    # its exit hook instead (registered after fork, since the child clears the old ones).
    try:
        from multiprocessing import util
    except ImportError:  # pragma: no cover
        return
    util.register_after_fork(_fork_marker, lambda _: util.Finalize(None, _flush_all, exitpriority=0))


class _ForkMarker:
    pass


_fork_marker = _ForkMarker()
_after_fork_in_child()
