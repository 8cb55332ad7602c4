"""Compare two taxonomy tables: universal classes added, removed and renamed, and the dataset classes
and test classes whose universal mapping changed.

Also holds the read-only views of a column that the comparison is made of (which universal classes
each dataset class maps to, which test class each universal class counts towards); `show`, `stats`
and the edits use the same views.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from unifiedseg.taxonomy.table import (
    PARTIAL_MARK,
    UNLABELED,
    CellEntry,
    CellSyntaxError,
    TaxonomyError,
    TaxonomyTable,
    parse_cell,
)

IGNORED = "(ignored)"
UNMAPPED = "(mapped nowhere)"
NO_TEST_CLASS = "(none)"


# ---- views of one table ----------------------------------------------------------------------------
def dataset_columns(table: TaxonomyTable, training: bool, include_skipped: bool = True) -> list[str]:
    """Dataset columns left (training) or right (test) of `universal`; skipped columns too by default,
    because an edit that moves rows must carry their cells along."""
    u = table.universal_col
    span = table.header[:u] if training else table.header[u + 1:]
    return [c for c in span if c not in table.meta.metadata_columns
            and (include_skipped or c not in table.meta.skip_columns)]


def cell_entries(table: TaxonomyTable, row: int, column: str) -> list[CellEntry]:
    """Parsed entries of a cell; a malformed cell raises TaxonomyError naming its line, column and text."""
    raw = table.cell(row, column)
    try:
        return parse_cell(raw)
    except CellSyntaxError as err:
        raise TaxonomyError(f"{table.path or 'TSV'}:{table.line_of(row)}: column {column!r}: cell {raw!r}: {err}; "
                            f"run `unifiedseg-taxonomy validate {table.path or 'TSV'}`") from None


def column_targets(table: TaxonomyTable, dataset: str) -> dict[str, list[tuple[str, bool]]]:
    """Training column: dataset class name -> [(universal class, partial)] of every row naming it, in row
    order; the unlabeled row appears as ('unlabeled', False)."""
    targets: dict[str, list[tuple[str, bool]]] = {}
    for i in range(len(table.rows)):
        for entry in cell_entries(table, i, dataset):
            targets.setdefault(entry.name, []).append((table.universal_name(i), entry.partial))
    return targets


def test_targets(table: TaxonomyTable, dataset: str) -> dict[str, str]:
    """Test column: universal class -> the test class it counts towards (rows with an empty cell left out)."""
    found = {}
    for i in table.class_row_indices:
        entries = cell_entries(table, i, dataset)
        if entries:
            found[table.universal_name(i)] = format_cell_names(entries)
    return found


def format_cell_names(entries: list[CellEntry]) -> str:
    return ", ".join(str(e) for e in entries)


def format_targets(targets: list[tuple[str, bool]], dataset_class: str = "") -> str:
    """`road`, `~bicyclist, ~motorcyclist`, `(ignored)` for the unlabeled row (or a dataset class named
    unlabeled that no row names), `(mapped nowhere)`."""
    if not targets:
        return IGNORED if dataset_class == UNLABELED else UNMAPPED
    return ", ".join(IGNORED if universal == UNLABELED else (PARTIAL_MARK if partial else "") + universal
                     for universal, partial in targets)


def _class_ids(table: TaxonomyTable, dataset: str) -> list[str] | None:
    try:
        return table.dataset_names(dataset)
    except TaxonomyError:
        return None


# ---- the comparison --------------------------------------------------------------------------------
@dataclass(frozen=True)
class ClassChange:
    """A dataset class whose universal target(s) changed; `ids` are its label ids when its list is known."""

    name: str
    ids: tuple[int, ...]
    old: str
    new: str


@dataclass(frozen=True)
class TestChange:
    """A universal class (present in both tables) whose test class changed in one test dataset."""

    universal: str
    old: str
    new: str


@dataclass
class TaxonomyDiff:
    added: list[str] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)
    renamed: list[tuple[str, str]] = field(default_factory=list)
    datasets_added: list[str] = field(default_factory=list)
    datasets_removed: list[str] = field(default_factory=list)
    train_changes: dict[str, list[ClassChange]] = field(default_factory=dict)
    test_changes: dict[str, list[TestChange]] = field(default_factory=dict)

    @property
    def is_empty(self) -> bool:
        return not (self.added or self.removed or self.renamed or self.datasets_added or self.datasets_removed
                    or self.train_changes or self.test_changes)

    def lines(self) -> list[str]:
        """Human-readable report; empty when the tables map everything the same way."""
        out = []
        if self.added:
            out.append(f"universal classes added ({len(self.added)}): {', '.join(self.added)}")
        if self.removed:
            out.append(f"universal classes removed ({len(self.removed)}): {', '.join(self.removed)}")
        if self.renamed:
            out.append(f"universal classes renamed ({len(self.renamed)}): "
                       + ", ".join(f"{old} -> {new}" for old, new in self.renamed))
        if self.datasets_added:
            out.append(f"dataset columns added: {', '.join(self.datasets_added)}")
        if self.datasets_removed:
            out.append(f"dataset columns removed: {', '.join(self.datasets_removed)}")
        for dataset, changes in self.train_changes.items():
            out.append(f"{dataset} (training): {len(changes)} class(es) change universal class")
            for c in changes:
                ids = ("id " if len(c.ids) == 1 else "ids ") + ", ".join(map(str, c.ids)) + " " if c.ids else ""
                out.append(f"  {ids}{c.name}: {c.old} -> {c.new}")
        for dataset, changes in self.test_changes.items():
            out.append(f"{dataset} (test): {len(changes)} universal class(es) change test class")
            for c in changes:
                out.append(f"  {c.universal}: {c.old} -> {c.new}")
        return out


def _rename_signature(table: TaxonomyTable, row: int, columns: list[str]) -> frozenset:
    return frozenset((c, frozenset(cell_entries(table, row, c))) for c in columns if cell_entries(table, row, c))


def diff_tables(old: TaxonomyTable, new: TaxonomyTable) -> TaxonomyDiff:
    """What changed from `old` to `new`.

    A removed and an added universal class whose non-empty training cells (in the training columns of
    both tables) are identical count as a rename; dataset classes are then compared through the
    rename, so a rename alone changes no dataset class.
    """
    result = TaxonomyDiff()
    old_train, new_train = dataset_columns(old, True), dataset_columns(new, True)
    old_test, new_test = dataset_columns(old, False), dataset_columns(new, False)
    common_train = [d for d in new_train if d in old_train]
    common_test = [d for d in new_test if d in old_test]
    result.datasets_added = [d for d in new_train + new_test if d not in old_train + old_test]
    result.datasets_removed = [d for d in old_train + old_test if d not in new_train + new_test]

    old_classes, new_classes = old.class_names, new.class_names
    removed = [c for c in old_classes if c not in set(new_classes)]
    added = [c for c in new_classes if c not in set(old_classes)]
    rename: dict[str, str] = {}
    if common_train:
        added_signatures = {a: _rename_signature(new, new.row_index_of(a), common_train) for a in added}
        for r in removed:
            signature = _rename_signature(old, old.row_index_of(r), common_train)
            if not signature:
                continue
            match = next((a for a in added if a not in rename.values() and added_signatures[a] == signature), None)
            if match is not None:
                rename[r] = match
    result.renamed = list(rename.items())
    result.removed = [r for r in removed if r not in rename]
    result.added = [a for a in added if a not in rename.values()]

    for dataset in common_train:
        old_map = {name: sorted((rename.get(u, u), p) for u, p in t) for name, t in column_targets(old, dataset).items()}
        new_map = {name: sorted(t) for name, t in column_targets(new, dataset).items()}
        ids = _class_ids(new, dataset) or _class_ids(old, dataset)
        order = list(dict.fromkeys((ids or []) + list(new_map) + list(old_map)))
        changes = []
        for name in order:
            before, after = old_map.get(name, []), new_map.get(name, [])
            if before != after:
                class_ids = tuple(i for i, n in enumerate(ids or []) if n == name)
                changes.append(ClassChange(name, class_ids, format_targets(before, name), format_targets(after, name)))
        if changes:
            result.train_changes[dataset] = changes

    for dataset in common_test:
        old_map = {rename.get(u, u): t for u, t in test_targets(old, dataset).items()}
        new_map = test_targets(new, dataset)
        in_both = set(rename.get(c, c) for c in old_classes)  # added and removed classes are listed above
        changes = [TestChange(u, old_map.get(u, NO_TEST_CLASS), new_map.get(u, NO_TEST_CLASS))
                   for u in new_classes if u in in_both and old_map.get(u) != new_map.get(u)]
        if changes:
            result.test_changes[dataset] = changes
    return result

