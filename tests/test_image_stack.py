"""The image stack: each venv has its pinned Pillow (the current one at least the release that fixed the decoder
advisories), the legacy stack's aliases make MindSpore 2.0.0 import with a Pillow >= 10, and the resizes and JPEG
round trip the pipelines use give the same pixels as Pillow 9.5.0, the version both stacks shared before.

The pixels are checked two ways: against digests stored below (made with Pillow 9.5.0; 11.3.0, 12.3.0 and 13.0.0
gave the same), and, when the other stack's venv exists, array against array with that stack's Pillow (run as
``python tests/test_image_stack.py OUT.npz`` there), which would show by how much they differ.
"""
import hashlib
import io
import json
import os
import random
import re
import subprocess
import sys
import sysconfig

import numpy as np
import pytest
from PIL import Image

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if REPO not in sys.path:  # script mode in the other stack's interpreter
    sys.path.insert(0, REPO)

from encoding_custom.datasets.transforms import train_sync_transform, val_sync_transform  # noqa: E402
from encoding_custom.fewshot.episodes import resize_normalise  # noqa: E402
from scripts import pillow_aliases  # noqa: E402

pytestmark = pytest.mark.both_stacks

STACK = "legacy" if sys.version_info[:2] == (3, 9) else "current"
OTHER_STACK = "current" if STACK == "legacy" else "legacy"
OTHER_PYTHON = os.environ.get("LSEG_OTHER_STACK_PYTHON") or os.path.join(
    REPO, ".venv" if OTHER_STACK == "current" else ".venv-legacy", "bin", "python")
# Pillow 10.3.0 fixed the last of the advisories the issue names (CVE-2023-4863's libwebp in 10.0.1,
# CVE-2023-50447 in 10.2.0, CVE-2024-28219 in 10.3.0).
PILLOW_FIXED = (10, 3)

# sha256 (first 16 hex digits) of each case's output bytes with Pillow 9.5.0.
PILLOW_9_5_DIGESTS = {
    "train_sync/noise/seed0": "53a0937bd626e0e0",
    "train_sync/noise/seed1": "397ca1890e81d2be",
    "train_sync/smooth/seed0": "5b3ee2c990076c87",
    "train_sync/smooth/seed1": "b9150c9077f36502",
    "val_sync/noise": "d879c167908be2a0",
    "val_sync/smooth": "771cd4e663254de4",
    "bicubic/up": "3f7161629936aef4",
    "bicubic/down": "b19eb572e96f9b2c",
    "bilinear/up": "4a62374f8517b1b5",
    "bilinear/down": "07b729a316ed5245",
    "nearest/mask_up": "fc554628b9db4f72",
    "nearest/mask_down": "34061cdd7ff24e2a",
    "fewshot_bilinear/smooth": "c641a2a7f12b9e7c",
    "jpeg/encode_q90": "7476d9579f21e64f",
    "jpeg/decode_rgb": "2cac59d4366dc60c",
}


def pillow_version():
    return tuple(int(part) for part in re.findall(r"\d+", Image.__version__)[:3])


def pinned(requirements, package):
    """Returns: the ``package==X`` version pinned in ``requirements`` (a file of the repo root)."""
    with open(os.path.join(REPO, requirements), encoding="utf-8") as handle:
        for line in handle:
            name, _, version = line.strip().partition("==")
            if name.lower() == package:
                return version
    raise AssertionError(f"{requirements} does not pin {package}")


def pictures():
    """The inputs: a noise picture, a smooth one (bicubic overshoot and rounding show on both) and a mask, with odd
    sizes so every resize has fractional scales. Returns: ``{name: PIL image}``."""
    rng = np.random.RandomState(0)
    height, width = 97, 131
    smooth = np.cumsum(rng.randint(-9, 10, (height, width, 3)), axis=1) + 128
    return {
        "noise": Image.fromarray(rng.randint(0, 256, (height, width, 3), dtype=np.uint8)),
        "smooth": Image.fromarray(np.clip(smooth, 0, 255).astype(np.uint8)),
        "mask": Image.fromarray(rng.randint(0, 151, (height, width), dtype=np.uint8)),
    }


def outputs():
    """Every case's output as a uint8 (or float32) array. Returns: ``{case: array}`` with the keys of
    :data:`PILLOW_9_5_DIGESTS`."""
    inputs = pictures()
    mask = inputs["mask"]
    out = {}
    for name in ("noise", "smooth"):
        for seed in (0, 1):  # seed 0: long side 167, no flip; seed 1: long side 76, flipped and padded
            image, crop = train_sync_transform(inputs[name], mask, 120, 96, random.Random(seed))
            out[f"train_sync/{name}/seed{seed}"] = np.concatenate([np.asarray(image).ravel(), np.asarray(crop).ravel()])
        image, crop = val_sync_transform(inputs[name], mask, 64)
        out[f"val_sync/{name}"] = np.concatenate([np.asarray(image).ravel(), np.asarray(crop).ravel()])
    smooth = inputs["smooth"]
    for method, resample in (("bicubic", Image.BICUBIC), ("bilinear", Image.BILINEAR)):
        out[f"{method}/up"] = np.asarray(smooth.resize((200, 150), resample))
        out[f"{method}/down"] = np.asarray(smooth.resize((45, 33), resample))
    out["nearest/mask_up"] = np.asarray(mask.resize((200, 150), Image.NEAREST))
    out["nearest/mask_down"] = np.asarray(mask.resize((45, 33), Image.NEAREST))
    out["fewshot_bilinear/smooth"] = resize_normalise(smooth, 80)
    encoded = io.BytesIO()
    smooth.save(encoded, "JPEG", quality=90)
    out["jpeg/encode_q90"] = np.frombuffer(encoded.getvalue(), np.uint8)
    out["jpeg/decode_rgb"] = np.asarray(Image.open(io.BytesIO(encoded.getvalue())).convert("RGB"))
    return out


def digest(array):
    return hashlib.sha256(np.ascontiguousarray(array).tobytes()).hexdigest()[:16]


def test_this_stack_has_its_pinned_pillow():
    requirements = "requirements.txt" if STACK == "current" else "requirements-legacy.txt"
    assert Image.__version__ == pinned(requirements, "pillow")
    if STACK == "current":
        assert pillow_version() >= PILLOW_FIXED, Image.__version__


def test_mindspore_imports_with_this_pillow():
    import mindspore
    from mindspore.dataset.vision import utils

    assert mindspore.__version__
    if pillow_version() >= (10,) and mindspore.__version__.startswith("2.0."):
        # the legacy venv's start-up import put back the names MindSpore 2.0 reads, with Pillow 9.5's values
        assert (utils.ANTIALIAS, utils.LINEAR, utils.CUBIC) == (
            Image.Resampling.LANCZOS, Image.Resampling.BILINEAR, Image.Resampling.BICUBIC)


def test_pillow_aliases_install_into_a_site_folder(tmp_path):
    pth = pillow_aliases.install(str(tmp_path))
    with open(pth, encoding="utf-8") as handle:
        assert handle.read() == "import lseg_pillow_aliases\n"
    # -S: none of the venv's own .pth files run (the legacy venv already has this one), only the folder's; Pillow is
    # found through the venv's site-packages put on the path first.
    probe = ("import site, sys; sys.path.append(sys.argv[2]); site.addsitedir(sys.argv[1]); from PIL import Image; "
             "print([int(getattr(Image, n, -1)) for n in ('ANTIALIAS', 'LINEAR', 'CUBIC')])")
    result = subprocess.run([sys.executable, "-S", "-c", probe, str(tmp_path), sysconfig.get_paths()["purelib"]],
                            capture_output=True, text=True, timeout=120,
                            env={k: v for k, v in os.environ.items() if k != "PYTHONPATH"})
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout) == [int(Image.Resampling.LANCZOS), int(Image.Resampling.BILINEAR),
                                         int(Image.Resampling.BICUBIC)]


def test_add_aliases_adds_only_missing_names():
    saved = {name: getattr(Image, name) for name in pillow_aliases.ALIASES if hasattr(Image, name)}
    try:
        for name in pillow_aliases.ALIASES:
            if hasattr(Image, name):
                delattr(Image, name)
        Image.CUBIC = "Pillow's own"
        assert pillow_aliases.add_aliases() == ["ANTIALIAS", "LINEAR"]
        assert (Image.ANTIALIAS, Image.LINEAR, Image.CUBIC) == (
            Image.Resampling.LANCZOS, Image.Resampling.BILINEAR, "Pillow's own")
        assert pillow_aliases.add_aliases() == []
    finally:
        for name in pillow_aliases.ALIASES:
            if hasattr(Image, name):
                delattr(Image, name)
        for name, value in saved.items():
            setattr(Image, name, value)


def test_resizes_give_the_pixels_of_pillow_9_5():
    got = {case: digest(array) for case, array in outputs().items()}
    assert got.keys() == PILLOW_9_5_DIGESTS.keys()
    differing = {case: value for case, value in got.items() if value != PILLOW_9_5_DIGESTS[case]}
    assert not differing, f"Pillow {Image.__version__} differs from 9.5.0 in {sorted(differing)}"


@pytest.mark.skipif(not os.path.exists(OTHER_PYTHON),
                    reason=f"no {OTHER_STACK}-stack venv at {OTHER_PYTHON} (LSEG_STACK=both bash run_tests.sh)")
def test_resizes_give_the_same_pixels_on_the_other_stack(tmp_path):
    path = tmp_path / "other.npz"
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "LSEG_NN")}
    result = subprocess.run([OTHER_PYTHON, os.path.abspath(__file__), str(path)], cwd=REPO, env=env,
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    other = np.load(path)
    mine = outputs()
    assert sorted(other.files) == sorted(mine)
    for case, array in mine.items():
        difference = np.abs(other[case].astype(np.float64) - array.astype(np.float64))
        assert other[case].shape == array.shape and difference.max() == 0, (
            f"{case}: Pillow {Image.__version__} vs the {OTHER_STACK} stack's: {np.count_nonzero(difference)} "
            f"values differ, by at most {difference.max()}")


if __name__ == "__main__":  # the other stack's side of the cross-stack test
    np.savez(sys.argv[1], **outputs())
