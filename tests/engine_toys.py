"""Small msadapter network and in-memory data used by the engine tests (not a test module itself)."""
import numpy as np
import msadapter.pytorch.nn as tnn

NCLASS = 3


class ToySegNet(tnn.Module):
    """conv3x3 → BN → ReLU → conv1x1 to NCLASS logits; split into 'backbone' and 'head' like LSeg."""

    def __init__(self, width: int = 8):
        super().__init__()
        self.conv1 = tnn.Conv2d(3, width, 3, padding=1)
        self.bn1 = tnn.BatchNorm2d(width)
        self.head = tnn.Conv2d(width, NCLASS, 1)

    def forward(self, images):
        return self.head(tnn.functional.relu(self.bn1(self.conv1(images))))

    def backbone_params(self):
        return list(self.conv1.parameters()) + list(self.bn1.parameters())

    def head_params(self):
        return list(self.head.parameters())


class ToySegData:
    """Images whose per-pixel class is the brightest of three colour channels; a few pixels ignored (-1)."""

    def __init__(self, n: int, size: int = 16, seed: int = 0, nan_at: int = None):
        rng = np.random.RandomState(seed)
        self.images = rng.rand(n, 3, size, size).astype(np.float32)
        self.masks = self.images.argmax(axis=1).astype(np.int32)
        self.masks[:, 0, :3] = -1
        self.nan_at = nan_at

    def __len__(self):
        return len(self.images)

    def __getitem__(self, index):
        image = self.images[index].copy()
        if self.nan_at is not None and index == self.nan_at:
            image[:] = np.nan
        return image, self.masks[index]
