"""Read an icon's picture back (ring share, quota bar fill) and build preview states: what the
icon tests and the screenshot checks need, kept out of the runtime module."""

from __future__ import annotations

import math

from PIL import Image

from kimi_tray.core.health import Health, Status
from kimi_tray.ui.icons import ARC_INSET, ARC_WIDTH, QUOTA_BOTTOM, QUOTA_TOP, QUOTA_TRACK


def _pixel(image: Image.Image, x: int, y: int) -> tuple[int, ...]:
    value = image.getpixel((x, y))
    if not isinstance(value, tuple):
        raise ValueError("expected an RGBA image")
    return value


def ring_fraction_at(image: Image.Image) -> float:
    """Measure the ring's white share by sampling around it (tests and screenshots use this)."""
    size = image.width
    radius = size * (0.5 - ARC_INSET - ARC_WIDTH / 2)
    samples, white = 180, 0
    for i in range(samples):
        angle = -math.pi / 2 + 2 * math.pi * (i + 0.5) / samples
        x = size / 2 + radius * math.cos(angle)
        y = size / 2 + radius * math.sin(angle)
        r, g, b, a = _pixel(image, min(size - 1, int(x)), min(size - 1, int(y)))
        if min(r, g, b) > 170 and a > 200:
            white += 1
    return white / samples


def status_for_preview(health: Health, fraction: float = 0.8, lifetime: float = 900.0) -> Status:
    """A Status with a given health and share of lifetime left (for previews and asset files)."""
    now = 1_800_000_000.0
    return Status(health, now, expires_at=now + fraction * lifetime, lifetime=lifetime)



def quota_fill_at(image: Image.Image) -> float:
    """Measure the bar's filled share from the pixels (tests and screenshots use this): inside the
    bar every pixel is either the dark track or the fill."""
    size = image.width
    x = int(size * 0.9)
    top, bottom = int(size * (QUOTA_TOP + 0.05)), int(size * (QUOTA_BOTTOM - 0.05))
    def is_track(pixel: tuple[int, ...]) -> bool:
        return sum(abs(a - b) for a, b in zip(pixel[:3], QUOTA_TRACK, strict=False)) <= 60

    filled = sum(1 for y in range(top, bottom) if not is_track(_pixel(image, x, y)))
    return filled / max(1, bottom - top)
