"""Runs split over processes merged into one result.

Seeds can be split over processes (``--seed-list``), strategies too (``--strategies``); each run
writes the seeds it has finished to ``partial.json`` in its workdir (``--extend``:
``partial_<rounds>_rounds.json``), and ``--from-json`` merges them into one report when their
settings agree.
"""

import json
import os
import re

from loop import STRATEGIES, largest_component


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
