"""The result writer's ITK modules are loaded at start-up, so the first result written loads none."""

import json
import os
import subprocess
import sys

APP = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "apps", "scribble_seg")

PROBE = """
import json, os, tempfile
import itk, numpy as np
from monailabel.transform.writer import write_itk
from lib.infers.warmup import warm_result_writer

before = set(itk.loaded_lazy_modules)
warm_result_writer().join()
warmed = set(itk.loaded_lazy_modules)
written = {}
for suffix in (".nii.gz", ".nrrd"):  # what Slicer and OHIF ask results in
    fd, path = tempfile.mkstemp(suffix=suffix)
    os.close(fd)
    write_itk(np.ones((40, 30, 5), np.uint8), path, np.diag([0.7, 0.7, 3.0, 1.0]), "uint8", False)
    written[suffix] = os.path.getsize(path)
    os.unlink(path)
print(json.dumps({"before": sorted(before), "warm": sorted(warmed - before),
                  "by_writes": sorted(set(itk.loaded_lazy_modules) - warmed), "sizes": written}))
"""


def test_after_the_warm_up_writing_a_result_loads_no_itk_module():
    # a fresh interpreter: in this one other tests may have loaded ITK's modules already
    out = subprocess.run([sys.executable, "-c", PROBE], cwd=APP, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    got = json.loads(out.stdout.strip().splitlines()[-1])
    assert got["before"] == [] and "ITKIOImageBase" in got["warm"], got
    assert got["by_writes"] == [], got  # without the warm-up the first write loads ~1.7 s of modules
    assert all(size > 0 for size in got["sizes"].values()), got
