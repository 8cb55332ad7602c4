"""`unifiedseg-taxonomy` (unifiedseg.cli.taxonomy): outputs pinned on the tiny taxonomy of
tests/taxonomy_fixtures.py (see the table in tests/test_taxonomy_edit.py) and read-only runs on the
shipped mseg.tsv; edits that are refused leave the file byte-identical."""

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from unifiedseg.cli.taxonomy import main
from unifiedseg.paths import taxonomy_dir
from unifiedseg.taxonomy.table import TaxonomyTable


def run(capsys, *argv):
    code = main([str(a) for a in argv])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


# ---- validate ------------------------------------------------------------------------------------
def test_validate_shipped_mseg_has_warnings_only(capsys):
    code, out, _ = run(capsys, "validate", "mseg")
    assert code == 0
    lines = out.splitlines()
    assert lines[-1] == f"{taxonomy_dir() / 'mseg.tsv'}: 0 error(s), 9 warning(s)"
    assert len([line for line in lines if ": warning: " in line]) == 9


def test_validate_clean_tiny(capsys, tiny_tsv):
    assert run(capsys, "validate", tiny_tsv) == (0, f"{tiny_tsv}: 0 error(s), 0 warning(s)\n", "")


def test_validate_reports_errors_with_line_column_and_cell(capsys, tiny_tsv):
    tiny_tsv.write_text(tiny_tsv.read_text().replace("stuff\tsky\tsky", "stuff\tskyy\tsky"))
    code, out, _ = run(capsys, "validate", tiny_tsv)
    assert code == 1
    assert out.splitlines() == [
        f"{tiny_tsv}:6: error: column 'dsA': cell 'skyy': dsA has no class 'skyy'; did you mean 'sky'?",
        f"{tiny_tsv}: error: column 'dsA': cell 'sky': class 'sky' (id 3) of dsA is mapped nowhere; add it to a "
        "universal row, or to the 'unlabeled' row to ignore it",
        f"{tiny_tsv}: 2 error(s), 0 warning(s)",
    ]


def test_validate_unknown_file_is_a_usage_error(capsys, tmp_path):
    code, out, err = run(capsys, "validate", tmp_path / "nope.tsv")
    assert (code, out) == (2, "")
    assert err == f"error: taxonomy TSV {tmp_path / 'nope.tsv'} does not exist\n"


# ---- show ----------------------------------------------------------------------------------------
def test_show_mseg_cityscapes(capsys):
    code, out, _ = run(capsys, "show", "mseg", "--dataset", "cityscapes-19")
    lines = out.splitlines()
    assert code == 0 and len(lines) == 20
    assert lines[:3] == ["cityscapes-19: training dataset, 19 classes (id, class -> universal class)",
                         " 0  road          -> road",
                         " 1  sidewalk      -> sidewalk_pavement"]
    assert lines[13] == "12  rider         -> bicyclist"


def test_show_tiny_training_dataset(capsys, tiny_tsv):
    code, out, _ = run(capsys, "show", tiny_tsv, "--dataset", "dsA")
    assert code == 0
    assert out.splitlines() == [
        "dsA: training dataset, 5 classes (id, class -> universal class)",
        "0  road     -> road",
        "1  sidewalk -> sidewalk",
        "2  vehicle  -> ~car, ~truck",
        "3  sky      -> sky",
        "4  ego      -> (ignored)",
    ]


def test_show_tiny_test_dataset(capsys, tiny_tsv):
    code, out, _ = run(capsys, "show", tiny_tsv, "--dataset", "testT")
    assert code == 0
    assert out.splitlines() == [
        "testT: test dataset, 4 classes (id, class <- universal classes counting towards it)",
        "0  road       <- road",
        "1  car        <- car",
        "2  truck      <- truck",
        "3  background <- sidewalk, sky",
    ]


def test_show_unknown_dataset_lists_the_datasets(capsys, tiny_tsv):
    code, out, err = run(capsys, "show", tiny_tsv, "--dataset", "testt")
    assert (code, out) == (2, "")
    assert err == (f"error: no dataset 'testt' in {tiny_tsv}; did you mean 'testT'?; training datasets: dsA, dsB; "
                   "test datasets: testT\n")


def test_show_skipped_column_says_why(capsys):
    code, _, err = run(capsys, "show", "mseg", "--dataset", "scannet-37")
    assert code == 2
    assert "dataset column 'scannet-37' is skipped in" in err and "ships no class-name list" in err


# ---- stats ---------------------------------------------------------------------------------------
def test_stats_tiny(capsys, tiny_tsv):
    code, out, _ = run(capsys, "stats", tiny_tsv)
    assert code == 0
    assert out.splitlines()[:5] == [
        "dataset  kind      classes  mapped  ignored  one-to-many  many-to-one",
        "dsA      training        5       4        1            1            0",
        "dsB      training        5       5        0            1            0",
        "testT    test            4       4        0            -            1",
        "6 universal classes",
    ]


def test_stats_mseg_counts_sets_and_ignored(capsys):
    code, out, _ = run(capsys, "stats", "mseg")
    assert code == 0
    rows = {line.split()[0]: line.split()[1:] for line in out.splitlines()[1:23]}
    assert rows["cityscapes-19"] == ["training", "19", "19", "0", "0", "0"]
    assert rows["camvid-11"] == ["test", "11", "11", "0", "-", "1"]  # Bicyclist <- bicyclist, bicycle
    assert rows["pascal-context-60"][:4] == ["test", "60", "58", "2"]  # flower and wood unreachable
    assert "194 universal classes; skipped columns: nyudepthv2-37, scannet-37, test-nyudepthv2-37" in out


# ---- diff ----------------------------------------------------------------------------------------
def test_diff_with_itself(capsys):
    path = taxonomy_dir() / "mseg.tsv"
    assert run(capsys, "diff", "mseg", path) == (0, f"no differences between {path} and {path}\n", "")


def test_diff_reports_rename_and_moves(capsys, tiny_tsv, tmp_path):
    new = tmp_path / "new.tsv"
    assert run(capsys, "rename", tiny_tsv, "sky", "heaven", "--output", new)[0] == 0
    assert run(capsys, "map", new, "dsB", "person", "--to", "unlabeled")[0] == 0
    code, out, _ = run(capsys, "diff", tiny_tsv, new)
    assert code == 0
    assert out.splitlines() == [
        "universal classes renamed (1): sky -> heaven",
        "dsB (training): 1 class(es) change universal class",
        "  id 4 person: person -> (ignored)",
    ]


# ---- edits ---------------------------------------------------------------------------------------
def test_rename_writes_and_prints_the_effect(capsys, tiny_tsv):
    code, out, err = run(capsys, "rename", tiny_tsv, "sky", "heaven")
    assert (code, err) == (0, "")
    assert out == f"renamed universal class 'sky' to 'heaven' (line 6)\nwrote {tiny_tsv} (0 warning(s))\n"
    assert tiny_tsv.read_text().splitlines()[5] == "stuff\tsky\tsky\theaven\tbackground"


def test_edit_prints_warning_count(capsys, tiny_tsv):
    code, out, _ = run(capsys, "add-class", tiny_tsv, "building", "--parent", "stuff", "--test", "testT=background")
    assert code == 0
    assert out.splitlines() == [
        "added universal class 'building' on line 8 (parent 'stuff')",
        "  testT (test): 'building' counts towards 'background'",
        f"wrote {tiny_tsv} (1 warning(s); `unifiedseg-taxonomy validate {tiny_tsv}` lists them)",
    ]


def test_split_and_merge_commands(capsys, tiny_tsv):
    code, out, _ = run(capsys, "split", tiny_tsv, "car", "--into", "sedan", "van", "--assign", "dsB:car=sedan")
    assert code == 0
    assert out.splitlines()[-2:] == ["  dsA: ~vehicle -> ~vehicle in sedan, van", f"wrote {tiny_tsv} (0 warning(s))"]
    code, out, _ = run(capsys, "merge", tiny_tsv, "sedan", "van", "--into", "car")
    assert code == 0
    assert out.splitlines()[:2] == ["merged 'sedan' (line 4) and 'van' (line 5) into 'car' (now line 4)",
                                    "  dsA: ~vehicle + ~vehicle -> ~vehicle"]
    assert TaxonomyTable.load(tiny_tsv).cell(2, "dsB") == "car"


def test_refused_edit_leaves_the_file_byte_identical(capsys, tiny_tsv):
    before = tiny_tsv.read_bytes()
    code, out, err = run(capsys, "map", tiny_tsv, "testT", "road", "--to", "car")
    assert (code, out) == (1, "")
    assert err.splitlines() == [
        f"refused: the edited taxonomy would have 1 error(s); {tiny_tsv} was not written",
        f"  {tiny_tsv}: error: column 'testT': cell 'car': test class 'car' (id 1) is reached by no universal class; set it "
        "in the 'testT' cell of a universal row, or acknowledge it under unreachable_test_classes in the companion YAML",
        "the edit would have done:",
        "  testT (test): 'car' (line 4) now counts towards 'road' (was 'car')",
    ]
    assert tiny_tsv.read_bytes() == before


def test_merge_conflict_is_refused_naming_dataset_and_classes(capsys, tiny_tsv):
    before = tiny_tsv.read_bytes()
    code, out, err = run(capsys, "merge", tiny_tsv, "car", "truck", "--into", "vehicle")
    assert (code, out) == (1, "")
    assert "column 'testT': 'car' (line 4) counts towards 'car' but 'truck' (line 5) towards 'truck'" in err
    assert tiny_tsv.read_bytes() == before


@pytest.mark.parametrize("argv, message", [
    (["rename", "{tsv}", "skye", "x"], "error: no universal class 'skye' in {tsv}; did you mean 'sky'?"),
    (["add-class", "{tsv}", "sky"], "error: universal class 'sky' already exists ({tsv} line 6)"),
    (["add-class", "{tsv}", "x", "--test", "testT"], "error: --test 'testT': expected DATASET=CLASS"),
    (["add-class", "{tsv}", "x", "--test", "testT=road", "--test", "testT=car"], "error: --test names dataset 'testT' twice"),
    (["split", "{tsv}", "car", "--into", "a", "b", "--assign", "dsB-car-a"], "error: --assign 'dsB-car-a': expected DATASET:CLASS=NEW_CLASS"),
    (["map", "{tsv}", "dsB", "persn", "--to", "sky"], "error: dataset 'dsB' has no class 'persn'; did you mean 'person'?"),
    (["merge", "{tsv}", "car", "truk", "--into", "x"], "error: no universal class 'truk' in {tsv}; did you mean 'truck'?"),
])
def test_bad_arguments_exit_2_and_write_nothing(capsys, tiny_tsv, argv, message):
    before = tiny_tsv.read_bytes()
    code, out, err = run(capsys, *[a.replace("{tsv}", str(tiny_tsv)) for a in argv])
    assert (code, out) == (2, "")
    assert err.startswith(message.replace("{tsv}", str(tiny_tsv)))
    assert tiny_tsv.read_bytes() == before


def test_output_writes_elsewhere_and_keeps_the_input(capsys, tiny_tsv, tmp_path):
    before = tiny_tsv.read_bytes()
    out_path = tmp_path / "edited.tsv"
    code, out, _ = run(capsys, "rename", tiny_tsv, "sky", "heaven", "--output", out_path)
    assert code == 0 and out.endswith(f"wrote {out_path} (0 warning(s))\n")
    assert tiny_tsv.read_bytes() == before
    assert out_path.read_text().splitlines()[5] == "stuff\tsky\tsky\theaven\tbackground"


def test_output_is_validated_where_it_will_be_read(capsys, tiny_tsv, tmp_path):
    # beside the output there are no class lists for dsA, dsB, testT: the result would not load there
    elsewhere = tmp_path / "other"
    elsewhere.mkdir()
    code, _, err = run(capsys, "rename", tiny_tsv, "sky", "heaven", "--output", elsewhere / "edited.tsv")
    assert code == 1
    assert f"refused: the edited taxonomy would have 3 error(s); {elsewhere / 'edited.tsv'} was not written" in err
    assert "no class-name list for dataset 'dsA'" in err
    assert not (elsewhere / "edited.tsv").exists()


def test_edit_of_crlf_mseg_copy_changes_only_touched_lines(capsys, tmp_path):
    for name in ("mseg.tsv", "mseg.yaml"):
        shutil.copy(taxonomy_dir() / name, tmp_path / name)
    path = tmp_path / "mseg.tsv"
    original = path.read_bytes()
    assert original.count(b"\r\n") == original.count(b"\n") == 195

    assert run(capsys, "rename", path, "road", "roadway")[0] == 0
    assert run(capsys, "map", path, "cityscapes-19", "rider", "--to", "person", "motorcyclist")[0] == 0
    edited = path.read_bytes()
    assert edited.count(b"\r\n") == edited.count(b"\n") == 195
    table = TaxonomyTable.load(path)
    touched = {table.line_of(table.row_index_of(u)) for u in ("roadway", "person", "bicyclist", "motorcyclist")}
    old_lines, new_lines = original.split(b"\r\n"), edited.split(b"\r\n")
    assert {number for number, (a, b) in enumerate(zip(old_lines, new_lines), start=1) if a != b} == touched
    assert table.cell(table.row_index_of("person"), "cityscapes-19") == "{person, ~rider}"

    code, out, _ = run(capsys, "diff", "mseg", path)
    assert out.splitlines() == ["universal classes renamed (1): road -> roadway",
                                "cityscapes-19 (training): 1 class(es) change universal class",
                                "  id 12 rider: bicyclist -> ~motorcyclist, ~person"]


def test_add_training_dataset_copies_its_list(capsys, tiny_tsv, tmp_path):
    source = tmp_path / "incoming" / "list.txt"
    source.parent.mkdir()
    source.write_bytes(b"road\r\nsky\r\ngrass\r\n")
    code, out, _ = run(capsys, "add-dataset", tiny_tsv, "newds", "--names", source)
    copy = tmp_path / "dataset_lists" / "newds" / "newds_names.txt"
    assert code == 0
    assert out.splitlines() == [
        f"added training dataset 'newds' (3 classes, from {source}) just left of 'universal' (column 4)",
        "  2 of 3 classes matched a universal class by name",
        "  1 unmatched, put in the 'unlabeled' row (ignored):",
        "    'grass'",
        "  map each with: unifiedseg-taxonomy map TSV newds CLASS --to UNIVERSAL",
        f"  copied the class list to {copy}",
        f"wrote {tiny_tsv} (0 warning(s))",
    ]
    assert copy.read_bytes() == source.read_bytes()
    assert run(capsys, "show", tiny_tsv, "--dataset", "newds")[1].splitlines()[1:] == [
        "0  road  -> road", "1  sky   -> sky", "2  grass -> (ignored)"]


def test_add_dataset_refuses_a_different_list_already_in_place(capsys, tiny_tsv, tmp_path):
    existing = tmp_path / "dataset_lists" / "newds" / "newds_names.txt"
    existing.parent.mkdir(parents=True)
    existing.write_text("road\n")
    source = tmp_path / "list.txt"
    source.write_text("sky\n")
    before = tiny_tsv.read_bytes()
    code, _, err = run(capsys, "add-dataset", tiny_tsv, "newds", "--names", source)
    assert code == 2
    assert err == (f"error: {existing} already lists classes of 'newds' and differs from {source}; remove it or choose "
                   "another dataset name\n")
    assert tiny_tsv.read_bytes() == before and existing.read_text() == "road\n"


def test_add_test_dataset_writes_unreachable_classes_to_a_new_yaml(capsys, tiny_tsv, tmp_path):
    source = tmp_path / "list.txt"
    source.write_text("road\nbus\n")
    code, out, _ = run(capsys, "add-dataset", tiny_tsv, "newt", "--names", source, "--test")
    assert code == 0
    assert out.splitlines()[-2:] == [f"  acknowledged the unreachable test classes in {tmp_path / 'tiny.yaml'}",
                                     f"wrote {tiny_tsv} (1 warning(s); `unifiedseg-taxonomy validate {tiny_tsv}` lists them)"]
    assert (tmp_path / "tiny.yaml").read_text() == "unreachable_test_classes:\n  newt: [bus]\n"
    assert run(capsys, "validate", tiny_tsv)[0] == 0


@pytest.mark.parametrize("yaml_before, yaml_after", [
    ("# notes on tiny\nmetadata_columns: [Notes]\n",
     "# notes on tiny\nmetadata_columns: [Notes]\nunreachable_test_classes:\n  newt: [bus]\n"),
    ("unreachable_test_classes:\n  # kept comment\n  other: [x]\nmetadata_columns: [Notes]\n",
     "unreachable_test_classes:\n  newt: [bus]\n  # kept comment\n  other: [x]\nmetadata_columns: [Notes]\n"),
    ("unreachable_test_classes: {other: [x]}\n",  # a flow mapping: rewritten from its data
     "unreachable_test_classes:\n  other: [x]\n  newt: [bus]\n"),
])
def test_add_test_dataset_keeps_the_other_yaml_keys(capsys, tiny_tsv, tmp_path, yaml_before, yaml_after):
    (tmp_path / "tiny.yaml").write_text(yaml_before)
    source = tmp_path / "list.txt"
    source.write_text("road\nbus\n")
    assert run(capsys, "add-dataset", tiny_tsv, "newt", "--names", source, "--test")[0] == 0
    assert (tmp_path / "tiny.yaml").read_text() == yaml_after


# ---- help and the script -------------------------------------------------------------------------
@pytest.mark.parametrize("command", [[], ["validate"], ["show"], ["stats"], ["diff"], ["add-class"], ["rename"],
                                     ["merge"], ["split"], ["map"], ["add-dataset"]])
def test_every_command_has_help(capsys, command):
    code, out, _ = run(capsys, *command, "--help")
    assert code == 0 and out.startswith("usage: unifiedseg-taxonomy")


def test_tools_script_is_a_thin_wrapper():
    done = subprocess.run([sys.executable, str(Path(__file__).resolve().parent.parent / "tools" / "taxonomy.py"), "show", "mseg", "--dataset", "camvid-11"],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines()[-1] == "10  Bicyclist   <- bicyclist, bicycle"
