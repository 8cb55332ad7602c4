"""Every validation rule, each on a one-cell change to the tiny taxonomy."""

import pytest

from taxonomy_fixtures import TINY_NAMES, TINY_TSV, write_tiny_taxonomy
from unifiedseg.taxonomy import TaxonomyError, TaxonomyTable, validate
from unifiedseg.taxonomy.table import CellEntry, CellSyntaxError, format_cell, parse_cell
from unifiedseg.taxonomy.validate import ERROR, WARNING, errors


def problems_of(tmp_path, tsv_text=TINY_TSV, names=None):
    return validate(TaxonomyTable.load(write_tiny_taxonomy(tmp_path, tsv_text, names)))


def only(problems, severity=ERROR):
    found = [p for p in problems if p.severity == severity]
    assert len(found) == 1, "\n".join(map(str, problems))
    return found[0]


def test_the_tiny_taxonomy_is_clean(tmp_path):
    assert problems_of(tmp_path) == []


def test_mseg_taxonomy_has_no_errors():
    problems = validate(TaxonomyTable.load("mseg"))
    assert errors(problems) == []
    # pascal-context-60's flower and wood are reached by no MSeg class; mseg.yaml acknowledges them.
    unreachable = [p.cell for p in problems if "reached by no universal class" in p.message]
    assert unreachable == ["flower", "wood"]


def test_parse_and_format_cells():
    assert parse_cell("") == []
    assert parse_cell("road") == [CellEntry("road")]
    assert parse_cell("{house,building,  skyscraper}") == [CellEntry("house"), CellEntry("building"), CellEntry("skyscraper")]
    assert parse_cell("{~rider, bicycle}") == [CellEntry("rider", True), CellEntry("bicycle")]
    assert format_cell([CellEntry("rider", True), CellEntry("bicycle")]) == "{~rider, bicycle}"
    assert format_cell([CellEntry("rider", True)]) == "~rider"
    for bad in ["{a, b", "a}", "{a,,b}", "~", "{a{b}"]:
        with pytest.raises(CellSyntaxError):
            parse_cell(bad)


def test_unknown_class_name_suggests_the_closest(tmp_path):
    problems = problems_of(tmp_path, TINY_TSV.replace("stuff\troad\t", "stuff\troda\t"))
    assert [(p.line, p.column, p.cell) for p in problems] == [(2, "dsA", "roda"), (None, "dsA", "road")]
    assert "dsA has no class 'roda'; did you mean 'road'?" in problems[0].message
    assert "class 'road' (id 0) of dsA is mapped nowhere" in problems[1].message


def test_class_mapped_nowhere(tmp_path):
    problem = only(problems_of(tmp_path, TINY_TSV.replace("stuff\tsky\tsky\tsky", "stuff\t\tsky\tsky")))
    assert problem.column == "dsA" and problem.cell == "sky"
    assert "class 'sky' (id 3) of dsA is mapped nowhere" in problem.message
    assert str(problem).endswith("or to the 'unlabeled' row to ignore it")


def test_class_mapped_twice_without_the_one_to_many_mark(tmp_path):
    problem = only(problems_of(tmp_path, TINY_TSV.replace("person\t\tperson", "person\tsky\tperson")))
    assert problem.line == 7 and problem.column == "dsA"
    assert "mapped on several lines (6, 7)" in problem.message and "write ~sky on each" in problem.message


def test_one_to_many_mark_on_a_single_line(tmp_path):
    text = TINY_TSV.replace("stuff\tsky\tsky\tsky", "stuff\t~sky\tsky\tsky")
    problem = only(problems_of(tmp_path, text))
    assert (problem.line, problem.cell) == (6, "~sky")
    assert "needs two or more universal classes" in problem.message


def test_one_to_many_mark_in_the_unlabeled_row(tmp_path):
    problem = only(problems_of(tmp_path, TINY_TSV.replace("\tego\t\tunlabeled", "\t~ego\t\tunlabeled")))
    assert problem.line == 8 and "not 'unlabeled'" in problem.message


def test_duplicate_universal_names(tmp_path):
    text = TINY_TSV.replace("person\t\tperson\tperson\t", "person\t\tperson\tsky\t")
    problem = only(problems_of(tmp_path, text))
    assert (problem.line, problem.column, problem.cell) == (7, "universal", "sky")
    assert "duplicate universal class (also on line 6)" in problem.message


def test_stray_whitespace(tmp_path):
    problems = problems_of(tmp_path, TINY_TSV.replace("\tsidewalk\t", "\tsidewalk \t", 1))
    problem = only(problems)
    assert (problem.line, problem.column, problem.cell, problem.message) == (3, "dsA", "sidewalk ", "stray whitespace")
    inner = problems_of(tmp_path, TINY_TSV.replace("\tsidewalk\t", "\t{side  walk}\t", 1),
                        names={**TINY_NAMES, "dsA": ["road", "side  walk", "vehicle", "sky", "ego"]})
    assert [p.message for p in inner] == ["stray whitespace"]


def test_test_class_reached_by_nothing_is_an_error_unless_acknowledged(tmp_path):
    text = TINY_TSV.replace("road\troad\n", "road\t\n")
    problem = only(problems_of(tmp_path, text))
    assert problem.column == "testT" and problem.cell == "road"
    assert "test class 'road' (id 0) is reached by no universal class" in problem.message
    (tmp_path / "tiny.yaml").write_text("unreachable_test_classes:\n  testT: [road]\n")
    warning = only(validate(TaxonomyTable.load(tmp_path / "tiny.tsv")), WARNING)
    assert "acknowledged in" in warning.message and "scores 0 IoU" in warning.message


def test_test_cells_name_one_real_test_class(tmp_path):
    problems = problems_of(tmp_path, TINY_TSV.replace("car\tcar\n", "car\t{car, truck}\n"))
    # the set is refused, so nothing reaches `car` any more
    assert [(p.line, p.cell) for p in problems] == [(4, "{car, truck}"), (None, "car")]
    assert "write a single plain name" in problems[0].message
    problem = only(problems_of(tmp_path, TINY_TSV.replace("person\t\tperson\tperson\t", "person\t\tperson\tperson\tpersn")))
    assert (problem.line, problem.column) == (7, "testT") and "testT has no class 'persn'" in problem.message


def test_wrong_number_of_fields_and_missing_universal_column(tmp_path):
    problem = only(problems_of(tmp_path, TINY_TSV.replace("stuff\tsky\tsky\tsky\tbackground", "stuff\tsky\tsky\tsky\tbackground\textra")))
    assert problem.line == 6 and "6 tab-separated fields, the header has 5" in problem.message
    problem = only(problems_of(tmp_path, TINY_TSV.replace("\tuniversal\t", "\tuniversel\t")))
    assert problem.line == 1 and "exactly one 'universal' column" in problem.message


def test_missing_names_list_names_the_places_searched(tmp_path):
    names = {k: v for k, v in TINY_NAMES.items() if k != "dsB"}
    problem = only(problems_of(tmp_path, names=names))
    assert problem.column == "dsB" and "no class-name list for dataset 'dsB'" in problem.message
    assert "dataset_lists/dsB/dsB_names.txt" in problem.message and "skip_columns" in problem.message


def test_skipped_columns_are_left_out(tmp_path):
    names = {k: v for k, v in TINY_NAMES.items() if k != "dsB"}
    path = write_tiny_taxonomy(tmp_path, names=names)
    (tmp_path / "tiny.yaml").write_text("skip_columns:\n  dsB: no class list released\n")
    table = TaxonomyTable.load(path)
    assert table.train_datasets == ["dsA"] and table.skipped_columns == ["dsB"]
    assert [p.severity for p in validate(table)] == [WARNING]  # `person` is now learned by no dataset


def test_universal_classes_up_to_what_a_uint16_label_map_holds(tmp_path):
    def with_extra_classes(count: int) -> str:
        rows = "".join(f"extra\t\t\tclass{i}\t\n" for i in range(count))
        return TINY_TSV.replace("\tego\t\tunlabeled", rows + "\tego\t\tunlabeled")

    # 256 classes: more than uint8 maps hold, so the space uses uint16 maps; no problem.
    assert [p for p in problems_of(tmp_path, with_extra_classes(250)) if p.severity == ERROR] == []
    problems = problems_of(tmp_path, with_extra_classes(65530))
    assert "65536 universal classes; uint16 label maps hold at most 65535" in only(problems).message


def test_warnings_for_lossy_test_merges_and_unlearned_classes(tmp_path):
    text = TINY_TSV.replace("person\t\tperson\tperson\t", "person\t\t\tperson\tbackground").replace(
        "\tego\t\tunlabeled", "\tego\tperson\tunlabeled")
    warnings = [p for p in problems_of(tmp_path, text) if p.severity == WARNING]
    assert [(p.column, p.cell) for p in warnings] == [("testT", "background"), ("universal", "person")]
    assert "merges 3 universal classes from 2 parent categories (person, stuff)" in warnings[0].message
    assert "no training dataset maps to this universal class" in warnings[1].message


def test_companion_yaml_with_an_unknown_key_is_refused(tmp_path):
    path = write_tiny_taxonomy(tmp_path)
    (tmp_path / "tiny.yaml").write_text("skip_column:\n  dsB: typo\n")
    with pytest.raises(TaxonomyError, match=r"tiny.yaml: unknown key\(s\) skip_column; valid keys: names_dir, names,"):
        TaxonomyTable.load(path)


def test_unknown_shipped_taxonomy_lists_available():
    with pytest.raises(TaxonomyError, match="no shipped taxonomy named 'msge'; available: .*mseg"):
        TaxonomyTable.load("msge")


def test_table_round_trips_the_mseg_file_byte_for_byte(tmp_path):
    table = TaxonomyTable.load("mseg")
    table.write(tmp_path / "copy.tsv")
    assert (tmp_path / "copy.tsv").read_bytes() == table.path.read_bytes()
