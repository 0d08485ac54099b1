"""The result writer's libraries loaded while the server starts, not on the first result.

MONAI Label writes every inference result through ITK, whose Python wrapping loads its modules
lazily: the first image built from an array and the first file written load ~1.7 s of them. Left
to the first request, an annotator's first stroke of the session waits that long on top of the
solve; loaded on a thread at start-up, nobody waits. ITK's lazy loader holds one lock, so a request
arriving meanwhile waits for the modules instead of loading them a second time.
"""

import logging
import os
import tempfile
import threading

import numpy as np

logger = logging.getLogger(__name__)


def load_result_writer() -> None:
    """Write a 2 x 2 x 2 label map as MONAI Label writes results (NIfTI through ITK), then delete it."""
    from monailabel.transform.writer import write_itk

    fd, path = tempfile.mkstemp(suffix=".nii.gz")
    os.close(fd)
    try:
        write_itk(np.zeros((2, 2, 2), np.uint8), path, np.eye(4), None, False)
    finally:
        os.unlink(path)


def warm_result_writer() -> threading.Thread:
    """:func:`load_result_writer` on a daemon thread (a failure is logged: the first result then
    loads the modules itself, as it would have)."""

    def run():
        try:
            load_result_writer()
        except Exception as e:  # noqa: BLE001 -- a warm-up is an optimisation
            logger.warning(f"loading the result writer ahead failed: {e}")

    thread = threading.Thread(target=run, name="warm-result-writer", daemon=True)
    thread.start()
    return thread
