"""Training curves as a PNG drawn with Pillow (matplotlib is not a dependency)."""
from typing import Dict, List, Sequence

from PIL import Image, ImageDraw

PANEL_W, PANEL_H, MARGIN = 360, 240, 44
COLOURS = {"train_loss": (200, 60, 40), "pixAcc": (40, 110, 200), "FB-IoU": (40, 110, 200), "mIoU": (40, 160, 80)}


def _panel(draw: ImageDraw.ImageDraw, left: int, title: str, xs: Sequence[float], ys: Sequence[float],
           colour) -> None:
    x0, y0 = left + MARGIN, MARGIN // 2 + 14
    x1, y1 = left + PANEL_W - 12, PANEL_H - MARGIN
    draw.text((left + MARGIN, 4), title, fill=(0, 0, 0))
    draw.rectangle([x0, y0, x1, y1], outline=(0, 0, 0))
    if not ys:
        draw.text((x0 + 8, y0 + 8), "no data", fill=(120, 120, 120))
        return
    lo, hi = min(ys), max(ys)
    if hi - lo < 1e-12:
        lo, hi = lo - 0.5, hi + 0.5
    xlo, xhi = min(xs), max(xs)
    if xhi == xlo:
        xlo, xhi = xlo - 1, xhi + 1

    def to_px(x, y):
        return (x0 + (x - xlo) / (xhi - xlo) * (x1 - x0), y1 - (y - lo) / (hi - lo) * (y1 - y0))

    for value, y in ((hi, y0), (lo, y1)):
        draw.text((left + 2, y - 6), "%.3g" % value, fill=(0, 0, 0))
    draw.text((x0, y1 + 4), "epoch %g" % xlo, fill=(0, 0, 0))
    draw.text((x1 - 50, y1 + 4), "epoch %g" % xhi, fill=(0, 0, 0))
    points = [to_px(x, y) for x, y in zip(xs, ys)]
    if len(points) > 1:
        draw.line(points, fill=colour, width=2)
    for px, py in points:
        draw.ellipse([px - 3, py - 3, px + 3, py + 3], fill=colour)


def plot_curves(records: List[Dict], path: str) -> str:
    """Draw train loss, val pixAcc (FB-IoU for a zero-shot run) and val mIoU against epoch side by side.

    Args:
        records: per-epoch dicts with ``epoch`` and any of ``train_loss``, ``pixAcc`` or ``FB-IoU``, ``mIoU`` (missing
            or None values are skipped).
        path: output PNG.

    Returns:
        ``path``.
    """
    keys = ("train_loss", "FB-IoU" if any("FB-IoU" in r for r in records) else "pixAcc", "mIoU")
    image = Image.new("RGB", (PANEL_W * len(keys), PANEL_H), "white")
    draw = ImageDraw.Draw(image)
    for i, key in enumerate(keys):
        rows = [r for r in records if r.get(key) is not None and "epoch" in r]
        _panel(draw, i * PANEL_W, key, [float(r["epoch"]) for r in rows], [float(r[key]) for r in rows],
               COLOURS[key])
    image.save(path)
    return path
