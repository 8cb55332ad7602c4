"""Generate the demo datasets: small procedurally drawn street scenes in real on-disk layouts.

They are the default data of the project's main job (training on 2 CPU cores in minutes) and of every
test, so they must show what a unified taxonomy is for, be learnable fast, and cost little.

Design
------
**One world, three ways of labelling it.** Every scene is drawn from one world of nine fine classes
(`road, sidewalk, building, vegetation, sky, car, truck, person, rider`) plus things no taxonomy
names (`clutter` objects, a car's own hood, a rectification border). Three datasets annotate that
world differently, as real datasets do:

| world     | demo-city (train)  | demo-ade (train)   | demo-camvid (test) |
| --------- | ------------------ | ------------------ | ------------------ |
| road      | road               | ground             | Road               |
| sidewalk  | sidewalk           | ground             | Sidewalk           |
| building  | building           | building           | Building           |
| vegetation| vegetation         | tree               | Tree               |
| sky       | sky                | sky                | Sky                |
| car       | vehicle            | car                | Car                |
| truck     | vehicle            | truck              | Truck              |
| person    | person             | person             | Pedestrian         |
| rider     | rider              | person             | Bicyclist          |
| clutter   | static (void)      | unlabeled (id 0)   | Void               |

demo-city splits road/sidewalk and person/rider but merges car+truck; demo-ade splits car/truck but
merges road+sidewalk and person+rider. The test dataset needs every split. So the unification
property holds by construction: the union of the two training datasets' *hard* labels reaches every
test class, while each one alone misses some (demo-city never says car or truck, demo-ade never says
road, sidewalk or rider); the merged classes are written one-to-many in `taxonomy/demo.tsv`
(`~vehicle`, `~ground`, `~person`), so a partial-label loss can still use them. Names collide with
different meanings (`person` is a pedestrian in demo-city but anyone in demo-ade) and differ with the
same meaning (`vegetation` / `tree`): the two ways a naive merge by name goes wrong.

**Real layouts and releases.** demo-city is laid out like Cityscapes (`leftImg8bit/`, `gtFine/..._
gtFine_labelIds.png`) and its labels are stored in a fuller "disk" release, `demo-city-12`, with void
classes (`unlabeled`, `ego vehicle`, `rectification border`, `static`) that the remap table
`taxonomy/remap/demo-city-12_to_demo-city.tsv` sends to 255, as Cityscapes' labelIds -> train ids.
demo-ade is laid out like ADE20K (`images/training/ADE_train_00000001.jpg`, JPEG images, id 0 =
unlabeled, classes 1..7, release `demo-ade-8`). demo-camvid, the held-out test dataset, uses the
SegNet CamVid layout (`train/`, `trainannot/`, ...) with a trailing `Void` id (release
`demo-camvid-10`) that marks object boundaries, like annotators' uncertain edges; it has train and
val lists so that an oracle can be trained on it, and its val split is the zero-shot evaluation set.
Each dataset folder has `list/train.txt` and `list/val.txt` in MSeg's `image_rel label_rel` format,
and `taxonomy/datasets/demo.yaml` registers the three.

**Learnable from local appearance in minutes.** Each world class is a *material*: a base colour and a
periodic texture of its own (asphalt grain, paving grid, windowed brick, leafy blotches, horizontal
stripes on cars, vertical ribs on trucks, checks on people, diagonal stripes on riders, a gradient
sky), so a small CNN tells classes apart from a few pixels of context, yet no class is a single
colour: per image brightness and colour cast, per class brightness, per instance colour and texture
phase all vary, and road carries white lane marks. Materials are fixed for all seeds (the world's
physics does not change with the seed; only scenes do), so a model trained on one seed's data is
tested fairly on another's. Scenes have a plausible layout so that context helps too: sky on top,
a skyline of buildings at a random horizon, a road in perspective (or a plaza crossed by a road in
half of demo-ade's scenes: a domain shift), trees, and objects standing on the ground, scaled by
their distance below the horizon and drawn far to near so that near ones occlude far ones.

**Small and fast.** Textures are periodic with short periods and label regions have hard edges, so
PNG's row filters and deflate window compress them well; demo-ade is JPEG as ADE20K is. The defaults
(128x192 px; 300 train images per dataset, 40 val per training dataset, 60 val for the test dataset:
1040 images) come to about 11 MB and take about 5 s on one core. Every sample draws from its own random stream,
seeded by (seed, dataset, split, index), so the output is byte-identical for a seed and the first N
images do not change when more are asked for.

**Safe to re-run.** Everything is written into a staging folder inside the output folder, moved into
place dataset by dataset, and a marker file (`demo_data.json`, written last and atomically) records
the parameters. A second run with the same parameters finds the marker and every listed file, and
skips; a folder of a demo dataset's name that holds no marker is not ours, so it is not overwritten
without `force=True`.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import time
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

import cv2
import numpy as np
from tqdm import tqdm

from unifiedseg.constants import IGNORE_INDEX
from unifiedseg.utils.checks import is_int
from unifiedseg.utils.fileio import atomic_write_text

DEMO_DATA_VERSION = 1  # bump when a change alters the generated bytes, so stale outputs regenerate
MARKER_NAME = "demo_data.json"
DEFAULT_SIZE = (128, 192)
DEFAULT_NUM_TRAIN = 300
DEFAULT_NUM_VAL = 40
DEFAULT_NUM_TEST = 60
MIN_SIDE, MAX_SIDE = 32, 2048
JPEG_QUALITY = 90
PNG_COMPRESSION = 6  # 5x faster than 9 here for 4% more bytes

# The world's classes, in world-id order. The first nine are the universal classes of taxonomy/demo.tsv.
WORLD_CLASSES = ("road", "sidewalk", "building", "vegetation", "sky", "car", "truck", "person", "rider",
                 "clutter", "ego vehicle", "border")
WORLD_ID = {name: i for i, name in enumerate(WORLD_CLASSES)}


class DemoDataError(ValueError):
    """A bad parameter or an output folder that cannot be used; the message says which and why."""


# ---- materials -----------------------------------------------------------------------------------
@dataclass(frozen=True)
class Material:
    """How a world class looks: a base colour plus periodic patterns, each (kind, RGB delta at +1)."""

    base: tuple[float, float, float]
    period: tuple[int, int]  # tile height, width: the texture repeats with this period
    patterns: tuple[tuple[str, tuple[float, float, float]], ...] = ()


MATERIALS = {
    "road": Material((78, 78, 84), (8, 8), (("grain", (16, 16, 16)),)),
    "sidewalk": Material((170, 158, 140), (8, 8), (("grid", (-55, -52, -48)), ("grain", (6, 6, 6)))),
    "building": Material((150, 88, 66), (12, 10), (("windows", (-95, -30, 5)), ("grain", (5, 5, 5)))),
    "vegetation": Material((60, 128, 48), (16, 16), (("blotches", (18, 30, 14)), ("grain", (8, 8, 8)))),
    "sky": Material((120, 170, 228), (32, 32), (("blotches", (6, 6, 4)),)),
    "car": Material((190, 38, 48), (4, 4), (("hstripes", (20, 16, 16)),)),
    "truck": Material((216, 168, 48), (6, 6), (("vstripes", (26, 24, 14)),)),
    "person": Material((150, 64, 160), (4, 4), (("checker", (26, 20, 26)),)),
    "rider": Material((40, 150, 168), (6, 6), (("diagonal", (18, 30, 30)),)),
    "clutter": Material((128, 128, 128), (8, 8), (("grain", (22, 22, 22)),)),
    "ego vehicle": Material((40, 40, 48), (8, 8), (("grain", (4, 4, 4)),)),
    "border": Material((0, 0, 0), (1, 1)),
}
MATERIAL_SEED = 20200613  # fixed: materials are the same for every seed
SKY_HORIZON_GLOW = 50.0  # sky gets this much lighter from the top of the image to the horizon
LANE_MARK = (225.0, 225.0, 215.0)


def _pattern(kind: str, period: tuple[int, int], rng: np.random.Generator) -> np.ndarray:
    """One period of a pattern, values in about [-1, 1]."""
    ph, pw = period
    y, x = np.mgrid[0:ph, 0:pw]
    if kind == "grain":
        return rng.uniform(-1.0, 1.0, (ph, pw))
    if kind == "grid":  # paving joints
        return ((y == 0) | (x == 0)).astype(np.float64)
    if kind == "windows":
        return ((y >= 3) & (y <= 8) & (x >= 2) & (x <= 6)).astype(np.float64)
    if kind == "blotches":  # a few integer-frequency waves, so the tile wraps seamlessly
        value = np.zeros((ph, pw))
        for _ in range(4):
            fy, fx = rng.integers(1, 3, size=2)
            value += np.cos(2 * np.pi * (fy * y / ph + fx * x / pw) + rng.uniform(0, 2 * np.pi))
        return value / 2.0
    if kind == "hstripes":
        return np.where(y < ph // 2, 1.0, -1.0)
    if kind == "vstripes":
        return np.where(x < pw // 2, 1.0, -1.0)
    if kind == "checker":
        return np.where((y < ph // 2) ^ (x < pw // 2), 1.0, -1.0)
    if kind == "diagonal":
        return np.where((x + y) % pw < pw // 2, 1.0, -1.0)
    raise ValueError(f"unknown pattern kind {kind!r}")


@lru_cache(maxsize=1)
def material_tiles() -> tuple[np.ndarray, ...]:
    """One float32 (period_h, period_w, 3) tile per world class, in WORLD_CLASSES order."""
    rng = np.random.default_rng(MATERIAL_SEED)
    tiles = []
    for name in WORLD_CLASSES:
        material = MATERIALS[name]
        tile = np.broadcast_to(np.asarray(material.base, dtype=np.float64), (*material.period, 3)).copy()
        for kind, delta in material.patterns:
            tile += _pattern(kind, material.period, rng)[..., None] * np.asarray(delta)
        tile = tile.astype(np.float32)
        tile.flags.writeable = False
        tiles.append(tile)
    return tuple(tiles)


# ---- scenes --------------------------------------------------------------------------------------
@dataclass(frozen=True)
class SceneStyle:
    """What a dataset's scenes contain. Count ranges are inclusive."""

    horizon: tuple[float, float]  # horizon height as a fraction of the image height
    plaza_prob: float  # a road band across a paved plaza instead of a street in perspective
    trees: tuple[int, int]
    cars: tuple[int, int]
    trucks: tuple[int, int]
    persons: tuple[int, int]
    riders: tuple[int, int]
    clutter: tuple[int, int]
    ego_vehicle: bool = False  # the recording car's hood at the bottom
    border: int = 0  # rectification border, pixels
    lane_mark_prob: float = 0.7


@dataclass
class _Canvas:
    """The world-class map being drawn, with an instance map whose ids index per-instance colour gains."""

    world: np.ndarray
    instance: np.ndarray
    gains: list = field(default_factory=lambda: [np.ones(3)])

    def _new_instance(self, gain) -> int:
        self.gains.append(np.asarray(gain, dtype=np.float64))
        return len(self.gains) - 1

    def polygon(self, cls: str, points, gain) -> None:
        pts = [np.round(np.asarray(points, dtype=np.float64)).astype(np.int32)]
        inst = self._new_instance(gain)
        cv2.fillPoly(self.world, pts, WORLD_ID[cls])
        cv2.fillPoly(self.instance, pts, inst)

    def ellipse(self, cls: str, center, axes, gain) -> None:
        center = (int(round(center[0])), int(round(center[1])))
        axes = (max(1, int(round(axes[0]))), max(1, int(round(axes[1]))))
        inst = self._new_instance(gain)
        cv2.ellipse(self.world, center, axes, 0, 0, 360, WORLD_ID[cls], thickness=-1)
        cv2.ellipse(self.instance, center, axes, 0, 0, 360, inst, thickness=-1)

    def rect(self, cls: str, x0, y0, x1, y1, gain) -> None:
        self.polygon(cls, [(x0, y0), (x1, y0), (x1, y1), (x0, y1)], gain)


def _instance_gain(rng: np.random.Generator, spread: float = 0.12) -> np.ndarray:
    """A brightness change with a mild colour tint, so instances of a class differ."""
    return rng.uniform(1 - spread, 1 + spread) * rng.uniform(0.96, 1.04, size=3)


def _draw_object(canvas: _Canvas, kind: str, cx: float, yb: float, scale: float, h: int,
                 rng: np.random.Generator) -> None:
    """An object of world class `kind` standing at (cx, yb); `scale` in (0, 1] grows towards the camera."""
    flip = -1.0 if rng.random() < 0.5 else 1.0
    gain = _instance_gain(rng)
    if kind == "car":
        ch = scale * 0.30 * h
        cw = ch * rng.uniform(1.9, 2.4)
        canvas.polygon("car", [(cx - cw / 2, yb - 0.55 * ch), (cx - 0.30 * cw, yb - ch), (cx + 0.22 * cw, yb - ch),
                               (cx + cw / 2, yb - 0.55 * ch), (cx + cw / 2, yb), (cx - cw / 2, yb)], gain)
    elif kind == "truck":
        th = scale * 0.45 * h
        tw = th * rng.uniform(1.3, 1.7)
        box_end = cx + flip * 0.22 * tw
        canvas.rect("truck", cx - flip * tw / 2, yb - th, box_end, yb, gain)
        canvas.rect("truck", box_end, yb - 0.62 * th, cx + flip * tw / 2, yb, gain)
    elif kind == "person":
        ph = scale * 0.45 * h
        canvas.ellipse("person", (cx, yb - 0.42 * ph), (0.13 * ph, 0.42 * ph), gain)
        canvas.ellipse("person", (cx, yb - 0.9 * ph), (0.1 * ph, 0.1 * ph), gain)
    elif kind == "rider":
        rh = scale * 0.45 * h
        canvas.ellipse("rider", (cx, yb - 0.16 * rh), (0.32 * rh, 0.16 * rh), gain)  # the bicycle
        canvas.ellipse("rider", (cx + flip * 0.05 * rh, yb - 0.55 * rh), (0.12 * rh, 0.28 * rh), gain)
        canvas.ellipse("rider", (cx + flip * 0.08 * rh, yb - 0.88 * rh), (0.09 * rh, 0.09 * rh), gain)
    elif kind == "vegetation":  # a tree: trunk and a crown of a few blobs
        th = h * rng.uniform(0.25, 0.45) * (0.7 + 0.6 * scale)
        canvas.rect("vegetation", cx - 0.04 * th, yb - 0.45 * th, cx + 0.04 * th, yb, gain)
        for _ in range(int(rng.integers(2, 4))):
            r = th * rng.uniform(0.16, 0.26)
            canvas.ellipse("vegetation", (cx + rng.uniform(-0.18, 0.18) * th, yb - th * rng.uniform(0.55, 0.8)),
                           (r * rng.uniform(0.9, 1.3), r), gain)
    elif kind == "clutter":  # an object no taxonomy names: random star-shaped polygon, random colour
        radius = max(2.0, scale * 0.12 * h)
        angles = np.sort(rng.uniform(0, 2 * np.pi, int(rng.integers(4, 8))))
        radii = radius * rng.uniform(0.5, 1.0, len(angles))
        points = np.stack([cx + radii * np.cos(angles), yb - radius + radii * np.sin(angles)], axis=1)
        canvas.polygon("clutter", points, rng.uniform(0.35, 1.65, size=3))
    else:
        raise ValueError(f"unknown object kind {kind!r}")


def render_scene(style: SceneStyle, rng: np.random.Generator, size: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
    """Draw one scene: (RGB uint8 HxWx3 image, uint8 HxW map of world-class ids, WORLD_CLASSES order)."""
    h, w = size
    canvas = _Canvas(world=np.full((h, w), WORLD_ID["sky"], dtype=np.uint8), instance=np.zeros((h, w), dtype=np.uint16))
    yh = int(round(h * rng.uniform(*style.horizon)))
    ground_h = h - yh

    # Skyline: buildings side by side along the horizon, with occasional gaps of sky.
    x = float(rng.integers(-w // 8, 1))
    while x < w:
        bw = w * rng.uniform(0.12, 0.3)
        if rng.random() < 0.2:
            x += bw / 2
            continue
        top = yh * rng.uniform(0.05, 0.75)
        canvas.rect("building", x, top, x + bw - 1, yh + 0.03 * h, _instance_gain(rng))
        x += bw

    # Ground: paved everywhere, then the road.
    canvas.rect("sidewalk", 0, yh, w - 1, h - 1, _instance_gain(rng, 0.06))
    plaza = rng.random() < style.plaza_prob
    if plaza:  # a road band crossing a paved plaza
        top = yh + ground_h * rng.uniform(0.15, 0.5)
        thick = ground_h * rng.uniform(0.2, 0.4)
        tilt = ground_h * rng.uniform(-0.1, 0.1)
        road_poly = [(0, top - tilt), (w - 1, top + tilt), (w - 1, top + tilt + thick), (0, top - tilt + thick)]
        lane_top = lane_bottom = None
        band = (top, top + thick)
    else:  # a street in perspective towards a vanishing point on the horizon
        vx = w * rng.uniform(0.35, 0.65)
        top_half = w * rng.uniform(0.01, 0.05)
        bottom_half = w * rng.uniform(0.35, 0.65)
        drift = w * rng.uniform(-0.15, 0.15)
        road_poly = [(vx - top_half, yh), (vx + top_half, yh), (vx + drift + bottom_half, h), (vx + drift - bottom_half, h)]
        lane_top, lane_bottom = (vx, yh), (vx + drift, h)
    canvas.polygon("road", road_poly, _instance_gain(rng, 0.06))

    def road_span(yb: float) -> tuple[float, float]:
        if plaza:
            return 0.0, float(w)
        t = (yb - yh) / max(ground_h, 1)
        center = vx + drift * t
        half = top_half + (bottom_half - top_half) * t
        return center - half, center + half

    # Objects: trees near the horizon, vehicles on the road, people anywhere on the ground.
    objects = []
    for _ in range(int(rng.integers(style.trees[0], style.trees[1] + 1))):
        yb = yh + ground_h * rng.uniform(0.0, 0.3)
        objects.append(("vegetation", rng.uniform(0, w), yb))
    for kind, counts in (("car", style.cars), ("truck", style.trucks)):
        for _ in range(int(rng.integers(counts[0], counts[1] + 1))):
            yb = rng.uniform(*band) if plaza else yh + ground_h * rng.uniform(0.2, 1.0)
            lo, hi = road_span(yb)
            objects.append((kind, rng.uniform(lo, hi), yb))
    for kind, counts in (("person", style.persons), ("rider", style.riders), ("clutter", style.clutter)):
        for _ in range(int(rng.integers(counts[0], counts[1] + 1))):
            objects.append((kind, rng.uniform(0, w), yh + ground_h * rng.uniform(0.2, 1.0)))
    objects.sort(key=lambda item: item[2])  # far to near: near objects occlude far ones
    for kind, cx, yb in objects:
        scale = max(0.2, (yb - yh) / max(ground_h, 1))
        _draw_object(canvas, kind, cx, yb, scale, h, rng)

    if style.ego_vehicle:
        hood = h * rng.uniform(0.08, 0.14)
        canvas.ellipse("ego vehicle", (w / 2 + w * rng.uniform(-0.05, 0.05), h + 0.25 * hood), (0.8 * w, hood),
                       _instance_gain(rng, 0.05))
    if style.border:
        b = style.border
        for y0, y1, x0, x1 in ((0, b, 0, w), (h - b, h, 0, w), (0, h, 0, b), (0, h, w - b, w)):
            canvas.world[y0:y1, x0:x1] = WORLD_ID["border"]

    lane = None
    if lane_top is not None and rng.random() < style.lane_mark_prob:
        lane = np.zeros((h, w), dtype=np.uint8)
        dashes = 8
        for k in range(0, dashes, 2):
            t0, t1 = (k + 0.5) / dashes, (k + 1.3) / dashes
            p0 = [lane_top[i] + (lane_bottom[i] - lane_top[i]) * t0 ** 1.6 for i in (0, 1)]
            p1 = [lane_top[i] + (lane_bottom[i] - lane_top[i]) * min(t1, 1.0) ** 1.6 for i in (0, 1)]
            thickness = max(1, int(round(1 + 2.5 * (k + 1) / dashes * h / 128)))
            cv2.line(lane, (int(p0[0]), int(p0[1])), (int(p1[0]), int(p1[1])), 1, thickness)
    return _paint(canvas, rng, yh, lane), canvas.world


def _paint(canvas: _Canvas, rng: np.random.Generator, horizon: int, lane: np.ndarray | None) -> np.ndarray:
    """Fill each world class with its material at a random phase, then apply instance, class and image jitter."""
    world = canvas.world
    tiles = material_tiles()
    rgb = np.empty((*world.shape, 3), dtype=np.float32)
    present = np.flatnonzero(np.bincount(world.reshape(-1), minlength=len(WORLD_CLASSES)))
    for cls in present:
        ys, xs = np.nonzero(world == cls)
        tile = tiles[cls]
        ph, pw = tile.shape[:2]
        oy, ox = int(rng.integers(ph)), int(rng.integers(pw))
        values = tile[(ys + oy) % ph, (xs + ox) % pw] * np.float32(rng.uniform(0.92, 1.08))
        if cls == WORLD_ID["sky"]:
            values += (SKY_HORIZON_GLOW * np.clip(ys / max(horizon, 1), 0.0, 1.0)).astype(np.float32)[:, None]
        rgb[ys, xs] = values
    if lane is not None:
        rgb[(lane > 0) & (world == WORLD_ID["road"])] = LANE_MARK
    gains = np.asarray(canvas.gains, dtype=np.float32)
    rgb *= gains[canvas.instance]
    rgb *= (rng.uniform(0.85, 1.15) * rng.uniform(0.95, 1.05, size=3)).astype(np.float32)
    rgb[world == WORLD_ID["border"]] = 0.0
    return np.clip(np.rint(rgb), 0, 255).astype(np.uint8)


# ---- the datasets --------------------------------------------------------------------------------
@dataclass(frozen=True)
class DemoDataset:
    """One demo dataset: its taxonomy, its on-disk release and layout, and what its scenes contain."""

    name: str  # = TSV column = dataset_lists/NAME/NAME_names.txt = folder under the data root
    role: str  # "train" (left of `universal` in the TSV) or "test" (right of it)
    layout: str  # "cityscapes", "ade20k" or "camvid"
    class_names: tuple[str, ...]  # the dataset's taxonomy (training ids)
    disk_taxonomy: str  # the release whose ids are stored on disk
    disk_names: tuple[str, ...]
    world_to_disk: dict  # world class -> disk class name
    style: SceneStyle
    description: str
    boundary_class: str | None = None  # disk class painted on the 1-px edges between regions

    @property
    def root(self) -> str:
        return self.name

    def disk_lut(self) -> np.ndarray:
        """uint8 table: world id -> disk label id."""
        lut = np.full(256, IGNORE_INDEX, dtype=np.uint8)
        for world_id, world_name in enumerate(WORLD_CLASSES):
            lut[world_id] = self.disk_names.index(self.world_to_disk[world_name])
        return lut


CITY = DemoDataset(
    name="demo-city", role="train", layout="cityscapes",
    class_names=("road", "sidewalk", "building", "vegetation", "sky", "person", "rider", "vehicle"),
    disk_taxonomy="demo-city-12",
    disk_names=("unlabeled", "ego vehicle", "rectification border", "static", "road", "sidewalk", "building",
                "vegetation", "sky", "person", "rider", "vehicle"),
    world_to_disk={"road": "road", "sidewalk": "sidewalk", "building": "building", "vegetation": "vegetation",
                   "sky": "sky", "car": "vehicle", "truck": "vehicle", "person": "person", "rider": "rider",
                   "clutter": "static", "ego vehicle": "ego vehicle", "border": "rectification border"},
    style=SceneStyle(horizon=(0.38, 0.5), plaza_prob=0.0, trees=(1, 4), cars=(1, 4), trucks=(0, 2),
                     persons=(1, 4), riders=(0, 2), clutter=(0, 2), ego_vehicle=True, border=2),
    description="Cityscapes-like street scenes; splits road/sidewalk and person/rider, merges car+truck into vehicle",
)
ADE = DemoDataset(
    name="demo-ade", role="train", layout="ade20k",
    class_names=("building", "sky", "tree", "ground", "person", "car", "truck"),
    disk_taxonomy="demo-ade-8",
    disk_names=("unlabeled", "building", "sky", "tree", "ground", "person", "car", "truck"),
    world_to_disk={"road": "ground", "sidewalk": "ground", "building": "building", "vegetation": "tree",
                   "sky": "sky", "car": "car", "truck": "truck", "person": "person", "rider": "person",
                   "clutter": "unlabeled", "ego vehicle": "unlabeled", "border": "unlabeled"},
    style=SceneStyle(horizon=(0.25, 0.6), plaza_prob=0.5, trees=(1, 5), cars=(1, 3), trucks=(1, 2),
                     persons=(0, 3), riders=(0, 2), clutter=(1, 3)),
    description="ADE20K-like scenes; splits car/truck, merges road+sidewalk into ground and person+rider into person",
)
CAMVID = DemoDataset(
    name="demo-camvid", role="test", layout="camvid",
    class_names=("Sky", "Building", "Tree", "Road", "Sidewalk", "Car", "Truck", "Pedestrian", "Bicyclist"),
    disk_taxonomy="demo-camvid-10",
    disk_names=("Sky", "Building", "Tree", "Road", "Sidewalk", "Car", "Truck", "Pedestrian", "Bicyclist", "Void"),
    world_to_disk={"road": "Road", "sidewalk": "Sidewalk", "building": "Building", "vegetation": "Tree",
                   "sky": "Sky", "car": "Car", "truck": "Truck", "person": "Pedestrian", "rider": "Bicyclist",
                   "clutter": "Void", "ego vehicle": "Void", "border": "Void"},
    style=SceneStyle(horizon=(0.35, 0.5), plaza_prob=0.2, trees=(1, 4), cars=(1, 3), trucks=(1, 2),
                     persons=(1, 3), riders=(1, 2), clutter=(0, 1)),
    description="held-out CamVid-like test dataset (SegNet layout); needs road/sidewalk, car/truck and "
                "pedestrian/bicyclist apart",
    boundary_class="Void",
)
DEMO_DATASET_SPECS = {spec.name: spec for spec in (CITY, ADE, CAMVID)}
DEMO_DATASETS = tuple(DEMO_DATASET_SPECS)
DEMO_TRAIN_DATASETS = tuple(n for n, s in DEMO_DATASET_SPECS.items() if s.role == "train")
DEMO_TEST_DATASETS = tuple(n for n, s in DEMO_DATASET_SPECS.items() if s.role == "test")
SPLITS = ("train", "val")
LIST_FILES = {split: f"list/{split}.txt" for split in SPLITS}

_CITIES = {"train": ("aachen", "bochum", "bremen"), "val": ("frankfurt", "lindau", "munster")}
_ADE_FOLDERS = {"train": ("training", "ADE_train"), "val": ("validation", "ADE_val")}
_CAMVID_SEQUENCES = {"train": ("0001TP", "0006R0", "0016E5"), "val": ("Seq05VD",)}


def sample_paths(spec: DemoDataset, split: str, index: int) -> tuple[str, str]:
    """(image, label) paths of sample `index` (from 0), relative to the dataset folder, in its real layout."""
    if split not in SPLITS:
        raise DemoDataError(f"unknown split {split!r}; valid splits: {', '.join(SPLITS)}")
    if spec.layout == "cityscapes":
        cities = _CITIES[split]
        city = cities[index % len(cities)]
        stem = f"{city}_{index // len(cities):06d}_{19:06d}"
        return (f"leftImg8bit/{split}/{city}/{stem}_leftImg8bit.png", f"gtFine/{split}/{city}/{stem}_gtFine_labelIds.png")
    if spec.layout == "ade20k":
        folder, prefix = _ADE_FOLDERS[split]
        stem = f"{prefix}_{index + 1:08d}"
        return f"images/{folder}/{stem}.jpg", f"annotations/{folder}/{stem}.png"
    if spec.layout == "camvid":
        sequences = _CAMVID_SEQUENCES[split]
        stem = f"{sequences[index % len(sequences)]}_{30 * (index // len(sequences) + 1):06d}"
        return f"{split}/{stem}.png", f"{split}annot/{stem}.png"
    raise DemoDataError(f"unknown layout {spec.layout!r}; valid layouts: cityscapes, ade20k, camvid")


def render_sample(spec: DemoDataset, seed: int, split: str, index: int,
                  size: tuple[int, int]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(RGB image, disk label map, world map) of one sample; depends only on its arguments."""
    stream = [seed, DEMO_DATASETS.index(spec.name), SPLITS.index(split), index]
    image, world = render_scene(spec.style, np.random.default_rng(stream), size)
    label = cv2.LUT(world, spec.disk_lut())
    if spec.boundary_class is not None:
        edge = np.zeros(world.shape, dtype=bool)
        edge[:, 1:] |= world[:, 1:] != world[:, :-1]
        edge[1:, :] |= world[1:, :] != world[:-1, :]
        label[edge] = spec.disk_names.index(spec.boundary_class)
    return image, label, world


def _encode(path: str, array: np.ndarray) -> bytes:
    if array.ndim == 3:
        array = cv2.cvtColor(array, cv2.COLOR_RGB2BGR)
    if path.endswith(".jpg"):
        ok, data = cv2.imencode(".jpg", array, [cv2.IMWRITE_JPEG_QUALITY, JPEG_QUALITY])
    else:
        ok, data = cv2.imencode(".png", array, [cv2.IMWRITE_PNG_COMPRESSION, PNG_COMPRESSION])
    if not ok:
        raise DemoDataError(f"OpenCV could not encode {path}")
    return data.tobytes()


# ---- writing a data root -------------------------------------------------------------------------
def _check_count(name: str, value, minimum: int = 1) -> int:
    if not is_int(value) or value < minimum:
        raise DemoDataError(f"{name} must be an integer >= {minimum}, got {value!r}")
    return int(value)


def _check_size(size) -> tuple[int, int]:
    try:
        h, w = (int(v) for v in size)
    except (TypeError, ValueError):
        raise DemoDataError(f"size must be (height, width), got {size!r}") from None
    if not (MIN_SIDE <= h <= MAX_SIDE and MIN_SIDE <= w <= MAX_SIDE):
        raise DemoDataError(f"size {h}x{w} is out of range: height and width must be {MIN_SIDE}..{MAX_SIDE} pixels")
    return h, w


def split_counts(num_train: int, num_val: int, num_test: int) -> dict[str, dict[str, int]]:
    """Images per dataset and split: the test dataset's val split (its evaluation set) has num_test."""
    return {name: {"train": num_train, "val": num_val if spec.role == "train" else num_test}
            for name, spec in DEMO_DATASET_SPECS.items()}


def read_marker(out_dir: str | os.PathLike) -> dict | None:
    """The marker of a finished run in `out_dir`, or None when there is none or it is unreadable."""
    path = Path(out_dir) / MARKER_NAME
    try:
        marker = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return marker if isinstance(marker, dict) and marker.get("generator") == __name__ else None


def _missing_files(out_dir: Path, marker: dict) -> list[str]:
    """Files a complete output must hold that are absent (list files, and every image and label they list)."""
    missing = []
    for name, splits in marker["datasets"].items():
        root = out_dir / DEMO_DATASET_SPECS[name].root
        for split, count in splits.items():
            list_path = root / LIST_FILES[split]
            try:
                lines = list_path.read_text(encoding="utf-8").splitlines()
            except OSError:
                missing.append(str(list_path))
                continue
            if len(lines) != count:
                missing.append(f"{list_path} ({len(lines)} lines, expected {count})")
            for line in lines:
                missing += [str(root / rel) for rel in line.split() if not (root / rel).exists()]
    return missing


def make_demo_data(out_dir: str | os.PathLike, *, seed: int = 0, num_train: int = DEFAULT_NUM_TRAIN,
                   num_val: int = DEFAULT_NUM_VAL, num_test: int = DEFAULT_NUM_TEST,
                   size: tuple[int, int] = DEFAULT_SIZE, force: bool = False, progress: bool = False) -> dict:
    """Write every demo dataset under `out_dir` (which becomes a data root) and return a summary.

    num_train: train images per dataset; num_val: val images per training dataset; num_test: val
    images of the held-out test dataset (its zero-shot evaluation split). size: (height, width).
    If `out_dir` already holds complete demo data of this version and these parameters, nothing is
    written and the summary says `skipped: True`; `force=True` regenerates anyway and may replace
    folders named like a demo dataset that this generator did not write.
    """
    seed = _check_count("seed", seed, minimum=0)
    counts = split_counts(_check_count("num_train", num_train), _check_count("num_val", num_val),
                          _check_count("num_test", num_test))
    h, w = _check_size(size)
    params = {"version": DEMO_DATA_VERSION, "seed": seed, "num_train": int(num_train), "num_val": int(num_val),
              "num_test": int(num_test), "size": [h, w]}
    out = Path(out_dir)
    if out.exists() and not out.is_dir():
        raise DemoDataError(f"output {out} exists and is not a folder")
    start = time.perf_counter()

    marker = read_marker(out)
    note = ""
    if marker is not None and marker.get("params") == params and marker.get("datasets") == counts and not force:
        missing = _missing_files(out, marker)
        if not missing:
            return {**marker, "out_dir": str(out), "skipped": True, "note": "", "seconds": time.perf_counter() - start}
        note = f"the previous output was incomplete ({len(missing)} missing, e.g. {missing[0]}); regenerated it"
    if marker is None and not force:
        foreign = [spec.root for spec in DEMO_DATASET_SPECS.values() if (out / spec.root).exists()]
        if foreign:
            raise DemoDataError(f"{out} already has folder(s) {', '.join(foreign)} but no {MARKER_NAME} marker, so they "
                                f"were not written by this generator; pass force=True (--force) to replace them")

    out.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=".demo-data-staging-", dir=out))
    datasets: dict[str, dict] = {}
    try:
        total = sum(sum(splits.values()) for splits in counts.values())
        with tqdm(total=total, desc="demo data", unit="img", disable=not progress) as bar:
            for name, spec in DEMO_DATASET_SPECS.items():
                datasets[name] = _write_dataset(spec, staging / spec.root, counts[name], seed, (h, w), bar)
        # Invalidate the old marker first: from here until the new one is written, the output is incomplete.
        (out / MARKER_NAME).unlink(missing_ok=True)
        for spec in DEMO_DATASET_SPECS.values():
            target = out / spec.root
            if target.is_dir() and not target.is_symlink():
                shutil.rmtree(target)
            elif target.exists() or target.is_symlink():
                target.unlink()
            os.replace(staging / spec.root, target)
    finally:
        shutil.rmtree(staging, ignore_errors=True)

    summary = {
        "generator": __name__,
        "params": params,
        "datasets": {name: info["splits"] for name, info in datasets.items()},
        "bytes": {name: info["bytes"] for name, info in datasets.items()},
        "world_pixel_fraction": {name: info["world_pixel_fraction"] for name, info in datasets.items()},
        "num_images": total,
    }
    atomic_write_text(out / MARKER_NAME, json.dumps(summary, indent=1) + "\n")
    return {**summary, "out_dir": str(out), "skipped": False, "note": note, "seconds": time.perf_counter() - start}


def _write_dataset(spec: DemoDataset, root: Path, counts: dict[str, int], seed: int, size: tuple[int, int], bar) -> dict:
    nbytes = 0
    world_pixels = np.zeros(len(WORLD_CLASSES), dtype=np.int64)
    for split, count in counts.items():
        lines = []
        for index in range(count):
            image_rel, label_rel = sample_paths(spec, split, index)
            image, label, world = render_sample(spec, seed, split, index, size)
            world_pixels += np.bincount(world.reshape(-1), minlength=len(WORLD_CLASSES))
            for rel, array in ((image_rel, image), (label_rel, label)):
                data = _encode(rel, array)
                path = root / rel
                path.parent.mkdir(parents=True, exist_ok=True)
                path.write_bytes(data)  # inside the staging folder: the whole folder is moved into place at the end
                nbytes += len(data)
            lines.append(f"{image_rel} {label_rel}\n")
            bar.update(1)
        list_path = root / LIST_FILES[split]
        list_path.parent.mkdir(parents=True, exist_ok=True)
        list_path.write_text("".join(lines), encoding="utf-8")
        nbytes += list_path.stat().st_size
    fraction = world_pixels / max(1, world_pixels.sum())
    return {"splits": dict(counts), "bytes": int(nbytes),
            "world_pixel_fraction": {n: round(float(f), 4) for n, f in zip(WORLD_CLASSES, fraction) if f > 0}}


def registry_entries() -> dict[str, dict]:
    """The dataset-registry entries of the demo datasets, as `taxonomy/datasets/demo.yaml` holds them."""
    made_by = "python tools/make_demo_data.py DIR (or data.generate_demo=true)"
    return {name: {"root": spec.root, "lists": dict(LIST_FILES), "num_classes": len(spec.class_names),
                   "disk_taxonomy": spec.disk_taxonomy, "images_from": made_by, "labels_from": made_by,
                   "description": spec.description}
            for name, spec in DEMO_DATASET_SPECS.items()}
