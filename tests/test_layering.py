"""The house's layering (DESIGN.md), read from the source: which package may import which.

A new recipe or refinement method that reaches upward (a loss importing a transform, an algorithm
importing MONAI Label) fails here with the offending import named.
"""

import ast
import inspect
from pathlib import Path

import pytest

LIB = Path(__file__).resolve().parents[1] / "apps" / "scribble_seg" / "lib"

# package -> lib packages it may import (besides itself); None: anything
ALLOWED = {
    "networks": set(),
    "scribbles": set(),
    "metrics": {"scribbles"},
    "losses": {"scribbles"},
    "transforms": {"scribbles"},
}
# modules at lib's root that every package may import: below every floor, they import no lib module
BASE = {"arrays"}
# MONAI Label adapters: none imports the floor above it (configs wire trainers and infers together)
FORBIDDEN = {
    "infers": {"trainers", "configs", "activelearning"},
    "trainers": {"configs"},  # (validation shares lib.infers.inferer with inference)
    "activelearning": {"trainers", "configs"},
}
# third-party roots a pure package must not import
NO_MONAI_LABEL = {"networks", "scribbles", "metrics", "losses", "transforms"}


def _imports(path: Path):
    tree = ast.parse(path.read_text(), filename=str(path))
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield node.lineno, alias.name
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            yield node.lineno, node.module


@pytest.mark.parametrize("package", sorted(ALLOWED))
def test_package_imports_only_the_layers_below_it(package):
    offending, allowed = [], ALLOWED[package] | BASE
    for path in sorted((LIB / package).glob("*.py")):
        for line, module in _imports(path):
            parts = module.split(".")
            if parts[0] == "lib" and len(parts) > 1 and parts[1] != package and parts[1] not in allowed:
                offending.append(f"{path.relative_to(LIB)}:{line} imports {module}")
            if package in NO_MONAI_LABEL and parts[0] == "monailabel":
                offending.append(f"{path.relative_to(LIB)}:{line} imports {module}")
    assert not offending, f"lib/{package} may import only {sorted(ALLOWED[package]) or 'itself'}: " + "; ".join(
        offending
    )


@pytest.mark.parametrize("module", sorted(BASE))
def test_base_modules_import_no_lib_module(module):
    path = LIB / f"{module}.py"
    offending = [f"{module}.py:{line} imports {m}" for line, m in _imports(path) if m.split(".")[0] == "lib"]
    assert path.is_file() and not offending, offending


@pytest.mark.parametrize("package", sorted(FORBIDDEN))
def test_adapters_do_not_import_the_floor_above(package):
    offending = [
        f"{path.relative_to(LIB)}:{line} imports {module}"
        for path in sorted((LIB / package).glob("*.py"))
        for line, module in _imports(path)
        if module.split(".")[0] == "lib" and len(module.split(".")) > 1 and module.split(".")[1] in FORBIDDEN[package]
    ]
    assert not offending, "; ".join(offending)


def test_losses_are_torch_modules_without_numpy_state():
    import torch

    import lib.losses

    exported = [getattr(lib.losses, n) for n in dir(lib.losses) if not n.startswith("_")]
    classes = [c for c in exported if inspect.isclass(c)]
    assert classes and all(issubclass(c, torch.nn.Module) for c in classes), [
        c.__name__ for c in classes if not issubclass(c, torch.nn.Module)
    ]


def test_every_dictionary_transform_is_a_map_transform_with_keys():
    from monai.transforms import MapTransform

    import lib.transforms

    names = [n for n in dir(lib.transforms) if n.endswith("d") and inspect.isclass(getattr(lib.transforms, n))]
    assert len(names) >= 9, names
    for name in names:
        cls = getattr(lib.transforms, name)
        assert issubclass(cls, MapTransform), f"{name} is not a MapTransform"
        params = list(inspect.signature(cls.__init__).parameters)
        assert params[1] == "keys", f"{name}'s first argument is {params[1]}, not keys"
