"""A finished ``--retrain scratch`` run's points measured again: with another clean-up
(``--rescore``), or retrained with other seeds (``--replicate``) and averaged (``--averaged``).

``--replicate``: how much of a curve's step is the training's own noise. Each arm's last
scribbled set (or the one after ``--replicate-round R``; same volumes, same simulated scribbles --
checked against the loop's) is trained again from scratch with other train request seeds (initial
weights and patch order), the same budget; the report gives the per-seed spread, the training
standard deviation pooled over arms and seeds, the strategies' final Dice as the mean of the
trainings, and the volume counts against that less noisy final. ``--averaged`` then rewrites the
run's report with each replicated point the mean of its trainings, every measure included.
"""

import argparse
import json
import os
import shutil
import tempfile
import time

import nibabel as nib
import numpy as np
from loop import STRATEGIES, evaluate, fresh_run, largest_component, loop_app, mean_dice, scribble, stroke_seed
from report import compare_counts, volumes_to_reach

from common import RESULTS, machine


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
        "Command: `python benchmarks/annotation_loop --from-json SOURCE.json "
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
