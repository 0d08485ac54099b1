"""The annotation loop: does ``next_to_scribble`` save the annotator scribbled volumes?

Simulated annotator, per seed and strategy, on the real app (in-process train / scoring /
next_sample / infer tasks): start with ``--initial`` scribbled phantoms and a pool of unlabeled
ones; each round the strategy picks a pool volume, its scribbles are simulated from the dense
truth and saved (tag ``final``), the model retrains with a fixed small budget -- from its previous
weights, or from the same seeded initial weights every round (``--retrain scratch``, a new training
run name per round: MONAI Label resumes a run of the same name from its checkpoint whatever
``pretrained`` says; the model then depends on the scribbled set only, not on the order or on the
previous round's training noise) --
and the Dice on held-out test phantoms (never in the pool) is recorded. Strategies:
``next_to_scribble`` (MC-dropout uncertainty, scored before each pick) and ``random``; the same
seeds, pools, scribbles and budgets for both.

    python benchmarks/annotation_loop [--seeds 3 --rounds 6 --pool 8 --test 6]
    python benchmarks/annotation_loop --second-protocol 0.34 --rounds 4   # a two-protocol pool
    python benchmarks/annotation_loop --seed-list 0,2 --workdir A &       # seeds split over processes,
    python benchmarks/annotation_loop --seed-list 1,3 --workdir B &       # one per core ...
    python benchmarks/annotation_loop --from-json A/partial.json B/partial.json   # ... merged in one report
                                                    # (also two runs with --strategies next_to_scribble / random)
    python benchmarks/annotation_loop --second-protocol 0.25 --pool 12 --rounds 4 --retrain scratch --whole-pool \
        --epochs 2 --epoch-length 50 --target-spacing '[3, 3, 8]' --patch-size '[64, 64, 8]'   # CPU-sized
    python benchmarks/annotation_loop --from-json A/partial.json B/partial.json --rescore A B \
        --largest-component false --name N                # its curves re-measured without the clean-up
    python benchmarks/annotation_loop --extend --workdir A --rounds 5   # a --retrain scratch run in A continued
                                                    # to 5 rounds: A/partial_5_rounds.json
    python benchmarks/annotation_loop --from-json R.json --replicate A B --training-seeds 101,102 \
        --name N                                    # its last point retrained with two more training seeds
    python benchmarks/annotation_loop --from-json R.json --replicate A B --training-seeds 101 \
        --replicate-round 3                         # ... or its point after round 3, with one more
    python benchmarks/annotation_loop --from-json R.json --averaged R3.json R5.json   # R's report, those
                                                    # points the mean of their trainings: R_averaged.md

Reports the learning curves (mean over seeds), the area under them, the scribbled volumes from
which on a curve stays at or above 95 % of the final Dice (the whole pool's, its own, ``random``'s,
the better of the two strategies'; mean of the per-seed counts), the same count on the mean curves
with a seed-bootstrap interval (the issue's "mean over >= 3 seeds"); writes
``benchmarks/results/annotation_loop.md``, ``.json`` and ``annotation_loop.png`` (or ``--name``).


The package: :mod:`loop` runs the simulated annotator, :mod:`report` summarises and writes a run's
report, :mod:`replicates` re-measures and retrains a finished run's points, :mod:`runs` merges runs
split over processes. Run it as a directory: ``python benchmarks/annotation_loop ...``.
"""

import argparse
import json
import os
import shutil
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))  # benchmarks/: common

from loop import STRATEGIES, largest_component, run, second_protocol, whole_pool  # noqa: E402
from replicates import averaged, check_replicates_run, replicate, replicate_report, rescore  # noqa: E402
from report import report  # noqa: E402
from runs import latest_partial, merge, partial_name, result_name  # noqa: E402

from common import machine  # noqa: E402


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--seed-list", default=None, help="comma-separated seeds to run (default: 0..seeds-1)")
    parser.add_argument(
        "--initial-epochs", type=int, default=None, help="epochs of the shared initial model (default: --epochs)"
    )
    parser.add_argument(
        "--strategies",
        default=",".join(STRATEGIES),
        help="comma-separated strategies to run (an arm rerun reuses the workdir's initial models)",
    )
    parser.add_argument("--name", default=None, help="results file name (default: annotation_loop[_protocols])")
    parser.add_argument("--initial", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=6)
    parser.add_argument("--pool", type=int, default=8)
    parser.add_argument("--test", type=int, default=6)
    parser.add_argument("--model", default="pce")
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--epoch-length", type=int, default=20)
    parser.add_argument("--passes", type=int, default=10)
    parser.add_argument(
        "--retrain",
        choices=("continue", "scratch"),
        default="continue",
        help="each round: continue from the previous weights (default) or retrain from the seeded "
        "initial weights, so that the model depends only on the scribbled set",
    )
    parser.add_argument(
        "--whole-pool",
        action="store_true",
        help="also train (same budget, from scratch) on the whole pool scribbled: the final Dice "
        "the volumes to reach are counted against",
    )
    parser.add_argument("--target-spacing", default=None, help="app conf target_spacing, e.g. '[3, 3, 8]'")
    parser.add_argument("--patch-size", default=None, help="app conf patch_size, e.g. '[64, 64, 16]'")
    parser.add_argument(
        "--second-protocol",
        type=float,
        default=0.0,
        help="fraction of pool and test phantoms with dark-blood contrast (default: none)",
    )
    parser.add_argument(
        "--largest-component",
        default="class",
        help="clean-up of the evaluated segmentations: class (the app's default), object, false",
    )
    parser.add_argument("--workdir", default=None)
    parser.add_argument(
        "--extend",
        action="store_true",
        help="continue the --retrain scratch run in --workdir (its partial.json, or the last "
        "--extend's: its settings, seeds and strategies) to --rounds rounds; written to "
        "partial_<rounds>_rounds.json there",
    )
    parser.add_argument(
        "--rescore",
        nargs="+",
        default=None,
        metavar="WORKDIR",
        help="with --from-json: re-measure its curves from the weights saved in these workdirs "
        "with --largest-component (a --retrain scratch run; written under --name)",
    )
    parser.add_argument(
        "--replicate",
        nargs="+",
        default=None,
        metavar="WORKDIR",
        help="with --from-json (a --retrain scratch run) and --training-seeds: retrain each arm's "
        "last scribbled set with those seeds from the workdirs' data; the training noise of "
        "the last point (written under --name)",
    )
    parser.add_argument(
        "--training-seeds",
        default="101,102",
        help="comma-separated train request seeds of --replicate (default: 101,102)",
    )
    parser.add_argument(
        "--replicate-round",
        type=int,
        default=None,
        metavar="R",
        help="with --replicate: retrain the scribbled sets after round R instead of the last "
        "(written to <name>_replicates_round<R> by default)",
    )
    parser.add_argument(
        "--averaged",
        nargs="+",
        default=None,
        metavar="JSON",
        help="with --from-json: its report with every point these --replicate runs retrained "
        "replaced by the mean of the trainings (default name: <name>_averaged)",
    )
    parser.add_argument(
        "--replicates-from",
        default=None,
        metavar="JSON",
        help="with --from-json: report a --replicate run's trainings against this run's curves "
        "(the same run measured with another clean-up; written under --name)",
    )
    parser.add_argument(
        "--from-json",
        nargs="+",
        default=None,
        help="rewrite the report of earlier runs' JSONs, merging their seeds (no loop; under --name if given)",
    )
    args = parser.parse_args()
    if args.replicate_round is not None and not args.replicate:
        parser.error("--replicate-round: give the --replicate workdirs too")
    if args.from_json:
        result = merge([json.load(open(p)) for p in args.from_json])
        replicates_name = args.name or result_name(result["args"]) + "_replicates" + (
            f"_round{args.replicate_round}" if args.replicate_round else ""
        )
        if args.replicate:
            replicate(
                result,
                args.replicate,
                [int(t) for t in args.training_seeds.split(",")],
                replicates_name,
                args.replicate_round,
            )
            return
        if args.averaged:
            result = averaged(result, [json.load(open(p)) for p in args.averaged])
            result["args"]["name"] = args.name or result_name(result["args"]) + "_averaged"
            report(result, result["args"]["name"])
            return
        if args.replicates_from:  # the same trainings reported against another clean-up's curves of the run
            out = {k: v for k, v in json.load(open(args.replicates_from)).items() if k != "counts"}  # (its source's)
            out["source"] = result
            if os.path.basename(args.replicates_from) != f"{replicates_name}.json":  # (same name: rewritten)
                out["reported_from"] = os.path.basename(args.replicates_from)
            check_replicates_run(out, result, largest_component(result["args"]), args.replicates_from)
            replicate_report(out, replicates_name)
            return
        if args.rescore:
            result = rescore(result, args.rescore, args.largest_component)
        name = args.name or (result_name(result["args"]) + f"_{args.largest_component}" if args.rescore else None)
        if name:  # otherwise the runs' own name (or the default one: not written into their command)
            result["args"]["name"] = name
        report(result, result_name(result["args"]))
        return
    seeds = [int(s) for s in args.seed_list.split(",")] if args.seed_list else list(range(args.seeds))
    strategies = args.strategies.split(",")
    earlier = None  # with --extend: the run continued
    if args.extend:
        if not args.workdir:
            parser.error("--extend: give the --workdir of the run to continue")
        earlier = latest_partial(args.workdir)
        if earlier["args"].get("retrain") != "scratch":
            parser.error(
                "--extend: only a --retrain scratch run is continued (its rounds do not depend on each "
                "other's training)"
            )
        if args.rounds <= earlier["args"]["rounds"]:
            parser.error(f"--extend: --rounds {args.rounds}, the run has {earlier['args']['rounds']} already")
        args = argparse.Namespace(**{**vars(args), **earlier["args"], "rounds": args.rounds})
        seeds, strategies = earlier["seed_list"], [s for s in STRATEGIES if earlier["runs"][s]]
    if not set(strategies) <= set(STRATEGIES):
        parser.error(f"--strategies: choose from {', '.join(STRATEGIES)}, got {args.strategies!r}")
    args.workdir = args.workdir or tempfile.mkdtemp(prefix="annotation_loop_")
    os.makedirs(args.workdir, exist_ok=True)

    from lib.datasets.sample import build_studies

    runs = {s: [] for s in STRATEGIES}
    protocols = []  # per seed: the dark-blood case ids
    start = time.time()
    not_settings = ("workdir", "from_json", "seed_list", "strategies", "extend", "rescore")
    result = {
        "machine": machine(),
        "args": {k: v for k, v in vars(args).items() if k not in not_settings},
        "seed_list": seeds,
        "runs": runs,
        "dark_blood_cases": protocols,
    }
    references = []  # per seed, with --whole-pool: the model trained on the whole pool
    if args.whole_pool:
        result["whole_pool"] = references
    if earlier:
        result["extended_from_rounds"] = earlier.get("extended_from_rounds", []) + [earlier["args"]["rounds"]]
    for k, seed in enumerate(seeds):
        root = os.path.join(args.workdir, f"data_{seed}")
        n = args.initial + args.pool + args.test
        manifest = build_studies(root, "phantoms", n=n, scribbled=args.initial, seed=100 * seed)
        cases = sorted(manifest["cases"])
        pool, test = cases[args.initial : args.initial + args.pool], cases[args.initial + args.pool :]
        os.makedirs(os.path.join(root, "test"), exist_ok=True)
        for case in test:  # out of the datastore: never a candidate (already, when a rerun reuses the workdir)
            if not os.path.exists(os.path.join(root, "test", f"{case}.nii.gz")):
                shutil.move(os.path.join(root, "studies", f"{case}.nii.gz"), os.path.join(root, "test"))
        odd = second_protocol(root, pool, args.second_protocol) + second_protocol(root, test, args.second_protocol)
        protocols.append(odd)
        start_model = os.path.join(args.workdir, f"initial_model_{seed}")
        for strategy in strategies:
            done = earlier["runs"][strategy][k] if earlier else None
            runs[strategy].append(run(strategy, seed, args, root, manifest, pool, test, start_model, done))
        if args.whole_pool:  # (an extended run keeps its reference: the pool is the same)
            references.append(
                earlier["whole_pool"][k] if earlier else whole_pool(seed, args, root, manifest, pool, test)
            )
        result["minutes"] = round((time.time() - start) / 60 + (earlier["minutes"] if earlier else 0), 1)
        result["args"]["seeds"], result["seed_list"] = len(protocols), seeds[: len(protocols)]
        partial = partial_name(args.rounds if earlier else None)
        with open(os.path.join(args.workdir, partial), "w") as f:  # seeds done so far, for --from-json
            json.dump(result, f, indent=1)
    if set(strategies) == set(STRATEGIES):  # a single-strategy run is joined to the other by --from-json
        report(result, result_name(result["args"]))


if __name__ == "__main__":
    main()
