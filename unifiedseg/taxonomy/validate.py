"""Check a taxonomy table and report every problem at once, each naming its line, column and cell.

Errors make a table unusable (the converter refuses it, edits refuse to write it); warnings flag what
is legal but loses information.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass

from unifiedseg.constants import MAX_WIDE_CLASSES, WIDE_IGNORE_INDEX
from unifiedseg.taxonomy.table import (
    PARENT_COLUMN,
    PARTIAL_MARK,
    UNIVERSAL_COLUMN,
    UNLABELED,
    CellSyntaxError,
    TaxonomyError,
    TaxonomyTable,
    parse_cell,
    suggest,
)

ERROR = "error"
WARNING = "warning"


@dataclass(frozen=True)
class Problem:
    severity: str  # ERROR or WARNING
    message: str
    line: int | None = None  # line in the TSV file; the header is line 1
    column: str | None = None
    cell: str | None = None
    path: str | None = None

    def __str__(self) -> str:
        where = self.path or "TSV"
        if self.line is not None:
            where += f":{self.line}"
        parts = [where, self.severity]
        if self.column is not None:
            parts.append(f"column {self.column!r}")
        if self.cell is not None:
            parts.append(f"cell {self.cell!r}")
        return ": ".join(parts) + ": " + self.message


def errors(problems: list[Problem]) -> list[Problem]:
    return [p for p in problems if p.severity == ERROR]


def raise_on_errors(problems: list[Problem], path) -> None:
    found = errors(problems)
    if found:
        listing = "\n  ".join(str(p) for p in found)
        raise TaxonomyError(f"{path}: {len(found)} error(s) in the taxonomy; run `unifiedseg-taxonomy validate {path}`:\n  {listing}")


def validate(table: TaxonomyTable) -> list[Problem]:
    """All problems of `table`, in file order within each kind of check."""
    path = str(table.path) if table.path else None
    problems: list[Problem] = []

    def report(severity, message, line=None, column=None, cell=None):
        problems.append(Problem(severity, message, line, column, cell, path))

    # Structure: the header, the universal column, and the number of fields on each line.
    header = table.header
    for name in header:
        if name != name.strip():
            report(ERROR, "stray whitespace around the column name", 1, name.strip(), name)
    dupes = sorted({c for c in header if header.count(c) > 1})
    for name in dupes:
        report(ERROR, f"column name appears {header.count(name)} times", 1, name)
    if header.count(UNIVERSAL_COLUMN) != 1:
        report(ERROR, f"the header needs exactly one {UNIVERSAL_COLUMN!r} column (training datasets left of it, test datasets right)", 1)
        return problems
    for i, row in enumerate(table.rows):
        if len(row) != len(header):
            report(ERROR, f"{len(row)} tab-separated fields, the header has {len(header)}", table.line_of(i))

    # Universal classes: non-empty, unique, plain names, at most MAX_WIDE_CLASSES.
    seen: dict[str, int] = {}
    for i in range(len(table.rows)):
        raw = table.cell(i, UNIVERSAL_COLUMN)
        name = raw.strip()
        line = table.line_of(i)
        if raw != name:
            report(ERROR, "stray whitespace", line, UNIVERSAL_COLUMN, raw)
        if not name:
            report(ERROR, "empty universal class name", line, UNIVERSAL_COLUMN, raw)
        elif any(ch in name for ch in "{},~"):
            report(ERROR, "a universal class name cannot contain '{', '}', ',' or '~'", line, UNIVERSAL_COLUMN, raw)
        elif name in seen:
            report(ERROR, f"duplicate universal class (also on line {seen[name]})", line, UNIVERSAL_COLUMN, raw)
        else:
            seen[name] = line
    n_classes = len([n for n in seen if n != UNLABELED])
    if n_classes > MAX_WIDE_CLASSES:
        report(ERROR, f"{n_classes} universal classes; uint16 label maps hold at most {MAX_WIDE_CLASSES} "
                      f"({WIDE_IGNORE_INDEX} is their ignore label)")

    for dataset in table.train_datasets:
        _check_train_column(table, dataset, report)
    for dataset in table.test_datasets:
        _check_test_column(table, dataset, report)
    _check_universal_coverage(table, report)
    return problems


def _stray_whitespace(raw: str) -> bool:
    stripped = raw.strip()
    inner = stripped[1:-1] if stripped.startswith("{") else stripped
    return raw != stripped or any("  " in item.strip() or "\t" in item for item in inner.split(","))


def _parsed_cells(table: TaxonomyTable, dataset: str, report):
    """(row index, line, raw cell, entries) of each parsable cell of a column; reports stray whitespace
    and syntax errors (a cell that does not parse is not yielded)."""
    for i in range(len(table.rows)):
        raw = table.cell(i, dataset)
        line = table.line_of(i)
        if _stray_whitespace(raw):
            report(ERROR, "stray whitespace", line, dataset, raw)
        try:
            entries = parse_cell(raw)
        except CellSyntaxError as err:
            report(ERROR, str(err), line, dataset, raw)
            continue
        yield i, line, raw, entries


def _names_or_report(table, dataset, report) -> list[str] | None:
    try:
        return table.dataset_names(dataset)
    except TaxonomyError as err:
        report(ERROR, str(err), 1, dataset)
        return None


def _check_train_column(table: TaxonomyTable, dataset: str, report) -> None:
    names = _names_or_report(table, dataset, report)
    if names is None:
        return
    known = set(names)
    # name -> [(line, partial, universal)]
    occurrences: dict[str, list[tuple[int, bool, str]]] = defaultdict(list)
    for i, line, raw, entries in _parsed_cells(table, dataset, report):
        universal = table.universal_name(i)
        in_cell = set()
        for entry in entries:
            if entry.name not in known:
                report(ERROR, f"{dataset} has no class {entry.name!r}{suggest(entry.name, names)}", line, dataset, raw)
                continue
            if entry.name in in_cell:
                report(ERROR, f"{entry.name!r} is listed twice in one cell", line, dataset, raw)
                continue
            in_cell.add(entry.name)
            if entry.partial and universal == UNLABELED:
                report(ERROR, f"~{entry.name} in the unlabeled row: a one-to-many class may be several universal classes, not 'unlabeled'",
                       line, dataset, raw)
            occurrences[entry.name].append((line, entry.partial and universal != UNLABELED, universal))
    for class_id, name in enumerate(names):
        found = occurrences.get(name, [])
        if name in names[:class_id]:
            continue  # a name listed twice in the class list (e.g. 'unlabeled'): one mapping serves both ids
        if not found:
            if name == UNLABELED:
                continue  # the class a dataset itself calls unlabeled is ignored without a row
            report(ERROR, f"class {name!r} (id {class_id}) of {dataset} is mapped nowhere; add it to a universal row, "
                          f"or to the 'unlabeled' row to ignore it", None, dataset, name)
            continue
        plain = [f for f in found if not f[1]]
        partial = [f for f in found if f[1]]
        lines = ", ".join(str(f[0]) for f in found)
        if len(plain) > 1 or (plain and partial):
            report(ERROR, f"class {name!r} of {dataset} is mapped on several lines ({lines}); if it may be any of those "
                          f"universal classes, write ~{name} on each (one-to-many)", found[1][0], dataset, name)
        elif len(partial) == 1:
            report(ERROR, f"~{name} appears on one line only; one-to-many needs two or more universal classes, "
                          f"so write plain {name!r}", partial[0][0], dataset, PARTIAL_MARK + name)


def _check_test_column(table: TaxonomyTable, dataset: str, report) -> None:
    names = _names_or_report(table, dataset, report)
    if names is None:
        return
    known = set(names)
    reached: dict[str, list[int]] = defaultdict(list)  # test class -> rows reaching it
    for i, line, raw, entries in _parsed_cells(table, dataset, report):
        if not entries:
            continue
        if len(entries) > 1 or entries[0].partial:
            report(ERROR, "a universal class counts towards one test class: write a single plain name", line, dataset, raw)
            continue
        name = entries[0].name
        if table.universal_name(i) == UNLABELED:
            report(ERROR, "the unlabeled row cannot count towards a test class", line, dataset, raw)
        elif name not in known:
            report(ERROR, f"{dataset} has no class {name!r}{suggest(name, names)}", line, dataset, raw)
        else:
            reached[name].append(i)

    acknowledged = set(table.meta.unreachable_test_classes.get(dataset, []))
    for class_id, name in enumerate(names):
        if name == UNLABELED or name in reached:
            continue
        if name in acknowledged:
            report(WARNING, f"test class {name!r} (id {class_id}) is reached by no universal class (acknowledged in "
                            f"{table.meta.path}); it scores 0 IoU in zero-shot evaluation", None, dataset, name)
        else:
            report(ERROR, f"test class {name!r} (id {class_id}) is reached by no universal class; set it in the {dataset!r} "
                          f"cell of a universal row, or acknowledge it under unreachable_test_classes in the companion YAML",
                   None, dataset, name)
    for name in sorted(acknowledged & set(reached)):
        report(WARNING, f"{name!r} is listed as unreachable in {table.meta.path} but universal classes reach it; remove it there",
               None, dataset, name)

    if PARENT_COLUMN in table.header:
        for name, rows in reached.items():
            parents = sorted({table.cell(i, PARENT_COLUMN).strip() for i in rows} - {""})
            if len(parents) > 1:
                shown = ", ".join(parents[:6]) + (", ..." if len(parents) > 6 else "")
                report(WARNING, f"test class {name!r} merges {len(rows)} universal classes from {len(parents)} parent categories "
                                f"({shown}); predictions among them are indistinguishable there",
                       table.line_of(rows[0]), dataset, name)


def _check_universal_coverage(table: TaxonomyTable, report) -> None:
    """Warn about universal classes that no training dataset labels: the model never sees them."""
    datasets = table.train_datasets
    if not datasets:
        return
    for i in table.class_row_indices:
        if not any(table.cell(i, d).strip() for d in datasets):
            report(WARNING, "no training dataset maps to this universal class, so no model learns it", table.line_of(i),
                   UNIVERSAL_COLUMN, table.universal_name(i))
