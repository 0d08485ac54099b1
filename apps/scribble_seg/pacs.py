"""Start a local PACS (Debian's Orthanc with DICOMweb) and load a studies folder into it as DICOM.

    python apps/scribble_seg/pacs.py --studies apps/scribble_seg/data/sample/studies   # what make serve-pacs runs
    python apps/scribble_seg/pacs.py --stop
    python apps/scribble_seg/pacs.py --install     # apt-get install orthanc orthanc-dicomweb when missing

Orthanc runs detached on 127.0.0.1 (``--port``, default 8042) and stores into ``--dir``; starting it
again when it already answers only loads what is missing. Images become MR (``--modality``) series,
``final`` labels DICOM SEG. Serve the app from it with
``--studies http://127.0.0.1:8042/dicom-web --conf dataset_conf <studies>/scribble_seg.json``.
Installs ``orthanc orthanc-dicomweb`` with apt-get when missing and run as root; otherwise prints the
install line.
"""

import argparse
import logging
import os
import sys

APP_DIR = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, APP_DIR)

from lib.datasets.orthanc import Orthanc, ensure_installed, load_studies  # noqa: E402


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--studies", help="a local studies folder to load (images, and labels under final)")
    parser.add_argument("--dir", default=os.path.join(APP_DIR, "data", "pacs"), help="Orthanc's storage folder")
    parser.add_argument("--port", type=int, default=8042)
    parser.add_argument("--modality", default="MR", choices=("CT", "MR"))
    parser.add_argument("--stop", action="store_true", help="stop the Orthanc started in --dir")
    parser.add_argument("--install", action="store_true", help="only install Orthanc when missing (make test)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    orthanc = Orthanc(args.dir, args.port, detach=True)
    if args.install:
        try:
            ensure_installed()
        except (RuntimeError, OSError) as e:
            print(e, file=sys.stderr)
            return 1
        return 0
    if args.stop:
        orthanc.stop()
        return 0
    try:
        orthanc.start()
    except RuntimeError as e:
        print(e, file=sys.stderr)
        return 1
    if args.studies:
        loaded = load_studies(orthanc, args.studies, args.modality)
        print(f"{len(loaded)} series from {args.studies} are in Orthanc")
    print(f"PACS up: {orthanc.dicomweb}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
