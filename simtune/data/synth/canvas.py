"""Drawing primitives: a pinhole camera over a flat road, a street cross-section, and a canvas
that paints an image and its label map together."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import cv2
import numpy as np

from simtune.data.synth.style import RGB, VOID


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


def rect(x0: float, y0: float, x1: float, y1: float) -> list[tuple[float, float]]:
    """Corners of an axis-aligned rectangle in local metres."""
    return [(x0, y0), (x1, y0), (x1, y1), (x0, y1)]

