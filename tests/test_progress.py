"""encoding_custom.progress: progress bars written to a file are a few whole lines, not carriage-return redraws, and
--no-progress silences every bar of the scripts."""
import io

from encoding_custom import progress
from encoding_custom.progress import LINES_PER_BAR, progress_bar, set_progress

STACK_INDEPENDENT = "tqdm and text streams only; no network"


def test_a_bar_in_a_file_is_one_line_per_five_percent_with_its_postfix():
    log = io.StringIO()
    with progress_bar(total=1000, desc="episodes", file=log) as bar:
        for step in range(1000):
            bar.set_postfix(mIoU="%.2f" % (step / 10))
            bar.update(1)
    text = log.getvalue()
    lines = text.splitlines()
    assert "\r" not in text and LINES_PER_BAR - 1 <= len(lines) <= LINES_PER_BAR + 2, lines
    assert lines[-1].startswith("episodes: 100%") and "mIoU=99.90" in lines[-1]


def test_a_terminal_keeps_the_redrawn_line():
    class Terminal(io.StringIO):
        def isatty(self):
            return True

    screen = Terminal()
    with progress_bar(total=10, desc="epoch", file=screen) as bar:
        for _ in range(10):
            bar.update(1)
    assert "\r" in screen.getvalue()


def test_no_progress_silences_every_bar(monkeypatch):
    monkeypatch.setattr(progress, "_enabled", True)
    set_progress(False)
    log = io.StringIO()
    with progress_bar(total=10, desc="masks", file=log) as bar:
        bar.update(10)
    assert log.getvalue() == ""
