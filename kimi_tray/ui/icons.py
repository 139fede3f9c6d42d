"""Draw the tray icon for a Status: colour by health, a ring for time left, a shape per state.

Drawn at 4x and scaled down, so it stays crisp from 16 px panels to hi-dpi 64 px ones.
Shape as well as colour, so it reads on monochrome panels and for colour-blind users:
a disc with a ring (token alive), a hollow disc (expired), a diamond with "!" (login needed),
a grey square with "?" (error), a blue disc with three dots (waiting for the browser login).
A thin bar on the right edge shows the most constrained quota window (filled from the bottom as
it is used), outside the ring, so the token's colour and shape stay as they are.
"""

from __future__ import annotations

import sys

# The icons hold no text, but Pillow's ImageDraw imports its FreeType binding all the same, which
# loads FreeType and HarfBuzz: about 1.1 MiB of the tray's memory for good. Pillow runs without
# that binding (as when built without FreeType): only ImageFont's TrueType fonts would fail.
sys.modules.setdefault("PIL._imagingft", None)  # type: ignore[arg-type]

from PIL import Image, ImageDraw  # noqa: E402  # after the block above

from kimi_tray.core.health import Status  # noqa: E402

COLOURS: dict[str, tuple[int, int, int]] = {
    "fresh": (46, 160, 67),
    "aging": (230, 184, 0),
    "expiring": (245, 124, 0),
    "expired": (215, 38, 61),
    "needs_login": (142, 68, 173),
    "error": (128, 128, 128),
    "waiting": (33, 118, 210),
}
PAD = 0.06  # share of the size left empty around the shape
RING = 0.14  # share of the size taken by the coloured rim around the time-left ring
ARC_INSET = PAD + RING * 0.55
ARC_WIDTH = RING * 0.5
WHITE = (255, 255, 255, 255)
SCALE = 4


def icon_state(status: Status) -> str:
    if status.login_in_progress:
        return "waiting"
    return status.health.value


def draw_icon(status: Status, size: int = 64) -> Image.Image:
    state = icon_state(status)
    big = size * SCALE
    image = Image.new("RGBA", (big, big), (0, 0, 0, 0))
    draw = ImageDraw.Draw(image)
    colour = COLOURS[state] + (255,)
    pad = big * PAD
    box = (pad, pad, big - pad, big - pad)
    ring = big * RING
    if state == "needs_login":
        _diamond(draw, big, colour)
        _exclamation(draw, big)
    elif state == "error":
        draw.rounded_rectangle(box, radius=big * 0.18, fill=colour)
        _question(draw, big)
    elif state == "waiting":
        draw.ellipse(box, fill=colour)
        for i in range(3):
            cx = big * (0.3 + 0.2 * i)
            r = big * 0.07
            draw.ellipse((cx - r, big / 2 - r, cx + r, big / 2 + r), fill=WHITE)
    elif state == "expired":
        draw.ellipse(box, outline=colour, width=int(ring))
        inner = big * 0.3
        draw.line((inner, inner, big - inner, big - inner), fill=colour, width=int(ring * 0.8))
    else:
        draw.ellipse(box, fill=colour)
        inset, width = big * ARC_INSET, int(big * ARC_WIDTH)
        arc_box = (inset, inset, big - inset, big - inset)
        draw.ellipse(arc_box, outline=_track(colour), width=width)
        fraction = status.fraction_left
        if fraction > 0:
            draw.arc(arc_box, start=-90, end=-90 + 360 * fraction, fill=WHITE, width=width)
    _quota_mark(draw, big, status)
    return image.resize((size, size), Image.Resampling.BOX)


def _track(colour: tuple[int, ...]) -> tuple[int, int, int, int]:
    """The spent part of the ring: the state's colour, darkened (opaque, so panels don't show through)."""
    r, g, b = colour[:3]
    return (int(r * 0.55), int(g * 0.55), int(b * 0.55), 255)


def _diamond(draw: ImageDraw.ImageDraw, big: int, colour: tuple[int, ...]) -> None:
    c, r = big / 2, big * 0.48
    draw.polygon([(c, c - r), (c + r, c), (c, c + r), (c - r, c)], fill=colour)


def _exclamation(draw: ImageDraw.ImageDraw, big: int) -> None:
    w = big * 0.11
    c = big / 2
    draw.rounded_rectangle((c - w / 2, big * 0.22, c + w / 2, big * 0.6), radius=w / 2, fill=WHITE)
    draw.ellipse((c - w / 2, big * 0.67, c + w / 2, big * 0.67 + w), fill=WHITE)


def _question(draw: ImageDraw.ImageDraw, big: int) -> None:
    c, w = big / 2, big * 0.1
    r = big * 0.16
    draw.arc((c - r, big * 0.2, c + r, big * 0.2 + 2 * r), start=180, end=90, fill=WHITE, width=int(w))
    draw.line((c, big * 0.2 + 2 * r - w / 2, c, big * 0.62), fill=WHITE, width=int(w))
    draw.ellipse((c - w / 2, big * 0.7, c + w / 2, big * 0.7 + w), fill=WHITE)


# ----------------------------------------------------------------------------- quota mark
QUOTA_LEFT = 0.84  # the bar spans x 0.84..1.0: outside the ring, over the disc's outer rim only
QUOTA_TOP, QUOTA_BOTTOM = 0.1, 0.9
QUOTA_TRACK = (40, 40, 40, 255)
QUOTA_COLOURS = ((95.0, (215, 38, 61)), (80.0, (245, 124, 0)), (0.0, (255, 255, 255)))
QUOTA_STALE = (150, 150, 150)


def quota_fraction(status: Status) -> float | None:
    """The most constrained window's used share, or None when there is nothing to show."""
    usage = status.usage
    window = usage.most_constrained() if usage is not None else None
    return None if window is None else window.fraction_used


def _quota_mark(draw: ImageDraw.ImageDraw, big: int, status: Status) -> None:
    fraction = quota_fraction(status)
    if fraction is None or status.usage is None:
        return
    left, top, bottom = big * QUOTA_LEFT, big * QUOTA_TOP, big * QUOTA_BOTTOM
    draw.rounded_rectangle((left, top, big - 1, bottom), radius=big * 0.05, fill=QUOTA_TRACK)
    inset = big * 0.035
    inner_top, inner_bottom = top + inset, bottom - inset
    fill_top = inner_bottom - (inner_bottom - inner_top) * fraction
    if fraction > 0:
        percent = 100 * fraction
        colour = next(c for limit, c in QUOTA_COLOURS if percent >= limit)
        if status.usage.is_stale(status.now):
            colour = QUOTA_STALE
        draw.rectangle((left + inset, fill_top, big - 1 - inset, inner_bottom), fill=colour + (255,))
