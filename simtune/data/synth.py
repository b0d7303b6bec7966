"""The built-in benchmark: procedurally drawn street scenes, a GTA5-like source domain and a
Cityscapes-like target domain, written in those datasets' on-disk layouts.

It lets the whole pipeline run without the real (large, licence-bound) datasets while
keeping SIM's premise -- *things* differ more across domains than *stuff*:

- appearance: the source is saturated, nearly flat and sharp-edged; the target is muted
  and cooler, with stronger shading texture, noise, blur, vignetting and per-image lighting.
  Stuff colours move moderately; things change colour *and* shape (boxy primary-coloured
  cars vs. low grey sedans, upright brightly dressed people vs. walking dark-clad ones,
  triangular vs. rectangular signs, yellow vs. black traffic lights on arms).
- layout: the target camera sits higher and looks through a longer lens, so its horizon
  is higher in the frame and its objects are smaller and farther away.

Labels are Cityscapes label ids (7 road, 26 car, ...), 0 (void) for the target's ego hood.
Each image draws from its own ``numpy.random.default_rng([seed, domain, index])``, so the
files are byte-identical for any number of workers.
"""

from __future__ import annotations

import json
import multiprocessing
import shutil
import tempfile
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any, Literal

import cv2
import numpy as np
from PIL import Image

from simtune.errors import DataError, SimtuneError

GENERATOR_VERSION = 1  # bump whenever drawing changes, so stale benchmark dirs are not reused
SOURCE, TARGET_TRAIN, TARGET_VAL = 0, 1, 2  # the domain key of each image's rng
TRAIN_CITIES = ("aachen", "bochum", "bremen")
VAL_CITIES = ("frankfurt", "lindau", "munster")  # splits.py: frankfurt selects, the rest report

# Cityscapes label ids drawn here.
VOID, ROAD, SIDEWALK, BUILDING, WALL, FENCE = 0, 7, 8, 11, 12, 13
POLE, LIGHT, SIGN, VEGETATION, TERRAIN, SKY = 17, 19, 20, 21, 22, 23
PERSON, RIDER, CAR, TRUCK, BUS, MOTORCYCLE, BICYCLE = 24, 25, 26, 27, 28, 32, 33

RGB = tuple[int, int, int]
Rng = np.random.Generator
Segment = tuple[float, float, int, float, RGB]  # roadside piece: z0, z1 (m), label, height, RGB
DARK: RGB = (22, 22, 24)  # tyres and shadows: the same in both domains


@dataclass(frozen=True)
class BenchmarkPaths:
    """Where ``generate_benchmark`` put the two domains."""

    source_root: Path  # GTA5 layout: images/, labels/
    target_root: Path  # Cityscapes layout: leftImg8bit/, gtFine/


@dataclass(frozen=True)
class Style:
    """How one domain looks and where its camera sits."""

    shapes: Literal["game", "real"]  # which body shapes things get
    horizon: tuple[float, float]  # horizon row, fraction of the image height
    cam_height: tuple[float, float]  # camera height above the road, m
    focal: float  # focal length, fraction of the image width
    depth: tuple[float, float]  # distance range of things, m
    stuff: dict[int, tuple[RGB, ...]]  # candidate base colours per stuff label id
    jitter: int  # per-draw colour jitter per channel, 0..255
    cars: tuple[RGB, ...]  # car bodies (and game bike frames)
    heavy: tuple[RGB, ...]  # trucks and buses
    clothes: tuple[RGB, ...]  # shirts, coats, trousers
    skin: tuple[RGB, ...]
    metal: RGB  # poles, light housings, real bike frames
    window: RGB  # building and vehicle windows
    counts: dict[str, tuple[int, int]]  # instances per image (inclusive range) per thing kind
    texture: float  # amplitude of low-frequency shading, fraction of brightness
    noise: float  # std of per-pixel Gaussian noise, 0..255
    blur: float  # Gaussian blur sigma, px
    vignette: float  # brightness lost in the corners, fraction
    gamma: tuple[float, float]  # per-image gamma range
    cast: float  # per-image white-balance error per channel, fraction


SRC_STYLE = Style(
    shapes="game", horizon=(0.42, 0.52), cam_height=(1.2, 1.6), focal=0.55, depth=(4.0, 30.0),
    stuff={
        ROAD: ((100, 100, 112), (86, 90, 104)), SIDEWALK: ((205, 178, 150), (185, 185, 178)),
        BUILDING: ((210, 120, 80), (228, 204, 140), (160, 166, 205), (175, 172, 168)),
        WALL: ((175, 152, 118),), FENCE: ((150, 100, 50),),
        VEGETATION: ((40, 178, 45), (75, 165, 30)), TERRAIN: ((165, 210, 70),),
        SKY: ((80, 165, 255),),
    },
    jitter=10,
    cars=((225, 30, 30), (30, 70, 225), (245, 205, 20), (30, 175, 60), (245, 125, 20)),
    heavy=((245, 135, 20), (40, 150, 225), (235, 235, 40)),
    clothes=((232, 40, 40), (40, 90, 232), (250, 212, 30), (40, 192, 90), (240, 120, 200)),
    skin=((250, 205, 165), (205, 145, 105)), metal=(205, 205, 215), window=(150, 222, 250),
    counts={"car": (2, 6), "heavy": (0, 1), "person": (1, 5), "cyclist": (0, 1),
            "bicycle": (0, 2), "pole": (2, 4)},
    texture=0.03, noise=2.5, blur=0.0, vignette=0.0, gamma=(0.9, 1.1), cast=0.03,
)


def muted(colour: RGB) -> RGB:
    """The target's version of a source stuff colour: 40% less saturated, 10% darker, cooler.

    Stuff shifts only this much between domains; things get separate, unrelated palettes.
    """
    grey = sum(colour) / 3
    r, g, b = (int(np.clip(0.9 * (grey + 0.6 * (v - grey)) + tint, 0, 255))
               for v, tint in zip(colour, (-4, 0, 6)))
    return r, g, b


TRG_STYLE = Style(
    shapes="real", horizon=(0.30, 0.40), cam_height=(1.9, 2.5), focal=0.7, depth=(6.0, 45.0),
    stuff={label: tuple(muted(c) for c in options) for label, options in SRC_STYLE.stuff.items()},
    jitter=16,
    cars=((62, 62, 66), (26, 26, 30), (182, 182, 186), (120, 124, 130), (44, 54, 80),
          (104, 32, 32)),
    heavy=((216, 216, 210), (80, 90, 110), (192, 190, 170)),
    clothes=((30, 30, 34), (50, 54, 76), (92, 80, 68), (160, 150, 128), (72, 30, 36)),
    skin=((206, 170, 146), (150, 110, 90)), metal=(74, 78, 82), window=(40, 46, 56),
    counts={"car": (2, 7), "heavy": (0, 1), "person": (2, 6), "cyclist": (0, 2),
            "bicycle": (0, 2), "pole": (2, 5)},
    texture=0.07, noise=6.0, blur=0.7, vignette=0.35, gamma=(0.75, 1.3), cast=0.08,
)


@dataclass(frozen=True)
class Camera:
    """A pinhole camera over a flat road; x right, z forward, both in metres."""

    horizon: float  # horizon row, px
    cx: float  # vanishing-point column, px
    focal: float  # px
    height: float  # above the road, m


@dataclass(frozen=True)
class Street:
    """The road's cross-section, in metres."""

    centre: float  # lateral position of the road's centre line relative to the camera
    road: float  # half width of the road
    walk: float  # sidewalk width
    verge: float  # terrain strip between sidewalk and the roadside row


@dataclass(frozen=True)
class Spot:
    """Where a thing stands on the image: its ground point and its scale."""

    u: float  # column of the ground point, px
    v: float  # row of the ground point, px
    s: float  # px per metre at the thing's distance
    flip: float  # +1 or -1: mirrors the thing's local x (facing direction)

    def px(self, pts: Sequence[tuple[float, float]], widen: float = 1.0) -> np.ndarray:
        """Local metres (x right, y up from the ground point) -> (N, 2) pixel coordinates.

        ``widen`` stretches x, so one outline gives narrower and wider instances.
        """
        a = np.asarray(pts, dtype=np.float64)
        x = self.u + self.flip * widen * a[:, 0] * self.s
        return np.stack([x, self.v - a[:, 1] * self.s], 1)


class Canvas:
    """An RGB image and its label map, drawn together; labels get no antialiasing."""

    def __init__(self, width: int, height: int) -> None:
        self.image = np.zeros((height, width, 3), np.uint8)  # (H, W, 3) RGB
        self.label = np.full((height, width), VOID, np.uint8)  # (H, W) label ids

    def poly(self, pts: np.ndarray, label: int | None, colour: RGB) -> None:
        """Fill a (N, 2) pixel polygon; ``label=None`` paints a part (windows, lights)."""
        p = [np.round(pts).astype(np.int32)]
        cv2.fillPoly(self.image, p, colour, cv2.LINE_8)
        if label is not None:
            cv2.fillPoly(self.label, p, label, cv2.LINE_8)

    def disc(self, centre: np.ndarray, radius: float, label: int | None, colour: RGB,
             ring: float = 0.0) -> None:
        """A filled disc, or a ring ``ring`` px thick, centred at a (1, 2) pixel point."""
        x, y = (int(round(v)) for v in centre[0])
        r, t = max(1, int(round(radius))), -1 if ring <= 0 else max(1, int(round(ring)))
        cv2.circle(self.image, (x, y), r, colour, t, cv2.LINE_8)
        if label is not None:
            cv2.circle(self.label, (x, y), r, label, t, cv2.LINE_8)

    def line(self, pts: np.ndarray, width: float, label: int | None, colour: RGB) -> None:
        """A polyline through (N, 2) pixel points, at least 1 px wide."""
        p, t = [np.round(pts).astype(np.int32)], max(1, int(round(width)))
        cv2.polylines(self.image, p, False, colour, t, cv2.LINE_8)
        if label is not None:
            cv2.polylines(self.label, p, False, label, t, cv2.LINE_8)

    def fill(self, mask: np.ndarray, label: int, colour: RGB) -> None:
        """Give every pixel of a (H, W) bool mask one label and colour."""
        self.image[mask], self.label[mask] = colour, label


def pick(rng: Rng, palette: Sequence[RGB], jitter: int) -> RGB:
    """One palette colour, each channel moved by up to +-jitter."""
    base = palette[int(rng.integers(len(palette)))]
    r, g, b = (int(np.clip(v + rng.integers(-jitter, jitter + 1), 0, 255)) for v in base)
    return r, g, b


def shade(colour: RGB, k: float) -> RGB:
    """The colour scaled by ``k`` (darker < 1 < lighter), clipped to 0..255."""
    r, g, b = (int(min(255, v * k)) for v in colour)
    return r, g, b


def rect(x0: float, y0: float, x1: float, y1: float) -> list[tuple[float, float]]:
    """Corners of an axis-aligned rectangle in local metres."""
    return [(x0, y0), (x1, y0), (x1, y1), (x0, y1)]


# ------------------------------------------------------------------------------- stuff


def paint_sky_and_ground(c: Canvas, cam: Camera, street: Street, colours: dict[int, RGB]) -> None:
    """Sky above the horizon; road, sidewalks and terrain on the ground plane below it."""
    h, w = c.label.shape
    rows = np.arange(h, dtype=np.float64)[:, None] + 0.5  # (H, 1)
    cols = np.arange(w, dtype=np.float64)[None, :] + 0.5  # (1, W)
    haze = np.clip(rows / max(cam.horizon, 1.0), 0, 1)  # sky brightens towards the horizon
    c.image[:] = (np.asarray(colours[SKY]) * (0.8 + 0.3 * haze)[..., None]).clip(0, 255)
    c.label[:] = SKY
    d = np.maximum(rows - cam.horizon, 0.5)  # rows below the horizon, px
    below = np.broadcast_to(rows - cam.horizon > 0.5, (h, w))
    x = (cols - cam.cx) * cam.height / d - street.centre  # (H, W) lateral offset, m
    z = np.broadcast_to(cam.focal * cam.height / d, (h, w))  # (H, W) distance, m
    ax = np.abs(x)
    c.fill(below & (ax >= street.road + street.walk), TERRAIN, colours[TERRAIN])
    c.fill(below & (ax >= street.road) & (ax < street.road + street.walk), SIDEWALK,
           colours[SIDEWALK])
    c.image[below & (ax >= street.road) & (ax < street.road + 0.25)] = shade(colours[SIDEWALK], 0.8)
    road = below & (ax < street.road)
    c.fill(road, ROAD, colours[ROAD])
    # Markings stay "road", as in Cityscapes; beyond 40 m they would only alias.
    dashes = (np.abs(x) < 0.08) & (z % 9 < 4.5)
    edges = np.abs(ax - street.road + 0.35) < 0.08
    c.image[road & (z < 40) & (dashes | edges)] = (215, 215, 205)


def sample_row(rng: Rng, style: Style, colours: dict[int, RGB], near: bool) -> list[Segment]:
    """Roadside segments along z: (z0, z1, label, height m, colour); the near row has gaps."""
    labels = (BUILDING, WALL, FENCE, VEGETATION, VOID) if near else (BUILDING, VEGETATION)
    probs = (0.4, 0.14, 0.14, 0.22, 0.1) if near else (0.65, 0.35)
    heights = {BUILDING: (6, 22), WALL: (1, 2.5), FENCE: (1, 2), VEGETATION: (3, 9)}
    segments: list[Segment] = []
    z = 0.5
    while z < 250:
        length, label = rng.uniform(5, 25), labels[rng.choice(len(labels), p=probs)]
        if label != VOID:  # each building gets its own colour, the rest share the image's
            colour = (pick(rng, style.stuff[BUILDING], style.jitter) if label == BUILDING
                      else colours[label])
            segments.append((z, z + length, label, rng.uniform(*heights[label]), colour))
        z += length
    return segments


def paint_row(c: Canvas, cam: Camera, lateral: float, segments: list[Segment],
              window: RGB) -> None:
    """Vertical facades standing ``lateral`` m beside the camera (the sign picks the side)."""
    if not segments:
        return
    h, w = c.label.shape
    off = (np.arange(w) + 0.5 - cam.cx) / lateral  # > 0 on this side
    z = cam.focal / np.maximum(off, 1e-6)  # (W,) distance of the facade seen in each column
    start, end, label, height = (np.asarray([s[i] for s in segments]) for i in range(4))
    colour = np.asarray([s[4] for s in segments], np.uint8)
    i = np.clip(np.searchsorted(start, z, side="right") - 1, 0, None)
    seen = (off > 1e-6) & (z >= start[0]) & (z < end[i])
    lab = label[i]
    top = height[i] + (lab == VEGETATION) * (0.9 * np.sin(1.7 * z) + 0.5 * np.sin(4.3 * z))
    rows = np.arange(h)[:, None] + 0.5
    y = cam.height - (rows - cam.horizon) * z / cam.focal  # (H, W) height on the facade, m
    mask = seen & (y >= 0) & (y < top)
    c.label[mask] = np.broadcast_to(lab, (h, w))[mask]
    c.image[mask] = np.broadcast_to(colour[i], (h, w, 3))[mask]
    along, floor = z - start[i], y % 3.0
    windows = (lab == BUILDING) & (along % 3.2 < 1.6) & (floor > 1.0) & (floor < 2.2)
    c.image[mask & windows & (y > 2.5) & (y < top - 1)] = window
    slats = mask & (lab == FENCE) & (along % 0.5 < 0.2)
    c.image[slats] = (c.image[slats] * 0.6).astype(np.uint8)


def paint_skyline(c: Canvas, cam: Camera, rng: Rng, style: Style) -> None:
    """Distant blocks and trees on the horizon, hazed towards the sky colour."""
    h, w = c.label.shape
    sky = np.asarray(c.image[max(int(cam.horizon) - 1, 0), 0], np.float64)
    for _ in range(int(rng.integers(6, 14))):
        label = BUILDING if rng.random() < 0.7 else VEGETATION
        base = np.asarray(pick(rng, style.stuff[label], style.jitter), np.float64)
        r, g, b = (int(v) for v in 0.6 * base + 0.4 * sky)
        x0, bw = rng.uniform(-0.05, 1.0) * w, rng.uniform(0.03, 0.12) * w
        top = cam.horizon - rng.uniform(0.02, 0.14) * h
        c.poly(np.asarray(rect(x0, top, x0 + bw, cam.horizon + 1)), label, (r, g, b))


# ------------------------------------------------------------------------------ things


def draw_car(c: Canvas, at: Spot, rng: Rng, style: Style) -> None:
    """A car from behind: the source's tall boxy game car or the target's low wide sedan."""
    body, k = pick(rng, style.cars, style.jitter), rng.uniform(0.9, 1.1)  # k: width factor
    if style.shapes == "game":
        for x in (-0.9, 0.55):
            c.poly(at.px(rect(x, 0, x + 0.35, 0.35), k), CAR, DARK)
        c.poly(at.px(rect(-0.95, 0.25, 0.95, 0.95), k), CAR, body)
        c.poly(at.px([(-0.75, 0.95), (0.75, 0.95), (0.55, 1.6), (-0.55, 1.6)], k), CAR, body)
        c.poly(at.px([(-0.6, 1.0), (0.6, 1.0), (0.46, 1.5), (-0.46, 1.5)], k), None, style.window)
        for x in (-0.9, 0.65):
            c.poly(at.px(rect(x, 0.65, x + 0.25, 0.85), k), None, (255, 70, 30))
        return
    c.poly(at.px([(-1.2, -0.1), (1.2, -0.1), (1.0, 0.12), (-1.0, 0.12)], k), None, DARK)  # shadow
    for x in (-0.85, 0.6):
        c.poly(at.px(rect(x, 0, x + 0.25, 0.3), k), CAR, DARK)
    c.poly(at.px([(-0.9, 0.15), (0.9, 0.15), (0.93, 0.6), (0.8, 0.78), (-0.8, 0.78),
                  (-0.93, 0.6)], k), CAR, body)
    c.poly(at.px([(-0.74, 0.78), (0.74, 0.78), (0.45, 1.32), (-0.45, 1.32)], k), CAR, body)
    c.poly(at.px([(-0.64, 0.82), (0.64, 0.82), (0.42, 1.26), (-0.42, 1.26)], k), None,
           style.window)
    c.poly(at.px(rect(-0.88, 0.55, 0.88, 0.64), k), None, (150, 24, 24))  # light bar
    c.poly(at.px(rect(-0.2, 0.32, 0.2, 0.44)), None, (225, 225, 220))  # plate


def draw_heavy(c: Canvas, at: Spot, rng: Rng, style: Style) -> None:
    """A bus (window band) or truck (plain box) from behind."""
    bus, colour = rng.random() < 0.5, pick(rng, style.heavy, style.jitter)
    label, top = (BUS, 3.0) if bus else (TRUCK, 3.4)
    for x in (-1.15, 0.75):
        c.poly(at.px(rect(x, 0, x + 0.4, 0.45)), label, DARK)
    c.poly(at.px(rect(-1.25, 0.35, 1.25, top)), label, colour)
    if bus:
        c.poly(at.px(rect(-1.1, 1.7, 1.1, 2.7)), None, style.window)
    if style.shapes == "game":
        c.poly(at.px(rect(-1.25, 1.2, 1.25, 1.5)), None, shade(colour, 0.5))  # stripe
    else:
        c.line(at.px([(0, 0.5), (0, top - 0.2)]), 0.05 * at.s, None, shade(colour, 0.7))
        c.poly(at.px(rect(-0.6, top - 0.3, 0.6, top - 0.1)), None, (230, 150, 40))  # display


def draw_person(c: Canvas, at: Spot, rng: Rng, style: Style, label: int = PERSON) -> None:
    """A pedestrian: upright with wide shoulders (game) or striding in a long coat (real)."""
    h, skin = rng.uniform(1.6, 1.9), pick(rng, style.skin, 8)
    top, legs = pick(rng, style.clothes, style.jitter), pick(rng, style.clothes, style.jitter)
    if style.shapes == "game":
        for x in (-0.17, 0.03):
            c.poly(at.px(rect(x, 0, x + 0.14, 0.48 * h)), label, legs)
        c.poly(at.px(rect(-0.25, 0.46 * h, 0.25, 0.82 * h)), label, top)
        c.disc(at.px([(0, 0.9 * h)]), 0.1 * h * at.s, label, skin)
        return
    stride = rng.uniform(0.12, 0.3)
    for d in (-1, 1):
        c.poly(at.px([(d * stride - 0.06, 0), (d * stride + 0.06, 0), (0.06, 0.5 * h),
                      (-0.06, 0.5 * h)]), label, legs)
    c.poly(at.px([(-0.22, 0.36 * h), (0.22, 0.36 * h), (0.16, 0.83 * h), (-0.16, 0.83 * h)]),
           label, top)
    c.disc(at.px([(0, 0.9 * h)]), 0.065 * h * at.s, label, skin)


def draw_bike(c: Canvas, at: Spot, rng: Rng, style: Style, motor: bool) -> RGB:
    """A bicycle or motorcycle side-on; returns the frame colour."""
    game = style.shapes == "game"
    frame = pick(rng, style.cars, style.jitter) if game else pick(rng, (style.metal,), 10)
    label = MOTORCYCLE if motor else BICYCLE
    for x in (-0.55, 0.55):
        if motor:
            c.disc(at.px([(x, 0.3)]), 0.3 * at.s, label, DARK)
        else:
            c.disc(at.px([(x, 0.33)]), 0.33 * at.s, label, DARK, (0.08 if game else 0.04) * at.s)
    if motor:
        c.poly(at.px([(-0.5, 0.35), (0.45, 0.35), (0.35, 0.85), (-0.35, 0.8)]), label, frame)
    else:
        c.line(at.px([(-0.55, 0.33), (-0.1, 0.85), (0.45, 0.85), (0.55, 0.33)]),
               0.06 * at.s, label, frame)
        c.line(at.px([(-0.55, 0.33), (0.0, 0.35), (-0.1, 0.85)]), 0.06 * at.s, label, frame)
        c.line(at.px([(0.0, 0.35), (0.45, 0.85), (0.4, 1.0)]), 0.05 * at.s, label, frame)
    return frame


def draw_cyclist(c: Canvas, at: Spot, rng: Rng, style: Style) -> None:
    """A rider on a bicycle or motorcycle; the rider is RIDER, not PERSON."""
    draw_bike(c, at, rng, style, motor=rng.random() < 0.35)
    coat = pick(rng, style.clothes, style.jitter)
    c.line(at.px([(-0.1, 0.9), (0.0, 0.35)]), 0.12 * at.s, RIDER, coat)  # leg
    c.poly(at.px([(-0.25, 0.85), (0.05, 0.85), (0.3, 1.5), (0.02, 1.55)]), RIDER, coat)
    c.line(at.px([(0.2, 1.45), (0.4, 1.0)]), 0.08 * at.s, RIDER, coat)  # arm
    c.disc(at.px([(0.22, 1.68)]), 0.11 * at.s, RIDER, pick(rng, style.skin, 8))


def draw_parked_bike(c: Canvas, at: Spot, rng: Rng, style: Style) -> None:
    """A parked bicycle on the sidewalk."""
    draw_bike(c, at, rng, style, motor=False)


def draw_pole(c: Canvas, at: Spot, rng: Rng, style: Style) -> None:
    """A pole, bare or carrying a sign or a traffic light (local +x points at the road)."""
    h, metal, kind = rng.uniform(4, 7), pick(rng, (style.metal,), 10), rng.random()
    c.line(at.px([(0, 0), (0, h)]), 0.14 * at.s, POLE, metal)
    if kind < 0.5:
        draw_sign(c, at, rng, style, rng.uniform(2.2, 3.0))
    elif kind < 0.85 and style.shapes == "game":
        c.poly(at.px(rect(-0.2, h - 0.9, 0.2, h)), LIGHT, (235, 195, 30))
        for i, lamp in enumerate(((255, 40, 30), (255, 170, 0), (40, 230, 60))):
            c.disc(at.px([(0, h - 0.17 - 0.28 * i)]), 0.1 * at.s, None, lamp)
    elif kind < 0.85:
        reach = rng.uniform(1.5, 3.0)  # the light hangs over the road on an arm
        c.line(at.px([(0, h), (reach, h)]), 0.1 * at.s, POLE, metal)
        c.poly(at.px(rect(reach - 0.16, h - 0.85, reach + 0.16, h)), LIGHT, (34, 34, 38))
        lit = int(rng.integers(3))
        for i in range(3):
            lamp = ((200, 40, 30), (210, 150, 20), (40, 190, 90))[i] if i == lit else (60, 60, 60)
            c.disc(at.px([(reach, h - 0.16 - 0.26 * i)]), 0.08 * at.s, None, lamp)


def draw_sign(c: Canvas, at: Spot, rng: Rng, style: Style, y: float) -> None:
    """A sign plate at height ``y``: triangle or disc (game), rectangle or ringed disc (real)."""
    r, round_ = rng.uniform(0.3, 0.45), rng.random() < 0.5
    centre = at.px([(0, y + r)])
    if style.shapes == "game" and round_:
        c.disc(centre, r * at.s, SIGN, (230, 30, 30))
        c.disc(centre, 0.6 * r * at.s, None, (250, 250, 250))
    elif style.shapes == "game":
        c.poly(at.px([(-r, y), (r, y), (0, y + 1.8 * r)]), SIGN, (250, 210, 20))
    elif round_:
        c.disc(centre, r * at.s, SIGN, (200, 40, 40))
        c.disc(centre, 0.75 * r * at.s, None, (225, 225, 225))
    else:
        c.poly(at.px(rect(-r, y, r, y + 1.4 * r)), SIGN, (30, 70, 150))
        c.poly(at.px(rect(-0.5 * r, y + 0.5 * r, 0.5 * r, y + 0.9 * r)), None, (230, 230, 230))


# ------------------------------------------------------------------------------- scene

DRAW: dict[str, Callable[[Canvas, Spot, Rng, Style], None]] = {
    "car": draw_car, "heavy": draw_heavy, "person": draw_person, "cyclist": draw_cyclist,
    "bicycle": draw_parked_bike, "pole": draw_pole,
}


def place(rng: Rng, kind: str, street: Street, depth: tuple[float, float]) -> tuple[float, float]:
    """Distance z and lateral x (m, camera frame) of a new thing of this kind."""
    side, r, w = float(rng.choice((-1.0, 1.0))), street.road, street.walk
    if kind in ("car", "heavy"):  # a third are parked at the kerb, the rest anywhere on lanes
        x = side * (r - 1.2) if rng.random() < 0.35 else rng.uniform(-r + 1.3, r - 1.3)
    elif kind == "cyclist":
        x = side * (r - 0.7)
    elif kind == "pole":  # at the kerb or the back of the sidewalk
        x = side * (r + (0.3 if rng.random() < 0.5 else w - 0.3))
    elif kind == "person" and rng.random() < 0.15:  # crossing the road
        x = rng.uniform(-r, r)
    else:
        x = side * (r + rng.uniform(0.4, w - 0.3))
    return rng.uniform(*depth), street.centre + x


def draw_things(c: Canvas, cam: Camera, street: Street, rng: Rng, style: Style) -> None:
    """Place every thing, then draw far to near so the label map holds what is visible."""
    things = []
    for kind in DRAW:
        lo, hi = style.counts[kind]
        things += [(*place(rng, kind, street, style.depth), kind)
                   for _ in range(int(rng.integers(lo, hi + 1)))]
    for z, x, kind in sorted(things, reverse=True):
        s = cam.focal / z
        toward_road = -1.0 if x > street.centre else 1.0
        flip = toward_road if kind == "pole" else float(rng.choice((-1.0, 1.0)))
        DRAW[kind](c, Spot(cam.cx + x * s, cam.horizon + cam.height * s, s, flip), rng, style)


def sample_scene(rng: Rng, style: Style, width: int, height: int) -> tuple[Camera, Street]:
    """The camera (horizon, height, lateral vanishing point) and the street cross-section."""
    cam = Camera(horizon=rng.uniform(*style.horizon) * height,
                 cx=width * rng.uniform(0.42, 0.58), focal=style.focal * width,
                 height=rng.uniform(*style.cam_height))
    verge = rng.uniform(0.5, 3.0) if rng.random() < 0.5 else 0.0
    street = Street(centre=rng.uniform(-2.0, 2.0), road=rng.uniform(3.5, 6.5),
                    walk=rng.uniform(1.8, 4.0), verge=verge)
    return cam, street


def render_scene(rng: Rng, style: Style, size: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
    """Draw one street scene of ``size`` = (W, H).

    Returns:
        image (H, W, 3) uint8 RGB and label (H, W) uint8 Cityscapes label ids.
    """
    width, height = size
    cam, street = sample_scene(rng, style, width, height)
    colours = {label: pick(rng, options, style.jitter) for label, options in style.stuff.items()}
    c = Canvas(width, height)
    paint_sky_and_ground(c, cam, street, colours)
    paint_skyline(c, cam, rng, style)
    for side in (-1.0, 1.0):
        edge = street.centre + side * (street.road + street.walk + street.verge)
        back = edge + side * rng.uniform(6.0, 15.0)
        paint_row(c, cam, back, sample_row(rng, style, colours, near=False), style.window)
        paint_row(c, cam, edge, sample_row(rng, style, colours, near=True), style.window)
    draw_things(c, cam, street, rng, style)
    if style.shapes == "real":  # Cityscapes' ego-vehicle hood, void in the labels
        w, h = width, height
        c.poly(np.asarray([(0, h), (0, 0.93 * h), (0.25 * w, 0.88 * h), (0.75 * w, 0.88 * h),
                           (w, 0.93 * h), (w, h)]), VOID, (38, 38, 42))
    return develop(c.image, rng, style), c.label


def develop(image: np.ndarray, rng: Rng, style: Style) -> np.ndarray:
    """The domain's camera: shading texture, blur, noise, gamma, white balance, vignetting.

    Args:
        image: (H, W, 3) uint8 RGB as drawn.
    Returns:
        (H, W, 3) uint8 RGB.
    """
    h, w = image.shape[:2]
    img: np.ndarray = image.astype(np.float32) / 255.0  # (H, W, 3) in 0..1
    if style.texture > 0:  # blotchy shading at two scales, so flat regions are not flat
        for cell, amp in ((16, 1.0), (4, 0.4)):
            grid = rng.standard_normal((h // cell + 2, w // cell + 2)).astype(np.float32)
            blotches = cv2.resize(grid, (w, h), interpolation=cv2.INTER_CUBIC)  # (H, W)
            img *= 1 + style.texture * amp * blotches[..., None]
    if style.blur > 0:
        img = cv2.GaussianBlur(img, (0, 0), style.blur)
    if style.noise > 0:
        img += rng.normal(0, style.noise / 255, img.shape).astype(np.float32)
    img = (np.clip(img, 0, 1) ** rng.uniform(*style.gamma)).astype(np.float32)
    img *= 1 + rng.uniform(-style.cast, style.cast, 3).astype(np.float32)
    if style.vignette > 0:
        yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
        r2 = ((xx - w / 2) / (w / 2)) ** 2 + ((yy - h / 2) / (h / 2)) ** 2
        img *= (1 - style.vignette * r2 / 2)[..., None]
    return (np.clip(img, 0, 1) * 255 + 0.5).astype(np.uint8)


# ------------------------------------------------------------------------------ output


@dataclass(frozen=True)
class _Job:
    """One image to render and where its two files go."""

    domain: int  # SOURCE, TARGET_TRAIN or TARGET_VAL: the rng's second key
    index: int  # the rng's third key, unique within the domain
    size: tuple[int, int]  # (W, H)
    image: Path
    label: Path


def _render_job(seed: int, job: _Job) -> None:
    rng = np.random.default_rng([seed, job.domain, job.index])
    image, label = render_scene(rng, SRC_STYLE if job.domain == SOURCE else TRG_STYLE, job.size)
    Image.fromarray(image).save(job.image)  # (H, W, 3) uint8 -> RGB PNG
    Image.fromarray(label).save(job.label)  # (H, W) uint8 -> "L" PNG


def _city_jobs(root: Path, domain: int, split: str, per_city: list[tuple[str, int]],
               size: tuple[int, int]) -> list[_Job]:
    jobs: list[_Job] = []
    for city, count in per_city:
        for frame in range(count):
            stem = f"{city}/{city}_000000_{frame:06d}"
            jobs.append(_Job(domain, len(jobs), size,
                             root / "leftImg8bit" / split / f"{stem}_leftImg8bit.png",
                             root / "gtFine" / split / f"{stem}_gtFine_labelIds.png"))
    return jobs


def _plan(root: Path, spec: dict[str, Any]) -> list[_Job]:
    """Every image of the benchmark under ``root``, in a fixed order."""
    src, trg = root / "gta5", root / "cityscapes"
    source_size, target_size = tuple(spec["source_size"]), tuple(spec["target_size"])
    jobs = [_Job(SOURCE, i, source_size, src / "images" / f"{i + 1:05d}.png",
                 src / "labels" / f"{i + 1:05d}.png") for i in range(spec["num_source"])]
    n = spec["num_target_train"]  # split over the train cities, the first ones take the rest
    train = [(city, n // 3 + int(i < n % 3)) for i, city in enumerate(TRAIN_CITIES)]
    val = [(city, spec["num_target_val_per_city"]) for city in VAL_CITIES]
    return (jobs + _city_jobs(trg, TARGET_TRAIN, "train", train, target_size)
            + _city_jobs(trg, TARGET_VAL, "val", val, target_size))


def _one_thread() -> None:
    cv2.setNumThreads(1)  # the pool already uses every core it was given


def _render_all(root: Path, spec: dict[str, Any], workers: int) -> None:
    jobs = _plan(root, spec)
    folders = {p for job in jobs for p in (job.image.parent, job.label.parent)}
    folders |= {root / "cityscapes" / top / split / city  # every city, even one left empty
                for top in ("leftImg8bit", "gtFine")
                for split, cities in (("train", TRAIN_CITIES), ("val", VAL_CITIES))
                for city in cities}
    for folder in sorted(folders):
        folder.mkdir(parents=True, exist_ok=True)
    work = partial(_render_job, int(spec["seed"]))
    if workers == 1:
        for job in jobs:
            work(job)
        return
    context = multiprocessing.get_context("spawn")  # fork would copy a caller's torch threads
    with ProcessPoolExecutor(workers, mp_context=context, initializer=_one_thread) as pool:
        list(pool.map(work, jobs, chunksize=max(1, len(jobs) // (8 * workers))))


def _readme(spec: dict[str, Any]) -> str:
    (sw, sh), (tw, th) = spec["source_size"], spec["target_size"]
    return (
        f"Synthetic street-scene benchmark written by simtune.data.synth (generator version "
        f"{spec['version']}, seed {spec['seed']}). gta5/ is the labelled source domain in the "
        f"GTA5 layout: {spec['num_source']} images of {sw}x{sh} (images/NNNNN.png, "
        f"labels/NNNNN.png). cityscapes/ is the target domain in the Cityscapes layout, "
        f"{tw}x{th}: {spec['num_target_train']} train images in {', '.join(TRAIN_CITIES)} and "
        f"{spec['num_target_val_per_city']} val images in each of {', '.join(VAL_CITIES)}. "
        "Labels are 8-bit PNGs of Cityscapes label ids (0 = void, the target's ego hood). "
        "The source is saturated and nearly flat, like a game; the target is muted, textured, "
        "noisy and blurred, seen from a higher camera, and its things (cars, people, signs, "
        "lights, bikes) have other shapes and colours, while stuff changes less. benchmark.json "
        "holds the generation arguments; the same arguments give byte-identical files.\n"
    )


def _check_existing(out: Path, spec: dict[str, Any]) -> None:
    """Accept ``out`` only if its benchmark.json matches ``spec`` exactly."""
    try:
        found = json.loads((out / "benchmark.json").read_text())
    except (OSError, ValueError):
        raise DataError(f"{out} exists but is not a complete benchmark (no readable "
                        "benchmark.json); delete it or choose another --out") from None
    if found != spec:
        keys = sorted(k for k in set(spec) | set(found) if spec.get(k) != found.get(k))
        raise DataError(f"{out} holds a different benchmark (differs in {', '.join(keys)}); "
                        "delete it or choose another --out")


def _validate(spec: dict[str, Any], workers: int) -> None:
    for name in ("num_source", "num_target_train", "num_target_val_per_city", "workers"):
        value = workers if name == "workers" else spec[name]
        if value < 1:
            raise SimtuneError(f"{name} must be >= 1, but got {value}")
    if spec["seed"] < 0:
        raise SimtuneError(f"seed must be >= 0, but got {spec['seed']}")
    for name in ("source_size", "target_size"):
        if len(spec[name]) != 2 or spec[name][0] < 32 or spec[name][1] < 16:
            raise SimtuneError(f"{name} must be (W, H) with W >= 32 and H >= 16, "
                               f"but got {tuple(spec[name])}")


def generate_benchmark(
    out: Path, *, seed: int = 0, num_source: int = 400, num_target_train: int = 300,
    num_target_val_per_city: int = 40, source_size: tuple[int, int] = (320, 180),
    target_size: tuple[int, int] = (256, 128), workers: int = 2,
) -> BenchmarkPaths:
    """Write the synthetic GTA5 -> Cityscapes benchmark to ``out``, atomically and once.

    Everything is drawn into a ``<out>.partial-*`` folder beside ``out`` and renamed at the
    end, so a killed run never leaves a half benchmark at ``out``. If ``out`` already holds
    a benchmark made with the same arguments it is returned untouched.

    Args:
        out: benchmark folder; gets ``gta5/``, ``cityscapes/``, README.txt, benchmark.json.
        seed: the same seed gives byte-identical files, whatever ``workers`` is.
        num_source: source (GTA5-layout) images.
        num_target_train: target train images, split over aachen, bochum, bremen.
        num_target_val_per_city: target val images in each of frankfurt, lindau, munster.
        source_size: source image size (W, H), px.
        target_size: target image size (W, H), px.
        workers: processes drawing images; 1 draws in this process.
    Returns:
        The source and target dataset roots.
    Raises:
        SimtuneError: a count, size, seed or ``workers`` out of range.
        DataError: ``out`` exists but is not this benchmark.
    """
    out = Path(out)
    spec: dict[str, Any] = {
        "generator": "simtune.data.synth", "version": GENERATOR_VERSION, "seed": seed,
        "num_source": num_source, "num_target_train": num_target_train,
        "num_target_val_per_city": num_target_val_per_city,
        "source_size": list(source_size), "target_size": list(target_size),
    }
    _validate(spec, workers)
    paths = BenchmarkPaths(out / "gta5", out / "cityscapes")
    if out.exists():
        _check_existing(out, spec)
        return paths
    out.parent.mkdir(parents=True, exist_ok=True)
    partial_dir = Path(tempfile.mkdtemp(prefix=f"{out.name}.partial-", dir=out.parent))
    try:
        _render_all(partial_dir, spec, workers)
        (partial_dir / "README.txt").write_text(_readme(spec))
        # Written last: its presence marks a finished benchmark.
        (partial_dir / "benchmark.json").write_text(json.dumps(spec, indent=2, sort_keys=True))
        try:
            partial_dir.rename(out)
        except OSError:
            if not out.exists():
                raise
            _check_existing(out, spec)  # another process finished the same benchmark first
    finally:
        shutil.rmtree(partial_dir, ignore_errors=True)  # nothing left after a rename
    return paths
