"""What each domain of the built-in benchmark looks like: label ids, palettes, camera, optics.

The domain shift follows SIM's premise -- *things* change more than *stuff* -- but only
partly, so a model trained on the source recognises every thing class on the target some
of the time and feature matching has correct target regions to pull from:

- stuff colours move a little (``muted``: 40% less saturated, 10% darker, cooler);
- thing colours move further (``faded``: 55% less saturated, 20% darker, cooler) and the
  target adds colours the source never shows (grey and black cars, dark coats); thing
  *shapes* differ per domain (``Style.shapes``) while keeping the parts a class is known by
  (wheels and a window for cars, a head on a body for people, a plate on a pole for signs);
- the target camera sits higher and its things stand a little farther away.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np

# Cityscapes label ids drawn here.
VOID, ROAD, SIDEWALK, BUILDING, WALL, FENCE = 0, 7, 8, 11, 12, 13
POLE, LIGHT, SIGN, VEGETATION, TERRAIN, SKY = 17, 19, 20, 21, 22, 23
PERSON, RIDER, CAR, TRUCK, BUS, MOTORCYCLE, BICYCLE = 24, 25, 26, 27, 28, 32, 33

RGB = tuple[int, int, int]
Rng = np.random.Generator
DARK: RGB = (22, 22, 24)  # tyres and shadows: the same in both domains

# How many times its real size each kind of thing is drawn, in both domains. At the
# benchmark's training resolution and output stride 8 a life-size pedestrian ten metres
# away covers about one feature pixel; grown, every thing class spans several.
GROW: dict[str, float] = {"car": 1.25, "heavy": 1.15, "person": 2.0, "cyclist": 1.8,
                          "bicycle": 1.8, "pole": 1.4}


@dataclass(frozen=True)
class Style:
    """How one domain looks and where its camera sits."""

    shapes: Literal["game", "real"]  # which body shapes things get
    horizon: tuple[float, float]  # horizon row, fraction of the image height
    cam_height: tuple[float, float]  # camera height above the road, m
    focal: float  # focal length, fraction of the image width
    depth: tuple[float, float]  # distance range of things, m (nearer ones more likely)
    stuff: dict[int, tuple[RGB, ...]]  # candidate base colours per stuff label id
    jitter: int  # per-draw colour jitter per channel, 0..255
    cars: tuple[RGB, ...]  # car bodies (and game bike frames)
    trucks: tuple[RGB, ...]
    buses: tuple[RGB, ...]
    clothes: tuple[RGB, ...]  # shirts, coats, trousers
    skin: tuple[RGB, ...]
    metal: RGB  # poles, light housings, real bike frames
    window: RGB  # building and vehicle windows
    lamp_box: tuple[RGB, ...]  # traffic-light housings
    counts: dict[str, tuple[int, int]]  # instances per image (inclusive range) per thing kind
    texture: float  # amplitude of low-frequency shading, fraction of brightness
    noise: float  # std of per-pixel Gaussian noise, 0..255
    blur: float  # Gaussian blur sigma, px
    vignette: float  # brightness lost in the corners, fraction
    gamma: tuple[float, float]  # per-image gamma range
    cast: float  # per-image white-balance error per channel, fraction


def _toned(colour: RGB, keep: float, gain: float) -> RGB:
    """Saturation scaled by ``keep``, brightness by ``gain``, a slightly cooler tint."""
    grey = sum(colour) / 3
    r, g, b = (int(np.clip(gain * (grey + keep * (v - grey)) + tint, 0, 255))
               for v, tint in zip(colour, (-4, 0, 6)))
    return r, g, b


def muted(colour: RGB) -> RGB:
    """The target's version of a source stuff colour: 40% less saturated, 10% darker, cooler."""
    return _toned(colour, 0.6, 0.9)


def faded(colour: RGB) -> RGB:
    """The target's version of a source thing colour: 55% less saturated, 20% darker, cooler.

    Further than ``muted``: things shift more than stuff, yet keep a trace of their hue.
    """
    return _toned(colour, 0.45, 0.8)


SRC_CARS: tuple[RGB, ...] = ((225, 30, 30), (30, 70, 225), (245, 205, 20), (30, 175, 60),
                             (245, 125, 20))
SRC_TRUCKS: tuple[RGB, ...] = ((245, 135, 20), (235, 235, 40), (232, 232, 226))
SRC_BUSES: tuple[RGB, ...] = ((40, 150, 225), (40, 170, 90), (215, 45, 45))
SRC_CLOTHES: tuple[RGB, ...] = ((232, 40, 40), (40, 90, 232), (250, 212, 30), (40, 192, 90),
                                (240, 120, 200))

SRC_STYLE = Style(
    shapes="game", horizon=(0.40, 0.48), cam_height=(1.3, 1.7), focal=0.8, depth=(4.5, 22.0),
    stuff={
        ROAD: ((100, 100, 112), (86, 90, 104)), SIDEWALK: ((205, 178, 150), (185, 185, 178)),
        BUILDING: ((210, 120, 80), (228, 204, 140), (160, 166, 205), (175, 172, 168)),
        WALL: ((175, 152, 118),), FENCE: ((150, 100, 50),),
        VEGETATION: ((40, 178, 45), (75, 165, 30)), TERRAIN: ((165, 210, 70),),
        SKY: ((80, 165, 255),),
    },
    jitter=10, cars=SRC_CARS, trucks=SRC_TRUCKS, buses=SRC_BUSES, clothes=SRC_CLOTHES,
    skin=((250, 205, 165), (205, 145, 105)), metal=(205, 205, 215), window=(150, 222, 250),
    lamp_box=((30, 30, 34),),
    counts={"car": (2, 5), "heavy": (0, 2), "person": (2, 4), "cyclist": (1, 2),
            "bicycle": (0, 2), "pole": (2, 4)},
    texture=0.03, noise=2.5, blur=0.0, vignette=0.0, gamma=(0.9, 1.1), cast=0.03,
)

TRG_STYLE = Style(
    shapes="real", horizon=(0.34, 0.42), cam_height=(1.8, 2.3), focal=0.85, depth=(5.5, 26.0),
    stuff={label: tuple(muted(c) for c in options) for label, options in SRC_STYLE.stuff.items()},
    jitter=16,
    cars=tuple(faded(c) for c in SRC_CARS) + ((62, 62, 66), (26, 26, 30), (182, 182, 186)),
    trucks=tuple(faded(c) for c in SRC_TRUCKS) + ((150, 150, 146),),
    buses=tuple(faded(c) for c in SRC_BUSES) + ((80, 90, 110),),
    clothes=tuple(faded(c) for c in SRC_CLOTHES) + ((30, 30, 34), (92, 80, 68)),
    skin=((206, 170, 146), (150, 110, 90)), metal=(160, 162, 168), window=(40, 46, 56),
    lamp_box=((34, 34, 38), (100, 90, 40)),
    counts={"car": (2, 5), "heavy": (0, 2), "person": (2, 5), "cyclist": (1, 2),
            "bicycle": (0, 2), "pole": (2, 4)},
    texture=0.07, noise=6.0, blur=0.7, vignette=0.35, gamma=(0.75, 1.3), cast=0.08,
)


def pick(rng: Rng, palette: Sequence[RGB], jitter: int) -> RGB:
    """One palette colour, each channel moved by up to +-jitter."""
    base = palette[int(rng.integers(len(palette)))]
    r, g, b = (int(np.clip(v + rng.integers(-jitter, jitter + 1), 0, 255)) for v in base)
    return r, g, b


def shade(colour: RGB, k: float) -> RGB:
    """The colour scaled by ``k`` (darker < 1 < lighter), clipped to 0..255."""
    r, g, b = (int(min(255, v * k)) for v in colour)
    return r, g, b
