"""Palettes (from files, generated), colour label maps, overlays and legends checked pixel by pixel, in
uint8 label spaces (ignore 255) and wide ones of more than 255 classes (ignore 65535), the
confusion-matrix picture, and tools/demo.py on a folder of images, one image, a video, and bad input."""

import logging
from pathlib import Path

import cv2
import numpy as np
import pytest
from PIL import Image

from checkpoint_fixtures import DEMO_CONFIG, one_thread, write_untrained_checkpoint  # noqa: F401 (autouse fixture)
from unifiedseg.cli.demo import VIDEO_LEGEND_ROWS, main as demo_main
from unifiedseg import drawing as vis
from unifiedseg.drawing import confusion, overlays, palettes
from unifiedseg.inference import Predictor
from unifiedseg.taxonomy import TaxonomyError

DEMO_CITY_COLORS = [(128, 64, 128), (244, 35, 232), (70, 70, 70), (107, 142, 35), (70, 130, 180), (220, 20, 60),
                    (255, 0, 0), (0, 0, 142)]
PALETTE = np.array([[200, 0, 0], [0, 200, 0], [0, 0, 200], [250, 250, 0]], dtype=np.uint8)
NAMES = ["road", "tree", "water", "sun"]


# ---- palettes ----------------------------------------------------------------------------------
def test_a_dataset_palette_comes_from_its_colours_file():
    palette = vis.palette_for("demo-city")
    assert palette.dtype == np.uint8 and [tuple(c) for c in palette] == DEMO_CITY_COLORS


def test_the_cityscapes_palette_file_with_crlf_lines_is_read():
    palette = vis.palette_for("cityscapes-19")
    assert palette.shape == (19, 3) and tuple(palette[0]) == (128, 64, 128) and tuple(palette[18]) == (119, 11, 32)


def test_datasets_without_a_usable_colours_file_get_a_generated_palette(caplog):
    # camvid-11 has no colours file; kitti-34's file has 19 colours for its 34 classes
    assert np.array_equal(vis.palette_for("camvid-11"), vis.generated_palette(11))
    with caplog.at_level(logging.WARNING, logger="unifiedseg"):
        palette = vis.palette_for("kitti-34")
    assert np.array_equal(palette, vis.generated_palette(34))
    assert "kitti-34_colors.txt has 19 colours but kitti-34 has 34 classes" in caplog.text


def test_class_name_lists_get_a_generated_palette_and_unknown_datasets_are_refused():
    assert np.array_equal(vis.palette_for(["a", "b", "c"]), vis.generated_palette(3))
    with pytest.raises(TaxonomyError, match=r"'demo-cty'.*did you mean 'demo-city'"):
        vis.palette_for("demo-cty")
    assert np.array_equal(vis.palette_for("not-a-dataset", num_classes=2), vis.generated_palette(2))


def test_generated_palettes_are_deterministic_distinct_and_never_black():
    palette = vis.generated_palette(255)
    assert np.array_equal(palette, vis.generated_palette(255))
    assert len({tuple(c) for c in palette}) == 255 and (0, 0, 0) not in {tuple(c) for c in palette}
    # a shorter palette is the start of a longer one, so colours stay put as classes are added
    assert np.array_equal(vis.generated_palette(10), palette[:10])
    # the first classes are far apart (hue steps by the golden ratio, brightness alternates)
    first = palette[:12].astype(int)
    distances = np.sqrt(((first[:, None] - first[None]) ** 2).sum(-1))
    assert distances[~np.eye(12, dtype=bool)].min() > 40
    # class 0: hue 0, saturation 0.85, value 0.95 -> (242, 36, 36) by hand
    assert tuple(palette[0]) == (242, 36, 36)


def test_a_malformed_colours_file_is_refused_by_line(tmp_path):
    bad = tmp_path / "x_colors.txt"
    bad.write_text("1 2 3\n4 5\n")
    with pytest.raises(TaxonomyError, match=r"x_colors.txt:2: expected 'R G B'.*class id 1.*'4 5'"):
        vis.read_palette(bad)
    bad.write_text("1 2 300\n")
    with pytest.raises(TaxonomyError, match=r":1: expected 'R G B' with three integers 0-255"):
        vis.read_palette(bad)


# ---- colour label maps and overlays ------------------------------------------------------------
def test_colorize_paints_classes_and_the_ignore_label_black():
    labels = np.array([[0, 1], [255, 3]], dtype=np.uint8)
    assert vis.colorize(labels, PALETTE).tolist() == [[[200, 0, 0], [0, 200, 0]], [[0, 0, 0], [250, 250, 0]]]
    assert vis.colorize(labels.astype(np.int64), PALETTE).tolist() == vis.colorize(labels, PALETTE).tolist()


def test_colorize_names_ids_without_a_colour():
    with pytest.raises(ValueError, match=r"label ids 4, 7 have no colour: the palette has 4"):
        vis.colorize(np.array([[4, 7, 255]]), PALETTE)
    with pytest.raises(ValueError, match=r"label id 300 is outside"):
        vis.colorize(np.array([[300]]), PALETTE)


def test_label_pngs_are_indexed_with_the_class_ids_as_pixel_values(tmp_path):
    labels = np.array([[0, 1, 2], [3, 255, 0]], dtype=np.uint8)
    vis.save_label_png(tmp_path / "l.png", labels, PALETTE)
    with Image.open(tmp_path / "l.png") as image:
        assert image.mode == "P"
        assert np.array_equal(np.array(image), labels)
        assert image.getpalette()[:12] == PALETTE.reshape(-1).tolist()
        assert np.array_equal(np.array(image.convert("RGB")), vis.colorize(labels, PALETTE))


def test_label_pngs_fall_back_to_rgb_without_pillow(tmp_path, monkeypatch):
    monkeypatch.setattr(overlays, "Image", None)
    labels = np.array([[0, 1], [255, 3]], dtype=np.uint8)
    vis.save_label_png(tmp_path / "l.png", labels, PALETTE)
    rgb = cv2.imread(str(tmp_path / "l.png"), cv2.IMREAD_UNCHANGED)[..., ::-1]
    assert np.array_equal(rgb, vis.colorize(labels, PALETTE))


def test_overlay_blends_by_hand_and_leaves_ignored_pixels_alone():
    image = np.array([[[100, 20, 40], [10, 10, 10]], [[7, 8, 9], [0, 0, 0]]], dtype=np.uint8)
    labels = np.array([[0, 3], [255, 2]])
    half = vis.overlay(image, labels, PALETTE, alpha=0.5)
    # 0.5 * (100, 20, 40) + 0.5 * (200, 0, 0) = (150, 10, 20); 0.5 * (10, 10, 10) + 0.5 * (250, 250, 0) = (130, 130, 5)
    assert half.tolist() == [[[150, 10, 20], [130, 130, 5]], [[7, 8, 9], [0, 0, 100]]]
    quarter = vis.overlay(image, labels, PALETTE, alpha=0.25)
    # 0.75 * (100, 20, 40) + 0.25 * (200, 0, 0) = (125, 15, 30); 0.75 * 0 + 0.25 * 200 = 50
    assert quarter[0, 0].tolist() == [125, 15, 30] and quarter[1, 1].tolist() == [0, 0, 50]
    assert quarter[1, 0].tolist() == [7, 8, 9]
    assert np.array_equal(vis.overlay(image, labels, PALETTE, alpha=0.0), image)
    with pytest.raises(ValueError, match="alpha must be in"):
        vis.overlay(image, labels, PALETTE, alpha=1.5)
    with pytest.raises(ValueError, match=r"labels of shape \(1, 2\) do not match the image's \(2, 2\)"):
        vis.overlay(image, labels[:1], PALETTE)


def colors_in(strip):
    return {tuple(c) for c in strip.reshape(-1, 3)}


def test_the_legend_lists_only_the_classes_present_largest_first():
    labels = np.full((20, 300), 255, dtype=np.uint8)
    labels[:, :200] = 2
    labels[:5, 200:] = 0  # class 0 covers fewer pixels than class 2; classes 1 and 3 are absent
    assert vis.present_classes(labels) == [2, 0]
    strip = vis.legend(NAMES, PALETTE, vis.present_classes(labels), width=300)
    found = colors_in(strip)
    assert {(0, 0, 200), (200, 0, 0)} <= found
    assert (0, 200, 0) not in found and (250, 250, 0) not in found
    placed, left_out = vis.legend_layout(["water", "road"], 300)
    assert [index for index, _, _ in placed] == [0, 1] and left_out == 0
    assert placed[0][2] < placed[1][2]  # water (the larger) comes first, on the same row
    overlay = vis.overlay_with_legend(np.zeros((20, 300, 3), np.uint8), labels, PALETTE, NAMES)
    assert overlay.shape == (20 + strip.shape[0], 300, 3) and np.array_equal(overlay[20:], strip)


def test_a_narrow_legend_wraps_and_a_fixed_height_one_says_how_many_are_left_out():
    names = [f"class number {i}" for i in range(4)]
    style = vis.LegendStyle.for_width(150)
    placed, left_out = vis.legend_layout(names, 150)
    assert [row for _, row, _ in placed] == [0, 1, 2, 3] and left_out == 0
    assert vis.legend(names, PALETTE, [0, 1, 2, 3], width=150).shape == (style.height(4), 150, 3)
    placed, left_out = vis.legend_layout(names, 150, rows=2)
    assert len(placed) + left_out == 4 and left_out >= 2
    fixed = vis.legend(names, PALETTE, [0, 1, 2, 3], width=150, rows=2)
    assert fixed.shape == (style.height(2), 150, 3)
    assert (250, 250, 0) not in colors_in(fixed)  # class 3 was left out


# ---- confusion matrix --------------------------------------------------------------------------
def test_the_confusion_picture_is_row_normalised_with_a_grey_row_for_missing_classes(tmp_path):
    matrix = np.array([[3, 1, 0], [0, 0, 0], [0, 2, 2]])
    names = ["road", "car", "sky"]
    assert np.allclose(vis.row_normalised(matrix)[[0, 2]], [[0.75, 0.25, 0], [0, 0.5, 0.5]])
    vis.confusion_png(tmp_path / "c.png", matrix, names)
    picture = cv2.imread(str(tmp_path / "c.png"))[..., ::-1]
    layout = vis.confusion_layout(names)
    assert layout.cell == 40  # 1200 // 3 capped at 40 px
    assert picture.shape == (layout.height, layout.width, 3)
    assert layout.width == layout.left + 3 * 40 + layout.pad and layout.height == layout.top + 3 * 40 + layout.pad

    def corner(row, col):  # a pixel clear of the percentage text in the cell's middle
        y, x = layout.cell_origin(row, col)
        return tuple(int(v) for v in picture[y + 2, x + 2])

    def viridis(value):
        return tuple(int(v) for v in vis.heat_colors(np.array([value]))[0])

    assert corner(0, 0) == viridis(0.75) and corner(0, 1) == viridis(0.25) and corner(0, 2) == viridis(0.0)
    assert corner(1, 0) == corner(1, 2) == confusion.MISSING_ROW_COLOR
    assert corner(2, 1) == corner(2, 2) == viridis(0.5)
    assert viridis(1.0) != viridis(0.0)


def test_the_confusion_picture_refuses_bad_matrices():
    with pytest.raises(ValueError, match="must be square"):
        vis.confusion_image(np.zeros((2, 3)), ["a", "b"])
    with pytest.raises(ValueError, match="3 class names for a 2 x 2"):
        vis.confusion_image(np.zeros((2, 2)), ["a", "b", "c"])
    with pytest.raises(ValueError, match="non-negative"):
        vis.confusion_image(np.array([[1, -1], [0, 1]]), ["a", "b"])


# ---- wide label spaces (more than 255 classes, ignore 65535) -----------------------------------
def wide_palette():
    """300 colours, colour i = (i % 256, 10 + i // 256, 200): ids 0, 255, 299 -> (0, 10, 200),
    (255, 10, 200), (43, 11, 200)."""
    ids = np.arange(300)
    return np.stack([ids % 256, 10 + ids // 256, np.full(300, 200)], axis=1).astype(np.uint8)


WIDE_LABELS = np.array([[0, 255], [299, 65535]], dtype=np.uint16)


def test_colorize_in_a_wide_space_paints_class_255_and_the_ignore_label_65535_black():
    palette = wide_palette()
    expected = [[[0, 10, 200], [255, 10, 200]], [[43, 11, 200], [0, 0, 0]]]
    assert vis.colorize(WIDE_LABELS, palette).tolist() == expected
    assert vis.colorize(WIDE_LABELS.astype(np.int64), palette).tolist() == expected
    assert vis.colorize(WIDE_LABELS.astype(np.int32), palette).tolist() == expected
    # a uint8 map drawn with a wide palette: 255 is class 255 there, not ignored
    assert vis.colorize(np.array([[255, 0]], dtype=np.uint8), palette).tolist() == [[[255, 10, 200], [0, 10, 200]]]


def test_wide_label_ids_without_a_colour_are_named_with_the_ignore_label_65535():
    palette = wide_palette()
    with pytest.raises(ValueError, match=r"label ids 300 have no colour: the palette has 300 "
                                         r"\(ids 0-299, and 65535 for ignored pixels\)"):
        vis.colorize(np.array([[0, 300, 65535]], dtype=np.uint16), palette)
    with pytest.raises(ValueError, match=r"label ids 300, 65534 have no colour"):
        vis.colorize(np.array([[65534, 300]], dtype=np.int64), palette)
    with pytest.raises(ValueError, match=r"label id 65536 is outside 0-299 \(and 65535 for ignored pixels\)"):
        vis.colorize(np.array([[65536]], dtype=np.int64), palette)
    with pytest.raises(ValueError, match=r"label id -1 is outside 0-299 \(and 65535"):
        vis.colorize(np.array([[-1, 5]]), palette)
    # a 255-colour palette is still narrow: 255 is its ignore label, 256 is out of range
    with pytest.raises(ValueError, match=r"label id 256 is outside 0-254 \(and 255 for ignored pixels\)"):
        vis.colorize(np.array([[256]]), vis.generated_palette(255))


def test_overlay_in_a_wide_space_blends_class_255_and_leaves_65535_alone():
    image = np.array([[[50, 30, 60], [101, 20, 40]], [[1, 1, 0], [7, 8, 9]]], dtype=np.uint8)
    blended = vis.overlay(image, WIDE_LABELS, wide_palette(), alpha=0.5)
    # (50, 30, 60) + (0, 10, 200) -> (25, 20, 130); (101, 20, 40) + (255, 10, 200) -> (178, 15, 120);
    # (1, 1, 0) + (43, 11, 200) -> (22, 6, 100); the 65535 pixel keeps (7, 8, 9)
    assert blended.tolist() == [[[25, 20, 130], [178, 15, 120]], [[22, 6, 100], [7, 8, 9]]]


def test_present_classes_counts_255_as_a_class_when_the_ignore_label_is_65535():
    labels = np.full((4, 5), 65535, dtype=np.uint16)
    labels[0] = 255  # 5 pixels
    labels[1, :3] = 299  # 3 pixels
    labels[2, :3] = 0  # 3 pixels, ties with 299 and comes first by id
    assert vis.present_classes(labels, ignore_index=65535) == [255, 0, 299]
    assert vis.present_classes(labels.astype(np.int64), ignore_index=65535) == [255, 0, 299]
    narrow = np.array([[255, 3, 3]], dtype=np.uint8)
    assert vis.present_classes(narrow) == [3] and vis.present_classes(narrow, ignore_index=65535) == [3, 255]
    with pytest.raises(ValueError, match=r"label ids must be in 0-255"):
        vis.present_classes(labels)  # 65535 is no id of a uint8 space
    with pytest.raises(ValueError, match=r"ignore_index must be 255 \(uint8 label maps\) or 65535 "
                                         r"\(uint16 label maps\), got 0"):
        vis.present_classes(labels, ignore_index=0)
    with pytest.raises(ValueError, match=r"labels must be an integer array, got float64"):
        vis.present_classes(np.array([[1.5]]))


def test_an_overlay_with_legend_in_a_wide_space_lists_class_255():
    palette = wide_palette()
    names = [f"c{i}" for i in range(300)]
    labels = np.full((20, 300), 65535, dtype=np.uint16)
    labels[:, :200] = 255
    labels[:4, 200:] = 299
    picture = vis.overlay_with_legend(np.zeros((20, 300, 3), np.uint8), labels, palette, names)
    strip = vis.legend(names, palette, [255, 299], width=300)
    assert picture.shape == (20 + strip.shape[0], 300, 3) and np.array_equal(picture[20:], strip)
    assert {(255, 10, 200), (43, 11, 200)} <= colors_in(strip) and (0, 10, 200) not in colors_in(strip)
    assert picture[19, 299].tolist() == [0, 0, 0]  # an ignored pixel of the black image stays black


def test_wide_label_pngs_are_rgb_pictures_of_the_colours(tmp_path, monkeypatch):
    palette = wide_palette()
    vis.save_label_png(tmp_path / "wide.png", WIDE_LABELS, palette)
    with Image.open(tmp_path / "wide.png") as image:
        assert image.mode == "RGB"  # a PNG palette holds 256 colours at most
        assert np.array(image).tolist() == [[[0, 10, 200], [255, 10, 200]], [[43, 11, 200], [0, 0, 0]]]
    monkeypatch.setattr(overlays, "Image", None)
    vis.save_label_png(tmp_path / "plain.png", WIDE_LABELS.astype(np.int64), palette)
    rgb = cv2.imread(str(tmp_path / "plain.png"), cv2.IMREAD_UNCHANGED)[..., ::-1]
    assert np.array_equal(rgb, vis.colorize(WIDE_LABELS, palette))


def test_generated_palettes_of_wide_spaces_are_distinct_never_black_and_extend_the_narrow_one():
    palette = vis.generated_palette(350)
    assert palette.shape == (350, 3) and palette.dtype == np.uint8
    assert len({tuple(c) for c in palette}) == 350 and (0, 0, 0) not in {tuple(c) for c in palette}
    assert np.array_equal(palette[:255], vis.generated_palette(255))
    # golden-ratio hues first meet after rounding at class 1981, on class 7's (115, 242, 109): it takes
    # the next darker colour on that grey diagonal
    big = vis.generated_palette(2000)
    assert tuple(big[7]) == (115, 242, 109) and tuple(big[1981]) == (114, 241, 108)
    largest = vis.generated_palette(65535)
    assert len(np.unique(largest, axis=0)) == 65535 and (largest.astype(int).sum(axis=1) > 0).all()
    assert np.array_equal(largest[:350], palette)
    for bad in (65536, -1, 2.0, True):
        with pytest.raises(ValueError, match=r"num_classes must be an integer 0-65535"):
            vis.generated_palette(bad)


def test_a_taken_colour_moves_darker_then_lighter_then_to_the_first_free_colour_from_white():
    assert palettes._free_color((10, 20, 30), {(10, 20, 30)}, None)[0] == (9, 19, 29)
    # (2, 3, 4) can go one step darker, to (1, 2, 3); with that taken too it goes lighter
    assert palettes._free_color((2, 3, 4), {(2, 3, 4), (1, 2, 3)}, None)[0] == (3, 4, 5)
    greys = {(v, v, v) for v in range(256)}  # the whole diagonal of (5, 5, 5)
    color, walk = palettes._free_color((5, 5, 5), greys, None)
    assert color == (255, 255, 254)
    # the walk resumes where it stopped: the next taken grey finds the next colour down from white
    assert palettes._free_color((9, 9, 9), greys | {color}, walk)[0] == (255, 255, 253)


def test_palette_files_and_palettes_may_hold_up_to_65535_colours(tmp_path):
    path = tmp_path / "wide_colors.txt"
    path.write_text("".join(f"{i % 256} {10 + i // 256} 200\n" for i in range(300)))
    assert np.array_equal(vis.read_palette(path), wide_palette())
    path.write_text("1 2 3\n" * 65536)
    with pytest.raises(TaxonomyError, match=r"wide_colors.txt: 65536 colours; label maps hold at most 65535 classes"):
        vis.read_palette(path)
    with pytest.raises(ValueError, match=r"palette has 65536 colours; ids 0-65534 are classes, 65535 is ignored"):
        vis.colorize(np.zeros((1, 1), np.uint16), np.zeros((65536, 3), np.uint8))
    names = [f"c{i}" for i in range(300)]
    assert np.array_equal(vis.palette_for(names), vis.generated_palette(300))


def test_the_confusion_picture_of_300_classes_has_8_px_cells_and_of_600_no_names():
    rng = np.random.default_rng(0)
    matrix = rng.integers(0, 5, (300, 300))
    matrix[299] = 0
    matrix[299, 0] = 7  # row 299: everything predicted as class 0
    names = [f"class {i}" for i in range(300)]
    layout = vis.confusion_layout(names)
    assert layout.cell == 8 and layout.show_names  # 1200 // 300 = 4, raised to 8 px
    picture = vis.confusion_image(matrix, names)
    assert picture.shape == (layout.height, layout.width, 3)
    assert layout.width == layout.left + 300 * 8 + layout.pad
    y, x = layout.cell_origin(299, 0)
    viridis_one = tuple(int(v) for v in vis.heat_colors(np.array([1.0]))[0])
    assert tuple(int(v) for v in picture[y + 4, x + 4]) == viridis_one
    assert layout.left > 2 * layout.pad  # room for the names
    many = [f"class {i}" for i in range(600)]
    wide_layout = vis.confusion_layout(many)
    # 600 cells of 8 px would span 4800 px > 4096: cells of 4096 // 600 = 6 px, too small to label
    assert wide_layout.cell == 6 and not wide_layout.show_names
    assert wide_layout.left == 16 and wide_layout.width == 16 + 600 * 6 + 8
    assert vis.confusion_image(np.eye(600), many).shape == (wide_layout.height, wide_layout.width, 3)


# ---- tools/demo.py -----------------------------------------------------------------------------
@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    return write_untrained_checkpoint(tmp_path_factory.mktemp("demo_ckpt") / "untrained.pth")


def scene(height, width, seed):
    """A picture with some structure (a gradient sky, blocks, noise), so the network sees edges."""
    rng = np.random.default_rng(seed)
    image = np.zeros((height, width, 3), np.uint8)
    image[: height // 2] = np.linspace(80, 230, width, dtype=np.uint8)[None, :, None]
    image[height // 2:] = (90, 90, 90)
    image[height // 3: height - 4, 5: width // 3] = (40, 140, 40)
    return np.clip(image + rng.integers(0, 30, image.shape), 0, 255).astype(np.uint8)


def write_rgb(path, rgb):
    cv2.imwrite(str(path), np.ascontiguousarray(rgb[..., ::-1]))


def demo(*args):
    return demo_main(["--config", str(DEMO_CONFIG), "--device", "cpu", *[str(a) for a in args]])


def test_demo_on_a_folder_writes_label_maps_and_overlays_with_a_legend(tmp_path, checkpoint, capsys):
    images = tmp_path / "images"
    images.mkdir()
    first, second = scene(40, 56, 0), scene(48, 64, 1)
    write_rgb(images / "a.png", first)
    write_rgb(images / "b.jpg", second)
    (images / "notes.txt").write_text("not an image")
    out = tmp_path / "out"
    assert demo("--checkpoint", checkpoint, "--input", images, "--output", out) == 0
    assert sorted(p.name for p in out.iterdir()) == ["a_labels.png", "a_overlay.jpg", "b_labels.png", "b_overlay.jpg"]
    assert "wrote label maps and overlays of 2 image(s)" in capsys.readouterr().out

    predictor = Predictor(DEMO_CONFIG, checkpoint, device="cpu")
    labels = predictor.predict(first).labels
    palette = vis.palette_for(predictor.class_names)
    with Image.open(out / "a_labels.png") as written:
        assert written.mode == "P" and np.array_equal(np.array(written), labels)
        assert written.getpalette()[:3 * len(palette)] == palette.reshape(-1).tolist()
    overlay = cv2.imread(str(out / "a_overlay.jpg"))[..., ::-1].astype(int)
    expected = vis.overlay_with_legend(first, labels, palette, predictor.class_names).astype(int)
    assert overlay.shape == expected.shape and overlay.shape[0] > 40  # the legend strip below the image
    unblended = vis.overlay_with_legend(first, labels, palette, predictor.class_names, alpha=0.0).astype(int)
    error, error_unblended = np.abs(overlay - expected).mean(), np.abs(overlay - unblended).mean()
    assert error < 6 and error < error_unblended / 3, (error, error_unblended)  # equal up to JPEG's loss


def test_demo_maps_to_a_test_dataset_with_its_palette(tmp_path, checkpoint):
    image = tmp_path / "street.png"
    write_rgb(image, scene(40, 56, 2))
    assert demo("--checkpoint", checkpoint, "--input", image, "--output", tmp_path / "out", "--taxonomy", "demo-camvid") == 0
    camvid = vis.palette_for("demo-camvid")
    with Image.open(tmp_path / "out" / "street_labels.png") as written:
        ids = np.array(written)
        assert ids.max() < len(camvid)
        assert written.getpalette()[:3 * len(camvid)] == camvid.reshape(-1).tolist()
    predictor = Predictor(DEMO_CONFIG, checkpoint, device="cpu", output_dataset="demo-camvid")
    assert np.array_equal(ids, predictor.predict(scene(40, 56, 2)).labels)


def test_demo_on_a_video_writes_an_overlay_video(tmp_path, checkpoint):
    video = tmp_path / "clip.avi"
    writer = cv2.VideoWriter(str(video), cv2.VideoWriter_fourcc(*"MJPG"), 5, (64, 48))
    for seed in range(3):
        writer.write(np.ascontiguousarray(scene(48, 64, seed)[..., ::-1]))
    writer.release()
    assert demo("--checkpoint", checkpoint, "--input", video, "--output", tmp_path / "out") == 0
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["clip_overlay.mp4"]  # no partial file left
    capture = cv2.VideoCapture(str(tmp_path / "out" / "clip_overlay.mp4"))
    frames = []
    while True:
        ok, frame = capture.read()
        if not ok:
            break
        frames.append(frame)
    capture.release()
    legend_height = vis.LegendStyle.for_width(64).height(VIDEO_LEGEND_ROWS)
    assert len(frames) == 3 and frames[0].shape == (48 + legend_height, 64, 3)


def test_demo_errors_name_the_input(tmp_path, checkpoint, capsys):
    missing = tmp_path / "nowhere"
    assert demo("--checkpoint", checkpoint, "--input", missing, "--output", tmp_path / "o") == 2
    assert f"input {missing} does not exist" in capsys.readouterr().err
    empty = tmp_path / "empty"
    empty.mkdir()
    (empty / "readme.txt").write_text("x")
    assert demo("--checkpoint", checkpoint, "--input", empty, "--output", tmp_path / "o") == 2
    assert f"no images (.jpg, .jpeg, .png) in folder {empty}" in capsys.readouterr().err
    clash = tmp_path / "clash"
    clash.mkdir()
    write_rgb(clash / "x.png", scene(8, 8, 0))
    write_rgb(clash / "x.jpg", scene(8, 8, 0))
    assert demo("--checkpoint", checkpoint, "--input", clash, "--output", tmp_path / "o") == 2
    assert "share a name and would write the same outputs: x.jpg, x.png" in capsys.readouterr().err
    assert demo("--checkpoint", checkpoint, "--input", clash / "x.png", "--output", tmp_path / "o",
                "--taxonomy", "camvid") == 2
    err = capsys.readouterr().err
    assert "'camvid' is not a test dataset" in err and "test datasets: demo-camvid" in err


def test_demo_stops_at_an_unreadable_image_or_skips_and_counts_it(tmp_path, checkpoint, capsys):
    images = tmp_path / "images"
    images.mkdir()
    write_rgb(images / "good.png", scene(24, 32, 0))
    (images / "broken.jpg").write_bytes(b"\xff\xd8 this is not a jpeg \xff\xd9")
    assert demo("--checkpoint", checkpoint, "--input", images, "--output", tmp_path / "o") == 1
    err = capsys.readouterr().err
    assert f"{images / 'broken.jpg'}: corrupt or unsupported image" in err and "--skip-bad" in err
    assert demo("--checkpoint", checkpoint, "--input", images, "--output", tmp_path / "o2", "--skip-bad") == 0
    captured = capsys.readouterr()
    assert "skipped 1 unreadable image(s)" in captured.err and "broken.jpg" in captured.err
    assert sorted(p.name for p in (tmp_path / "o2").iterdir()) == ["good_labels.png", "good_overlay.jpg"]
