"""One street scene: stuff (sky, road, sidewalks, facades, skyline), things, and the
domain's camera optics."""

from __future__ import annotations

import numpy as np
import cv2

from simtune.data.synth.canvas import Camera, Canvas, Street, rect
from simtune.data.synth.style import (
    BUILDING, FENCE, RGB, ROAD, SIDEWALK, SKY, TERRAIN, VEGETATION, VOID, WALL, Rng, Style, pick,
    shade,
)
from simtune.data.synth.things import draw_things

Segment = tuple[float, float, int, float, RGB]  # roadside piece: z0, z1 (m), label, height, RGB


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


def sample_scene(rng: Rng, style: Style, width: int, height: int) -> tuple[Camera, Street]:
    """The camera (horizon, height, lateral vanishing point) and the street cross-section."""
    cam = Camera(horizon=rng.uniform(*style.horizon) * height,
                 cx=width * rng.uniform(0.42, 0.58), focal=style.focal * width,
                 height=rng.uniform(*style.cam_height))
    verge = rng.uniform(0.5, 3.0) if rng.random() < 0.5 else 0.0
    street = Street(centre=rng.uniform(-2.0, 2.0), road=rng.uniform(3.0, 5.0),
                    walk=rng.uniform(1.5, 3.0), verge=verge)
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


