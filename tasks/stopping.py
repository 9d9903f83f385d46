"""A stop that no exception carried out: SIGINT or SIGTERM delivered during training, whose exception was lost.

A signal's Python handler runs between two bytecodes of the main thread, wherever it happens to be; it stops the
command by raising (KeyboardInterrupt, attnflow's Interrupted, or Prefect's TerminationSignal during a flow). When
that moment falls inside code that swallows every exception, the exception is lost and the command trains on: an
object's ``__del__`` run by the garbage collector (Python prints "Exception ignored in ..." and goes on), or a
library's ``except BaseException: pass``. Once, in CI, a SIGTERM to `attnflow run` left it training to the end of
its 40 epochs (tests/test_interrupt.py; the same stop passed every other time, here and there): a lost exception is
the one way found for that to happen.

The command's main thread therefore also has the signals written to a pipe (``signal.set_wakeup_fd``: the
interpreter writes the number of every signal it catches there, whatever its Python handler does), and the training
loop reads the pipe between batches (``raise_if_stopped``). A stop signal found there means its handler's exception
did not stop the training: the handler in place now is called again, and raises on the loop's own path. The
handlers themselves are left as they are, Prefect's included.
"""

import os
import signal

STOP_SIGNALS = frozenset({signal.SIGINT, signal.SIGTERM})
_pipe: int | None = None  # the read end, non-blocking; None: not watching (a test, a Dask worker, another thread)


def watch() -> None:
    """In the command's main thread, before it runs: have every caught signal written to a pipe of its own."""
    global _pipe
    read, write = os.pipe()
    os.set_blocking(read, False)
    os.set_blocking(write, False)
    signal.set_wakeup_fd(write, warn_on_full_buffer=False)
    _pipe = read


def forget() -> None:
    """Drop the signals caught so far: a stop handled before the training began is no concern of its loop."""
    _caught()


def raise_if_stopped() -> None:
    """Between two training batches: when SIGINT or SIGTERM was caught since ``forget`` and the training still runs,
    its exception was lost; call the signal's handler again so that it raises here."""
    for number in _caught() & STOP_SIGNALS:
        handler = signal.getsignal(number)
        if callable(handler):
            handler(number, None)


def _caught() -> set[int]:
    """The signals written to the pipe since it was last read (each read once)."""
    caught = set()
    while _pipe is not None:
        try:
            chunk = os.read(_pipe, 512)
        except BlockingIOError:
            break
        if not chunk:
            break
        caught.update(chunk)
    return caught
