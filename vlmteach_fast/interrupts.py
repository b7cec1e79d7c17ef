"""Stop signals for the command: SIGTERM is handled as Ctrl-C is.

SIGTERM is what ``timeout``, Slurm's ``scancel``, ``docker stop`` and Kubernetes send before a SIGKILL (after 10 s to
30 s by default). Python's default for it is to die on the spot, losing the best adapter so far and a benchmark's
reports; so while ``stop_signals_as_interrupt`` is active, SIGTERM raises ``KeyboardInterrupt`` in the main thread,
exactly as SIGINT does, and every Ctrl-C path (``optimize`` keeps the best adapter, ``bench`` and ``demo`` write what
finished) runs unchanged. ``exit_code`` then gives the shell's code of the signal that stopped the run: 130 for
SIGINT, 143 for SIGTERM. See docs/reliability.md.
"""

from __future__ import annotations

import contextlib
import signal
import threading

__all__ = ["stop_signals_as_interrupt", "exit_code", "stop_name"]

_received: list[int] = []  # the stop signals received while the handler is installed, in order


def _on_sigterm(signum, frame):
    _received.append(signum)
    raise KeyboardInterrupt(f"stopped by {signal.Signals(signum).name}")


@contextlib.contextmanager
def stop_signals_as_interrupt():
    """While the block runs, SIGTERM raises ``KeyboardInterrupt`` (each time it arrives, like Ctrl-C); the previous
    handler is restored afterwards. Only the main thread can install handlers: elsewhere this does nothing."""
    _received.clear()
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.signal(signal.SIGTERM, _on_sigterm)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def exit_code() -> int:
    """The exit code of an interrupted run: 128 + the signal number, the shell's convention (143 after SIGTERM, else
    130 as for Ctrl-C)."""
    return 128 + (signal.SIGTERM if signal.SIGTERM in _received else signal.SIGINT)


def stop_name() -> str:
    """What stopped the run, for messages: "SIGTERM" or "Ctrl-C"."""
    return "SIGTERM" if signal.SIGTERM in _received else "Ctrl-C"
