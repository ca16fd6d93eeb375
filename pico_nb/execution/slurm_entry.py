"""The Slurm batch script's first import: a signal in the job's first second must not kill it.

Slurm sends SIGTERM for a stop (`scancel --batch --signal=TERM`), a time limit or a
preemption, possibly while the interpreter is still starting. Importing this module catches it
before anything heavy is imported; keep it tiny and its imports to the standard library.
"""

import signal
import threading

WAKE = threading.Event()
"""Set by SIGTERM: the supervisor looks at once for a stop request, or for Slurm's verdict."""

signal.signal(signal.SIGTERM, lambda _signum, _frame: WAKE.set())
signal.signal(signal.SIGHUP, signal.SIG_IGN)
signal.signal(signal.SIGINT, signal.SIG_IGN)
