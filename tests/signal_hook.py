"""Run the ``vlmteach-fast`` command with a signal sent to itself at a known point (no sleeps, no races).

    python tests/signal_hook.py MODULE:ATTR[.ATTR] CALL SIGNAL -- solve --pipeline ...

wraps the function or method at MODULE:ATTR so that its CALL-th call (1-based) sends SIGNAL (INT, KILL, TERM) to
this process before running it, then runs ``vlmteach_fast.cli.main`` with the arguments after ``--`` and exits with
its return code. SIGINT reaches Python as ``KeyboardInterrupt`` inside the wrapped call, exactly as a Ctrl-C typed
at that moment would; SIGKILL stops the process there. The tests' folder is put on ``sys.path`` (for ``py:``
factories and fixtures).
"""

import functools
import importlib
import os
import signal
import sys


def install(target: str, call: int, sig: int) -> None:
    module_name, _, attr_path = target.partition(":")
    owner = importlib.import_module(module_name)
    *parents, name = attr_path.split(".")
    for p in parents:
        owner = getattr(owner, p)
    original = getattr(owner, name)
    count = 0

    @functools.wraps(original)
    def wrapper(*args, **kwargs):
        nonlocal count
        count += 1
        if count == call:
            print(f"signal_hook: sending {signal.Signals(sig).name} in call {call} of {target}", file=sys.stderr,
                  flush=True)
            os.kill(os.getpid(), sig)
        return original(*args, **kwargs)

    setattr(owner, name, wrapper)


def main(argv) -> int:
    sep = argv.index("--")
    target, call, sig = argv[:sep]
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    # A process started in the background by a non-interactive shell inherits SIGINT ignored, and Python then installs
    # no KeyboardInterrupt handler; a Ctrl-C at a terminal meets the default one, so that is what the hook restores.
    signal.signal(signal.SIGINT, signal.default_int_handler)
    install(target, int(call), getattr(signal, f"SIG{sig}"))
    from vlmteach_fast.cli import main as cli_main

    return cli_main(argv[sep + 1:])


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
