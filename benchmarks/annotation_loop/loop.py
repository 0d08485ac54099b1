"""The simulated annotator of one strategy and seed, on the real app.

:func:`run` is one arm (the loop the package docstring describes), in-process train / scoring /
next_sample / infer tasks of a fresh app copy (:func:`loop_app`).

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
"""

import filecmp
import os
import shutil

import nibabel as nib
import numpy as np

from common import make_app

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
