"""`unifiedseg-taxonomy` (also `python tools/taxonomy.py`): validate, inspect, compare and edit a
taxonomy TSV.

Read-only commands: validate, show, stats, diff. Edits (add-class, rename, merge, split, map,
add-dataset) compute the new table, validate it, and write it atomically only when it has no
errors; otherwise they print the errors, write nothing and exit 1. Exit 2 means a bad request
(unknown class or dataset, a name already taken, a file that cannot be read).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import yaml

from unifiedseg.taxonomy import edit
from unifiedseg.taxonomy.diff import cell_entries, column_targets, diff_tables, format_targets, test_targets
from unifiedseg.taxonomy.edit import EditArgumentError, EditConflict, EditResult
from unifiedseg.taxonomy.table import (
    UNLABELED,
    TaxonomyError,
    TaxonomyMeta,
    TaxonomyTable,
    load_names,
    resolve_tsv,
    suggest,
)
from unifiedseg.taxonomy.validate import ERROR, WARNING, validate
from unifiedseg.utils.fileio import atomic_write, atomic_write_text

EXIT_OK, EXIT_INVALID, EXIT_USAGE = 0, 1, 2
TSV_HELP = "taxonomy TSV: a shipped name (e.g. mseg) or a path"


def _out(line: str = "") -> None:
    print(line)


def _err(line: str) -> None:
    print(line, file=sys.stderr)


# ---- read-only commands ------------------------------------------------------------------------
def cmd_validate(args) -> int:
    path = resolve_tsv(args.tsv)
    try:
        table = TaxonomyTable.load(path)
    except TaxonomyError as err:
        _out(f"{path}: error: {err}")
        _out(f"{path}: 1 error(s), 0 warning(s)")
        return EXIT_INVALID
    problems = validate(table)
    for problem in problems:
        _out(str(problem))
    n_errors = sum(p.severity == ERROR for p in problems)
    n_warnings = sum(p.severity == WARNING for p in problems)
    _out(f"{table.path}: {n_errors} error(s), {n_warnings} warning(s)")
    return EXIT_INVALID if n_errors else EXIT_OK


def _require_shown_dataset(table: TaxonomyTable, dataset: str) -> None:
    available = table.train_datasets + table.test_datasets
    if dataset in available:
        return
    if dataset in table.skipped_columns:
        raise EditArgumentError(f"dataset column {dataset!r} is skipped in {table.meta.path} ({table.meta.skip_columns[dataset]})")
    raise EditArgumentError(f"no dataset {dataset!r} in {table.path}{suggest(dataset, available)}; training datasets: "
                            f"{', '.join(table.train_datasets) or 'none'}; test datasets: {', '.join(table.test_datasets) or 'none'}")


def show_lines(table: TaxonomyTable, dataset: str) -> list[str]:
    """One line per class id: a training class and its universal target(s), or a test class and the
    universal classes counting towards it."""
    _require_shown_dataset(table, dataset)
    names = table.dataset_names(dataset)
    id_width = len(str(max(len(names) - 1, 0)))
    name_width = max((len(n) for n in names), default=0)
    if dataset in table.train_datasets:
        targets = column_targets(table, dataset)
        lines = [f"{dataset}: training dataset, {len(names)} classes (id, class -> universal class)"]
        for i, name in enumerate(names):
            lines.append(f"{i:>{id_width}}  {name:<{name_width}} -> {format_targets(targets.get(name, []), name)}")
        return lines
    reaching: dict[str, list[str]] = {}
    for universal, test_class in test_targets(table, dataset).items():
        reaching.setdefault(test_class, []).append(universal)
    acknowledged = set(table.meta.unreachable_test_classes.get(dataset, []))
    lines = [f"{dataset}: test dataset, {len(names)} classes (id, class <- universal classes counting towards it)"]
    for i, name in enumerate(names):
        found = reaching.get(name)
        shown = ", ".join(found) if found else ("(none; acknowledged as unreachable)" if name in acknowledged else "(none)")
        lines.append(f"{i:>{id_width}}  {name:<{name_width}} <- {shown}")
    return lines


def cmd_show(args) -> int:
    table = TaxonomyTable.load(args.tsv)
    for line in show_lines(table, args.dataset):
        _out(line)
    return EXIT_OK


STATS_COLUMNS = ("dataset", "kind", "classes", "mapped", "ignored", "one-to-many", "many-to-one")


def stats_rows(table: TaxonomyTable) -> list[tuple]:
    """Per dataset: (name, kind, classes, mapped, ignored, one-to-many, many-to-one), counted over class ids.

    Training: mapped = ids with a universal class; ignored = ids in the unlabeled row or mapped
    nowhere; one-to-many = ids written `~name`; many-to-one = universal cells holding a set.
    Test: mapped = ids some universal class counts towards; ignored = the others; many-to-one =
    test classes that two or more universal classes count towards.
    """
    rows = []
    for dataset in table.train_datasets:
        names = table.dataset_names(dataset)
        targets = column_targets(table, dataset)
        mapped = sum(any(u != UNLABELED for u, _ in targets.get(n, [])) for n in names)
        partial = sum(any(p for _, p in targets.get(n, [])) for n in names)
        sets = sum(len(cell_entries(table, i, dataset)) > 1 for i in table.class_row_indices)
        rows.append((dataset, "training", len(names), mapped, len(names) - mapped, partial, sets))
    for dataset in table.test_datasets:
        names = table.dataset_names(dataset)
        counts: dict[str, int] = {}
        for test_class in test_targets(table, dataset).values():
            counts[test_class] = counts.get(test_class, 0) + 1
        mapped = sum(n in counts for n in names)
        rows.append((dataset, "test", len(names), mapped, len(names) - mapped, "-", sum(c > 1 for c in counts.values())))
    return rows


def format_table(header: tuple, rows: list[tuple]) -> list[str]:
    widths = [max(len(str(v)) for v in column) for column in zip(header, *rows)]
    lines = []
    for values in [header] + rows:
        cells = [str(v).ljust(w) if k < 2 else str(v).rjust(w) for k, (v, w) in enumerate(zip(values, widths))]
        lines.append("  ".join(cells).rstrip())
    return lines


def cmd_stats(args) -> int:
    table = TaxonomyTable.load(args.tsv)
    for line in format_table(STATS_COLUMNS, stats_rows(table)):
        _out(line)
    _out(f"{len(table.class_names)} universal classes"
         + (f"; skipped columns: {', '.join(table.skipped_columns)}" if table.skipped_columns else ""))
    _out("counts are over class ids. training: ignored = in the unlabeled row or mapped nowhere; many-to-one = "
         "cells holding a set. test: mapped = reached by a universal class; many-to-one = test classes reached "
         "by several universal classes.")
    return EXIT_OK


def cmd_diff(args) -> int:
    old, new = TaxonomyTable.load(args.old), TaxonomyTable.load(args.new)
    lines = diff_tables(old, new).lines()
    if not lines:
        _out(f"no differences between {old.path} and {new.path}")
    for line in lines:
        _out(line)
    return EXIT_OK


# ---- edits -------------------------------------------------------------------------------------
def _load_for_edit(args) -> tuple[TaxonomyTable, Path]:
    """The table to edit and where the result goes; with --output elsewhere, the result is read with
    the companion YAML and class lists found beside the output, as it will be when loaded from there."""
    table = TaxonomyTable.load(args.tsv)
    target = Path(args.output) if args.output else table.path
    if target.resolve() != table.path.resolve():
        if not target.parent.is_dir():
            raise EditArgumentError(f"--output {target}: folder {target.parent} does not exist")
        table.meta = TaxonomyMeta.for_tsv(target)
    return table, target


def _finish_edit(result: EditResult, target: Path, before_write=None) -> int:
    """Validate the result; write it (and run `before_write`) only when it has no errors."""
    candidate = result.table
    candidate.path = target
    problems = validate(candidate)
    found = [p for p in problems if p.severity == ERROR]
    if found:
        _err(f"refused: the edited taxonomy would have {len(found)} error(s); {target} was not written")
        for problem in found:
            _err(f"  {problem}")
        _err("the edit would have done:")
        for line in result.effects:
            _err(f"  {line}")
        return EXIT_INVALID
    if before_write is not None:
        before_write()
    candidate.write(target)
    for line in result.effects:
        _out(line)
    n_warnings = len(problems)
    _out(f"wrote {target} ({n_warnings} warning(s)"
         + (f"; `unifiedseg-taxonomy validate {target}` lists them)" if n_warnings else ")"))
    return EXIT_OK


def cmd_add_class(args) -> int:
    tests: dict[str, str] = {}
    for item in args.test or []:
        dataset, sep, test_class = item.partition("=")
        if not sep or not dataset or not test_class:
            raise EditArgumentError(f"--test {item!r}: expected DATASET=CLASS, e.g. --test camvid-11=Road")
        if dataset in tests:
            raise EditArgumentError(f"--test names dataset {dataset!r} twice (a universal class counts towards one test class)")
        tests[dataset] = test_class
    table, target = _load_for_edit(args)
    return _finish_edit(edit.add_class(table, args.name, parent=args.parent, after=args.after, tests=tests), target)


def cmd_rename(args) -> int:
    table, target = _load_for_edit(args)
    return _finish_edit(edit.rename(table, args.old, args.new), target)


def cmd_merge(args) -> int:
    table, target = _load_for_edit(args)
    return _finish_edit(edit.merge(table, args.a, args.b, args.into), target)


def cmd_split(args) -> int:
    assign = []
    for item in args.assign or []:
        left, sep, target_class = item.rpartition("=")
        dataset, colon, name = left.partition(":")
        if not sep or not colon or not dataset or not name or not target_class:
            raise EditArgumentError(f"--assign {item!r}: expected DATASET:CLASS=NEW_CLASS, e.g. --assign cityscapes-19:rider=bicyclist")
        assign.append((dataset, name, target_class))
    table, target = _load_for_edit(args)
    return _finish_edit(edit.split(table, args.universal, args.into, assign), target)


def cmd_map(args) -> int:
    table, target = _load_for_edit(args)
    return _finish_edit(edit.map_class(table, args.dataset, args.dataset_class, args.to), target)


def _names_file_read_by(meta: TaxonomyMeta, dataset: str, copy: Path) -> Path:
    """The class list a table with `meta` reads for `dataset` once `copy` exists (TaxonomyMeta's search order)."""
    if dataset in meta.names_files:
        return meta.names_files[dataset]
    for folder in meta.names_dirs:
        for candidate in (folder / dataset / f"{dataset}_names.txt", folder / f"{dataset}_names.txt"):
            if candidate.resolve() == copy.resolve() or candidate.exists():
                return candidate
    return copy


def add_unreachable_to_yaml(yaml_path: Path, additions: dict[str, list[str]]) -> None:
    """Add `unreachable_test_classes` entries to a companion YAML, atomically, keeping its other keys.

    The entries are inserted as text so comments survive; if the result does not read back as
    expected (an unusual layout), the file is rewritten from its data instead."""
    text = yaml_path.read_text(encoding="utf-8") if yaml_path.exists() else ""
    data = (yaml.safe_load(text) or {}) if text else {}
    expected = dict(data)
    expected["unreachable_test_classes"] = {**(data.get("unreachable_test_classes") or {}), **additions}
    entries = "".join("  " + yaml.safe_dump({k: v}, default_flow_style=None, width=10**6) for k, v in additions.items())
    lines = text.splitlines(keepends=True)
    key_line = next((k for k, line in enumerate(lines) if line.rstrip() == "unreachable_test_classes:"), None)
    if key_line is not None:
        lines.insert(key_line + 1, entries)
        new_text = "".join(lines)
    elif "unreachable_test_classes" not in data:
        new_text = text + ("" if not text or text.endswith("\n") else "\n") + "unreachable_test_classes:\n" + entries
    else:
        new_text = ""
    try:
        ok = new_text and yaml.safe_load(new_text) == expected
    except yaml.YAMLError:
        ok = False
    if not ok:
        new_text = yaml.safe_dump(expected, sort_keys=False, default_flow_style=None)
    atomic_write_text(yaml_path, new_text)


def cmd_add_dataset(args) -> int:
    table, target = _load_for_edit(args)
    names_path = Path(args.names)
    result = edit.add_dataset(table, args.name, names_path, test=args.test)
    names = load_names(names_path)
    copy = target.parent / "dataset_lists" / args.name / f"{args.name}_names.txt"
    read_by_table = _names_file_read_by(table.meta, args.name, copy)
    for other in (copy, read_by_table):
        if other.exists() and other.resolve() != names_path.resolve() and load_names(other) != names:
            raise EditArgumentError(f"{other} already lists classes of {args.name!r} and differs from {names_path}; "
                                    f"remove it or choose another dataset name")
    yaml_path = target.with_suffix(".yaml")

    def before_write():
        if not copy.exists():
            copy.parent.mkdir(parents=True, exist_ok=True)
            data = names_path.read_bytes()
            atomic_write(copy, lambda handle: handle.write(data))
            result.effects.append(f"  copied the class list to {copy}")
        if result.unreachable_added:
            add_unreachable_to_yaml(yaml_path, result.unreachable_added)
            result.effects.append(f"  acknowledged the unreachable test classes in {yaml_path}")

    return _finish_edit(result, target, before_write)


# ---- the parser --------------------------------------------------------------------------------
def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="unifiedseg-taxonomy",
        description="Validate, inspect, compare and edit a unified-taxonomy TSV. Edits validate their result and "
                    "write it atomically only when it has no errors (exit 1 otherwise); exit 2 is a bad request.")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def command(name, help_text, func):
        sub = commands.add_parser(name, help=help_text, description=help_text)
        sub.set_defaults(func=func)
        return sub

    def edit_command(name, help_text, func):
        sub = command(name, help_text, func)
        sub.add_argument("tsv", metavar="TSV", help=TSV_HELP)
        sub.add_argument("--output", metavar="PATH",
                         help="write the result here instead of overwriting TSV; it is validated with the companion "
                              "YAML and dataset_lists/ found beside PATH, as it will be read from there")
        return sub

    sub = command("validate", "print every problem of a taxonomy; exit 1 if any is an error", cmd_validate)
    sub.add_argument("tsv", metavar="TSV", help=TSV_HELP)

    sub = command("show", "list a dataset's classes and where they go in the universal taxonomy", cmd_show)
    sub.add_argument("tsv", metavar="TSV", help=TSV_HELP)
    sub.add_argument("--dataset", required=True, metavar="D", help="a training or test dataset column")

    sub = command("stats", "per dataset: classes, mapped, ignored, one-to-many and many-to-one counts", cmd_stats)
    sub.add_argument("tsv", metavar="TSV", help=TSV_HELP)

    sub = command("diff", "universal classes added, removed, renamed; dataset classes that changed target", cmd_diff)
    sub.add_argument("old", metavar="OLD", help=TSV_HELP)
    sub.add_argument("new", metavar="NEW", help=TSV_HELP)

    sub = edit_command("add-class", "add a universal class row (default: just before 'unlabeled')", cmd_add_class)
    sub.add_argument("name", metavar="NAME")
    sub.add_argument("--parent", metavar="P", help="its parent category")
    sub.add_argument("--after", metavar="U", help="insert the row after universal class U")
    sub.add_argument("--test", action="append", metavar="DATASET=CLASS",
                     help="test class it counts towards (repeatable, one per test dataset)")

    sub = edit_command("rename", "rename a universal class", cmd_rename)
    sub.add_argument("old", metavar="OLD")
    sub.add_argument("new", metavar="NEW")

    sub = edit_command("merge", "merge universal classes A and B into one row C (at A's position)", cmd_merge)
    sub.add_argument("a", metavar="A")
    sub.add_argument("b", metavar="B")
    sub.add_argument("--into", required=True, metavar="C", help="name of the merged class (may be A or B)")

    sub = edit_command("split", "split universal class U into new classes; unassigned dataset classes become "
                                "one-to-many", cmd_split)
    sub.add_argument("universal", metavar="U")
    sub.add_argument("--into", required=True, nargs="+", metavar="NEW", help="two or more new class names")
    sub.add_argument("--assign", action="append", metavar="DATASET:CLASS=NEW",
                     help="send a dataset class of U to one new class (repeatable; repeat a class for several)")

    sub = edit_command("map", "send a training class to universal class(es), or make universal classes count "
                              "towards a test class", cmd_map)
    sub.add_argument("dataset", metavar="DATASET")
    sub.add_argument("dataset_class", metavar="CLASS")
    sub.add_argument("--to", required=True, nargs="+", metavar="U",
                     help="universal class(es); several make a training class one-to-many; 'unlabeled' ignores it")

    sub = edit_command("add-dataset", "add a dataset column filled by matching class names", cmd_add_dataset)
    sub.add_argument("name", metavar="NAME")
    sub.add_argument("--names", required=True, metavar="FILE", help="class-name list: line i names label id i")
    sub.add_argument("--test", action="store_true", help="a test dataset (last column) instead of a training one")
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exit_:  # --help, or argparse's own usage error
        return exit_.code if isinstance(exit_.code, int) else EXIT_USAGE
    try:
        return args.func(args)
    except EditConflict as err:
        _err(f"refused: {err}")
        return EXIT_INVALID
    except TaxonomyError as err:
        _err(f"error: {err}")
        return EXIT_USAGE


if __name__ == "__main__":
    raise SystemExit(main())
