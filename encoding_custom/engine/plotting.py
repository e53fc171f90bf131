"""Training curves (``curves.png`` beside ``metrics.jsonl``) drawn with matplotlib's Agg renderer.

One panel per quantity against epoch: the training loss, then the validation metrics the records carry (pixAcc and
mIoU for an ADE20K run, FB-IoU and mIoU for a zero-shot run). matplotlib is imported only when a figure is drawn,
so ``import encoding_custom.engine`` does not pay for it.
"""
import math
from typing import Dict, List, Optional, Sequence, Tuple

from foundation.atomic import atomic_output

LOSS = "train_loss"
# The validation figures the trainer's validators return, in panel order (trainer.validate, zero_shot's validator).
METRICS = ("pixAcc", "FB-IoU", "mIoU")
# Panels shown when no record has a validation figure yet (a run without a val set): empty, with "no data".
DEFAULT_METRICS = ("pixAcc", "mIoU")
SET_SEPARATOR = "/"
TITLES = {LOSS: "training loss", "pixAcc": "validation pixAcc", "FB-IoU": "validation FB-IoU",
          "mIoU": "validation mIoU"}
Y_LABELS = {LOSS: "loss"}
COLOURS = {LOSS: "tab:red", "pixAcc": "tab:blue", "FB-IoU": "tab:blue", "mIoU": "tab:green"}
PANEL_INCHES = (5.0, 4.0)
DPI = 100

# One line of a panel: its validation set's name (None for the plain key) and its (epoch, value) points.
Series = Tuple[Optional[str], List[Tuple[float, float]]]


def _value(record: Dict, key: str) -> Optional[float]:
    """``record[key]`` as a float, or None when missing, None, not a number or not finite (nothing to draw)."""
    value = record.get(key)
    if value is None or isinstance(value, bool):
        return None
    try:
        value = float(value)
    except (TypeError, ValueError):
        return None
    return value if math.isfinite(value) else None


def _set_names(records: Sequence[Dict], metric: str) -> List[Optional[str]]:
    """The validation sets ``metric`` is given for, in order of first appearance: None for the plain key
    ``metric``, ``name`` for ``metric/name``."""
    names: List[Optional[str]] = []
    prefix = metric + SET_SEPARATOR
    for record in records:
        for key in record:
            if not isinstance(key, str):
                continue
            if key == metric:
                name = None
            elif key.startswith(prefix) and len(key) > len(prefix):
                name = key[len(prefix):]
            else:
                continue
            if name not in names:
                names.append(name)
    return names


def curve_series(records: Sequence[Dict]) -> List[Tuple[str, List[Series]]]:
    """The panels of :func:`plot_curves` and their lines, without drawing anything.

    Args:
        records: per-epoch dicts, see :func:`plot_curves`.

    Returns:
        ``[(quantity, [(set name or None, [(epoch, value), ...]), ...]), ...]``: ``train_loss`` first, then each of
        ``pixAcc``, ``FB-IoU``, ``mIoU`` that some record carries (plain or per set), or ``pixAcc`` and ``mIoU`` with
        no lines when none does. Points are sorted by epoch; records without ``epoch`` are left out.
    """
    rows = sorted((r for r in records if _value(r, "epoch") is not None), key=lambda r: float(r["epoch"]))
    metrics = [m for m in METRICS if _set_names(rows, m)] or list(DEFAULT_METRICS)
    panels = []
    for quantity in [LOSS] + metrics:
        series = []
        for name in ([None] if quantity == LOSS else _set_names(rows, quantity)):
            key = quantity if name is None else quantity + SET_SEPARATOR + name
            points = [(float(r["epoch"]), _value(r, key)) for r in rows]
            points = [(x, y) for x, y in points if y is not None]
            if points:
                series.append((name, points))
        panels.append((quantity, series))
    return panels


def _draw_panel(axes, quantity: str, series: List[Series]) -> None:
    """One panel: a line with markers per series (a legend when there are several), integer epoch ticks, grid."""
    from matplotlib.ticker import MaxNLocator

    title = TITLES.get(quantity, quantity)
    if len(series) == 1 and series[0][0] is not None:
        title += " (%s)" % series[0][0]  # one named set: its name in the title, not in a legend
    axes.set_title(title)
    axes.set_xlabel("epoch")
    axes.set_ylabel(Y_LABELS.get(quantity, quantity))
    axes.grid(True, alpha=0.4)
    axes.xaxis.set_major_locator(MaxNLocator(integer=True, min_n_ticks=1))
    if not series:
        axes.text(0.5, 0.5, "no data", transform=axes.transAxes, ha="center", va="center", color="grey")
        return
    for index, (name, points) in enumerate(series):
        colour = COLOURS.get(quantity, "C0") if len(series) == 1 else "C%d" % (index % 10)
        # markers show a lone epoch; smaller ones on a long run keep the line visible under them
        axes.plot([x for x, _ in points], [y for _, y in points], color=colour, marker="o",
                  markersize=4 if len(points) <= 50 else 2, label=name if name is not None else "mean of the sets")
    epochs = [x for _, points in series for x, _ in points]
    if min(epochs) == max(epochs):  # one epoch: centre it, so the integer locator shows that epoch only
        axes.set_xlim(min(epochs) - 0.5, max(epochs) + 0.5)
    if len(series) > 1:
        axes.legend(title="validation set", fontsize="small")


def curves_figure(records: Sequence[Dict]):
    """The curves as a matplotlib ``Figure`` on an Agg canvas (no pyplot, no display; safe in threads).

    Args:
        records: per-epoch dicts, see :func:`plot_curves`.

    Returns:
        a ``matplotlib.figure.Figure`` of ``PANEL_INCHES[0] × panels`` by ``PANEL_INCHES[1]`` inches at ``DPI``, one
        axes per panel of :func:`curve_series` in that order.

    Raises:
        ImportError: matplotlib is not installed (it is in both requirements files).
    """
    try:
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure
    except ImportError as error:
        raise ImportError("curves.png needs matplotlib: pip install -r requirements.txt (or requirements-legacy.txt)"
                          " into this environment") from error
    panels = curve_series(records)
    # A Figure with its own Agg canvas instead of pyplot (or matplotlib.use): it never opens a window, needs no
    # display, leaves the caller's pyplot backend alone and is not kept in pyplot's global figure list.
    figure = Figure(figsize=(PANEL_INCHES[0] * len(panels), PANEL_INCHES[1]), dpi=DPI, layout="constrained")
    FigureCanvasAgg(figure)
    for axes, (quantity, series) in zip(figure.subplots(1, len(panels), squeeze=False)[0], panels):
        _draw_panel(axes, quantity, series)
    return figure


def plot_curves(records: List[Dict], path: str) -> str:
    """Draw the training loss and the validation metrics against epoch, one panel each, side by side, into a PNG.

    Args:
        records: per-epoch dicts (``metrics.jsonl`` lines) with ``epoch`` and any of ``train_loss``, ``pixAcc``,
            ``FB-IoU``, ``mIoU``; missing, None and non-finite values are skipped. Several validation sets are
            given as flat keys ``<metric>/<set name>`` (e.g. ``{"epoch": 3, "mIoU/ade20k": 0.41, "mIoU/pascal":
            0.52}``): each set is one line of that metric's panel, with a legend of set names when a panel has more
            than one line. A plain ``mIoU`` and ``mIoU/<set>`` keys may be mixed: the plain one, their mean in a
            multi-set run, is the line "mean of the sets".
        path: output PNG; written atomically (``foundation.atomic.atomic_output``: readers never see half a
            file; a missing folder is created).

    Returns:
        ``path``.

    Raises:
        OSError (the same subclass, e.g. PermissionError): the PNG cannot be written; the message names ``path``.
    """
    figure = curves_figure(records)
    try:
        with atomic_output(path) as temporary:
            figure.savefig(temporary, format="png", dpi=DPI)
    except OSError as error:
        reason = "%s: cannot write the training curves: %s" % (path, error.strerror or error)
        # filename: the PNG, so a full disk is reported as "while writing curves.png" (train_custom.report_full_disk)
        raise (type(error)(error.errno, reason, path) if error.errno else type(error)(reason)) from error
    finally:
        figure.clear()  # frees the artists now rather than at the next garbage collection
    return path
