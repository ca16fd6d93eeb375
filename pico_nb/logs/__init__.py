"""Run logs: where a run's log lives, writing it from the pipeline's pipe, reading it back.

``locations`` names a run's log file; ``writer`` writes it (and specifies its on-disk format);
``sources`` reads bytes by offset from a file or a remote store; ``reading`` and ``following``
turn them into text and live events; ``progress_parsing`` reads stage and progress from lines;
``failures`` finds the pipeline's own last error.
"""

from pico_nb.logs.failures import failure_reason
from pico_nb.logs.following import LineReader, LogEvent, follow
from pico_nb.logs.locations import has_room, log_folder, log_path
from pico_nb.logs.progress_parsing import Progress, ProgressParser
from pico_nb.logs.reading import read_log, tail_offset
from pico_nb.logs.sources import FileLog, LogSource
from pico_nb.logs.writer import LogWriter

__all__ = [
    "FileLog",
    "LineReader",
    "LogEvent",
    "LogSource",
    "LogWriter",
    "Progress",
    "ProgressParser",
    "failure_reason",
    "follow",
    "has_room",
    "log_folder",
    "log_path",
    "read_log",
    "tail_offset",
]
