"""A tiny hand-written taxonomy used by the taxonomy tests; every expectation about it is worked out by hand."""

from pathlib import Path

# dsA splits road/sidewalk but merges car+truck into `vehicle` (one-to-many);
# dsB merges road+sidewalk into `ground` (one-to-many) but splits car/truck;
# testT needs road, car and truck apart.
TINY_TSV = (
    "Parent Category\tdsA\tdsB\tuniversal\ttestT\n"
    "stuff\troad\t~ground\troad\troad\n"
    "stuff\tsidewalk\t~ground\tsidewalk\tbackground\n"
    "vehicle\t~vehicle\tcar\tcar\tcar\n"
    "vehicle\t~vehicle\ttruck\ttruck\ttruck\n"
    "stuff\tsky\tsky\tsky\tbackground\n"
    "person\t\tperson\tperson\t\n"
    "\tego\t\tunlabeled\t\n"
)
TINY_NAMES = {
    "dsA": ["road", "sidewalk", "vehicle", "sky", "ego"],
    "dsB": ["ground", "car", "truck", "sky", "person"],
    "testT": ["road", "car", "truck", "background"],
}


def write_tiny_taxonomy(folder: Path, tsv_text: str = TINY_TSV, names=None) -> Path:
    """Write the TSV as folder/tiny.tsv and its names lists under folder/dataset_lists/."""
    for dataset, class_names in (names or TINY_NAMES).items():
        target = folder / "dataset_lists" / dataset
        target.mkdir(parents=True, exist_ok=True)
        (target / f"{dataset}_names.txt").write_text("\n".join(class_names) + "\n")
    path = folder / "tiny.tsv"
    path.write_text(tsv_text)
    return path
