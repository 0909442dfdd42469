"""Ctrl-C and SIGTERM: every subcommand stops within seconds, with exit status 130 or 143.

Why this module exists (issue 12): a process started in the background by a shell script
(``cxrtool train ... &``) inherits SIGINT *ignored*, and Python then leaves it ignored, so a
``kill -INT`` was silently dropped and training ran to the end; SIGTERM (what a scheduler
sends before preemption) killed the process without a word. The CLI entry point therefore
installs its own handlers for both (:func:`handling`), whatever the parent set:

* The first SIGINT or SIGTERM raises :class:`Interrupted` (a ``KeyboardInterrupt``) in the
  main thread, so ``finally`` blocks and :mod:`cxrtool.atomic` clean up and nothing
  half-written keeps a final name. The exit status is 128 + the signal (130, 143).
* Python runs handlers only between bytecodes of the main thread; a long XLA compile, a
  jitted training step or a pool join can keep it away for minutes. A watchdog thread
  (woken through ``signal.set_wakeup_fd``, i.e. by the C-level handler at once) therefore
  gives the main thread :data:`GRACE_S` seconds, then prints the same one line, stops the
  worker processes and ends the process with the same status. A second signal ends it at once.
* Worker processes ignore SIGINT (:func:`quiet_worker`, a pool initializer): a Ctrl-C at the
  terminal reaches the whole process group, and the parent alone decides what to do (no
  traceback per worker). SIGTERM keeps its default, so ``Pool.terminate`` still works.

A command can say how to continue (``train`` names the exact ``--resume`` command) with
:func:`advice`. No Keras, JAX or threads are imported or started before :func:`handling`.
"""

from __future__ import annotations

import contextlib
import os
import signal
import sys
import threading
import time
from collections.abc import Callable, Iterator

from .locks import remove_held

#: Seconds the main thread gets to unwind after the first signal before the process is ended.
GRACE_S = 5.0
SIGNALS = (signal.SIGINT, signal.SIGTERM)


class Interrupted(KeyboardInterrupt):
    """Raised in the main thread by the first SIGINT or SIGTERM."""

    def __init__(self, signum: int):
        self.signum = signum
        super().__init__(signal.Signals(signum).name)


_state: dict = {"signum": None, "pending": None, "armed": False, "advice": None, "reported": False,
                "pid": None, "resent": 0}
_report_lock = threading.Lock()
_pipe: tuple[int, int] | None = None  # (read, write) of the wakeup pipe; one watchdog per process


def received() -> int | None:
    """The first signal received while :func:`handling` was active (None if none).

    Includes a signal whose raise was deferred (it landed in a finalizer, see :data:`_NO_RAISE`):
    code that fails or ends in the meantime must still exit 130/143, not 1 or 0.
    """
    return _state["signum"] if _state["signum"] is not None else _state["pending"]


def exit_code(signum: int) -> int:
    """The shell convention: 128 + the signal number (SIGINT 130, SIGTERM 143)."""
    return 128 + int(signum)


def message() -> str:
    """The one line printed after an interrupt (without the ``error:`` prefix)."""
    signum = received() or signal.SIGINT
    line = f"interrupted ({signal.Signals(signum).name})"
    advice = _state["advice"]
    if advice is not None:
        try:
            text = advice()
        except Exception as exc:  # noqa: BLE001 - advice must never hide the interrupt itself
            text = f"({type(exc).__name__} while describing the state: {exc})"
        if text:
            line += f"; {text}"
    return line


def report() -> None:
    """Print :func:`message` once on stderr, as an ``error:`` line (main thread or watchdog)."""
    with _report_lock:
        if _state["reported"]:
            return
        _state["reported"] = True
    with contextlib.suppress(Exception):
        sys.stderr.flush()
    with contextlib.suppress(Exception):  # os.write: no stream lock that a busy thread may hold
        os.write(2, f"error: {message()}\n".encode())


@contextlib.contextmanager
def advice(describe: Callable[[], str]) -> Iterator[None]:
    """While the block runs, an interrupt's line ends with ``describe()`` (called at interrupt time)."""
    previous = _state["advice"]
    _state["advice"] = describe
    try:
        yield
    finally:
        if received() is None:  # after an interrupt it stays, for the line printed at the end
            _state["advice"] = previous


#: Functions in which an exception is printed and dropped ("Exception ignored in"): logging's
#: fork hooks (a pool forking its workers) and finalizers. A signal landing there is sent again.
_NO_RAISE = frozenset({"_acquireLock", "_releaseLock", "_after_at_fork_child_reinit_locks", "__del__"})
#: Modules that run a host callback from inside a jitted computation: an exception raised there
#: comes out as a JaxRuntimeError (exit 1 instead of 130/143). A signal landing there is sent again.
_CALLBACK_MODULES = frozenset({"jax._src.callback", "jax._src.debugging"})


def _must_not_raise(frame) -> bool:
    if frame is not None and frame.f_code.co_name in _NO_RAISE:
        return True
    while frame is not None:
        if frame.f_globals.get("__name__") in _CALLBACK_MODULES:
            return True
        frame = frame.f_back
    return False


def _handler(signum, frame) -> None:
    if os.getpid() != _state["pid"]:  # a forked worker before its initializer ran
        if signum == signal.SIGTERM:
            os._exit(exit_code(signum))
        return
    if _state["signum"] is not None:
        return  # the second one: the watchdog ends the process; never raise into cleanup code
    if _state["pending"] is None:
        _state["pending"] = signum  # before anything that can fail: received() knows from now on
    if _must_not_raise(frame):
        try:
            threading.Timer(0.05, os.kill, (os.getpid(), signum)).start()
        except RuntimeError:  # no thread can start (interpreter shutting down): raise here after all
            pass
        else:
            _state["resent"] += 1
            return
    _state["signum"] = signum
    raise Interrupted(signum)


def _kill_workers() -> None:
    """Stop multiprocessing children (pool workers), which would otherwise outlive us."""
    mp = sys.modules.get("multiprocessing")
    if mp is None:
        return
    with contextlib.suppress(Exception):
        for child in mp.active_children():
            child.kill()


def hard_exit(code: int, *, flush: bool = True) -> None:
    """End the process now: report, stop worker processes, ``os._exit`` (no thread joins).

    ``flush=False`` (the watchdog): skip flushing stdout, whose lock a stuck thread may hold.
    """
    report()
    _kill_workers()
    remove_held()  # os._exit skips the `with hold(...)` blocks: leave no stale lock file
    if flush:
        with contextlib.suppress(Exception):
            sys.stdout.flush()
    with contextlib.suppress(Exception):
        if os.isatty(2):
            os.write(2, b"\x1b[?25h")  # a progress bar may have hidden the cursor
    os._exit(code)


def _watchdog(read_fd: int) -> None:
    import select

    first: tuple[int, float] | None = None  # (signal, when) of the first one
    while True:
        timeout = None if first is None else max(0.0, first[1] + GRACE_S - time.monotonic())
        ready, _, _ = select.select([read_fd], [], [], timeout)
        if not ready:  # the grace period ran out with the main thread still busy (in C code)
            if _state["armed"]:
                _end(first[0])
            first = None
            continue
        try:
            data = os.read(read_fd, 64)
        except OSError:
            continue
        for signum in data:
            if signum not in SIGNALS or not _state["armed"]:
                continue
            if first is None:
                first = (signum, time.monotonic())
            elif _state["resent"] > 0:  # our own resend (see _handler), not a second signal
                _state["resent"] -= 1
            else:  # a second signal: stop now
                _end(first[0])


def _end(signum: int) -> None:
    if _state["signum"] is None:  # the handler never got to run (or only deferred) in the main thread
        _state["signum"] = received() or signum
    hard_exit(exit_code(_state["signum"]), flush=False)


def _start_watchdog() -> int:
    """The write end of the wakeup pipe (created, with its watchdog thread, once per process)."""
    global _pipe
    if _pipe is None:
        read_fd, write_fd = os.pipe()
        os.set_blocking(write_fd, False)  # set_wakeup_fd requires it
        _pipe = (read_fd, write_fd)
        threading.Thread(target=_watchdog, args=(read_fd,), name="cxrtool-interrupts", daemon=True).start()
    return _pipe[1]


@contextlib.contextmanager
def handling() -> Iterator[None]:
    """Install the SIGINT/SIGTERM handling for the block; the previous handlers come back after.

    Outside the main thread (signals cannot be handled there) the block runs unchanged.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    write_fd = _start_watchdog()
    previous = {s: signal.getsignal(s) for s in SIGNALS}
    _state.update(signum=None, pending=None, armed=True, reported=False, advice=None, pid=os.getpid(), resent=0)
    old_fd = signal.set_wakeup_fd(write_fd, warn_on_full_buffer=False)
    try:
        for s in SIGNALS:
            signal.signal(s, _handler)
        yield
    finally:
        _state["armed"] = False
        for s, h in previous.items():
            signal.signal(s, h if h is not None else signal.SIG_DFL)
        signal.set_wakeup_fd(old_fd)


def quiet_worker() -> None:
    """Pool initializer: the parent handles Ctrl-C; a worker ignores SIGINT, dies on SIGTERM,
    and dies with its parent (:func:`die_with_parent`)."""
    with contextlib.suppress(ValueError):  # not the main thread of the worker: leave it
        signal.set_wakeup_fd(-1)  # a forked worker must not wake the parent's watchdog
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    die_with_parent()


def die_with_parent() -> None:
    """Linux: ask the kernel to SIGKILL this process when the one that started it ends.

    A Ctrl-C can land in the parent between forking a pool worker and registering it in the
    pool's list of children; that worker is then never told to stop, ignores SIGINT, waits
    forever on the pool's queue and holds the parent's stdout open, so a ``cmd | next`` pipeline
    never ends (seen under load in tests/test_faults_signals.py). Elsewhere this does nothing."""
    if not sys.platform.startswith("linux"):
        return
    import ctypes

    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(None, use_errno=True).prctl(1, int(signal.SIGKILL))  # 1 = PR_SET_PDEATHSIG


__all__ = [
    "GRACE_S",
    "Interrupted",
    "advice",
    "die_with_parent",
    "exit_code",
    "handling",
    "hard_exit",
    "message",
    "quiet_worker",
    "received",
    "report",
]
