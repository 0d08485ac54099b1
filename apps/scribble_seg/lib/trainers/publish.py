"""Publishing that a killed training cannot corrupt.

MONAI Label's ``PublishStatsAndModel`` copies ``train_stats.json`` (read by every ``/info``) and
the best weights onto the published ones with ``shutil.copy``: a training stopped by
``DELETE /train/`` (or a crash) during the copy leaves a half-written model behind, and ``/info``
can read a half-written stats file. Here every copy goes to a temporary file in the destination's
folder and is moved into place with ``os.replace`` (atomic on POSIX and Windows), and the model's
geometry sidecar (``<name>.json``) is published with the weights it describes.
"""

import datetime
import filecmp
import json
import logging
import os
import shutil
import tempfile
from typing import Any, Dict, Optional

from monailabel.tasks.train.handler import PublishStatsAndModel, prepare_stats

logger = logging.getLogger(__name__)


def atomic_copy(src: str, dst: str) -> None:
    """Copy ``src`` to ``dst`` so that readers see the old file or the new one, never a part."""
    folder = os.path.dirname(os.path.abspath(dst))
    os.makedirs(folder, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=folder, prefix=".publishing_", suffix=os.path.splitext(dst)[1])
    os.close(fd)
    try:
        shutil.copyfile(src, tmp)
        os.replace(tmp, dst)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


class AtomicPublisher(PublishStatsAndModel):
    """``PublishStatsAndModel`` with atomic copies, publishing ``meta_file`` next to the weights."""

    def __init__(
        self,
        *args,
        meta_file: Optional[str] = None,
        meta_publish_path: Optional[str] = None,
        extra_stats: Optional[Dict[str, Any]] = None,
        **kwargs,
    ):
        super().__init__(*args, **kwargs)
        self.meta_file, self.meta_publish_path = meta_file, meta_publish_path
        self.extra_stats = extra_stats if extra_stats is not None else {}

    def iteration_completed(self):
        """The parent's step (stats file, then the best weights if they changed), copies made atomic;
        ``extra_stats`` (a live dict the trainer adds recipe figures to) joins every stats file."""
        stats = {**prepare_stats(self.start_ts, self.trainer, self.evaluator), **self.extra_stats}
        run_stats = os.path.join(self.output_dir, datetime.datetime.now().strftime(f"stats_{self.run_id}.json"))
        with open(run_stats, "w") as f:
            json.dump(stats, f, indent=2)
        if self._stats_path:
            atomic_copy(run_stats, self._stats_path)

        best = os.path.join(self.output_dir, self._key_metric_filename)
        if self._publish_path and os.path.exists(best):
            if not os.path.exists(self._publish_path) or not filecmp.cmp(self._publish_path, best, shallow=False):
                atomic_copy(best, self._publish_path)
                logger.info(f"New Model published: {best} => {self._publish_path}")
            if self.meta_file and self.meta_publish_path:
                atomic_copy(self.meta_file, self.meta_publish_path)
        return stats
