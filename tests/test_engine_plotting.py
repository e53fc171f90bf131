"""encoding_custom.engine.plotting: curves.png drawn with matplotlib — its panels, labels, ticks, per-set lines and
legend, empty panels, the PNG written atomically, and matplotlib kept out of ``import encoding_custom.engine``."""
import math
import os
import subprocess
import sys
import threading

import pytest
from PIL import Image

from encoding_custom.engine import plotting
from encoding_custom.engine.plotting import curve_series, curves_figure, plot_curves

# Each stack pins its own matplotlib (and Pillow, which reads the PNG back): what is drawn can differ between them.
pytestmark = pytest.mark.both_stacks

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PANEL_PIXELS = (int(plotting.PANEL_INCHES[0] * plotting.DPI), int(plotting.PANEL_INCHES[1] * plotting.DPI))


def ade_records(epochs=5):
    """metrics.jsonl lines of an ADE20K run (Trainer.validate's keys plus what the other hooks add)."""
    return [{"epoch": e, "global_step": 3 * e, "train_loss": 2.0 / e, "lrs": [0.01, 0.1], "time_s": 1.5,
             "world_size": 1, "pixAcc": 0.5 + e / 50, "mIoU": 0.1 + e / 40, "best_mIoU": 0.1 + e / 40}
            for e in range(1, epochs + 1)]


def zero_shot_records(epochs=4):
    """metrics.jsonl lines of a zero-shot run (episode_validator's keys)."""
    return [{"epoch": e, "train_loss": 1.0 / e, "mIoU": 0.2 + e / 100, "FB-IoU": 0.6 + e / 100,
             "best_mIoU": 0.2 + e / 100} for e in range(1, epochs + 1)]


def drawn(records):
    """The figure of ``records`` with its tick labels laid out, as the PNG would show them."""
    figure = curves_figure(records)
    figure.canvas.draw()
    return figure


def titles(figure):
    return [axes.get_title() for axes in figure.axes]


def visible_x_ticks(axes):
    """The x tick labels inside the axes' range (the locator also places ticks just outside it)."""
    low, high = sorted(axes.get_xlim())
    return [label.get_text().replace("\u2212", "-") for label in axes.get_xticklabels()
            if low - 1e-9 <= label.get_position()[0] <= high + 1e-9]


def legend_names(axes):
    legend = axes.get_legend()
    return None if legend is None else [text.get_text() for text in legend.get_texts()]


def panel_texts(axes):
    return [text.get_text() for text in axes.texts]


def test_the_png_is_written_as_a_valid_image_one_panel_wide_each(tmp_path):
    path = str(tmp_path / "curves.png")
    assert plot_curves(ade_records(), path) == path
    with Image.open(path) as png:
        png.verify()
    with Image.open(path) as png:
        assert png.format == "PNG"
        assert png.size == (3 * PANEL_PIXELS[0], PANEL_PIXELS[1])
        assert len(set(png.convert("L").getdata())) > 2  # something is drawn
    assert os.listdir(str(tmp_path)) == ["curves.png"]  # no temporary file left behind


def test_an_ade20k_run_gets_loss_pixacc_and_miou_panels_with_labelled_axes():
    records = ade_records()
    figure = drawn(records)
    assert titles(figure) == ["training loss", "validation pixAcc", "validation mIoU"]
    assert [axes.get_xlabel() for axes in figure.axes] == ["epoch"] * 3
    assert [axes.get_ylabel() for axes in figure.axes] == ["loss", "pixAcc", "mIoU"]
    for axes, key in zip(figure.axes, ("train_loss", "pixAcc", "mIoU")):
        (line,) = axes.get_lines()
        assert list(line.get_xdata()) == [1, 2, 3, 4, 5]
        assert list(line.get_ydata()) == pytest.approx([r[key] for r in records])
        assert line.get_marker() == "o"
        assert axes.get_legend() is None  # one validation set: no legend
        assert axes.xaxis.get_gridlines()[0].get_visible()
        assert panel_texts(axes) == []
    assert [t for t, _ in curve_series(records)] == ["train_loss", "pixAcc", "mIoU"]  # best_mIoU, lrs: not drawn


def test_a_zero_shot_run_gets_fb_iou_and_miou_panels():
    figure = drawn(zero_shot_records())
    assert titles(figure) == ["training loss", "validation FB-IoU", "validation mIoU"]
    assert [axes.get_ylabel() for axes in figure.axes] == ["loss", "FB-IoU", "mIoU"]
    assert list(figure.axes[1].get_lines()[0].get_ydata()) == pytest.approx([0.61, 0.62, 0.63, 0.64])


@pytest.mark.parametrize("epochs", [3, 7, 40, 240])
def test_epoch_ticks_are_integers_and_the_values_have_real_ticks(epochs):
    figure = drawn(ade_records(epochs))
    for axes in figure.axes:
        ticks = visible_x_ticks(axes)
        assert len(ticks) >= 2 and all(tick.lstrip("-").isdigit() for tick in ticks), ticks
        assert int(ticks[0]) <= 1 + epochs // 5 and int(ticks[-1]) >= epochs - epochs // 5  # they span the run
        low, high = sorted(axes.get_ylim())
        inside = [t for t in axes.get_yticks() if low <= t <= high]
        assert len(inside) >= 3  # more than the min/max of the Pillow drawing


def test_one_epoch_is_a_visible_point_with_its_epoch_as_the_only_tick(tmp_path):
    records = [{"epoch": 3, "train_loss": 0.7, "pixAcc": 0.6, "mIoU": 0.3}]
    figure = drawn(records)
    for axes in figure.axes:
        assert visible_x_ticks(axes) == ["3"]
        (line,) = axes.get_lines()
        assert list(line.get_xdata()) == [3] and line.get_marker() == "o" and line.get_markersize() > 0
    plot_curves(records, str(tmp_path / "curves.png"))
    with Image.open(str(tmp_path / "curves.png")) as png:
        assert png.size == (3 * PANEL_PIXELS[0], PANEL_PIXELS[1])


@pytest.mark.parametrize("records", [
    [{"epoch": 1, "train_loss": 0.9}, {"epoch": 2, "train_loss": 0.8}],  # a run without a validation set
    [],  # before the first epoch ends
], ids=["no validation", "no records"])
def test_empty_panels_say_no_data(tmp_path, records):
    figure = drawn(records)
    assert titles(figure) == ["training loss", "validation pixAcc", "validation mIoU"]
    for axes in figure.axes[1:]:
        assert axes.get_lines() == [] and panel_texts(axes) == ["no data"]
    assert panel_texts(figure.axes[0]) == ([] if records else ["no data"])
    path = str(tmp_path / "curves.png")
    plot_curves(records, path)
    with Image.open(path) as png:
        assert png.size == (3 * PANEL_PIXELS[0], PANEL_PIXELS[1])


def test_several_validation_sets_are_one_line_each_with_a_legend_of_their_names():
    records = [{"epoch": e, "train_loss": 1.0 / e, "mIoU/ade20k": 0.2 + e / 100, "mIoU/pascal": 0.4 + e / 100,
                "pixAcc/ade20k": 0.7, "pixAcc/pascal": 0.8} for e in range(1, 5)]
    records[0].pop("mIoU/pascal")  # a set validated from epoch 2 on
    figure = drawn(records)
    assert titles(figure) == ["training loss", "validation pixAcc", "validation mIoU"]
    loss, pix_acc, miou = figure.axes
    assert legend_names(loss) is None
    assert legend_names(pix_acc) == legend_names(miou) == ["ade20k", "pascal"]
    ade, pascal = miou.get_lines()
    assert list(ade.get_xdata()) == [1, 2, 3, 4] and list(pascal.get_xdata()) == [2, 3, 4]
    assert list(pascal.get_ydata()) == pytest.approx([0.42, 0.43, 0.44])
    # a set keeps its colour from panel to panel
    assert [line.get_color() for line in pix_acc.get_lines()] == [line.get_color() for line in miou.get_lines()]
    assert ade.get_color() != pascal.get_color()


def test_one_named_set_has_its_name_in_the_title_and_no_legend():
    records = [{"epoch": e, "train_loss": 1.0, "FB-IoU/pascal-5i": 0.6, "mIoU/pascal-5i": 0.3} for e in (1, 2)]
    figure = drawn(records)
    assert titles(figure) == ["training loss", "validation FB-IoU (pascal-5i)", "validation mIoU (pascal-5i)"]
    assert all(axes.get_legend() is None for axes in figure.axes)


def test_missing_none_and_non_finite_values_are_skipped_and_order_follows_the_epoch():
    records = [{"epoch": 3, "train_loss": 0.3, "mIoU": None}, {"epoch": 1, "train_loss": 0.9, "mIoU": 0.1},
               {"epoch": 2, "train_loss": math.nan, "mIoU": 0.2}, {"train_loss": 5.0}]  # the last has no epoch
    panels = dict(curve_series(records))
    assert panels["train_loss"] == [(None, [(1.0, 0.9), (3.0, 0.3)])]
    assert panels["mIoU"] == [(None, [(1.0, 0.1), (2.0, 0.2)])]
    assert list(panels) == ["train_loss", "mIoU"]  # a custom validator's mIoU alone: no empty pixAcc panel


def test_a_missing_folder_is_created(tmp_path):
    path = str(tmp_path / "new" / "run" / "curves.png")
    plot_curves(ade_records(2), path)
    with Image.open(path) as png:
        assert png.format == "PNG"


def test_a_folder_that_cannot_be_made_raises_an_error_naming_the_png(tmp_path):
    blocker = tmp_path / "not_a_folder"
    blocker.write_text("a file where the experiment folder should be")
    path = str(blocker / "curves.png")
    with pytest.raises(OSError, match="cannot write the training curves") as caught:
        plot_curves(ade_records(2), path)
    assert path in str(caught.value)
    assert blocker.read_text() == "a file where the experiment folder should be"


@pytest.mark.skipif(os.name != "posix" or os.geteuid() == 0, reason="permissions do not stop root")
def test_a_read_only_folder_raises_permission_error_and_keeps_the_old_png(tmp_path):
    folder = tmp_path / "run"
    folder.mkdir()
    path = str(folder / "curves.png")
    plot_curves(ade_records(2), path)
    before = (folder / "curves.png").read_bytes()
    folder.chmod(0o555)
    try:
        with pytest.raises(PermissionError, match="cannot write the training curves") as caught:
            plot_curves(ade_records(4), path)
        assert path in str(caught.value)
    finally:
        folder.chmod(0o755)
    assert (folder / "curves.png").read_bytes() == before


def test_a_refused_temporary_file_raises_permission_error_naming_the_png(tmp_path, monkeypatch):
    # What a read-only folder does for any user but root (the test above is skipped under root).
    import tempfile

    def refuse(*args, **kwargs):
        raise PermissionError(13, "Permission denied", os.path.join(str(tmp_path), ".curves.png.tmp1.x.png"))

    monkeypatch.setattr(tempfile, "mkstemp", refuse)
    path = str(tmp_path / "curves.png")
    with pytest.raises(PermissionError, match="cannot write the training curves: Permission denied") as caught:
        plot_curves(ade_records(2), path)
    assert caught.value.errno == 13 and str(caught.value).startswith("[Errno 13] " + path)


def test_a_failure_while_drawing_keeps_the_old_png_and_leaves_no_temporary(tmp_path, monkeypatch):
    path = str(tmp_path / "curves.png")
    plot_curves(ade_records(2), path)
    before = open(path, "rb").read()
    from matplotlib.figure import Figure

    def fail(self, target, **kwargs):
        with open(target, "wb") as handle:
            handle.write(b"\x89PNG half")
        raise RuntimeError("renderer failed")

    monkeypatch.setattr(Figure, "savefig", fail)
    with pytest.raises(RuntimeError, match="renderer failed"):
        plot_curves(ade_records(4), path)
    assert open(path, "rb").read() == before and os.listdir(str(tmp_path)) == ["curves.png"]


def test_threads_draw_at_once(tmp_path):
    errors = []

    def draw(index):
        try:
            plot_curves(ade_records(3 + index), str(tmp_path / ("curves_%d.png" % index)))
        except Exception as error:  # reported by the assertion below, in the main thread
            errors.append(error)

    threads = [threading.Thread(target=draw, args=(i,)) for i in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    for index in range(3):
        with Image.open(str(tmp_path / ("curves_%d.png" % index))) as png:
            assert png.size == (3 * PANEL_PIXELS[0], PANEL_PIXELS[1])


def test_the_engine_imports_without_matplotlib_and_plotting_never_touches_pyplot(tmp_path):
    code = (
        "import sys\n"
        "import encoding_custom.engine as engine\n"
        "assert 'matplotlib' not in sys.modules, 'imported by encoding_custom.engine'\n"
        "engine.plot_curves([{'epoch': 1, 'train_loss': 0.5}], sys.argv[1])\n"
        "assert 'matplotlib' in sys.modules and 'matplotlib.pyplot' not in sys.modules\n"
    )
    env = dict(os.environ, PYTHONPATH=REPO + os.pathsep + os.environ.get("PYTHONPATH", ""))
    env.pop("DISPLAY", None)  # as on a headless server
    done = subprocess.run([sys.executable, "-c", code, str(tmp_path / "curves.png")], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    assert os.path.isfile(str(tmp_path / "curves.png"))
