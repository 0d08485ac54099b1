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

    python benchmarks/annotation_loop.py [--seeds 3 --rounds 6 --pool 8 --test 6]
    python benchmarks/annotation_loop.py --second-protocol 0.34 --rounds 4   # a two-protocol pool
    python benchmarks/annotation_loop.py --seed-list 0,2 --workdir A &       # seeds split over processes,
    python benchmarks/annotation_loop.py --seed-list 1,3 --workdir B &       # one per core ...
    python benchmarks/annotation_loop.py --from-json A/partial.json B/partial.json   # ... merged in one report
                                                    # (also two runs with --strategies next_to_scribble / random)
    python benchmarks/annotation_loop.py --second-protocol 0.25 --pool 12 --rounds 4 --retrain scratch --whole-pool \
        --epochs 2 --epoch-length 50 --target-spacing '[3, 3, 8]' --patch-size '[64, 64, 8]'   # CPU-sized
    python benchmarks/annotation_loop.py --from-json A/partial.json B/partial.json --rescore A B \
        --largest-component false --name N                # its curves re-measured without the clean-up
    python benchmarks/annotation_loop.py --extend --workdir A --rounds 5   # a --retrain scratch run in A continued
                                                    # to 5 rounds: A/partial_5_rounds.json
    python benchmarks/annotation_loop.py --from-json R.json --replicate A B --training-seeds 101,102 \
        --name N                                    # its last point retrained with two more training seeds
    python benchmarks/annotation_loop.py --from-json R.json --replicate A B --training-seeds 101 \
        --replicate-round 3                         # ... or its point after round 3, with one more
    python benchmarks/annotation_loop.py --from-json R.json --averaged R3.json R5.json   # R's report, those
                                                    # points the mean of their trainings: R_averaged.md

Both strategies of a seed start from **one** initial model (trained once, ``--initial-epochs``, on the
initial volumes, then copied into the second strategy's app), so their round-0 Dice is identical and
the curves differ only by the volumes picked.

``--second-protocol F``: a fraction ``F`` of the pool and of the test phantoms comes from a second
acquisition protocol, dark-blood contrast (intensities mirrored: ``max - x``), as a multi-centre
study mixes scanners; the initial scribbled volumes are all of the common, bright-blood protocol.
All phantoms alike (the default) leaves uncertainty sampling little to find; a pool with a minority
protocol is the case it exists for. Results go to ``annotation_loop_protocols.*`` then.

``--whole-pool``: per seed, one more model with the same budget from scratch on every pool volume
scribbled -- the final Dice an annotator reaches by scribbling them all, one target for both
strategies (the strategies' own final Dice differ with what each has picked by the last round).

``--extend``: continues the ``--retrain scratch`` run of ``--workdir`` (its ``partial.json``, or
the last ``--extend``'s: its settings, seeds and strategies) to ``--rounds`` rounds. Each arm is
rebuilt as the run left it -- its saved weights, the volumes it scribbled (the same simulated
scribbles) and, for ``random``, its draws replayed and checked against its picks -- so the
continued curve is the one a longer run
would have drawn: a round's model depends on the scribbled set only.

``--largest-component``: the clean-up of the evaluated segmentations, as the infer request's
parameter. The app's default, ``class``, keeps the largest connected component of each structure:
when a partly trained model's false-positive blob outgrows the structure it keeps the blob and
the case scores 0 -- a test Dice that jumps between 0 and ~0.9 with small changes of the model;
``false`` scores the network's own argmax. ``--from-json R.json --rescore W [W ...]`` re-measures
a ``--retrain scratch`` run's curves from the weights it saved in its workdirs (the initial model
and each round's run) with another clean-up, without retraining: the picks never depend on the
test Dice, and ``class`` reproduces the loop's own per-case Dice exactly.

``--replicate``: how much of a curve's step is the training's own noise. Each arm's last
scribbled set (or the one after ``--replicate-round R``; same volumes, same simulated scribbles --
checked against the loop's) is trained again from scratch with other train request seeds (initial
weights and patch order), the same budget; the report gives the per-seed spread, the training
standard deviation pooled over arms and seeds, the strategies' final Dice as the mean of the
trainings, and the volume counts against that less noisy final. ``--averaged`` then rewrites the
run's report with each replicated point the mean of its trainings, every measure included.

Reports the learning curves (mean over seeds), the area under them, the scribbled volumes from
which on a curve stays at or above 95 % of the final Dice (the whole pool's, its own, ``random``'s,
the better of the two strategies'; mean of the per-seed counts), the same count on the mean curves
with a seed-bootstrap interval (the issue's "mean over >= 3 seeds"); writes
``benchmarks/results/annotation_loop.md``, ``.json`` and ``annotation_loop.png`` (or ``--name``).
"""

import argparse
import filecmp
import json
import os
import re
import shutil
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import nibabel as nib  # noqa: E402
import numpy as np  # noqa: E402

from common import RESULTS, machine, make_app  # noqa: E402

STRATEGIES = ("next_to_scribble", "random")
GEOMETRY_KEYS = ("target_spacing", "patch_size")
"""Arguments passed to the app's conf under the same name (``--target-spacing`` -> ``target_spacing``)."""


def loop_app(args, work, root, seed):
    """The app of one arm (a fresh copy serving ``root/studies``) and its per-round train request."""
    app = make_app(
        work,
        os.path.join(root, "studies"),
        {
            "models": args.model,
            "al_model": args.model,
            "al_passes": str(args.passes),
            "al_retrain_after": "0",
            **geometry_conf(args),
        },
    )
    app._strategies["random"].rng.seed(10_000 + seed)  # reproducible picks, independent of the trainings
    budget = {
        "model": args.model,
        "max_epochs": args.epochs,
        "epoch_length": args.epoch_length,
        "seed": seed,
        "train_batch_size": 2,
        "val_split": 0.0,
        "device": "cpu",
    }
    return app, budget


def fresh_run(budget, model_dir, model, name):
    """``budget`` as a training run of its own, ``name``, from the request seed's initial weights.
    MONAI Label resumes a training from the best checkpoint of an earlier run of the same name
    (``model/<model>/<name>/model.pt``) whatever ``pretrained`` says, so a training from scratch
    needs a name that no earlier training of the app used (checked here)."""
    out = os.path.join(model_dir, model, name)
    if os.path.exists(out):
        raise RuntimeError(f"{out} exists: a training named {name!r} would resume from its checkpoint")
    return {**budget, "name": name, "pretrained": False}


def evaluate(app, args, root, test, convention):
    """Mean Dice over classes of the app's model on each held-out test phantom: ``{case: dice}``."""
    from lib.metrics import dice_per_class

    scores = {}
    for case in test:
        res = app.infer(
            {
                "model": args.model,
                "image": os.path.join(root, "test", f"{case}.nii.gz"),
                "device": "cpu",
                "largest_component": largest_component(vars(args)),
            }
        )
        pred = np.asarray(nib.load(res["file"]).dataobj)
        os.unlink(res["file"])
        truth = np.asarray(nib.load(os.path.join(root, "groundtruth", f"{case}.nii.gz")).dataobj)
        scores[case] = float(np.nanmean(dice_per_class(pred, truth, convention.num_classes).numpy()))
    return scores


def largest_component(args: dict) -> str:
    """The clean-up of the evaluated segmentations (``--largest-component``; runs before it was an
    option used the app's default, ``class``)."""
    return args.get("largest_component") or "class"


def arm_dir(workdirs, strategy, seed):
    """``(workdir, its folder of the arm)``: whichever of ``workdirs`` ran ``strategy`` on ``seed``."""
    for w in workdirs:
        if os.path.isdir(os.path.join(w, f"{strategy}_{seed}", "app", "model")):
            return w, os.path.join(w, f"{strategy}_{seed}")
    raise FileNotFoundError(f"no workdir of {workdirs} holds {strategy}_{seed}")


def data_dir(workdirs, seed):
    """The seed's phantoms (``data_<seed>``: studies, test, groundtruth) in the first of ``workdirs`` holding them."""
    return next(os.path.join(w, f"data_{seed}") for w in workdirs if os.path.isdir(os.path.join(w, f"data_{seed}")))


def saved_models(workdirs, strategy, seed, model, rounds):
    """The weights a ``--retrain scratch`` loop published at each point of its curve: the seed's
    initial model, then each round's run (its best checkpoint is what was published), found in
    whichever of ``workdirs`` ran that strategy and seed."""
    w, arm = arm_dir(workdirs, strategy, seed)
    return [os.path.join(w, f"initial_model_{seed}", f"{model}.pt")] + [
        os.path.join(arm, "app", "model", model, f"round_{r + 1}", "model.pt") for r in range(rounds)
    ]


def rescore(result, workdirs, mode):
    """``result`` with every curve re-measured from the saved weights (:func:`saved_models`) with
    the segmentations cleaned up by ``mode`` (``largest_component``: ``class``, ``object``,
    ``false``); the picks are the loop's (they never depend on the test Dice)."""
    from lib.scribbles.convention import ScribbleConvention

    args = argparse.Namespace(**{**result["args"], "largest_component": mode})
    if args.retrain != "scratch":
        raise ValueError("only --retrain scratch runs keep every round's weights")
    if "whole_pool" in result:
        raise ValueError("the --whole-pool reference is not re-measured: its Dice would keep the loop's clean-up")
    out = json.loads(json.dumps(result))
    out["args"]["largest_component"], out["rescored"] = mode, True
    for strategy in STRATEGIES:  # (a single-strategy run's other arm is empty)
        for k, seed in enumerate(result["seed_list"][: len(result["runs"][strategy])]):
            models = saved_models(workdirs, strategy, seed, args.model, args.rounds)
            root = data_dir(workdirs, seed)
            convention = ScribbleConvention(json.load(open(os.path.join(root, "sample.json")))["labels"])
            test = sorted(result["runs"][strategy][k]["per_case"][0])  # the cases the loop measured
            per_case = []
            with tempfile.TemporaryDirectory(prefix="rescore_") as work:
                app, _ = loop_app(args, work, root, seed)
                for i, weights in enumerate(models):
                    publish(app, args.model, weights, models[0], i)
                    per_case.append(evaluate(app, args, root, test, convention))
            out["runs"][strategy][k].update({"curve": [mean_dice(pc) for pc in per_case], "per_case": per_case})
            print(
                f"{strategy} seed {seed} ({mode}): {' / '.join(f'{mean_dice(pc):.3f}' for pc in per_case)}", flush=True
            )
    return out


def publish(app, model, weights, initial, stamp):
    """Serve ``weights`` (a saved ``.pt``) as ``app``'s ``model``, with the ``.json`` saved beside
    the seed's ``initial`` model; ``stamp``: a new mtime per call, so the infer task reloads."""
    model_dir = os.path.join(app.app_dir, "model")
    os.makedirs(model_dir, exist_ok=True)
    shutil.copy(os.path.join(os.path.dirname(initial), f"{model}.json"), model_dir)
    target = os.path.join(model_dir, f"{model}.pt")
    shutil.copy(weights, target)
    os.utime(target, (1e9 + stamp, 1e9 + stamp))


MEASURES = ("class", "false")
"""The clean-ups :func:`replicate` measures every model with: the app's default and none (raw argmax)."""


def evaluate_measures(app, args, root, test, convention):
    """:func:`evaluate` with each clean-up of :data:`MEASURES`: ``{mode: {case: dice}}``."""
    return {
        mode: evaluate(app, argparse.Namespace(**{**vars(args), "largest_component": mode}), root, test, convention)
        for mode in MEASURES
    }


def replicate(result, workdirs, training_seeds, out_name, point=None):
    """The training noise of a ``--retrain scratch`` run's point after round ``point`` (default: the
    last): each arm's scribbled set then (the initial volumes and its first ``point`` picks, the
    same simulated scribbles -- checked against the ones the loop saved) retrained from scratch with
    each of ``training_seeds`` as the train request's ``seed`` (initial weights and patch order; the
    loop's was the benchmark seed), same budget. The loop's own model of that round (its saved
    weights) and each retrained one are measured with every clean-up of :data:`MEASURES`. Written
    after each arm to ``<out_name>.json`` / ``.md``."""
    from lib.scribbles.convention import ScribbleConvention

    args = argparse.Namespace(**result["args"])
    point = args.rounds if point is None else point
    if args.retrain != "scratch":
        raise ValueError("only a --retrain scratch run's models depend on their scribbled set alone")
    if not 1 <= point <= args.rounds:
        raise ValueError(f"round {point}: the run has rounds 1..{args.rounds}")
    if largest_component(vars(args)) not in MEASURES:
        raise ValueError(f"the run's clean-up {largest_component(vars(args))!r} is not one of {MEASURES}")
    if set(training_seeds) & set(result["seed_list"]):  # (before any training, not after hours of them)
        raise ValueError(
            f"training seeds {sorted(set(training_seeds) & set(result['seed_list']))} are the loop's "
            f"own (its train request seed is the benchmark seed)"
        )
    out = {
        "machine": machine(),
        "source": result,
        "training_seeds": training_seeds,
        "round": point,
        "arms": {s: [] for s in STRATEGIES},
    }
    start = time.time()
    for k, seed in enumerate(result["seed_list"]):  # seed by seed: an interrupted run leaves pairs
        for strategy in [s for s in STRATEGIES if k < len(result["runs"][s])]:
            loop = result["runs"][strategy][k]
            root = data_dir(workdirs, seed)
            manifest = json.load(open(os.path.join(root, "sample.json")))
            convention = ScribbleConvention(manifest["labels"])
            cases = sorted(manifest["cases"])
            pool = cases[args.initial : args.initial + args.pool]
            test = sorted(loop["per_case"][0])
            models = saved_models(workdirs, strategy, seed, args.model, args.rounds)
            arm = {"seed": seed, "replicates": []}
            with tempfile.TemporaryDirectory(prefix="replicate_") as work:
                app, budget = loop_app(args, work, root, seed)
                publish(app, args.model, models[point], models[0], 0)
                arm["loop"] = evaluate_measures(app, args, root, test, convention)
                if arm["loop"][largest_component(vars(args))] != loop["per_case"][point]:
                    raise RuntimeError(
                        f"{strategy} seed {seed}: the saved round-{point} model does not reproduce the run's Dice"
                    )
                saved_arm = arm_dir(workdirs, strategy, seed)[1]
                for pick in loop["picks"][:point]:
                    scribble(app, work, root, pick["id"], stroke_seed(seed, pool, pick["id"]), convention)
                    ours, theirs = (
                        np.asarray(nib.load(os.path.join(d, f"{pick['id']}_scribbles.nii.gz")).dataobj)
                        for d in (work, saved_arm)
                    )
                    if not np.array_equal(ours, theirs):
                        raise RuntimeError(f"{strategy} seed {seed}: {pick['id']}'s scribbles differ from the loop's")
                model_dir = os.path.join(app.app_dir, "model")
                for ts in training_seeds:
                    app.train(fresh_run({**budget, "seed": ts}, model_dir, args.model, f"replicate_{ts}"))
                    arm["replicates"].append(evaluate_measures(app, args, root, test, convention))
            out["arms"][strategy].append(arm)
            print(
                f"{strategy} seed {seed}: "
                + "; ".join(
                    f"{mode} loop {mean_dice(arm['loop'][mode]):.3f}, replicates "
                    + " / ".join(f"{mean_dice(r[mode]):.3f}" for r in arm["replicates"])
                    for mode in MEASURES
                ),
                flush=True,
            )
            out["minutes"] = round((time.time() - start) / 60, 1)
            replicate_report(out, out_name)
    return out


def averaged(result, replicates) -> dict:
    """``result`` (a ``--retrain scratch`` run) with every point one of ``replicates`` (:func:`replicate`
    results on it) retrained replaced by the mean over the trainings -- the loop's and the replicates',
    per test case and so also their mean -- measured with the run's clean-up. A point is replaced for
    every seed and strategy or not at all (checked: the replicate's loop model is the run's)."""
    mode = largest_component(result["args"])
    if mode not in MEASURES:
        raise ValueError(f"the run's clean-up {mode!r} is not one of the replicates' {MEASURES}")
    out = json.loads(json.dumps(result))
    out["averaged_points"] = {}
    for rep in replicates:
        point = replicated_round(rep)
        if str(point) in out["averaged_points"]:
            raise ValueError(f"round {point} is replicated twice: give one --replicate run per round")
        for s in STRATEGIES:
            arms = {a["seed"]: a for a in rep["arms"][s]}
            if sorted(arms) != sorted(result["seed_list"]):
                raise ValueError(
                    f"round {point}: replicated {s} seeds {sorted(arms)}, the run has {sorted(result['seed_list'])}"
                )
            for k, seed in enumerate(result["seed_list"]):
                run, a = out["runs"][s][k], arms[seed]
                trainings = [a["loop"][mode]] + [r[mode] for r in a["replicates"]]
                run["per_case"][point] = {c: float(np.mean([t[c] for t in trainings])) for c in trainings[0]}
                run["curve"][point] = mean_dice(run["per_case"][point])
        check_replicates_run(rep, result, mode)  # (against result: the seeds checked first)
        out["averaged_points"][str(point)] = 1 + len(rep["training_seeds"])
    return out


def check_replicates_run(rep, result, mode, what="the replicate"):
    """Raises unless every arm of ``rep`` (a :func:`replicate` result) retrained ``result``'s model of
    that round: its loop model's per-case Dice, measured with clean-up ``mode``, are the run's."""
    point = replicated_round(rep)
    for s in STRATEGIES:
        for a in rep["arms"][s]:
            if a["loop"][mode] != result["runs"][s][result["seed_list"].index(a["seed"])]["per_case"][point]:
                raise ValueError(f"{what}: {s} seed {a['seed']}'s round-{point} model is not this run's")


def replicated_round(out) -> int:
    """The round a :func:`replicate` result retrained (files written before ``--replicate-round``: the last)."""
    return out.get("round", out["source"]["args"]["rounds"])


def mean_dice(per_case) -> float:
    """Mean over the test phantoms of :func:`evaluate`'s ``{case: dice}``."""
    return float(np.mean(list(per_case.values())))


def scribble(app, work, root, case, stroke_seed, convention):
    """The simulated annotator scribbles ``case`` (from its dense truth) and submits it (tag ``final``)."""
    from lib.datasets.sample import label_info
    from lib.scribbles.simulate import simulate_scribbles

    truth_img = nib.load(os.path.join(root, "groundtruth", f"{case}.nii.gz"))
    strokes = simulate_scribbles(
        np.asarray(truth_img.dataobj), truth_img.header.get_zooms()[:3], convention, seed=stroke_seed
    )
    path = os.path.join(work, f"{case}_scribbles.nii.gz")
    nib.save(nib.Nifti1Image(strokes.astype(np.uint8), truth_img.affine), path)
    app.datastore().save_label(case, path, "final", {"label_info": label_info(convention)})


def stroke_seed(seed, pool, case):
    """One scribble map per (seed, case), the same whichever arm or round scribbles it."""
    return 1000 + seed * 100 + pool.index(case)


def next_pick(app, strategy) -> dict:
    """The strategy's ``next_sample`` reply to the simulated annotator (one client: nothing it was
    served is held back from it)."""
    return app.next_sample({"strategy": strategy, "client_id": "simulated_annotator"})


def run(strategy, seed, args, root, manifest, pool, test, start_model, done=None):
    """One strategy's loop on one seed; ``start_model`` is the folder of the initial model: trained
    there by the first strategy, copied from there by the next. ``done``: this arm's result from an
    earlier run in the same workdir (``--extend``), continued from its last round: its saved weights
    and its scribbled volumes restored, the ``random`` arm's draws replayed (and checked against its
    picks)."""
    from lib.scribbles.convention import ScribbleConvention

    convention = ScribbleConvention(manifest["labels"])
    work = os.path.join(args.workdir, f"{strategy}_{seed}")
    model_dir = os.path.join(work, "app", "model")
    saved = os.path.join(work, "model_before_extend")
    if done and not os.path.isdir(saved):  # (present: an earlier --extend stopped before it put them back)
        shutil.move(model_dir, saved)  # the app below is built afresh, without models
    app, budget = loop_app(args, work, root, seed)
    if done:
        shutil.copytree(saved, model_dir, dirs_exist_ok=True)  # the last round's published model, every round's run
        shutil.rmtree(saved)
        last = os.path.join(model_dir, args.model, f"round_{len(done['picks'])}", "model.pt")
        if not filecmp.cmp(os.path.join(model_dir, f"{args.model}.pt"), last, shallow=False):
            raise RuntimeError(f"{model_dir}: the published model is not the last round's ({last})")
        per_case, picks = list(done["per_case"]), list(done["picks"])
        for pick in picks:
            if strategy == "random":
                drawn = next_pick(app, strategy)["id"]
                if drawn != pick["id"]:
                    raise RuntimeError(
                        f"random seed {seed}: replayed draw {drawn}, the earlier run picked {pick['id']}"
                    )
            scribble(app, work, root, pick["id"], stroke_seed(seed, pool, pick["id"]), convention)
    else:
        if os.path.isdir(start_model):
            shutil.copytree(start_model, model_dir, dirs_exist_ok=True)
        else:
            app.train({**budget, "max_epochs": args.initial_epochs or args.epochs, "pretrained": False})
            shutil.copytree(model_dir, start_model)
        per_case = [evaluate(app, args, root, test, convention)]  # test Dice per case after each round
        picks = []
    for r in range(len(picks), args.rounds):
        if strategy == "next_to_scribble":
            app.scoring({"method": "next_to_scribble"})
        reply = next_pick(app, strategy)
        if reply.get("fallback"):  # there is a model: its scores are missing, the arm would be random
            raise RuntimeError(f"{strategy} seed {seed} round {r + 1}: {reply['reason']}")
        case = reply["id"]
        picks.append({"id": case, "reason": reply.get("reason", "random"), "score": reply.get("score")})
        scribble(app, work, root, case, stroke_seed(seed, pool, case), convention)
        if args.retrain == "scratch":  # from the seed's initial weights: the model depends on the scribbled
            app.train(fresh_run(budget, model_dir, args.model, f"round_{r + 1}"))  # set only, not on its order
        else:
            app.train(budget)  # resumes run train_01 from its best checkpoint
        per_case.append(evaluate(app, args, root, test, convention))
        print(
            f"{strategy} seed {seed} round {r + 1}: picked {case}, test Dice {mean_dice(per_case[-1]):.3f}", flush=True
        )
    return {"curve": [mean_dice(pc) for pc in per_case], "picks": picks, "per_case": per_case}


def whole_pool(seed, args, root, manifest, pool, test):
    """The reference "final Dice": the same budget from scratch with every pool volume scribbled
    (what the annotator would reach by scribbling them all); ``{"dice": mean, "per_case": {...}}``."""
    from lib.scribbles.convention import ScribbleConvention

    convention = ScribbleConvention(manifest["labels"])
    work = os.path.join(args.workdir, f"whole_pool_{seed}")
    app, budget = loop_app(args, work, root, seed)
    for case in pool:
        scribble(app, work, root, case, stroke_seed(seed, pool, case), convention)
    app.train({**budget, "pretrained": False})
    per_case = evaluate(app, args, root, test, convention)
    dice = mean_dice(per_case)
    print(f"whole pool seed {seed}: test Dice {dice:.3f}", flush=True)
    return {"dice": dice, "per_case": per_case}


def geometry_conf(args) -> dict:
    """App conf for ``--target-spacing`` / ``--patch-size`` (none given: the app's defaults)."""
    return {k: getattr(args, k) for k in GEOMETRY_KEYS if getattr(args, k)}


def second_protocol(root, cases, fraction):
    """Rewrite the last ``round(fraction * len(cases))`` of ``cases`` with dark-blood contrast
    (intensities mirrored about their range, same dtype and affine); returns those case ids."""
    odd = cases[len(cases) - int(round(fraction * len(cases))) :] if fraction > 0 else []
    for case in odd:
        done = os.path.join(root, f"{case}.dark_blood")  # a rerun on the same workdir must not mirror twice
        if os.path.exists(done):
            continue
        path = next(
            p for p in (os.path.join(root, d, f"{case}.nii.gz") for d in ("studies", "test")) if os.path.exists(p)
        )
        img = nib.load(path)
        x = np.asarray(img.dataobj)
        nib.save(nib.Nifti1Image((x.max() + x.min() - x).astype(x.dtype), img.affine, img.header), path)
        open(done, "w").close()
    return odd


def volumes_to_reach(curve, initial, target):
    """Scribbled volumes from which on ``curve`` stays at or above ``target`` (a curve that touches it
    and falls back has not reached it: the annotator cannot know the test Dice and would stop
    there); ``None`` if its last point is below."""
    below = [i for i, d in enumerate(curve) if d < target]
    if below and below[-1] == len(curve) - 1:
        return None
    return initial + (below[-1] + 1 if below else 0)


def counted(count, initial, rounds) -> int:
    """A :func:`volumes_to_reach` result as a number: a curve that never reached counted as one more
    volume than the loop scribbled (a lower bound)."""
    return initial + rounds + 1 if count is None else count


def mean_needed(counts, initial, rounds):
    """Mean of :func:`volumes_to_reach` results (:func:`counted`); ``(mean, number censored)``."""
    return float(np.mean([counted(c, initial, rounds) for c in counts])), sum(c is None for c in counts)


def summarise(result):
    """Per strategy: mean curve, AUC, volumes to reach and keep 95 % of its own final Dice, of
    ``random``'s and of the better of the two strategies' final Dice on the same seed (and of the
    whole pool's, with ``--whole-pool``), dark-blood picks, final Dice per protocol."""
    args, runs, protocols = result["args"], result["runs"], result.get("dark_blood_cases") or []
    random_final = [r["curve"][-1] for r in runs["random"]]
    better_final = [max(r["curve"][-1] for r in per_seed) for per_seed in zip(*runs.values())]
    summary = {}
    for s, rs in runs.items():
        curves = np.asarray([r["curve"] for r in rs])
        mean = curves.mean(axis=0)
        summary[s] = {
            "mean_curve": mean.tolist(),
            "auc": float(np.trapz(mean) / (len(mean) - 1)),
            "auc_per_seed": (np.trapz(curves, axis=1) / (curves.shape[1] - 1)).tolist(),
            "final_dice": float(mean[-1]),
            "volumes_to_95pct_of_final": [volumes_to_reach(c, args["initial"], 0.95 * c[-1]) for c in curves],
            "volumes_to_95pct_of_random_final": [
                volumes_to_reach(c, args["initial"], 0.95 * f) for c, f in zip(curves, random_final)
            ],
            "volumes_to_95pct_of_better_final": [
                volumes_to_reach(c, args["initial"], 0.95 * f) for c, f in zip(curves, better_final)
            ],
        }
        if "whole_pool" in result:
            summary[s]["volumes_to_95pct_of_whole_pool"] = [
                volumes_to_reach(c, args["initial"], 0.95 * w["dice"]) for c, w in zip(curves, result["whole_pool"])
            ]
        if protocols:
            # mean number of dark-blood volumes scribbled after each round
            summary[s]["dark_blood_picked"] = np.mean(
                [np.cumsum([p["id"] in odd for p in r["picks"]]) for r, odd in zip(rs, protocols)], axis=0
            ).tolist()
            last = [(r["per_case"][-1], odd) for r, odd in zip(rs, protocols)]
            summary[s]["final_dice_dark_blood"] = float(
                np.mean([d for pc, odd in last for c, d in pc.items() if c in odd])
            )
            summary[s]["final_dice_bright_blood"] = float(
                np.mean([d for pc, odd in last for c, d in pc.items() if c not in odd])
            )
    summary["mean_curves"] = mean_curve_counts(
        {s: [r["curve"] for r in rs] for s, rs in runs.items()}, args["initial"], args["rounds"]
    )
    return summary


BOOTSTRAP = 2000
"""Resamples of the seeds behind :func:`mean_curve_counts`' interval."""


def saving(added_ours, added_theirs) -> float:
    """Fraction of added volumes ``next_to_scribble`` saves against ``random`` (negative: more); NaN
    when ``random`` needed none."""
    return 1 - added_ours / added_theirs if added_theirs > 0 else float("nan")


def fewer_or_more(fraction) -> str:
    """A :func:`saving` as report text: ``"40 % fewer"`` / ``"25 % more"``."""
    return f"{100 * fraction:.0f} % fewer" if fraction >= 0 else f"{-100 * fraction:.0f} % more"


def mean_curve_counts(curves, initial, rounds, seed=0) -> dict:
    """The volume count on the **mean** curves, the issue's wording ("mean over >= 3 seeds"): on each
    strategy's curve averaged over seeds, the scribbled volumes from which on it stays at or above 95 %
    of the better of the two mean curves' final Dice (:func:`volumes_to_reach`; never: one more than
    the loop scribbled), and the saving in added volumes. Averaging before thresholding spares the
    count the noise of single curves, not the noise of the seeds: the interval resamples the seeds
    (paired: a seed's two arms share pool, scribbles and initial model) :data:`BOOTSTRAP` times.

    ``curves``: ``{strategy: [seeds, rounds + 1] array}``, seeds in the same order for both."""

    def counts(idx):
        mean = {s: np.asarray(c)[idx].mean(axis=0) for s, c in curves.items()}
        target = 0.95 * max(m[-1] for m in mean.values())
        reached = {s: volumes_to_reach(m, initial, target) for s, m in mean.items()}
        need = {s: counted(n, initial, rounds) for s, n in reached.items()}
        return need, saving(need["next_to_scribble"] - initial, need["random"] - initial), reached

    n_seeds = len(curves["random"])
    need, point, reached = counts(np.arange(n_seeds))
    rng = np.random.default_rng(seed)
    boot = np.asarray([counts(rng.integers(0, n_seeds, n_seeds))[1] for _ in range(BOOTSTRAP)])
    defined = boot[~np.isnan(boot)]
    return {
        "volumes": need,
        "never_reached": [s for s, n in reached.items() if n is None],
        "saving": point,
        "saving_5_95": np.percentile(defined, [5, 95]).tolist(),
        "share_at_least_25pct": float(np.mean(defined >= 0.25)),
        "undefined": int(np.isnan(boot).sum()),
    }


def mean_curve_line(m) -> str:
    """Report line of :func:`mean_curve_counts`."""
    v, pct = m["volumes"], fewer_or_more
    counts = ", ".join(
        f"`{s}` **{v[s]}**" + (" (never reached: one more than scribbled)" if s in m["never_reached"] else "")
        for s in STRATEGIES
    )
    return (
        f"* on the mean curves, scribbled volumes to reach and keep 95 % of the better of the two mean final "
        f"Dice: {counts}; "
        + ("random needed none added" if np.isnan(m["saving"]) else f"**{pct(m['saving'])} added volumes**")
        + f"; seeds resampled {BOOTSTRAP} times: 5th-95th percentile {pct(m['saving_5_95'][0])} to "
        f"{pct(m['saving_5_95'][1])}, at least 25 % fewer in {100 * m['share_at_least_25pct']:.0f} % of resamples"
        + (f" ({m['undefined']} resamples where random needed none added left out)" if m["undefined"] else "")
    )


def compare_counts(counts, args) -> str:
    """Report text: the mean of each strategy's :func:`volumes_to_reach` counts over seeds and the
    saving in added volumes (``counts``: ``{strategy: [count or None per seed]}``)."""
    (need_n, cut_n), (need_r, cut_r) = (mean_needed(counts[s], args["initial"], args["rounds"]) for s in STRATEGIES)
    change = saving(need_n - args["initial"], need_r - args["initial"])
    text = "random needed none added" if np.isnan(change) else f"{fewer_or_more(change)} added volumes"
    never = (
        f"; never reached on {cut_n} / {cut_r} seeds, counted as {args['initial'] + args['rounds'] + 1}"
        if cut_n or cut_r
        else ""
    )
    return f"`next_to_scribble` **{need_n:.1f}**, `random` **{need_r:.1f}** ({text}{never})"


def paired_auc(ours, theirs) -> str:
    """Report line: the per-seed AUC difference (the same seed's pool, scribbles and initial model
    for both arms), its mean and standard error, and on how many seeds ``next_to_scribble`` is ahead."""
    diff = np.asarray(ours) - np.asarray(theirs)
    se = diff.std(ddof=1) / np.sqrt(len(diff)) if len(diff) > 1 else float("nan")
    return (
        f"* paired by seed, AUC `next_to_scribble` - `random`: {' / '.join(f'{d:+.3f}' for d in diff)}; "
        f"mean {diff.mean():+.3f} +- {se:.3f} (standard error), ahead on {int((diff > 0).sum())} of {len(diff)} seeds"
    )


def report(result, name):
    """Write ``<name>.md`` / ``.json`` / ``.png`` under the results folder from a loop's ``result``."""
    args = result["args"]
    summary = result["summary"] = summarise(result)
    os.makedirs(RESULTS, exist_ok=True)
    with open(os.path.join(RESULTS, f"{name}.json"), "w") as f:
        json.dump(result, f, indent=1)
    plot({s: summary[s]["mean_curve"] for s in STRATEGIES}, args["initial"], os.path.join(RESULTS, f"{name}.png"))
    nts, rnd = summary["next_to_scribble"], summary["random"]
    split = len(result.get("seed_lists", [])) > 1
    seeds = "--seed-list S" if split else f"--seeds {args['seeds']}"
    lines = [
        "# Annotation loop: next_to_scribble vs random",
        "",
        f"Command: `python benchmarks/annotation_loop.py {seeds} --rounds {args['rounds']} "
        f"--pool {args['pool']} --test {args['test']} --model {args['model']} --epochs {args['epochs']} "
        f"--epoch-length {args['epoch_length']} --passes {args['passes']}"
        + (f" --initial-epochs {args['initial_epochs']}" if args.get("initial_epochs") else "")
        + (f" --second-protocol {args['second_protocol']}" if args.get("second_protocol") else "")
        + (f" --retrain {args['retrain']}" if args.get("retrain", "continue") != "continue" else "")
        + (" --whole-pool" if args.get("whole_pool") else "")
        + (f" --largest-component {largest_component(args)}" if largest_component(args) != "class" else "")
        + "".join(f" --{k.replace('_', '-')} '{args[k]}'" for k in GEOMETRY_KEYS if args.get(k))
        + (f" --name {args['name']}" if args.get("name") else "")
        + "`"
        + (
            f", run once per S = {' / '.join(result['seed_lists'])}, side by side, merged with `--from-json`"
            if split
            else ""
        )
        + "".join(
            f"; {n} rounds first, then continued by `--extend --workdir W --rounds {m}`"
            for n, m in zip(
                result.get("extended_from_rounds", []), result.get("extended_from_rounds", [])[1:] + [args["rounds"]]
            )
        )
        + "  ",
        f"Machine: {result['machine']}; {result['minutes']} min  ",
        f"Start: {args['initial']} scribbled phantoms"
        + (
            f" and one model trained {args['initial_epochs']} x {args['epoch_length']} iterations on them, shared by "
            f"both strategies"
            if args.get("initial_epochs")
            else ""
        )
        + f"; each round one more (simulated scribbles), `{args['model']}` "
        f"retrained {args['epochs']} x {args['epoch_length']} iterations "
        + (
            "from the same seeded initial weights every round"
            if args.get("retrain") == "scratch"
            else "from its previous weights"
        )
        + "".join(f", {k.replace('_', ' ')} {args[k]}" for k in GEOMETRY_KEYS if args.get(k))
        + f"; mean Dice on "
        f"{args['test']} held-out phantoms (segmentations cleaned up with `largest_component` "
        f"{largest_component(args)}); mean over {args['seeds']} seeds."
        + (
            " Curves re-measured from the loop's saved weights (`--from-json ... --rescore WORKDIR ...`); the "
            "picks are the loop's."
            if result.get("rescored")
            else ""
        )
        + (
            " Points averaged over several trainings of the same scribbled set (`--from-json ... --averaged "
            "REPLICATES.json ...`, the `--replicate` runs): "
            + ", ".join(
                f"{args['initial'] + int(r)} volumes {n} trainings"
                for r, n in sorted(result["averaged_points"].items(), key=lambda x: int(x[0]))
            )
            + "; the others the loop's single training."
            if result.get("averaged_points")
            else ""
        )
        + (
            f" Pool and test phantoms: a fraction {args['second_protocol']} of each with dark-blood contrast "
            f"(second protocol), the initial ones bright-blood."
            if args.get("second_protocol")
            else ""
        ),
        "",
        "| scribbled volumes | " + " | ".join(str(args["initial"] + i) for i in range(args["rounds"] + 1)) + " |",
        "|---|" + "---|" * (args["rounds"] + 1),
    ]
    for s in STRATEGIES:
        lines.append(f"| `{s}` | " + " | ".join(f"{v:.3f}" for v in summary[s]["mean_curve"]) + " |")
    lines += [
        "",
        f"* area under the learning curve: `next_to_scribble` **{nts['auc']:.3f}**, `random` **{rnd['auc']:.3f}**",
        paired_auc(nts["auc_per_seed"], rnd["auc_per_seed"]),
    ]
    targets = [
        ("volumes_to_95pct_of_final", "95 % of its own final Dice"),
        ("volumes_to_95pct_of_random_final", "95 % of `random`'s final Dice on the same seed"),
        ("volumes_to_95pct_of_better_final", "95 % of the better of the two final Dice on the same seed"),
    ]
    if "whole_pool" in result:
        whole = [w["dice"] for w in result["whole_pool"]]
        lines.append(
            f"* whole pool scribbled ({args['initial'] + args['pool']} volumes, same budget from scratch): "
            f"test Dice {np.mean(whole):.3f} (per seed {' / '.join(f'{w:.3f}' for w in whole)})"
        )
        targets.insert(0, ("volumes_to_95pct_of_whole_pool", "**95 % of the whole pool's Dice** on the same seed"))
    for key, what in targets:
        lines.append(
            f"* scribbled volumes to reach and keep {what} (mean over seeds): "
            + compare_counts({s: summary[s][key] for s in STRATEGIES}, args)
        )
    lines.append(mean_curve_line(summary["mean_curves"]))
    if "dark_blood_picked" in nts:
        lines += [
            f"* dark-blood volumes scribbled after each round (mean over seeds): `next_to_scribble` "
            f"{', '.join(f'{v:.1f}' for v in nts['dark_blood_picked'])}; `random` "
            f"{', '.join(f'{v:.1f}' for v in rnd['dark_blood_picked'])} "
            f"(of {int(round(args['second_protocol'] * args['pool']))} in the pool)",
            f"* final test Dice, dark-blood / bright-blood test volumes: `next_to_scribble` "
            f"{nts['final_dice_dark_blood']:.3f} / {nts['final_dice_bright_blood']:.3f}, `random` "
            f"{rnd['final_dice_dark_blood']:.3f} / {rnd['final_dice_bright_blood']:.3f}",
        ]
    lines += ["", f"![learning curve]({name}.png)", ""]
    notes = os.path.join(RESULTS, f"{name}_reading.md")
    if os.path.exists(notes):  # hand-written reading, kept across regenerations
        lines += [open(notes).read().strip(), ""]
    with open(os.path.join(RESULTS, f"{name}.md"), "w") as f:
        f.write("\n".join(lines))
    print("\n".join(lines))


def replicate_report(out, name):
    """Write ``<name>.md`` / ``.json`` from :func:`replicate`'s ``out``: per arm and seed the
    replicated point's Dice (the last, or ``--replicate-round``'s) from the loop's training and from
    each retraining; the training standard deviation (same scribbled set, pooled over arms and
    seeds); the strategies' Dice there as a mean of the trainings; for the last point, the volumes
    to reach and keep 95 % of the better of those finals, each curve's last point replaced by its
    mean (for the source run's clean-up, whose curves it has; :func:`averaged` does it for any
    set of replicated points)."""
    src, seeds = out["source"], {s: [a["seed"] for a in arms] for s, arms in out["arms"].items()}
    args, mode_of_source = src["args"], largest_component(src["args"])
    n_train = 1 + len(out["training_seeds"])
    point = replicated_round(out)
    last = point == args["rounds"]
    lines = [
        "# Annotation loop: the training noise of " + ("the last point" if last else f"round {point}"),
        "",
        "Command: `python benchmarks/annotation_loop.py --from-json SOURCE.json "
        + (
            f"--replicates-from {out['reported_from']}"
            if out.get("reported_from")
            else f"--replicate WORKDIR ... --training-seeds {','.join(map(str, out['training_seeds']))}"
            + ("" if last else f" --replicate-round {point}")
        )
        + f" --name {name}`, SOURCE: the run "
        f"`{args.get('name')}` ({args['seeds']} seeds, {args['rounds']} rounds, `{args['model']}` "
        f"{args['epochs']} x {args['epoch_length']} iterations from scratch)  ",
        f"Machine: {out['machine']}; {out['minutes']} min  ",
        ("Each arm's last scribbled set" if last else f"Each arm's scribbled set after round {point}")
        + f" ({args['initial'] + point} volumes) trained {n_train} times, "
        f"same budget: the loop's own training (train request seed = benchmark seed) and "
        f"{len(out['training_seeds'])} more with seeds {', '.join(map(str, out['training_seeds']))}; "
        f"mean Dice on the {args['test']} held-out phantoms, with the app's clean-up (`class`) and without "
        f"(`false`).",
        "",
        "| seed | strategy | clean-up | loop's training | "
        + " | ".join(f"seed {t}" for t in out["training_seeds"])
        + " | mean | std |",
        "|---|---|---|---|" + "---|" * (len(out["training_seeds"]) + 2),
    ]
    stats = {}  # (strategy, mode) -> per seed [values of the n_train trainings]
    for s, arms in out["arms"].items():
        for a in arms:
            for mode in MEASURES:
                v = [mean_dice(a["loop"][mode])] + [mean_dice(r[mode]) for r in a["replicates"]]
                stats.setdefault((s, mode), []).append(v)
                lines.append(
                    f"| {a['seed']} | `{s}` | `{mode}` | "
                    + " | ".join(f"{x:.3f}" for x in v)
                    + f" | {np.mean(v):.3f} | {np.std(v, ddof=1):.3f} |"
                )
    lines.append("")
    paired = [x for x in seeds["random"] if x in seeds["next_to_scribble"]]
    for mode in MEASURES:
        var = [np.var(v, ddof=1) for s in STRATEGIES for v in stats.get((s, mode), [])]
        if not var:
            continue
        case_var = [
            np.var([t[c] for t in [a["loop"][mode]] + [r[mode] for r in a["replicates"]]], ddof=1)
            for s in STRATEGIES
            for a in out["arms"][s]
            for c in a["loop"][mode]
        ]
        lines.append(
            f"* `{mode}`: training standard deviation of the mean test Dice, same scribbled set "
            f"(pooled over {len(var)} arm-seeds): **{np.sqrt(np.mean(var)):.3f}**; of a test case's "
            f"Dice {np.sqrt(np.mean(case_var)):.3f} (pooled over {len(case_var)} arm-seed-cases, largest "
            f"{np.sqrt(np.max(case_var)):.3f})"
        )
        if mode == mode_of_source:
            steps = [abs(b - a) for s in STRATEGIES for r in src["runs"][s] for a, b in zip(r["curve"], r["curve"][1:])]
            lines.append(
                f"  * for scale, one more scribbled volume moves the run's mean test Dice by "
                f"{np.mean(steps):.3f} on average (median {np.median(steps):.3f}, {len(steps)} steps)"
            )
        if not paired:
            continue
        per = {s: {a["seed"]: v for a, v in zip(out["arms"][s], stats[(s, mode)])} for s in STRATEGIES}
        for label, f in (("the loop's training", lambda v: v[0]), (f"mean of {n_train} trainings", np.mean)):
            d = np.asarray([f(per["next_to_scribble"][x]) - f(per["random"][x]) for x in paired])
            se = d.std(ddof=1) / np.sqrt(len(d)) if len(d) > 1 else float("nan")
            lines.append(
                f"  * {'final' if last else f'round-{point}'} Dice, {label}: `next_to_scribble` "
                f"{np.mean([f(per['next_to_scribble'][x]) for x in paired]):.3f}, `random` "
                f"{np.mean([f(per['random'][x]) for x in paired]):.3f}; paired difference "
                f"{d.mean():+.3f} +- {se:.3f} (standard error), ahead on {int((d > 0).sum())} of {len(d)} seeds"
            )
        if mode != mode_of_source or not last:
            continue
        k = {s: {x: i for i, x in enumerate(src["seed_list"][: len(src["runs"][s])])} for s in STRATEGIES}
        counts = {s: [] for s in STRATEGIES}
        for x in paired:
            finals = {s: float(np.mean(per[s][x])) for s in STRATEGIES}
            for s in STRATEGIES:
                curve = src["runs"][s][k[s][x]]["curve"][:-1] + [finals[s]]
                counts[s].append(volumes_to_reach(curve, args["initial"], 0.95 * max(finals.values())))
        lines.append(
            f"  * scribbled volumes to reach and keep 95 % of the better of the two {n_train}-training final "
            f"Dice (each curve's last point its {n_train}-training mean, the others the loop's): "
            + compare_counts(counts, args)
        )
        out.setdefault("counts", {})[mode] = counts
    lines += [""]
    notes = os.path.join(RESULTS, f"{name}_reading.md")
    if os.path.exists(notes):
        lines += [open(notes).read().strip(), ""]
    os.makedirs(RESULTS, exist_ok=True)
    with open(os.path.join(RESULTS, f"{name}.json"), "w") as f:
        json.dump(out, f, indent=1)
    with open(os.path.join(RESULTS, f"{name}.md"), "w") as f:
        f.write("\n".join(lines))
    print("\n".join(lines))


def plot(curves, initial, path):
    from PIL import Image, ImageDraw

    w, h, m = 640, 420, 60
    im = Image.new("RGB", (w, h), "white")
    d = ImageDraw.Draw(im)
    n = len(next(iter(curves.values())))
    lo = min(min(c) for c in curves.values()) - 0.02
    hi = max(max(c) for c in curves.values()) + 0.02
    sx = lambda i: m + (w - 2 * m) * i / max(1, n - 1)  # noqa: E731
    sy = lambda v: h - m - (h - 2 * m) * (v - lo) / (hi - lo)  # noqa: E731
    d.line([(m, h - m), (w - m, h - m)], fill="black")
    d.line([(m, m), (m, h - m)], fill="black")
    for i in range(n):
        d.text((sx(i) - 4, h - m + 6), str(initial + i), fill="black")
    for k in range(5):
        v = lo + (hi - lo) * k / 4
        d.text((6, sy(v) - 6), f"{v:.2f}", fill="black")
    d.text((w // 2 - 80, h - 24), "scribbled volumes", fill="black")
    d.text((6, 10), "mean test Dice", fill="black")
    colors = {"next_to_scribble": (200, 30, 30), "random": (30, 60, 200)}
    for k, (name, c) in enumerate(curves.items()):
        d.line([(sx(i), sy(v)) for i, v in enumerate(c)], fill=colors.get(name, "gray"), width=3)
        d.text((w - m - 160, h - m - 50 + 16 * k), name, fill=colors.get(name, "gray"))  # lower right: curves rise
    im.save(path)


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


def partial_name(extended_to=None) -> str:
    """The file a run writes its seeds done so far to in its workdir: ``partial.json``, or for an
    ``--extend`` to ``extended_to`` rounds ``partial_<rounds>_rounds.json``."""
    return f"partial_{extended_to}_rounds.json" if extended_to else "partial.json"


def latest_partial(workdir) -> dict:
    """The result of the run in ``workdir`` with the most rounds: :func:`partial_name`'s files."""
    results = [
        json.load(open(os.path.join(workdir, f)))
        for f in os.listdir(workdir)
        if f == partial_name() or re.fullmatch(partial_name(r"\d+").replace(".", r"\."), f)
    ]
    if not results:
        raise FileNotFoundError(f"{workdir}: no partial.json of an earlier run")
    return max(results, key=lambda r: r["args"]["rounds"])


def result_name(args) -> str:
    return args.get("name") or ("annotation_loop_protocols" if args.get("second_protocol") else "annotation_loop")


def settings(result) -> dict:
    """A run's arguments less the seeds and the output name: what runs must share to be merged or joined."""
    return {
        **{k: v for k, v in result["args"].items() if k not in ("seeds", "seed_list", "minutes", "name")},
        "largest_component": largest_component(result["args"]),
    }


def join_arms(results):
    """Runs made one strategy per process (``--strategies``) on the same seeds, joined into one
    result with both strategies, on the seeds both have finished; the other results unchanged."""
    whole = [r for r in results if all(r["runs"][s] for s in STRATEGIES)]
    arms = {s: [r for r in results if r["runs"][s] and r not in whole] for s in STRATEGIES}
    if not any(arms.values()):
        return results
    if any(len(a) != 1 for a in arms.values()):
        raise ValueError("one single-strategy run per strategy can be joined")
    a, b = (arms[s][0] for s in STRATEGIES)
    n = min(len(a["runs"][STRATEGIES[0]]), len(b["runs"][STRATEGIES[1]]))
    if (
        a["seed_list"][:n] != b["seed_list"][:n]
        or a["dark_blood_cases"][:n] != b["dark_blood_cases"][:n]
        or settings(a) != settings(b)
    ):
        raise ValueError("the single-strategy runs differ in seeds or settings")
    joined = {
        **a,
        "args": {**a["args"], "seeds": n},
        "seed_list": a["seed_list"][:n],
        "dark_blood_cases": a["dark_blood_cases"][:n],
        "minutes": max(a["minutes"], b["minutes"]),
        "runs": {STRATEGIES[0]: a["runs"][STRATEGIES[0]][:n], STRATEGIES[1]: b["runs"][STRATEGIES[1]][:n]},
    }
    return whole + [joined]


def merge(results):
    """One result from several runs of the same settings on different seeds (``--seed-list``) or
    strategies (``--strategies``, see :func:`join_arms`); the minutes are the longest run's (they
    ran side by side)."""
    results = join_arms(results)
    first = results[0]
    # a partial file covers the first seeds of its list (older files listed them all)
    seed_lists = [list(r.get("seed_list", range(r["args"]["seeds"])))[: len(r["runs"]["random"])] for r in results]
    for r in results[1:]:
        if settings(r) != settings(first):
            raise ValueError(f"cannot merge runs with different settings: {r['args']} vs {first['args']}")
    merged = {
        "machine": first["machine"],
        "args": dict(first["args"]),
        "seed_list": [s for seeds in seed_lists for s in seeds],
        # a merged file keeps the lists of the runs it came from
        "seed_lists": [
            x for r, seeds in zip(results, seed_lists) for x in r.get("seed_lists", [",".join(map(str, seeds))])
        ],
        "minutes": max(r["minutes"] for r in results),
        "runs": {s: [x for r in results for x in r["runs"][s]] for s in STRATEGIES},
        "dark_blood_cases": [c for r in results for c in (r.get("dark_blood_cases") or [])],
    }
    if all(r.get("rescored") for r in results):
        merged["rescored"] = True
    extended = {tuple(r.get("extended_from_rounds", [])) for r in results}
    if len(extended) > 1:
        raise ValueError(f"cannot merge runs continued (--extend) from different rounds: {sorted(extended)}")
    if extended != {()}:
        merged["extended_from_rounds"] = list(extended.pop())
    if all("whole_pool" in r for r in results):
        merged["whole_pool"] = [x for r in results for x in r["whole_pool"][: len(r["runs"]["random"])]]
    merged["args"]["seeds"] = len(merged["seed_list"])
    return merged


if __name__ == "__main__":
    main()
