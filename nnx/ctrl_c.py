"""Ctrl-C: ``fit`` stops after the current step (StopOnInterrupt); the command line answers it with
one line from the entry point's first instruction on (CtrlC)."""

from __future__ import annotations

import contextlib
import signal
import sys
import threading
from typing import Any


class CtrlC:
    """The SIGINT handler while the command runs: it notes the Ctrl-C and raises KeyboardInterrupt.
    The note matters because an interrupted import may reach us as an ImportError (NumPy's C modules
    turn it into one)."""

    def __init__(self) -> None:
        self.received = False
        self._print_unraisable = sys.unraisablehook

    def __call__(self, signum: int, frame: Any) -> None:
        self.received = True
        raise KeyboardInterrupt

    def unraisable(self, unraisable: Any) -> None:
        """``sys.unraisablehook`` while the command runs. A KeyboardInterrupt raised where Python can
        only print it ("Exception ignored in": a weakref callback of the import system, a __del__)
        is noted already, and the entry point reports it in its one line; anything else is printed."""
        if not (issubclass(unraisable.exc_type, KeyboardInterrupt) and self.received):
            self._print_unraisable(unraisable)


def raise_if_interrupted() -> None:
    """Let a Ctrl-C that something swallowed on the way (see CtrlC) take effect now."""
    handler = signal.getsignal(signal.SIGINT)
    if isinstance(handler, CtrlC) and handler.received:
        raise KeyboardInterrupt


def forget_escaped_interrupt() -> None:
    """Let the process end with the status that the command returns after a Ctrl-C (130).

    CPython notes a KeyboardInterrupt that escapes exec() or eval() of a string, even one caught
    later, and then ends the process by SIGINT at exit instead (a shell shows 130 either way; a
    parent process sees -2). dataclasses and namedtuple build their methods that way, so a Ctrl-C
    while such a module is imported does it. Each exec() of a string starts by clearing the note
    (Python/pythonrun.c, run_eval_code_obj; tests/test_cli.py checks that this still holds).
    """
    exec("")


class StopOnInterrupt(contextlib.AbstractContextManager):
    """While active (in the main thread), Ctrl-C sets ``requested`` instead of raising mid-step."""

    def __enter__(self) -> StopOnInterrupt:
        self.requested = False
        self._previous = None
        if threading.current_thread() is threading.main_thread():
            self._previous = signal.signal(signal.SIGINT, self._handle)
        return self

    def _handle(self, signum: int, frame: Any) -> None:
        if self.requested:  # a second Ctrl-C: stop now
            raise KeyboardInterrupt
        self.requested = True

    def __exit__(self, *exc: Any) -> None:
        if self._previous is not None:
            signal.signal(signal.SIGINT, self._previous)
