"""A run's summary and report.

Reports the learning curves (mean over seeds), the area under them, the scribbled volumes from
which on a curve stays at or above 95 % of the final Dice (the whole pool's, its own, ``random``'s,
the better of the two strategies'; mean of the per-seed counts), the same count on the mean curves
with a seed-bootstrap interval (the issue's "mean over >= 3 seeds"); writes
``benchmarks/results/annotation_loop.md``, ``.json`` and ``annotation_loop.png`` (or ``--name``).
"""

import json
import os

import numpy as np
from loop import GEOMETRY_KEYS, STRATEGIES, largest_component

from common import RESULTS


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
        f"Command: `python benchmarks/annotation_loop {seeds} --rounds {args['rounds']} "
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
