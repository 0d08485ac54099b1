"""The conf registry (lib/conf.py): every key the app reads is declared there, the README's table
is printed from it, and the readers name the key when a value is wrong."""

import ast
import re
from pathlib import Path

import pytest

from lib.conf import (
    KEYS,
    conf_choice,
    conf_flag,
    conf_float,
    conf_int,
    conf_json,
    conf_text,
    markdown_table,
    unknown_keys,
)

ROOT = Path(__file__).resolve().parents[1]
APP = ROOT / "apps" / "scribble_seg"
READERS = {"conf_text", "conf_int", "conf_float", "conf_flag", "conf_choice", "conf_json", "_positive_list"}


def _read_keys():
    """(file:line, key) of every conf key read in the app: the readers' literal key arguments and
    any ``conf.get("literal")`` left outside lib/conf.py."""
    found = []
    for path in sorted(APP.rglob("*.py")):
        if path.name == "conf.py" and path.parent.name == "lib":
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if not isinstance(node, ast.Call) or not node.args:
                continue
            func = node.func
            name = func.id if isinstance(func, ast.Name) else getattr(func, "attr", None)
            where = f"{path.relative_to(ROOT)}:{node.lineno}"
            if name in READERS and len(node.args) >= 2 and isinstance(node.args[1], ast.Constant):
                found.append((where, node.args[1].value, "reader"))
            owner = getattr(func, "value", None)
            owner_name = getattr(owner, "id", None) or getattr(owner, "attr", None)
            if name == "get" and owner_name == "conf" and isinstance(node.args[0], ast.Constant):
                found.append((where, node.args[0].value, "conf.get"))
    return found


def test_every_conf_key_the_app_reads_is_declared_in_the_registry():
    reads = _read_keys()
    assert len({k for _, k, _ in reads}) >= 50, reads
    undeclared = [f"{w} reads {k!r}" for w, k, _ in reads if k not in KEYS]
    assert not undeclared, undeclared
    # conf.get with a literal key survives only where lib.conf cannot be imported (the pure convention)
    direct = sorted({w.split(":")[0] for w, _, how in reads if how == "conf.get"})
    assert direct == ["apps/scribble_seg/lib/scribbles/convention.py"], direct


def test_every_declared_key_is_read_somewhere():
    read = {k for _, k, _ in _read_keys()}
    assert set(KEYS) - read == set(), sorted(set(KEYS) - read)


def test_readme_conf_table_is_the_registry():
    readme = (ROOT / "README.md").read_text()
    start = readme.index("<!-- conf table: python -m lib.conf -->")
    end = readme.index("<!-- end of conf table -->")
    assert readme[start:end].split("\n", 1)[1].strip() == markdown_table().strip(), (
        "README's conf table differs from lib/conf.py: paste `cd apps/scribble_seg && python -m lib.conf`"
    )


def test_defaults_come_back_when_a_key_is_absent_or_blank():
    assert conf_int({}, "al_retrain_after") == 5 and conf_int({"al_retrain_after": " "}, "al_retrain_after") == 5
    assert conf_flag({}, "infer_in_worker") is True and conf_flag({"refinement": "False"}, "refinement") is False
    assert (
        conf_json({}, "patch_size") == [96, 96, 16] and conf_json({"patch_size": "[64, 64, 8]"}, "patch_size")[0] == 64
    )
    assert conf_text({}, "device") is None and conf_text({"scribble_tag": " mine "}, "scribble_tag") == "mine"
    assert conf_choice({"al_metric": "Entropy"}, "al_metric", ("mutual_information", "entropy")) == "entropy"
    assert conf_float({"dropout": "0.25"}, "dropout", minimum=0, maximum=1) == 0.25


@pytest.mark.parametrize(
    "call, message",
    [
        (lambda: conf_int({"al_passes": "2.5"}, "al_passes", minimum=2), "conf al_passes must be a whole number"),
        (lambda: conf_float({"dropout": "1.5"}, "dropout", 0, 1), "conf dropout must be a number in 0..1, got '1.5'"),
        (lambda: conf_float({"al_diversity": "nan"}, "al_diversity", minimum=0), "conf al_diversity must be a number"),
        (lambda: conf_flag({"can_em_crf": "yes"}, "can_em_crf"), "conf can_em_crf must be true or false, got 'yes'"),
        (lambda: conf_choice({"mix": "puzzle"}, "mix", ("cutmix", "mixup", "none")), "conf mix must be one of cutmix"),
        (lambda: conf_json({"can_em_dropout": "[0.5,"}, "can_em_dropout"), "conf can_em_dropout must be JSON"),
    ],
)
def test_a_bad_value_names_its_key(call, message):
    with pytest.raises(ValueError, match=re.escape(message)):
        call()


def test_undeclared_keys_are_a_programming_error_and_typos_are_reported():
    with pytest.raises(KeyError, match="not declared"):
        conf_int({}, "al_pases")
    assert unknown_keys({"al_pases": "3", "preload": "true", "models": "pce"}) == ["al_pases"]
