"""Full-size LSegNet (ViT-L/16 + CLIP ViT-B/32 text tower, 150 ADE20K labels) at 480x480 on CPU. Slow: minutes."""
import mindspore as ms
import numpy as np
import pytest

pytestmark = [pytest.mark.slow, pytest.mark.both_stacks]


def test_real_vitl16_lsegnet_at_480():
    from modules import LSegNet
    net = LSegNet("clip_vitl16_384")
    net.set_train(False)
    counts = {}
    for name, param in net.parameters_and_names():
        group = name.split(".")[0]
        counts[group] = counts.get(group, 0) + int(np.prod(param.shape))
    # timm vit_large_patch16_384 (304.7M incl. its 1000-class head) + reassembly; CLIP ViT-B/32 text tower 63.4M.
    assert 320e6 < counts["pretrained"] < 340e6, counts
    assert 63e6 < counts["clip_pretrained"] < 64e6, counts
    x = ms.Tensor(np.random.RandomState(0).randn(1, 3, 480, 480).astype(np.float32))
    logits = net(x).asnumpy()
    assert logits.shape == (1, 150, 480, 480)
    assert np.isfinite(logits).all() and np.abs(logits).max() <= 14.3
    embeddings = net.pixel_embeddings(x).asnumpy()
    assert embeddings.shape == (1, 512, 240, 240)
    np.testing.assert_allclose(np.linalg.norm(embeddings[0, :, ::40, ::40], axis=0), 1.0, atol=1e-4)
    non_square = net(ms.Tensor(np.zeros((1, 3, 320, 480), np.float32)))
    assert non_square.shape == (1, 150, 320, 480)
