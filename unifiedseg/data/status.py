"""What is on disk for each dataset split, against its list: the data status report.

For every requested (dataset, split): which list is read, how many of its images and labels exist
(stat calls only, shared between datasets that list the same files), which label releases are on disk
(the first label of each registry entry of the same folder and split), the ids of the first present
label checked against the dataset's taxonomy (one decode), the first missing path, and what to do about
it (the archive or preparation step that brings the missing files, from the registry's `images_from` /
`labels_from`). `unifiedseg-data status` prints it; training runs it for its datasets before building
anything and stops with the table when a dataset it needs is incomplete.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field, replace
from pathlib import Path

from tqdm import tqdm

from unifiedseg.data.decode import BadSampleError
from unifiedseg.data.labels import build_label_mapper, read_plan
from unifiedseg.data.listfile import ListEntry, ListFileError, read_first_entry, read_list
from unifiedseg.data.registry import DatasetRegistry, RegistryError
from unifiedseg.data.splits import available_splits, resolve_split
from unifiedseg.taxonomy.table import TaxonomyError

# Lists longer than this get a progress bar while their files are stat'ed.
PROGRESS_MIN_LINES = 5000
OK, INCOMPLETE, MISSING, NO_LIST, BAD_LABELS = "ok", "incomplete", "missing", "no list", "bad labels"


class DataNotReadyError(RuntimeError):
    """A dataset split that a run needs is missing or incomplete; the message is the status table."""


@dataclass(frozen=True)
class SplitRequest:
    dataset: str
    split: str
    required: bool = True  # counts towards the exit status / stops training when not ok
    role: str = ""  # train | val | test (for the table)


@dataclass
class SplitStatus:
    dataset: str
    split: str
    state: str = OK
    required: bool = True
    role: str = ""
    list_origin: str = ""
    listed: int = 0
    images: int = 0
    labels: int | None = 0  # None: an image-only list
    releases_on_disk: list[str] = field(default_factory=list)
    first_missing: str = ""
    problem: str = ""  # list, label-id or registry problem
    hint: str = ""

    @property
    def ok(self) -> bool:
        return self.state == OK

    def to_dict(self) -> dict:
        return {k: v for k, v in self.__dict__.items()}


class _ExistsCache:
    """os.path.exists with memory: the lists of one folder (e.g. cityscapes-19 and -34) share images."""

    def __init__(self):
        self.known: dict[Path, bool] = {}

    def __call__(self, path: Path) -> bool:
        found = self.known.get(path)
        if found is None:
            found = self.known[path] = os.path.exists(path)
        return found


def data_status(registry: DatasetRegistry, data_root, requests: list[SplitRequest], progress: bool = True,
                generate_lists: bool = True, mapper_for=None, label_source: str = "prepared") -> list[SplitStatus]:
    """One SplitStatus per request, in order. `generate_lists=False` leaves generated lists (COCO's
    train lists) that are not cached yet unbuilt and reports them as such. `mapper_for(info)` gives the
    LabelMapper that checks a label's ids (default: build_label_mapper on the shipped class lists; a
    training run passes its converter's, whose TSV may bring its own class lists). `label_source=raw`
    checks the publisher's files that raw mode reads (the lists of each entry's `raw.from`, the label
    files its label source opens, e.g. polygon JSONs or .mat files)."""
    exists = _ExistsCache()
    root = Path(data_root)
    mapper_for = mapper_for or (lambda info: build_label_mapper(info, mode=label_source, data_root=root))
    return [_split_status(registry, root, request, exists, progress, generate_lists, mapper_for, label_source)
            for request in requests]


def all_requests(registry: DatasetRegistry, datasets: list[str] | None = None, required: bool = False) -> list[SplitRequest]:
    """Every split of the named datasets (default: every registered dataset)."""
    names = datasets if datasets is not None else registry.names()
    return [SplitRequest(name, split, required) for name in names for split in available_splits(registry.get(name))]


def _split_status(registry, root: Path, request: SplitRequest, exists, progress: bool, generate: bool,
                  mapper_for, label_source: str) -> SplitStatus:
    status = SplitStatus(request.dataset, request.split, required=request.required, role=request.role)
    try:
        dataset_info = registry.get(request.dataset)
        info = read_plan(dataset_info, label_source).list_info  # whose lists and files are read
        resolved = resolve_split(info, request.split, root, generate=generate)
    except (RegistryError, ListFileError) as err:
        status.state, status.problem = NO_LIST, str(err)
        return status
    status.list_origin = resolved.origin + (f" (raw: {info.name}'s files)" if info is not dataset_info else "")
    folder = info.folder(root)
    folder_present = exists(folder)
    if resolved.path is None:
        if not folder_present:  # the annotation index it is generated from is in the absent folder
            _judge(status, info, root, False, None, None)
            return status
        status.state, status.problem = NO_LIST, f"{request.split} list {resolved.origin}: {resolved.pending}"
        if "does not exist" in resolved.pending:
            status.first_missing = resolved.pending.split(" does not exist")[0]
            status.hint = f"it comes with the labels: {info.labels_from}" if info.labels_from else ""
        else:
            status.hint = "run the status command without --no-generate (or start training) to build it"
        return status
    try:
        entries = read_list(resolved.path, folder, require_labels=False)
    except ListFileError as err:
        if not folder_present and folder in resolved.path.parents:  # a list kept in the absent folder
            _judge(status, info, root, False, None, None)
        else:
            status.state, status.problem = NO_LIST, str(err)
        return status
    status.listed = len(entries)
    has_labels = any(entry.label is not None for entry in entries)
    unlabelled = next((entry for entry in entries if entry.label is None), None) if has_labels else None
    if unlabelled is not None:  # image-only lines in a list of labelled samples
        status.state = NO_LIST
        status.problem = (f"{resolved.path}:{unlabelled.line}: expected 'image_path label_path' like the list's other "
                          f"lines, got an image alone")
        return status
    if not has_labels:
        status.labels = None
    mapper, mapper_error = _build_mapper(dataset_info, mapper_for)  # once per split: it loads class lists, the index
    label_file = _label_file_function(mapper, label_source)
    segment_file = _segment_file_function(mapper, label_source)
    missing_segments = None
    missing_image = missing_label = None
    bar = tqdm(entries, desc=f"status {info.name} {request.split}", unit="line", leave=False,
               disable=not progress or len(entries) < PROGRESS_MIN_LINES or not folder_present)
    first_label = None
    for entry in bar:
        if not folder_present:
            break
        if exists(entry.image):
            status.images += 1
        elif missing_image is None:
            missing_image = entry
        if entry.label is None:
            continue
        segments = segment_file(entry)
        if segments is not None and missing_segments is None and not exists(segments):
            missing_segments = replace(entry, label=segments)
        label = label_file(entry)
        if exists(label):
            status.labels += 1
            first_label = first_label or entry
        elif missing_label is None:
            missing_label = replace(entry, label=label)  # the file raw mode opens
    if not folder_present:
        missing_image = entries[0]
    if folder_present:  # no folder, no release
        status.releases_on_disk = _releases_on_disk(registry, info, request.split, root, exists)
    _check_first_label(status, first_label, mapper, mapper_error)
    _judge(status, info, root, folder_present, missing_image, missing_label)
    if missing_segments is not None and folder_present:
        status.state = INCOMPLETE if status.state == OK else status.state
        status.first_missing = status.first_missing or f"{missing_segments.label} (list line {missing_segments.line})"
        status.hint = "; ".join(filter(None, [status.hint, f"MSeg's relabel records of this image read their segments "
                                                          f"from {missing_segments.label.name}, which is missing (ADE20K: "
                                                          f"the full release ADE20K_2016_07_26.zip; Mapillary: instances/; "
                                                          f"Cityscapes: the *_polygons.json of gtFine)"]))
    return status


def _build_mapper(info, mapper_for):
    """(the split's LabelMapper, None) or (None, the error that building it raised)."""
    try:
        return mapper_for(info), None
    except ValueError as err:  # RegistryError, TaxonomyError and other bad-value errors
        return None, err


def _label_file_function(mapper, label_source: str):
    """The label file a list entry stands for: the listed path, or in raw mode the file the label source
    opens (a polygon JSON beside a listed PNG name, a .mat file)."""
    if label_source == "prepared" or mapper is None:
        return lambda entry: entry.label
    return mapper.source.label_file


def _segment_file_function(mapper, label_source: str):
    """For raw mode with relabel records: entry -> the file its records' segments come from (None for
    entries without records, or when segments come from the label file itself)."""
    plan = mapper.relabeling if mapper is not None else None
    if label_source == "prepared" or plan is None:
        return lambda entry: None
    return lambda entry: mapper.source.segment_file(entry) if plan.index.edits(plan.group, entry.image) else None


def _releases_on_disk(registry, info, split: str, root: Path, exists) -> list[str]:
    """Registry entries of the same folder whose list for `split` has its first label file on disk
    (only that line of each list is read)."""
    found = []
    for other in registry.entries.values():
        if other.root != info.root or split not in available_splits(other):
            continue
        try:
            resolved = resolve_split(other, split, root, generate=False)
            if resolved.path is None:
                continue
            first = read_first_entry(resolved.path, other.folder(root))
        except (RegistryError, ListFileError):
            continue
        if first is not None and first.label is not None and exists(first.label):
            found.append(other.name)
    return found


def _check_first_label(status: SplitStatus, entry: ListEntry | None, mapper, mapper_error) -> None:
    """Decode one present label and check its ids: a folder of another release shows up here."""
    if entry is None:
        return
    if mapper_error is not None:
        if not isinstance(mapper_error, (TaxonomyError, RegistryError)):
            raise mapper_error
        status.state, status.problem = BAD_LABELS, str(mapper_error)  # e.g. no class list to check the ids against
        return
    try:  # the ids only: relabel segments are counted apart (missing segment files)
        mapper.check(mapper.source.read(entry).ids, mapper.source.label_file(entry))
    except BadSampleError as err:
        status.state = BAD_LABELS
        status.problem = f"list line {entry.line}: {err}"


def _judge(status: SplitStatus, info, root: Path, folder_present: bool, missing_image, missing_label) -> None:
    hints = []
    if not folder_present:
        status.state = MISSING
        status.first_missing = str(info.folder(root))
        hints.append(f"{info.root}/ is not under {root}: images from {info.images_from or 'the publisher'}"
                     + (f"; labels from {info.labels_from}" if info.labels_from else ""))
    else:
        if missing_image is not None:
            status.first_missing = f"{missing_image.image} (list line {missing_image.line})"
            hints.append(f"images: {info.images_from}" if info.images_from else "images missing")
        if missing_label is not None:
            status.first_missing = status.first_missing or f"{missing_label.label} (list line {missing_label.line})"
            others = [name for name in status.releases_on_disk if name != info.name]
            held = f"labels of {', '.join(others)} are on disk, not {info.name}'s; " if others else ""
            hints.append(f"{held}labels: {info.labels_from}" if info.labels_from else f"{held}labels missing")
        if status.state == OK and (missing_image is not None or missing_label is not None):
            found_nothing = status.images == 0 and not status.labels
            status.state = MISSING if found_nothing else INCOMPLETE
    if status.state == BAD_LABELS:
        hints.append(f"the label files do not hold {info.name}'s {info.num_classes} ids: check the folder its list "
                     f"names ({info.labels_from or 'see the registry'})")
    status.hint = "; ".join(hints)


def format_status(rows: list[SplitStatus], root) -> str:
    """The table, one line per split, and under each row that is not ok its problem and what to do."""
    header = ("dataset", "split", "status", "images", "labels", "label releases on disk")
    table = [header]
    for row in rows:
        counted = row.state != NO_LIST  # without a readable list nothing was counted: "?"
        labels = "-" if row.labels is None else f"{row.labels}/{row.listed}" if counted else "?"
        mark = "" if row.required else " (optional)"
        table.append((row.dataset, row.split + (f" [{row.role}]" if row.role else ""), row.state + mark,
                      f"{row.images}/{row.listed}" if counted else "?", labels, ", ".join(row.releases_on_disk) or "-"))
    widths = [max(len(str(line[i])) for line in table) for i in range(len(header))]
    lines = [f"data root: {root}"]
    previous = None
    for index, line in enumerate(table):
        lines.append("  ".join(str(cell).ljust(width) for cell, width in zip(line, widths)).rstrip())
        row = rows[index - 1] if index else None
        if row is None or row.ok:
            continue
        details = []
        if row.state in (INCOMPLETE, BAD_LABELS) and row.list_origin:  # their list lines are of this list
            details.append(f"    list: {row.list_origin}")
        if row.problem:  # a message of several lines (every malformed line of a list) stays indented
            details.append("    problem: " + row.problem.replace("\n", "\n      "))
        if row.first_missing:
            details.append(f"    first missing: {row.first_missing}")
        if row.hint:
            details.append(f"    to do: {row.hint}")
        # the splits of one missing folder share their explanation: say it once
        same = previous is not None and previous[0] == row.dataset and previous[1] == (row.hint, row.state) \
            and row.state == MISSING and row.first_missing == str(previous[2])
        lines += ["    (as above)"] if same else details
        previous = (row.dataset, (row.hint, row.state), row.first_missing)
    bad = [row for row in rows if row.required and not row.ok]
    lines.append(f"{len(rows) - sum(not r.ok for r in rows)} of {len(rows)} split(s) complete"
                 + (f"; {len(bad)} needed split(s) not ready: " + ", ".join(f"{r.dataset} {r.split}" for r in bad)
                    if bad else ""))
    return "\n".join(lines)


def require_data(registry: DatasetRegistry, data_root, requests: list[SplitRequest], progress: bool = True,
                 mapper_for=None, label_source: str = "prepared") -> None:
    """Raise DataNotReadyError with the status table when a required split is not complete."""
    rows = data_status(registry, data_root, requests, progress=progress, mapper_for=mapper_for,
                       label_source=label_source)
    if any(row.required and not row.ok for row in rows):
        raise DataNotReadyError("the data this run needs is not complete (unifiedseg-data status shows the same):\n"
                                + format_status(rows, data_root))
