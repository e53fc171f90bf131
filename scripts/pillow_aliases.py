"""The three ``PIL.Image`` names MindSpore 2.0.0 reads and Pillow 10 removed, put back for the legacy stack.

``mindspore/dataset/vision/utils.py`` and ``py_transforms.py`` (imported by ``import mindspore``) choose their
resampling constants with ``Image.__version__ >= "9.1.0"``, a string comparison that is false for "10.x" and later,
and then read ``Image.ANTIALIAS``, ``Image.LINEAR`` and ``Image.CUBIC``; ``mindspore/train/summary`` reads
``Image.ANTIALIAS`` when it writes an image summary. Without these names ``import mindspore`` fails on Pillow >= 10.
They are set to the values Pillow 9.5 gave them (LANCZOS, BILINEAR, BICUBIC); nothing else is changed, and a Pillow
that has them is left alone.

It must run before MindSpore is imported in every process (the tests, scripts, data workers and cluster workers all
import MindSpore first at different places), so the legacy set-up installs it into the venv as a ``.pth`` start-up
import::

    python scripts/pillow_aliases.py --install     # in the legacy environment (scripts/setup_env.sh does it)

Costs every interpreter of that environment one ``import PIL.Image`` (~40 ms) at start.
"""
import os
import shutil
import sys
import sysconfig

MODULE = "lseg_pillow_aliases"
# Removed in Pillow 10 -> the constant Pillow 9.5 aliased it to.
ALIASES = {"ANTIALIAS": "LANCZOS", "LINEAR": "BILINEAR", "CUBIC": "BICUBIC"}


def add_aliases() -> list:
    """Put the removed names back on ``PIL.Image`` where they are missing.

    Returns: the names added (empty with Pillow < 10, or when Pillow is not installed).
    """
    try:
        from PIL import Image
    except ImportError:
        return []
    added = []
    for name, target in ALIASES.items():
        if not hasattr(Image, name):
            setattr(Image, name, Image.Resampling[target])
            added.append(name)
    return added


def install(site_packages: str = None) -> str:
    """Copy this file into ``site_packages`` (default: the running interpreter's) as :data:`MODULE` with a ``.pth``
    that imports it at every start.

    Returns: the ``.pth`` path written.
    """
    site_packages = site_packages or sysconfig.get_paths()["purelib"]
    shutil.copyfile(os.path.abspath(__file__), os.path.join(site_packages, MODULE + ".py"))
    pth = os.path.join(site_packages, MODULE + ".pth")
    with open(pth, "w", encoding="utf-8") as handle:
        handle.write(f"import {MODULE}\n")  # site.py runs .pth lines that start with "import"
    return pth


if __name__ == "__main__":
    if sys.argv[1:] != ["--install"]:
        print("usage: python scripts/pillow_aliases.py --install", file=sys.stderr)
        sys.exit(2)
    print(f"pillow_aliases: installed {install()}")
elif __name__ == MODULE:
    add_aliases()
