"""The package is layered and imports only downwards: every module under unifiedseg/ is parsed with ast
(imports at any depth, inside functions too) and each import of another unifiedseg package is checked
against LAYERS. A failure names the module, the line and the import, and what that layer may import.

To add a package, put it in LAYERS; to let one package of a layer use another of the same layer, add
the pair to SIDEWAYS with the reason.
"""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE_DIR = Path(__file__).resolve().parent.parent / "unifiedseg"

# Bottom first. A module may import its own package and any package of a lower layer.
LAYERS = [
    ("bottom", ("constants", "paths", "taxonomy", "utils")),
    ("building blocks", ("data", "models", "losses", "optim")),
    ("config", ("config",)),
    ("machinery", ("drawing", "engine", "evaluation", "inference")),
    ("command line", ("cli",)),
]
# Imports between two packages of one layer that are allowed: (importer, imported module or package).
SIDEWAYS = {
    ("constants", "unifiedseg.utils.checks"): "the label-map rule checks its argument",
    ("taxonomy", "unifiedseg.constants"): "label dtypes and ignore labels",
    ("taxonomy", "unifiedseg.paths"): "where the shipped taxonomies are",
    ("taxonomy", "unifiedseg.utils"): "file writes, suggestions",
    ("engine", "unifiedseg.evaluation"): "training validates",
    ("models", "unifiedseg.losses"): "the Segmentor computes its losses",
    ("inference", "unifiedseg.engine.checkpoint"): "inference reads the checkpoints training writes",
}
# Packages that only some higher packages may use: the training config is read by what runs things.
ONLY_FOR = {"config": ("engine", "inference", "cli")}

LAYER_OF = {package: index for index, (_, packages) in enumerate(LAYERS) for package in packages}


def module_name(path: Path) -> str:
    """unifiedseg/data/labels.py -> unifiedseg.data.labels; a package's __init__.py -> the package."""
    parts = path.relative_to(PACKAGE_DIR.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def is_module(name: str) -> bool:
    """Whether unifiedseg.a.b names a module or package on disk."""
    path = PACKAGE_DIR.parent.joinpath(*name.split("."))
    return path.with_suffix(".py").is_file() or (path / "__init__.py").is_file()


def imported_modules(module: str, source: str, is_package: bool = False) -> list[tuple[int, str]]:
    """(line, unifiedseg module) of every import in `source`, at any depth; `from unifiedseg.x import y`
    counts as unifiedseg.x.y when y is a module, relative imports are resolved against `module`."""
    found = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = module.split(".")
                anchor = anchor if is_package else anchor[:-1]
                anchor = anchor[:len(anchor) - (node.level - 1)]
                base = ".".join(anchor + ([node.module] if node.module else []))
            for alias in node.names:
                full = f"{base}.{alias.name}"
                found.append((node.lineno, full if is_module(full) else base))
    return [(line, name) for line, name in found if name == "unifiedseg" or name.startswith("unifiedseg.")]


def package_of(module: str) -> str | None:
    """unifiedseg.data.labels -> data; the top-level package itself -> None."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else None


def problem(importer: str, imported: str) -> str | None:
    """Why `importer` may not import `imported` (both unifiedseg modules), or None when it may."""
    source, target = package_of(importer), package_of(imported)
    if source is None or target is None or source == target:
        return None
    for package in (source, target):
        if package not in LAYER_OF:
            return f"package {package!r} is in no layer; add it to LAYERS in tests/test_layers.py"
    if any(source == s and (imported == t or imported.startswith(t + ".")) for s, t in SIDEWAYS):
        return None
    if target in ONLY_FOR and source not in ONLY_FOR[target]:
        return f"only {', '.join(ONLY_FOR[target])} may import {target}"
    source_layer, target_layer = LAYER_OF[source], LAYER_OF[target]
    if target_layer < source_layer:
        return None
    below = [p for _, packages in LAYERS[:source_layer] for p in packages if source in ONLY_FOR.get(p, (source,))]
    where = "a higher" if target_layer > source_layer else "the same"
    return (f"{source} ({LAYERS[source_layer][0]}) imports {target}, of {where} layer ({LAYERS[target_layer][0]}); "
            f"it may import: {', '.join(below) or 'no other package'}")


def layer_violations(module: str, source: str, is_package: bool = False) -> list[str]:
    """'LINE: imports X: why' for every import of `source` (the text of `module`) that breaks the layers."""
    return [f"{line}: imports {imported}: {why}"
            for line, imported in imported_modules(module, source, is_package)
            if (why := problem(module, imported)) is not None]


def test_every_module_imports_only_downwards():
    failures = []
    for path in sorted(PACKAGE_DIR.rglob("*.py")):
        module = module_name(path)
        for violation in layer_violations(module, path.read_text(encoding="utf-8"), path.name == "__init__.py"):
            failures.append(f"{path.relative_to(PACKAGE_DIR.parent)}:{violation}")
    assert not failures, "imports that break the layers (module:line):\n" + "\n".join(failures)


def test_every_package_has_a_layer():
    packages = {path.stem if path.is_file() else path.name for path in PACKAGE_DIR.iterdir()
                if (path.suffix == ".py" and path.stem != "__init__") or (path / "__init__.py").is_file()}
    assert packages - set(LAYER_OF) == set(), "add these to LAYERS in tests/test_layers.py"


def test_the_check_catches_upward_imports_anywhere_in_a_module():
    source = ("from unifiedseg.constants import IGNORE_INDEX\n"
              "def f():\n"
              "    from unifiedseg.engine import launch\n"
              "    import unifiedseg.cli.train\n")
    found = layer_violations("unifiedseg.data.example", source)
    assert len(found) == 2
    assert found[0].startswith("3: imports unifiedseg.engine.launch: data (building blocks) imports engine, "
                               "of a higher layer (machinery); it may import: constants, paths, taxonomy, utils")
    assert found[1].startswith("4: imports unifiedseg.cli.train:")
    assert layer_violations("unifiedseg.losses.example", "from unifiedseg.data.stats import x\n") == [
        "1: imports unifiedseg.data.stats: losses (building blocks) imports data, of the same layer "
        "(building blocks); it may import: constants, paths, taxonomy, utils"]
    assert layer_violations("unifiedseg.evaluation.example", "from unifiedseg.config import load_config\n") == [
        "1: imports unifiedseg.config: only engine, inference, cli may import config"]
    assert layer_violations("unifiedseg.inference.example", "from unifiedseg.engine.launch import x\n")
    assert not layer_violations("unifiedseg.inference.example", "from unifiedseg.engine import checkpoint\n")
