"""Taxonomy edits (unifiedseg.taxonomy.edit) and table comparison (unifiedseg.taxonomy.diff), as pure
functions on the tiny hand-written taxonomy of tests/taxonomy_fixtures.py:

    line  universal  dsA        dsB       testT        (Parent Category)
    2     road       road       ~ground   road         stuff
    3     sidewalk   sidewalk   ~ground   background   stuff
    4     car        ~vehicle   car       car          vehicle
    5     truck      ~vehicle   truck     truck        vehicle
    6     sky        sky        sky       background   stuff
    7     person                person                 person
    8     unlabeled  ego
"""

import tempfile
from pathlib import Path

import pytest
from hypothesis import event, given, settings
from hypothesis import strategies as st

from taxonomy_fixtures import TINY_TSV, write_tiny_taxonomy
from unifiedseg.taxonomy import edit
from unifiedseg.taxonomy.diff import diff_tables
from unifiedseg.taxonomy.edit import EditArgumentError, EditConflict
from unifiedseg.taxonomy.table import UNLABELED, TaxonomyError, TaxonomyTable, parse_cell
from unifiedseg.taxonomy.validate import WARNING, errors, validate

TINY_LINES = TINY_TSV.splitlines()


@pytest.fixture
def tiny(tiny_tsv) -> TaxonomyTable:
    return TaxonomyTable.load(tiny_tsv)


def lines_with(changes: dict[int, str], inserted: dict[int, str] | None = None, removed=()) -> str:
    """TINY_TSV with file lines (1-based) replaced, then lines inserted before the given line, then removed."""
    lines = list(TINY_LINES)
    for number, text in changes.items():
        lines[number - 1] = text
    for number in sorted(removed, reverse=True):
        del lines[number - 1]
    for number, text in sorted((inserted or {}).items(), reverse=True):
        lines.insert(number - 1, text)
    return "\n".join(lines) + "\n"


def fill(message: str, table: TaxonomyTable) -> str:
    return message.replace("{path}", str(table.path)).replace("{folder}", str(table.path.parent))


def assert_clean(table, warnings=0):
    problems = validate(table)
    assert errors(problems) == []
    assert len([p for p in problems if p.severity == WARNING]) == warnings, [str(p) for p in problems]


def test_tiny_taxonomy_is_clean(tiny):
    assert validate(tiny) == []


# ---- rename --------------------------------------------------------------------------------------
def test_rename_changes_one_cell_and_leaves_the_input_alone(tiny):
    result = edit.rename(tiny, "sky", "heaven")
    assert result.effects == ["renamed universal class 'sky' to 'heaven' (line 6)"]
    assert result.table.to_text() == lines_with({6: "stuff\tsky\tsky\theaven\tbackground"})
    assert tiny.to_text() == TINY_TSV
    assert_clean(result.table)


@pytest.mark.parametrize("old, new, message", [
    ("skye", "x", "no universal class 'skye' in {path}; did you mean 'sky'?"),
    ("sky", "road", "universal class 'road' already exists ({path} line 2)"),
    ("sky", "sky", "the new name 'sky' is the old name"),
    ("unlabeled", "void", "'unlabeled' is the row of ignored classes, not a universal class this edit can take"),
    ("sky", "unlabeled", "'unlabeled' is reserved for the row of ignored classes"),
    ("sky", "a,b", "invalid universal class name 'a,b': it must be non-empty, without surrounding whitespace, "
                   "tabs, newlines or any of { } , ~"),
    ("sky", " sky2", "invalid universal class name ' sky2'"),
])
def test_rename_rejects_bad_names(tiny, old, new, message):
    with pytest.raises(EditArgumentError) as info:
        edit.rename(tiny, old, new)
    assert str(info.value).startswith(fill(message, tiny))


# ---- add-class -----------------------------------------------------------------------------------
def test_add_class_goes_before_unlabeled_with_parent_and_test_class(tiny):
    result = edit.add_class(tiny, "building", parent="stuff", tests={"testT": "background"})
    assert result.effects == ["added universal class 'building' on line 8 (parent 'stuff')",
                              "  testT (test): 'building' counts towards 'background'"]
    assert result.table.to_text() == lines_with({}, inserted={8: "stuff\t\t\tbuilding\tbackground"})
    # no training dataset labels it yet: a warning, not an error
    assert_clean(result.table, warnings=1)
    assert tiny.to_text() == TINY_TSV


def test_add_class_after_a_given_row(tiny):
    result = edit.add_class(tiny, "lane", after="road")
    assert result.effects == ["added universal class 'lane' on line 3"]
    assert result.table.to_text() == lines_with({}, inserted={3: "\t\t\tlane\t"})
    assert edit.add_class(tiny, "last", after=UNLABELED).table.class_names[-1] == "last"


@pytest.mark.parametrize("kwargs, message", [
    ({"name": "sky"}, "universal class 'sky' already exists ({path} line 6)"),
    ({"name": "b", "tests": {"testX": "road"}}, "no test dataset 'testX' in {path}; did you mean 'testT'?; test datasets: testT"),
    ({"name": "b", "tests": {"dsA": "road"}}, "'dsA' is a training dataset, not a test dataset; test datasets: testT"),
    ({"name": "b", "tests": {"testT": "bakground"}}, "dataset 'testT' has no class 'bakground'; did you mean 'background'? "
                                                     "(its classes are listed in {folder}/dataset_lists/testT/testT_names.txt)"),
    ({"name": "b", "after": "rood"}, "no universal class 'rood' in {path}; did you mean 'road'?"),
])
def test_add_class_rejects_bad_arguments(tiny, kwargs, message):
    with pytest.raises(EditArgumentError) as info:
        edit.add_class(tiny, **kwargs)
    assert str(info.value) == fill(message, tiny)


# ---- merge ---------------------------------------------------------------------------------------
def test_merge_unites_training_cells_as_sets(tiny):
    result = edit.merge(tiny, "sidewalk", "sky", into="ground")
    assert result.effects == [
        "merged 'sidewalk' (line 3) and 'sky' (line 6) into 'ground' (now line 3)",
        "  dsA: sidewalk + sky -> {sidewalk, sky}",
        "  dsB: ~ground + sky -> {~ground, sky}",  # ~ground stays one-to-many: road keeps it
        "  testT (test): 'ground' counts towards 'background'",
    ]
    assert result.table.to_text() == lines_with({3: "stuff\t{sidewalk, sky}\t{~ground, sky}\tground\tbackground"}, removed=[6])
    assert_clean(result.table)


def test_merge_makes_one_to_many_plain_when_only_the_two_rows_had_it(tiny):
    agreeing = edit.map_class(tiny, "testT", "road", ["sidewalk"]).table  # so that test cells agree
    result = edit.merge(agreeing, "road", "sidewalk", into="road")
    assert result.effects == [
        "merged 'road' (line 2) and 'sidewalk' (line 3) into 'road' (now line 2)",
        "  dsA: road + sidewalk -> {road, sidewalk}",
        "  dsB: ~ground + ~ground -> ground (ground: one-to-many between 'road' and 'sidewalk' only, now plain)",
        "  testT (test): 'road' counts towards 'road'",
    ]
    assert result.table.to_text() == lines_with({2: "stuff\t{road, sidewalk}\tground\troad\troad"}, removed=[3])
    assert_clean(result.table)


def test_merge_after_b_keeps_a_position_and_fills_metadata_from_b(tiny):
    no_parent = edit.add_class(tiny, "tree", after="person").table  # line 8, no parent, no cells
    result = edit.merge(no_parent, "tree", "sky", into="plant")
    assert result.table.to_text() == lines_with({}, inserted={7: "stuff\tsky\tsky\tplant\tbackground"}, removed=[6])
    assert result.effects[0] == "merged 'tree' (line 8) and 'sky' (line 6) into 'plant' (now line 7)"


def test_merge_refuses_rows_counting_towards_different_test_classes(tiny):
    with pytest.raises(EditConflict) as info:
        edit.merge(tiny, "car", "truck", into="vehicle")
    assert str(info.value) == (
        f"{tiny.path}: cannot merge 'car' and 'truck': they count towards different test classes:\n"
        "  column 'testT': 'car' (line 4) counts towards 'car' but 'truck' (line 5) towards 'truck'\n"
        "(make them agree first, e.g. `unifiedseg-taxonomy map TSV DATASET CLASS --to UNIVERSAL`)")


@pytest.mark.parametrize("a, b, into, message", [
    ("car", "car", "x", "cannot merge 'car' with itself"),
    ("car", "bus", "x", "no universal class 'bus' in {path}"),
    ("sky", "person", "road", "universal class 'road' already exists ({path} line 2)"),
])
def test_merge_rejects_bad_arguments(tiny, a, b, into, message):
    with pytest.raises(EditArgumentError) as info:
        edit.merge(tiny, a, b, into=into)
    assert str(info.value).startswith(fill(message, tiny))


# ---- split ---------------------------------------------------------------------------------------
def test_split_assigns_classes_and_makes_the_rest_one_to_many(tiny):
    result = edit.split(tiny, "car", ["sedan", "van"], assign=[("dsB", "car", "sedan")])
    assert result.effects == [
        "split 'car' (line 4) into 'sedan', 'van' (lines 4-5)",
        "  dsB: car -> sedan",
        "not assigned, so one-to-many among the new classes (any of them may be predicted there):",
        "  dsA: ~vehicle -> ~vehicle in sedan, van",
    ]
    assert result.table.to_text() == lines_with({4: "vehicle\t~vehicle\tcar\tsedan\tcar"},
                                                inserted={5: "vehicle\t~vehicle\t\tvan\tcar"})
    assert_clean(result.table)


def test_split_without_assignment_is_the_partial_label_case(tiny):
    result = edit.split(tiny, "person", ["adult", "child"])
    assert result.effects[-1] == "  dsB: person -> ~person in adult, child"
    assert result.table.to_text() == lines_with({7: "person\t\t~person\tadult\t"}, inserted={8: "person\t\t~person\tchild\t"})
    assert_clean(result.table)


def test_split_then_merge_back_restores_the_table(tiny):
    halves = edit.split(tiny, "road", ["road1", "road2"]).table
    assert [str(e) for e in parse_cell(halves.cell(2, "dsB"))] == ["~ground"]
    merged = edit.merge(halves, "road1", "road2", into="road")
    # dsA's ~road collapses to plain road; dsB's ~ground stays one-to-many (sidewalk keeps it)
    assert merged.table.to_text() == TINY_TSV


def test_split_can_send_one_class_to_several_new_rows(tiny):
    table = edit.split(tiny, "sky", ["day", "night", "dusk"],
                       assign=[("dsA", "sky", "day"), ("dsA", "sky", "night"), ("dsB", "sky", "dusk")]).table
    assert [table.cell(i, "dsA") for i in (4, 5, 6)] == ["~sky", "~sky", ""]
    assert [table.cell(i, "dsB") for i in (4, 5, 6)] == ["", "", "sky"]
    assert_clean(table, warnings=0)


@pytest.mark.parametrize("into, assign, message", [
    (["solo"], [], "split 'car' needs two or more new classes after --into, got 1"),
    (["a", "a"], [], "new class named more than once: a"),
    (["a", "truck"], [], "universal class 'truck' already exists ({path} line 5)"),
    (["a", "b"], [("testT", "car", "a")], "--assign testT:car=a: 'testT' is a test dataset; its cell is copied to every "
                                          "new class (change it afterwards with `map`)"),
    (["a", "b"], [("dsAA", "car", "a")], "--assign dsAA:car=a: no training dataset 'dsAA'; did you mean 'dsA'?; "
                                        "training datasets: dsA, dsB"),
    (["a", "b"], [("dsB", "truck", "a")], "--assign dsB:truck=a: 'car' (line 4) has no dsB class 'truck'; its dsB cell holds car"),
    (["sedan", "b"], [("dsB", "car", "sedn")], "--assign dsB:car=sedn: 'sedn' is not one of the new classes sedan, b; "
                                               "did you mean 'sedan'?"),
])
def test_split_rejects_bad_arguments(tiny, into, assign, message):
    with pytest.raises(EditArgumentError) as info:
        edit.split(tiny, "car", into, assign)
    assert str(info.value) == fill(message, tiny)


# ---- map -----------------------------------------------------------------------------------------
def test_map_training_class_moves_it_out_of_every_other_cell(tiny):
    result = edit.map_class(tiny, "dsA", "vehicle", ["car"])
    assert result.effects == ["dsA: 'vehicle': ~car, ~truck -> car (line 4)"]
    assert result.table.to_text() == lines_with({4: "vehicle\tvehicle\tcar\tcar\tcar", 5: "vehicle\t\ttruck\ttruck\ttruck"})
    assert_clean(result.table)


def test_map_to_several_targets_writes_one_to_many(tiny):
    result = edit.map_class(tiny, "dsA", "ego", ["road", "sidewalk"])
    assert result.effects == ["dsA: 'ego': (ignored) -> ~road, ~sidewalk (lines 2, 3)"]
    assert result.table.to_text() == lines_with({2: "stuff\t{road, ~ego}\t~ground\troad\troad",
                                                 3: "stuff\t{sidewalk, ~ego}\t~ground\tsidewalk\tbackground",
                                                 8: "\t\t\tunlabeled\t"})
    assert_clean(result.table)


def test_map_to_unlabeled_ignores_the_class(tiny):
    result = edit.map_class(tiny, "dsB", "person", [UNLABELED])
    assert result.effects == ["dsB: 'person': person -> (ignored) (line 8)"]
    assert result.table.to_text() == lines_with({7: "person\t\t\tperson\t", 8: "\tego\tperson\tunlabeled\t"})
    assert_clean(result.table, warnings=1)  # person is now learned from no dataset


def test_map_to_where_it_already_is_changes_nothing(tiny):
    result = edit.map_class(tiny, "dsA", "sky", ["sky"])
    assert result.effects == ["dsA: 'sky' already maps to sky; nothing changed"]
    assert result.table.to_text() == TINY_TSV


def test_map_test_class_sets_the_test_cell(tiny):
    result = edit.map_class(tiny, "testT", "background", ["person", "sidewalk"])
    assert result.effects == ["testT (test): 'person' (line 7) now counts towards 'background' (was none)",
                              "testT (test): 'sidewalk' (line 3) now counts towards 'background' (was 'background')"]
    assert result.table.to_text() == lines_with({7: "person\t\tperson\tperson\tbackground"})
    assert_clean(result.table, warnings=1)  # background now spans parents person and stuff


def test_map_test_class_away_from_its_only_row_leaves_it_unreachable(tiny):
    # the edit function computes it; validate (and so the command) refuses it
    table = edit.map_class(tiny, "testT", "road", ["car"]).table
    assert [p.message for p in errors(validate(table))] == [
        "test class 'car' (id 1) is reached by no universal class; set it in the 'testT' cell of a universal row, "
        "or acknowledge it under unreachable_test_classes in the companion YAML"]


@pytest.mark.parametrize("dataset, name, targets, message", [
    ("dsA", "ego", ["road", UNLABELED], "'unlabeled' cannot be one of several targets"),
    ("dsA", "rod", ["road"], "dataset 'dsA' has no class 'rod'; did you mean 'road'?"),
    ("dsAA", "road", ["road"], "no dataset 'dsAA' in {path}; did you mean 'dsA'?; datasets: dsA, dsB, testT"),
    ("dsA", "road", ["road", "road"], "universal class named more than once: road"),
    ("dsA", "road", ["raod"], "no universal class 'raod' in {path}; did you mean 'road'?"),
    ("testT", "road", [UNLABELED], "the 'unlabeled' row cannot count towards a test class"),
])
def test_map_rejects_bad_arguments(tiny, dataset, name, targets, message):
    with pytest.raises(EditArgumentError) as info:
        edit.map_class(tiny, dataset, name, targets)
    assert str(info.value).startswith(fill(message, tiny))


# ---- add-dataset ---------------------------------------------------------------------------------
def test_add_training_dataset_matches_names_and_ignores_the_rest(tiny, tmp_path):
    names = tmp_path / "newds.txt"
    names.write_text("Road\ngrass\ncar\nunlabeled\n")
    result = edit.add_dataset(tiny, "newds", names)
    assert result.effects == [
        f"added training dataset 'newds' (4 classes, from {names}) just left of 'universal' (column 4)",
        "  3 of 4 classes matched a universal class by name",
        "  1 unmatched, put in the 'unlabeled' row (ignored):",
        "    'grass'",
        "  map each with: unifiedseg-taxonomy map TSV newds CLASS --to UNIVERSAL",
    ]
    new = result.table
    assert new.header == ["Parent Category", "dsA", "dsB", "newds", "universal", "testT"]
    assert [new.cell(i, "newds") for i in range(len(new.rows))] == ["Road", "", "car", "", "", "", "{unlabeled, grass}"]
    assert_clean(new)
    assert tiny.header == ["Parent Category", "dsA", "dsB", "universal", "testT"]
    assert "newds" not in tiny.meta.names_files


def test_add_test_dataset_acknowledges_unreachable_classes(tiny, tmp_path):
    names = tmp_path / "newt.txt"
    names.write_text("road\nCar\nbus\nbackground\n")
    result = edit.add_dataset(tiny, "newt", names, test=True)
    assert result.effects == [
        f"added test dataset 'newt' (4 classes, from {names}) as the last column (column 6)",
        "  2 of 4 test classes are reached by the universal class of the same name",
        "  reached by no universal class (acknowledged under unreachable_test_classes; they score 0 IoU): bus, background",
        "  make one reachable with: unifiedseg-taxonomy map TSV newt TEST_CLASS --to UNIVERSAL",
    ]
    assert result.unreachable_added == {"newt": ["bus", "background"]}
    new = result.table
    assert [new.cell(i, "newt") for i in range(len(new.rows))] == ["road", "", "Car", "", "", "", ""]
    assert_clean(new, warnings=2)
    assert tiny.meta.unreachable_test_classes == {}


@pytest.mark.parametrize("name, message", [
    ("dsA", "{path} already has a column 'dsA' (column 2)"),
    ("a/b", "invalid dataset name 'a/b'"),
    ("a:b", "invalid dataset name 'a:b'"),
    ("universal", "{path} already has a column 'universal' (column 4)"),
    ("Parent Category", "{path} already has a column 'Parent Category' (column 1)"),
])
def test_add_dataset_rejects_bad_names(tiny, tmp_path, name, message):
    names = tmp_path / "n.txt"
    names.write_text("road\n")
    with pytest.raises(EditArgumentError) as info:
        edit.add_dataset(tiny, name, names)
    assert str(info.value).startswith(fill(message, tiny))


def test_add_dataset_names_a_missing_list(tiny, tmp_path):
    with pytest.raises(TaxonomyError, match=f"cannot read class-name list {tmp_path / 'missing.txt'}"):
        edit.add_dataset(tiny, "newds", tmp_path / "missing.txt")


# ---- diff ----------------------------------------------------------------------------------------
def test_diff_of_a_table_with_itself_is_empty(tiny):
    assert diff_tables(tiny, tiny).is_empty
    assert diff_tables(tiny, tiny).lines() == []


def test_diff_detects_a_rename_by_identical_training_cells(tiny):
    renamed = edit.rename(tiny, "sky", "heaven").table
    assert diff_tables(tiny, renamed).lines() == ["universal classes renamed (1): sky -> heaven"]


def test_diff_lists_classes_that_change_target(tiny):
    merged = edit.merge(tiny, "sidewalk", "sky", into="ground").table
    assert diff_tables(tiny, merged).lines() == [
        "universal classes added (1): ground",
        "universal classes removed (2): sidewalk, sky",
        "dsA (training): 2 class(es) change universal class",
        "  id 1 sidewalk: sidewalk -> ground",
        "  id 3 sky: sky -> ground",
        "dsB (training): 2 class(es) change universal class",
        "  id 0 ground: ~road, ~sidewalk -> ~ground, ~road",
        "  id 3 sky: sky -> ground",
    ]


def test_diff_lists_test_class_changes_and_new_columns(tiny, tmp_path):
    names = tmp_path / "newds.txt"
    names.write_text("sky\n")
    changed = edit.map_class(tiny, "testT", "road", ["sidewalk"]).table
    changed = edit.add_dataset(changed, "newds", names).table
    assert diff_tables(tiny, changed).lines() == [
        "dataset columns added: newds",
        "testT (test): 1 universal class(es) change test class",
        "  sidewalk: background -> road",
    ]
    assert diff_tables(changed, tiny).lines()[0] == "dataset columns removed: newds"


# ---- property: valid edits keep the taxonomy valid -----------------------------------------------
def _draw_edit(data, table: TaxonomyTable, fresh):
    """One edit that is valid by construction, drawn against the current table."""
    classes = table.class_names
    kind = data.draw(st.sampled_from(["rename", "add", "merge", "split", "map_train", "map_test"]))
    if kind == "rename":
        return edit.rename(table, data.draw(st.sampled_from(classes)), fresh())
    if kind == "add":
        after = data.draw(st.none() | st.sampled_from(classes))
        test_class = data.draw(st.none() | st.sampled_from(table.dataset_names("testT")))
        return edit.add_class(table, fresh(), parent=data.draw(st.none() | st.just("stuff")), after=after,
                              tests={"testT": test_class} if test_class else {})
    if kind == "merge" and len(classes) >= 2:
        a, b = data.draw(st.lists(st.sampled_from(classes), min_size=2, max_size=2, unique=True))
        into = data.draw(st.sampled_from([a, b, fresh()]))
        try:
            return edit.merge(table, a, b, into=into)
        except EditConflict:
            return None
    if kind == "split":
        universal = data.draw(st.sampled_from(classes))
        into = [fresh() for _ in range(data.draw(st.integers(2, 3)))]
        row = table.row_index_of(universal)
        assign = [(dataset, entry.name, data.draw(st.sampled_from(into)))
                  for dataset in ("dsA", "dsB") for entry in parse_cell(table.cell(row, dataset))
                  if data.draw(st.booleans())]
        return edit.split(table, universal, into, assign)
    if kind == "map_train":
        dataset = data.draw(st.sampled_from(["dsA", "dsB"]))
        name = data.draw(st.sampled_from(table.dataset_names(dataset)))
        targets = data.draw(st.just([UNLABELED]) | st.lists(st.sampled_from(classes), min_size=1, max_size=3, unique=True))
        return edit.map_class(table, dataset, name, targets)
    # map_test: only onto rows whose current test class stays reached by another row
    reach = {}
    for i in table.class_row_indices:
        reach.setdefault(table.cell(i, "testT").strip(), []).append(table.universal_name(i))
    movable = [u for cls, rows in reach.items() for u in rows if cls == "" or len(rows) > 1]
    if not movable:
        return None
    return edit.map_class(table, "testT", data.draw(st.sampled_from(table.dataset_names("testT"))),
                          [data.draw(st.sampled_from(movable))])


@settings(max_examples=75, deadline=None)
@given(data=st.data())
def test_random_valid_edit_sequences_keep_the_taxonomy_valid(data):
    counter = iter(range(10**6))
    with tempfile.TemporaryDirectory() as folder:
        path = write_tiny_taxonomy(Path(folder))
        table = TaxonomyTable.load(path)
        for _ in range(data.draw(st.integers(1, 6))):
            before = table.to_text()
            result = _draw_edit(data, table, lambda: f"c{next(counter)}")
            assert table.to_text() == before  # edits never mutate their input
            if result is None:
                event("edit skipped (merge conflict or no movable test row)")
                continue
            event(result.effects[0].split(" ")[0])
            assert errors(validate(result.table)) == [], result.effects
            result.table.write(path)
            reloaded = TaxonomyTable.load(path)
            assert reloaded.to_text() == result.table.to_text()
            assert errors(validate(reloaded)) == []
            assert diff_tables(reloaded, reloaded).lines() == []
            table = reloaded
