"""DPT fusion ("scratch" refinenets) as used by LSeg: residual conv units with BatchNorm and fusion blocks."""
from modules import tnn


class ResidualConvUnit(tnn.Module):
    """ReLU -> 3x3 conv (no bias) -> BN -> ReLU -> 3x3 conv (no bias) -> BN, plus the input.

    Official ``ResidualConvUnit_custom`` with ``bn=True`` (LSegNet always uses BN); the ReLU is not
    in-place, so the skip connection adds the un-activated input.

    Args:
        features: channel count (in = out).
    """

    def __init__(self, features: int):
        super().__init__()
        self.conv1 = tnn.Conv2d(features, features, kernel_size=3, stride=1, padding=1, bias=False)
        self.bn1 = tnn.BatchNorm2d(features)
        self.conv2 = tnn.Conv2d(features, features, kernel_size=3, stride=1, padding=1, bias=False)
        self.bn2 = tnn.BatchNorm2d(features)

    def forward(self, x):
        """Args: x (B, F, h, w). Returns: (B, F, h, w)."""
        out = self.bn1(self.conv1(tnn.relu(x)))
        out = self.bn2(self.conv2(tnn.relu(out)))
        return out + x


class FeatureFusionBlock(tnn.Module):
    """One DPT fusion block: [path + unit1(skip)] -> unit2 -> bilinear x2 (align_corners=True) -> 1x1 conv.

    The deepest block (``refinenet4``) gets no skip input but still owns ``resConfUnit1`` (unused), as
    in the official network, so that its checkpoint loads strictly.

    Args:
        features: channel count.
    """

    def __init__(self, features: int):
        super().__init__()
        self.resConfUnit1 = ResidualConvUnit(features)
        self.resConfUnit2 = ResidualConvUnit(features)
        self.out_conv = tnn.Conv2d(features, features, kernel_size=1, stride=1, padding=0, bias=True)

    def forward(self, path, skip=None):
        """Args: path (B, F, h, w); skip None or (B, F, h, w).

        Returns: (B, F, 2h, 2w).
        """
        if skip is not None:
            path = path + self.resConfUnit1(skip)
        path = self.resConfUnit2(path)
        path = tnn.interpolate(path, scale_factor=2, mode="bilinear", align_corners=True)
        return self.out_conv(path)
