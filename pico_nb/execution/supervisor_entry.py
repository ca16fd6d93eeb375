"""The supervisor's entry point: a stop in its first millisecond must wake it, not kill it.

The launcher starts this module with SIGTERM blocked, so a stop sent while the interpreter
starts stays pending; the first lines below catch it and unblock it, and only then is anything
heavy imported. Keep this module tiny and its imports to the standard library.
"""

import signal
import threading

WAKE = threading.Event()
"""Set by SIGTERM: a Lab on this host asks the supervisor to look for a stop request now."""

signal.signal(signal.SIGTERM, lambda _signum, _frame: WAKE.set())
signal.signal(signal.SIGHUP, signal.SIG_IGN)
signal.signal(signal.SIGINT, signal.SIG_IGN)
signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGTERM})

if __name__ == "__main__":
    import json
    import os
    import sys

    from pico_nb.execution.pipeline_process import launch
    from pico_nb.execution.supervisor import PLAN_ENV

    started = launch(json.loads(os.environ[PLAN_ENV]))  # output flows while the stack loads
    from pico_nb.execution.local import supervise

    sys.exit(supervise(int(sys.argv[1]), WAKE, started))
