"""Things: cars, trucks and buses, pedestrians, cyclists, parked bicycles, poles with signs
and traffic lights; each drawn in its domain's shape and colours, placed on the street and
painted far to near so the label map holds what is visible."""

from __future__ import annotations

from collections.abc import Callable

from simtune.data.synth.canvas import Camera, Canvas, Spot, Street, rect
from simtune.data.synth.style import (
    BICYCLE, BUS, CAR, DARK, GROW, LIGHT, MOTORCYCLE, PERSON, POLE, RGB, RIDER, SIGN, TRUCK, Rng,
    Style, pick, shade,
)


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
    """A bus (rounded roof, wide rear window, route display) or a truck (tall ribbed box with
    split doors, no window) from behind, each from its own palette."""
    if rng.random() < 0.5:
        colour = pick(rng, style.buses, style.jitter)
        for x in (-1.1, 0.7):
            c.poly(at.px(rect(x, 0, x + 0.4, 0.45)), BUS, DARK)
        c.poly(at.px([(-1.25, 0.3), (1.25, 0.3), (1.25, 2.75), (1.0, 3.1), (-1.0, 3.1),
                      (-1.25, 2.75)]), BUS, colour)
        c.poly(at.px(rect(-1.05, 1.5, 1.05, 2.6)), None, style.window)
        c.poly(at.px(rect(-0.7, 2.7, 0.7, 2.95)), None, (230, 150, 40))  # route display
        return
    colour = pick(rng, style.trucks, style.jitter)
    for x in (-1.2, 0.75):
        c.poly(at.px(rect(x, 0, x + 0.45, 0.5)), TRUCK, DARK)
    c.poly(at.px(rect(-1.3, 0.4, 1.3, 3.6)), TRUCK, colour)
    c.poly(at.px(rect(-1.3, 0.4, 1.3, 0.7)), None, DARK)  # bumper
    c.line(at.px([(0, 0.75), (0, 3.5)]), 0.06 * at.s, None, shade(colour, 0.6))  # door split
    for y in (1.5, 2.5):
        c.line(at.px([(-1.25, y), (1.25, y)]), 0.05 * at.s, None, shade(colour, 0.75))


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
    """A bicycle (spoked wheels, thin frame) or a motorcycle (longer, fat wheels, a tank and
    seat over a dark engine, a headlight) side-on; returns the frame colour."""
    frame = pick(rng, style.cars, style.jitter)
    if motor:
        draw_motorcycle(c, at, frame)
        return frame
    hub = shade(frame, 0.6)
    for x in (-0.55, 0.55):
        c.disc(at.px([(x, 0.33)]), 0.33 * at.s, BICYCLE, DARK)
        c.disc(at.px([(x, 0.33)]), (0.2 if style.shapes == "game" else 0.24) * at.s, None, hub)
    c.line(at.px([(-0.55, 0.33), (-0.1, 0.85), (0.45, 0.85), (0.55, 0.33)]),
           0.09 * at.s, BICYCLE, frame)
    c.line(at.px([(-0.55, 0.33), (0.0, 0.35), (-0.1, 0.85)]), 0.09 * at.s, BICYCLE, frame)
    c.line(at.px([(0.0, 0.35), (0.45, 0.85), (0.4, 1.0)]), 0.08 * at.s, BICYCLE, frame)
    return frame


def draw_motorcycle(c: Canvas, at: Spot, frame: RGB) -> None:
    """A motorcycle side-on, facing local +x."""
    for x in (-0.75, 0.75):
        c.disc(at.px([(x, 0.36)]), 0.36 * at.s, MOTORCYCLE, DARK)
        c.disc(at.px([(x, 0.36)]), 0.14 * at.s, None, (150, 150, 150))
    c.poly(at.px([(-0.85, 0.6), (0.55, 0.6), (0.8, 1.0), (0.3, 1.1), (-0.6, 0.95)]),
           MOTORCYCLE, frame)
    c.poly(at.px(rect(-0.3, 0.25, 0.35, 0.65)), MOTORCYCLE, (60, 60, 64))  # engine
    c.line(at.px([(0.6, 0.4), (0.75, 1.25), (0.55, 1.3)]), 0.07 * at.s, MOTORCYCLE, DARK)
    c.disc(at.px([(0.85, 1.0)]), 0.1 * at.s, None, (250, 240, 200))  # headlight


def draw_cyclist(c: Canvas, at: Spot, rng: Rng, style: Style) -> None:
    """A rider on a bicycle or motorcycle; the rider is RIDER, not PERSON."""
    draw_bike(c, at, rng, style, motor=rng.random() < 0.5)
    coat = pick(rng, style.clothes, style.jitter)
    c.line(at.px([(-0.1, 0.9), (0.0, 0.35)]), 0.2 * at.s, RIDER, coat)  # leg
    c.poly(at.px([(-0.32, 0.8), (0.1, 0.8), (0.36, 1.5), (-0.04, 1.58)]), RIDER, coat)
    c.line(at.px([(0.2, 1.45), (0.45, 1.0)]), 0.14 * at.s, RIDER, coat)  # arm
    c.disc(at.px([(0.2, 1.72)]), 0.14 * at.s, RIDER, pick(rng, style.skin, 8))


def draw_parked_bike(c: Canvas, at: Spot, rng: Rng, style: Style) -> None:
    """A parked bicycle on the sidewalk."""
    draw_bike(c, at, rng, style, motor=False)


def draw_pole(c: Canvas, at: Spot, rng: Rng, style: Style) -> None:
    """A pole, bare or carrying a sign or a traffic light (local +x points at the road)."""
    h, metal, kind = rng.uniform(3.5, 5.5), pick(rng, (style.metal,), 10), rng.random()
    c.line(at.px([(0, 0), (0, h)]), 0.4 * at.s, POLE, metal)
    box = pick(rng, style.lamp_box, 8)
    if kind < 0.45:
        draw_sign(c, at, rng, style, rng.uniform(1.8, 2.4))
    elif kind < 0.9 and style.shapes == "game":
        c.poly(at.px(rect(-0.35, h - 1.4, 0.35, h)), LIGHT, box)
        for i, lamp in enumerate(((255, 40, 30), (255, 170, 0), (40, 230, 60))):
            c.disc(at.px([(0, h - 0.25 - 0.4 * i)]), 0.14 * at.s, None, lamp)
    elif kind < 0.9:
        reach = rng.uniform(0.8, 1.6)  # the light hangs over the road on an arm
        c.line(at.px([(0, h), (reach, h)]), 0.14 * at.s, POLE, metal)
        c.poly(at.px(rect(reach - 0.32, h - 1.3, reach + 0.32, h)), LIGHT, box)
        lit = int(rng.integers(3))
        for i in range(3):
            lamp = ((200, 40, 30), (210, 150, 20), (40, 190, 90))[i] if i == lit else (60, 60, 60)
            c.disc(at.px([(reach, h - 0.22 - 0.38 * i)]), 0.12 * at.s, None, lamp)


def draw_sign(c: Canvas, at: Spot, rng: Rng, style: Style, y: float) -> None:
    """A sign plate at height ``y``: triangle or disc (game), rectangle or ringed disc (real)."""
    r, round_ = rng.uniform(0.45, 0.6), rng.random() < 0.5
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


def place(rng: Rng, kind: str, street: Street, depth: tuple[float, float],
          view: float) -> tuple[float, float]:
    """Distance z and lateral x (m, camera frame) of a new thing of this kind.

    ``view`` is the half field of view as lateral metres per metre of distance; a thing is
    kept at least far enough away for its ground point to lie inside the frame.
    """
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
    x += street.centre
    lo, hi = depth
    lo = min(max(lo, 1.1 * abs(x) / view), hi)
    return lo + (hi - lo) * rng.random() ** 1.5, x  # nearer things are more likely


def draw_things(c: Canvas, cam: Camera, street: Street, rng: Rng, style: Style) -> None:
    """Place every thing, then draw far to near so the label map holds what is visible."""
    things = []
    view = min(cam.cx, c.label.shape[1] - cam.cx) / cam.focal
    for kind in DRAW:
        lo, hi = style.counts[kind]
        things += [(*place(rng, kind, street, style.depth, view), kind)
                   for _ in range(int(rng.integers(lo, hi + 1)))]
    for z, x, kind in sorted(things, reverse=True):
        s = cam.focal / z  # px per metre at the ground point
        toward_road = -1.0 if x > street.centre else 1.0
        flip = toward_road if kind == "pole" else float(rng.choice((-1.0, 1.0)))
        at = Spot(cam.cx + x * s, cam.horizon + cam.height * s, s * GROW[kind], flip)
        DRAW[kind](c, at, rng, style)


