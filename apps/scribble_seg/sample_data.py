"""Build the studies folder that ``make serve`` serves (or an imported real dataset).

    python apps/scribble_seg/sample_data.py                      # 20 phantoms -> apps/scribble_seg/data/sample
    python apps/scribble_seg/sample_data.py --source citi168     # hippocampus -> apps/scribble_seg/data/citi168
    python apps/scribble_seg/sample_data.py --source itk-brain   # T1 head     -> apps/scribble_seg/data/itk-brain

Serve a real dataset with its labels, e.g. ``--conf labels '{"hippocampus": 1}'`` (printed at the end).
"""

import argparse
import json
import logging
import os
import sys

APP_DIR = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, APP_DIR)

from lib.datasets.sample import SOURCES, build_studies  # noqa: E402


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--source", default="phantoms", choices=sorted(SOURCES))
    parser.add_argument("--out", help="output folder (default apps/scribble_seg/data/<sample|source>)")
    parser.add_argument("-n", type=int, default=20, help="number of volumes (phantoms)")
    parser.add_argument("--scribbled", type=int, default=None, help="volumes given simulated scribbles (default 60%%)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--force", action="store_true", help="rebuild even if up to date")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)

    out = args.out or os.path.join(APP_DIR, "data", "sample" if args.source == "phantoms" else args.source)
    m = build_studies(out, args.source, n=args.n, scribbled=args.scribbled, seed=args.seed, force=args.force)
    n_scribbled = sum(c["scribbled"] for c in m["cases"].values())
    print(
        f"{out}/studies: {len(m['cases'])} volumes, {n_scribbled} with scribbles (tag final); "
        f"ground truth in {out}/groundtruth"
    )
    print(f"serve with: make serve STUDIES={out}/studies LABELS='{json.dumps(m['labels'])}'")


if __name__ == "__main__":
    main()
