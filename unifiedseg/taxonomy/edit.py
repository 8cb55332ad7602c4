"""Edits of a taxonomy table as pure functions: each takes a table and returns an edited copy plus
human-readable lines saying what moved where. The input table is never changed, and only the cells
an edit touches are rewritten, so the rest of the file stays byte-identical.

A bad request (unknown class or dataset, a name that already exists) raises EditArgumentError; an
edit the table's content forbids (a merge of rows counting towards different test classes) raises
EditConflict. Whether the result is a valid taxonomy is for `validate` to say.
"""

from __future__ import annotations

import dataclasses
import difflib
from dataclasses import dataclass, field
from pathlib import Path

from unifiedseg.taxonomy.diff import cell_entries, column_targets, dataset_columns, format_targets
from unifiedseg.taxonomy.table import (
    PARENT_COLUMN,
    UNIVERSAL_COLUMN,
    UNLABELED,
    CellEntry,
    TaxonomyError,
    TaxonomyMeta,
    TaxonomyTable,
    format_cell,
    load_names,
    suggest,
)

FORBIDDEN_IN_NAMES = "{},~\t\r\n"


class EditArgumentError(TaxonomyError):
    """The request names something the table lacks, or a name it cannot take (a usage error)."""


class EditConflict(TaxonomyError):
    """The table's content forbids the edit as asked."""


@dataclass
class EditResult:
    table: TaxonomyTable
    effects: list[str]
    # add-dataset --test: test classes reached by nothing, to acknowledge in the companion YAML.
    unreachable_added: dict[str, list[str]] = field(default_factory=dict)


# ---- checks on the request ---------------------------------------------------------------------
def _where(table: TaxonomyTable) -> str:
    return str(table.path) if table.path else "the taxonomy"


def _require_row(table: TaxonomyTable, universal: str, allow_unlabeled: bool = False) -> int:
    """Row index of a universal class named in a request."""
    if universal == UNLABELED and not allow_unlabeled:
        raise EditArgumentError(f"{UNLABELED!r} is the row of ignored classes, not a universal class this edit can take")
    rows = table.class_row_indices + ([table.unlabeled_row_index] if allow_unlabeled and table.unlabeled_row_index is not None else [])
    for i in rows:
        if table.universal_name(i) == universal:
            return i
    candidates = table.class_names + ([UNLABELED] if allow_unlabeled else [])
    raise EditArgumentError(f"no universal class {universal!r} in {_where(table)}{suggest(universal, candidates)}")


def _check_new_class_name(table: TaxonomyTable, name: str, replacing: tuple[str, ...] = ()) -> None:
    if not name.strip() or name != name.strip() or any(ch in name for ch in FORBIDDEN_IN_NAMES):
        raise EditArgumentError(f"invalid universal class name {name!r}: it must be non-empty, without surrounding "
                                f"whitespace, tabs, newlines or any of {{ }} , ~")
    if name == UNLABELED:
        raise EditArgumentError(f"{UNLABELED!r} is reserved for the row of ignored classes")
    if name in table.class_names and name not in replacing:
        line = table.line_of(table.row_index_of(name))
        raise EditArgumentError(f"universal class {name!r} already exists ({_where(table)} line {line})")


def _require_dataset(table: TaxonomyTable, dataset: str, training: bool | None) -> str:
    """`dataset` must be a (non-skipped) dataset column; training=None accepts either kind."""
    train, test = table.train_datasets, table.test_datasets
    wanted = train + test if training is None else (train if training else test)
    if dataset in wanted:
        return dataset
    if dataset in table.meta.skip_columns and dataset in table.header:
        raise EditArgumentError(f"dataset column {dataset!r} is skipped in {table.meta.path} "
                                f"({table.meta.skip_columns[dataset]}), so it cannot be edited")
    kind = "dataset" if training is None else ("training dataset" if training else "test dataset")
    if dataset in train + test:
        other = "a test" if dataset in test else "a training"
        raise EditArgumentError(f"{dataset!r} is {other} dataset, not a {kind}; {kind}s: {', '.join(wanted) or 'none'}")
    raise EditArgumentError(f"no {kind} {dataset!r} in {_where(table)}{suggest(dataset, wanted)}; "
                            f"{kind}s: {', '.join(wanted) or 'none'}")


def _require_dataset_class(table: TaxonomyTable, dataset: str, name: str) -> None:
    names = table.dataset_names(dataset)
    if name not in names:
        raise EditArgumentError(f"dataset {dataset!r} has no class {name!r}{suggest(name, names)} "
                                f"(its classes are listed in {table.meta.names_file(dataset)})")


def _distinct(values: list[str], what: str) -> None:
    repeated = sorted({v for v in values if values.count(v) > 1})
    if repeated:
        raise EditArgumentError(f"{what} named more than once: {', '.join(repeated)}")


# ---- cell helpers ------------------------------------------------------------------------------
def _set_entries(table: TaxonomyTable, row: int, column: str, entries: list[CellEntry]) -> None:
    """Rewrite a cell only when its entries change, so untouched cells keep their exact text."""
    if cell_entries(table, row, column) != entries:
        table.set_cell(row, column, format_cell(entries))


def _full_row(table: TaxonomyTable, row: int) -> list[str]:
    return list(table.rows[row]) + [""] * (len(table.header) - len(table.rows[row]))


# ---- the edits ---------------------------------------------------------------------------------
def add_class(table: TaxonomyTable, name: str, parent: str | None = None, after: str | None = None,
              tests: dict[str, str] | None = None) -> EditResult:
    """A new universal class row, just before `unlabeled` (or after `after`), with optional parent
    category and test classes it counts towards."""
    _check_new_class_name(table, name)
    tests = dict(tests or {})
    row = [""] * len(table.header)
    row[table.universal_col] = name
    if parent is not None:
        if PARENT_COLUMN not in table.header:
            raise EditArgumentError(f"{_where(table)} has no {PARENT_COLUMN!r} column to hold --parent")
        if any(ch in parent for ch in "\t\r\n"):
            raise EditArgumentError(f"invalid parent category {parent!r}: no tabs or newlines")
        row[table.header.index(PARENT_COLUMN)] = parent
    for dataset, test_class in tests.items():
        _require_dataset(table, dataset, training=False)
        _require_dataset_class(table, dataset, test_class)
        row[table.header.index(dataset)] = test_class
    if after is not None:
        index = _require_row(table, after, allow_unlabeled=True) + 1
    else:
        unlabeled = table.unlabeled_row_index
        index = unlabeled if unlabeled is not None else len(table.rows)
    new = table.copy()
    new.rows.insert(index, row)
    effects = [f"added universal class {name!r} on line {new.line_of(index)}"
               + (f" (parent {parent!r})" if parent else "")]
    effects += [f"  {dataset} (test): {name!r} counts towards {test_class!r}" for dataset, test_class in tests.items()]
    return EditResult(new, effects)


def rename(table: TaxonomyTable, old: str, new_name: str) -> EditResult:
    row = _require_row(table, old)
    if new_name == old:
        raise EditArgumentError(f"the new name {new_name!r} is the old name")
    _check_new_class_name(table, new_name)
    new = table.copy()
    new.set_cell(row, UNIVERSAL_COLUMN, new_name)
    return EditResult(new, [f"renamed universal class {old!r} to {new_name!r} (line {new.line_of(row)})"])


def merge(table: TaxonomyTable, a: str, b: str, into: str) -> EditResult:
    """Rows `a` and `b` become one row `into` at `a`'s position.

    Training cells are united as sets. A class written `~x` in both rows becomes plain `x` when no
    other row of that column keeps `~x` (it was one-to-many among exactly these two). Test cells must
    agree or one be empty; metadata cells are `a`'s, filled from `b`'s where `a`'s are empty.
    """
    ia, ib = _require_row(table, a), _require_row(table, b)
    if ia == ib:
        raise EditArgumentError(f"cannot merge {a!r} with itself")
    _check_new_class_name(table, into, replacing=(a, b))
    line_a, line_b = table.line_of(ia), table.line_of(ib)
    merged = _full_row(table, ia)
    other = _full_row(table, ib)
    header = table.header

    conflicts = []
    test_lines = []
    for column in dataset_columns(table, training=False):
        ea, eb = cell_entries(table, ia, column), cell_entries(table, ib, column)
        col = header.index(column)
        if ea and eb and ea != eb:
            conflicts.append(f"column {column!r}: {a!r} (line {line_a}) counts towards {merged[col].strip()!r} but "
                             f"{b!r} (line {line_b}) towards {other[col].strip()!r}")
        elif eb and not ea:
            merged[col] = other[col]
        if ea or eb:
            test_lines.append(f"  {column} (test): {into!r} counts towards {(merged[col] if ea else other[col]).strip()!r}")
    if conflicts:
        raise EditConflict(f"{_where(table)}: cannot merge {a!r} and {b!r}: they count towards different test classes:\n  "
                           + "\n  ".join(conflicts)
                           + "\n(make them agree first, e.g. `unifiedseg-taxonomy map TSV DATASET CLASS --to UNIVERSAL`)")

    effects = []
    for column in dataset_columns(table, training=True):
        ea, eb = cell_entries(table, ia, column), cell_entries(table, ib, column)
        col = header.index(column)
        collapsed = []
        if not eb:
            pass  # `a`'s text stays as it is
        elif not ea:
            merged[col] = other[col]
        else:
            united: list[CellEntry] = []
            for entry in ea + eb:
                same = next((k for k, e in enumerate(united) if e.name == entry.name), None)
                if same is None:
                    united.append(entry)
                    continue
                if united[same].partial and entry.partial:
                    kept_elsewhere = any(e.name == entry.name and e.partial
                                         for i in range(len(table.rows)) if i not in (ia, ib)
                                         for e in cell_entries(table, i, column))
                    united[same] = CellEntry(entry.name, partial=kept_elsewhere)
                    if not kept_elsewhere:
                        collapsed.append(entry.name)
                else:
                    united[same] = CellEntry(entry.name, partial=False)
            merged[col] = format_cell(united)
        if ea or eb:
            note = (f" ({', '.join(collapsed)}: one-to-many between {a!r} and {b!r} only, now plain)"
                    if collapsed else "")
            effects.append(f"  {column}: {_shown(table.cell(ia, column))} + {_shown(table.cell(ib, column))} "
                           f"-> {merged[col].strip()}{note}")
    for column in header:
        col = header.index(column)
        if column in table.meta.metadata_columns and not merged[col].strip():
            merged[col] = other[col]
    merged[table.universal_col] = into

    new = table.copy()
    new.rows[ia] = merged
    del new.rows[ib]
    index = ia if ia < ib else ia - 1
    head = f"merged {a!r} (line {line_a}) and {b!r} (line {line_b}) into {into!r} (now line {new.line_of(index)})"
    return EditResult(new, [head] + effects + test_lines)


def _shown(raw: str) -> str:
    return raw.strip() or "(empty)"


def split(table: TaxonomyTable, universal: str, into: list[str],
          assign: list[tuple[str, str, str]] | None = None) -> EditResult:
    """Row `universal` becomes rows `into` (same parent, test cells copied).

    `assign` holds (dataset, class, new row) triples: each dataset class of the row's cells goes to
    the row(s) it is assigned; an unassigned one becomes one-to-many (`~class` in every new row), the
    partial-label case of a coarse class no one relabeled.
    """
    row = _require_row(table, universal)
    into = list(into)
    if len(into) < 2:
        raise EditArgumentError(f"split {universal!r} needs two or more new classes after --into, got {len(into)}")
    _distinct(into, "new class")
    for name in into:
        _check_new_class_name(table, name, replacing=(universal,))
    train_columns = dataset_columns(table, training=True)
    line = table.line_of(row)

    wanted: dict[tuple[str, str], list[str]] = {}
    for dataset, name, target in assign or []:
        if dataset not in train_columns:
            if dataset in dataset_columns(table, training=False):
                raise EditArgumentError(f"--assign {dataset}:{name}={target}: {dataset!r} is a test dataset; its cell is "
                                        f"copied to every new class (change it afterwards with `map`)")
            raise EditArgumentError(f"--assign {dataset}:{name}={target}: no training dataset {dataset!r}"
                                    f"{suggest(dataset, train_columns)}; training datasets: {', '.join(train_columns)}")
        in_cell = [e.name for e in cell_entries(table, row, dataset)]
        if name not in in_cell:
            raise EditArgumentError(f"--assign {dataset}:{name}={target}: {universal!r} (line {line}) has no {dataset} class "
                                    f"{name!r}{suggest(name, in_cell)}; its {dataset} cell holds "
                                    f"{_shown(table.cell(row, dataset))}")
        if target not in into:
            raise EditArgumentError(f"--assign {dataset}:{name}={target}: {target!r} is not one of the new classes "
                                    f"{', '.join(into)}{suggest(target, into)}")
        targets = wanted.setdefault((dataset, name), [])
        if target not in targets:
            targets.append(target)

    source = _full_row(table, row)
    new_rows = []
    for name in into:
        new_row = [""] * len(table.header)
        new_row[table.universal_col] = name
        if PARENT_COLUMN in table.header:
            new_row[table.header.index(PARENT_COLUMN)] = source[table.header.index(PARENT_COLUMN)]
        for column in dataset_columns(table, training=False):
            new_row[table.header.index(column)] = source[table.header.index(column)]
        new_rows.append(new_row)

    moved, one_to_many = [], []
    for column in train_columns:
        per_row: list[list[CellEntry]] = [[] for _ in into]
        for entry in cell_entries(table, row, column):
            targets = wanted.get((column, entry.name))
            if targets:
                partial = entry.partial or len(targets) > 1
                for target in targets:
                    per_row[into.index(target)].append(CellEntry(entry.name, partial))
                moved.append(f"  {column}: {entry} -> {', '.join(targets)}")
            else:
                for entries in per_row:
                    entries.append(CellEntry(entry.name, partial=True))
                one_to_many.append(f"  {column}: {entry} -> ~{entry.name} in {', '.join(into)}")
        for new_row, entries in zip(new_rows, per_row):
            new_row[table.header.index(column)] = format_cell(entries)

    new = table.copy()
    new.rows[row:row + 1] = new_rows
    effects = [f"split {universal!r} (line {line}) into {', '.join(repr(n) for n in into)} "
               f"(lines {line}-{line + len(into) - 1})"] + moved
    if one_to_many:
        effects += ["not assigned, so one-to-many among the new classes (any of them may be predicted there):"] + one_to_many
    return EditResult(new, effects)


def map_class(table: TaxonomyTable, dataset: str, name: str, targets: list[str]) -> EditResult:
    """Training dataset: `name` leaves every cell of its column and goes to the target rows (plain for
    one target, `~name` in each of several; the target may be `unlabeled`). Test dataset: each
    target row now counts towards test class `name`."""
    _require_dataset(table, dataset, training=None)
    _require_dataset_class(table, dataset, name)
    if not targets:
        raise EditArgumentError("map needs one or more universal classes after --to")
    _distinct(targets, "universal class")
    if dataset in table.test_datasets:
        return _map_test(table, dataset, name, targets)

    rows = [_require_row(table, t, allow_unlabeled=True) for t in targets]
    if UNLABELED in targets and len(targets) > 1:
        raise EditArgumentError(f"{UNLABELED!r} cannot be one of several targets: a one-to-many class may be several "
                                f"universal classes, not 'ignored'; map it to {UNLABELED!r} alone to ignore it")
    partial = len(targets) > 1
    before = column_targets(table, dataset).get(name, [])
    new = table.copy()
    for i in range(len(table.rows)):
        entries = cell_entries(table, i, dataset)
        if i in rows:
            kept = [CellEntry(name, partial) if e.name == name else e for e in entries]
            if all(e.name != name for e in entries):
                kept.append(CellEntry(name, partial))
            # a name listed twice in one cell keeps one entry
            kept = [e for k, e in enumerate(kept) if e.name != name or all(p.name != name for p in kept[:k])]
        else:
            kept = [e for e in entries if e.name != name]
        _set_entries(new, i, dataset, kept)
    after = column_targets(new, dataset).get(name, [])
    lines = ", ".join(str(new.line_of(i)) for i in sorted(rows))
    effect = (f"{dataset}: {name!r}: {format_targets(before, name)} -> {format_targets(after, name)} (line{'s' if len(rows) > 1 else ''} {lines})"
              if before != after else f"{dataset}: {name!r} already maps to {format_targets(after, name)}; nothing changed")
    return EditResult(new, [effect])


def _map_test(table: TaxonomyTable, dataset: str, name: str, targets: list[str]) -> EditResult:
    if UNLABELED in targets:
        raise EditArgumentError(f"the {UNLABELED!r} row cannot count towards a test class; name universal classes")
    rows = [_require_row(table, t) for t in targets]
    new = table.copy()
    effects = []
    for universal, i in zip(targets, rows):
        old = table.cell(i, dataset).strip()
        if table.cell(i, dataset) != name:
            new.set_cell(i, dataset, name)
        was = f"was {old!r}" if old else "was none"
        effects.append(f"{dataset} (test): {universal!r} (line {new.line_of(i)}) now counts towards {name!r} ({was})")
    return EditResult(new, effects)


def _check_new_dataset_name(table: TaxonomyTable, name: str) -> None:
    # ':' and '=' would make `--assign DATASET:CLASS=NEW` and `--test DATASET=CLASS` ambiguous
    if not name.strip() or name != name.strip() or any(ch in name for ch in "\t\r\n/\\:=") or name in (".", ".."):
        raise EditArgumentError(f"invalid dataset name {name!r}: it must be non-empty, without surrounding whitespace, "
                                f"tabs, newlines, path separators, ':' or '='")
    if name in table.header:
        raise EditArgumentError(f"{_where(table)} already has a column {name!r} (column {table.header.index(name) + 1})")
    if name == UNIVERSAL_COLUMN or name in table.meta.metadata_columns:
        raise EditArgumentError(f"{name!r} names a metadata column, not a dataset")


def _copy_meta(meta: TaxonomyMeta) -> TaxonomyMeta:
    return dataclasses.replace(
        meta, names_dirs=list(meta.names_dirs), names_files=dict(meta.names_files),
        metadata_columns=set(meta.metadata_columns), skip_columns=dict(meta.skip_columns),
        unreachable_test_classes={k: list(v) for k, v in meta.unreachable_test_classes.items()})


def add_dataset(table: TaxonomyTable, name: str, names_path: str | Path, test: bool = False) -> EditResult:
    """A new dataset column (training: just left of `universal`; test: last), filled by matching its
    class names to universal class names, case-insensitively.

    The new table reads the class list from `names_path` until the caller copies it beside the TSV.
    Unmatched training classes go to the unlabeled row; unmatched test classes are recorded in
    `unreachable_added` (and in the new table's metadata) so that the table validates.
    """
    _check_new_dataset_name(table, name)
    names_path = Path(names_path)
    names = load_names(names_path)
    distinct = list(dict.fromkeys(names))
    new = table.copy()
    new.meta = _copy_meta(table.meta)
    new.meta.names_files[name] = names_path
    new.meta.unreachable_test_classes.pop(name, None)
    width = len(table.header)
    new.rows = [row + [""] * (width - len(row)) for row in new.rows]
    position = width if test else table.universal_col
    new.header.insert(position, name)
    for row in new.rows:
        row.insert(position, "")

    by_lower: dict[str, list[int]] = {}
    for i in table.class_row_indices:
        by_lower.setdefault(table.universal_name(i).lower(), []).append(i)
    kind = "test" if test else "training"
    where = "as the last column" if test else f"just left of {UNIVERSAL_COLUMN!r}"
    effects = [f"added {kind} dataset {name!r} ({len(names)} classes, from {names_path}) {where} (column {position + 1})"]
    result = EditResult(new, effects)
    if test:
        unreached = []
        reached = 0
        for class_name in distinct:
            rows = by_lower.get(class_name.lower(), [])
            for i in rows:
                new.set_cell(i, name, class_name)
            if rows:
                reached += 1
            elif class_name != UNLABELED:
                unreached.append(class_name)
        effects.append(f"  {reached} of {len(distinct)} test classes are reached by the universal class of the same name")
        if unreached:
            new.meta.unreachable_test_classes[name] = unreached
            result.unreachable_added = {name: unreached}
            effects.append(f"  reached by no universal class (acknowledged under unreachable_test_classes; they score 0 IoU): "
                           f"{', '.join(unreached)}")
            effects.append(f"  make one reachable with: unifiedseg-taxonomy map TSV {name} TEST_CLASS --to UNIVERSAL")
        return result

    unlabeled = table.unlabeled_row_index
    cells: dict[int, list[CellEntry]] = {}
    unmatched = []
    for class_name in distinct:
        rows = by_lower.get(class_name.lower())
        if rows:
            for i in rows:
                cells.setdefault(i, []).append(CellEntry(class_name, partial=len(rows) > 1))
        elif class_name.lower() == UNLABELED and unlabeled is not None:
            cells.setdefault(unlabeled, []).append(CellEntry(class_name))  # the dataset's own unlabeled class
        else:
            unmatched.append(class_name)
    if unmatched and unlabeled is not None:
        cells.setdefault(unlabeled, []).extend(CellEntry(n) for n in unmatched)
    for i, entries in cells.items():
        new.set_cell(i, name, format_cell(entries))
    effects.append(f"  {len(distinct) - len(unmatched)} of {len(distinct)} classes matched a universal class by name")
    if unmatched:
        place = f"put in the {UNLABELED!r} row (ignored)" if unlabeled is not None else "mapped nowhere (the table has no 'unlabeled' row)"
        effects.append(f"  {len(unmatched)} unmatched, {place}:")
        for n in unmatched:
            close = difflib.get_close_matches(n, table.class_names, n=1, cutoff=0.6)
            effects.append(f"    {n!r}" + (f" (closest universal class: {close[0]!r})" if close else ""))
        effects.append(f"  map each with: unifiedseg-taxonomy map TSV {name} CLASS --to UNIVERSAL")
    return result
