"""LSegNet vs the official PyTorch LSeg network on shared random weights (the product's acceptance criterion).

Fixtures (tests/fixtures/modules/make_parity_fixtures.py) were produced by lang-seg's own lseg_net/lseg_blocks/
lseg_vit code with timm and an OpenAI-layout CLIP on a tiny ViT-L/16-shaped configuration, saved with real
torch.save as Lightning checkpoints in float16. Here they are converted torch-free with ``modules.convert`` and the
logits must agree to max |d| <= 1e-4 * max |logits|.
"""
import os
import sys

import mindspore as ms
import numpy as np
import pytest

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "fixtures", "modules"))
from support import load_parity, write_full_official_checkpoint  # noqa: E402

pytestmark = pytest.mark.both_stacks

ARRAYS, META = load_parity()
# (arch, case) pairs stored in the fixture: case "a" = batch of 2 at 64x64 with the construction labels,
# case "b" = one 96x64 image with per-call (zero-shot) labels.
CASES = [(int(key[4]), key[-1]) for key in ARRAYS if key.startswith("arch")]


def assert_parity(ours, reference, what):
    assert ours.shape == reference.shape, f"{what}: shape {ours.shape} vs official {reference.shape}"
    tolerance = 1e-4 * np.abs(reference).max()
    error = np.abs(ours - reference).max()
    assert error <= tolerance, f"{what}: max |d| {error:.3g} > 1e-4 * max|logits| = {tolerance:.3g}"


@pytest.fixture(scope="module")
def converted(tmp_path_factory):
    """arch -> LSegNet built from our checkpoint converted from the official one by the CLI."""
    from modules.convert import main
    from modules.factory import load_lseg
    folder = tmp_path_factory.mktemp("parity")
    nets = {}
    for arch in sorted({arch for arch, _ in CASES}):
        src, dst = str(folder / f"official{arch}.ckpt"), str(folder / f"ours{arch}.ckpt")
        write_full_official_checkpoint(arch, src)
        assert main([src, dst]) == 0
        net = load_lseg(dst, labels=META["labels_a"]).network
        net.set_train(False)
        nets[arch] = net
    return nets


@pytest.mark.parametrize("arch,case", CASES)
def test_logits_match_official_network_end_to_end(converted, arch, case):
    net = converted[arch]
    assert net.build_options()["arch_option"] == arch
    assert net.block_depth == META["archs"][str(arch)]["block_depth"]
    images = ms.Tensor(ARRAYS[f"images_{case}"])
    logits = net(images) if case == "a" else net(images, net.text_features(META["labels_b"]))
    assert_parity(logits.asnumpy(), ARRAYS[f"arch{arch}_logits_{case}"], f"arch {arch} case {case}")


def test_text_features_match_official_clip(converted):
    net = converted[0]
    for case in ("a", "b"):
        reference = ARRAYS[f"text_features_{case}"]
        ours = net.encode_text(META[f"labels_{case}"]).asnumpy()
        np.testing.assert_allclose(ours, reference, rtol=0, atol=1e-5 * np.abs(reference).max())


@pytest.mark.parametrize("arch,case", CASES)
def test_image_path_matches_given_official_text_features(converted, arch, case):
    """Isolates the image side: the official text features are fed directly."""
    net = converted[arch]
    logits = net(ms.Tensor(ARRAYS[f"images_{case}"]), ms.Tensor(ARRAYS[f"text_features_{case}"]))
    assert_parity(logits.asnumpy(), ARRAYS[f"arch{arch}_logits_{case}"], f"arch {arch} case {case}")


def test_parity_is_sensitive_to_the_weights(converted):
    """Guard against a vacuous comparison: perturbing one fusion weight must break parity."""
    net = converted[0]
    param = [p for p in net.get_parameters() if p.name == "scratch.refinenet1.out_conv.weight"][0]
    original = param.asnumpy().copy()
    try:
        param.set_data(ms.Tensor(original * 1.5))
        logits = net(ms.Tensor(ARRAYS["images_a"])).asnumpy()
        reference = ARRAYS["arch0_logits_a"]
        assert np.abs(logits - reference).max() > 1e-4 * np.abs(reference).max()
    finally:
        param.set_data(ms.Tensor(original))


def test_test_py_loads_the_official_checkpoint_directly_with_parity(tmp_path):
    """``test.py --weights <official lang-seg .ckpt>``: converted on the fly, same logits as the official network."""
    import test as test_script

    src = str(tmp_path / "official0.ckpt")
    write_full_official_checkpoint(0, src)
    args = test_script.parse_test_options(["--weights", src, "--device_target", "CPU", "--mode", "pynative"])
    net, labels, _ = test_script.load_network(args)
    net.set_train(False)
    assert len(labels) == 150
    for case in ("a", "b"):
        logits = net(ms.Tensor(ARRAYS[f"images_{case}"]), net.text_features(META[f"labels_{case}"]))
        assert_parity(logits.asnumpy(), ARRAYS[f"arch0_logits_{case}"], f"test.py path, case {case}")


def test_test_py_segments_an_image_with_official_weights(tmp_path):
    import subprocess
    import sys as _sys

    from PIL import Image

    src = str(tmp_path / "official0.ckpt")
    write_full_official_checkpoint(0, src)
    image = tmp_path / "photo.jpg"
    Image.fromarray((np.random.RandomState(0).rand(70, 90, 3) * 255).astype(np.uint8)).save(image)
    repo = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    result = subprocess.run([_sys.executable, "test.py", "--weights", src, "--image", str(image), "--labels",
                             "cat,grass,sky,other", "--device_target", "CPU", "--mode", "pynative", "--outdir",
                             str(tmp_path / "out")], cwd=repo, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    for kind in ("mask", "overlay", "legend"):
        assert (tmp_path / "out" / f"photo_{kind}.png").is_file()
    assert Image.open(tmp_path / "out" / "photo_mask.png").size == (90, 70)
