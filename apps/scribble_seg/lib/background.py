"""Background work (training, scoring) yields the CPU to the annotator's requests.

MONAI Label runs ``/train``, scoring and batch inference in subprocesses
(``python -m monailabel.interfaces.utils.app``) that rebuild the app. On a machine with a few
cores a training takes every core, and a refinement request sent meanwhile waits its turn: on 2
cores a 512 x 512 x 100 CT's round trip doubles. An app built in such a subprocess lowers its own
priority (``os.nice``), so the scheduler serves the server first; the training still runs at full
speed whenever nobody is annotating. The server's process, and a training run in it
(``run_sync``), keep their priority.
"""

import logging
import os
import sys

logger = logging.getLogger(__name__)

BACKGROUND_MAIN = "monailabel.interfaces.utils.app"
"""The module MONAI Label runs as ``__main__`` in its training and scoring subprocesses."""


def is_background_task() -> bool:
    spec = getattr(sys.modules.get("__main__"), "__spec__", None)
    return getattr(spec, "name", None) == BACKGROUND_MAIN


def yield_to_server(niceness: int) -> bool:
    """In a background subprocess, lower this process's priority by ``niceness`` (0..19).

    Returns whether it did.
    """
    if isinstance(niceness, bool) or not isinstance(niceness, int) or not 0 <= niceness <= 19:
        raise ValueError(f"conf 'background_niceness' must be an integer in 0..19, got {niceness!r}")
    if not niceness or not is_background_task():
        return False
    lower_priority(niceness)
    logger.info(f"background task: niceness +{niceness}")
    return True


def lower_priority(niceness: int) -> None:
    """``nice`` every thread of this process: Linux keeps a niceness per thread, and the thread
    pools torch or BLAS started while the app was built would otherwise keep competing at full
    priority. Threads started later inherit it."""
    tasks = os.listdir("/proc/self/task") if os.path.isdir("/proc/self/task") else [str(os.getpid())]
    for tid in map(int, tasks):
        try:
            os.setpriority(os.PRIO_PROCESS, tid, min(19, os.getpriority(os.PRIO_PROCESS, tid) + niceness))
        except (ProcessLookupError, PermissionError):
            pass  # a thread that ended meanwhile
