"""The image backbone of the zero-shot ``LSegRNNetZS``: torchvision's Bottleneck ResNet (v1.5) in :mod:`modules.tnn`.

The official network (lang-seg ``lseg_blocks_zs._make_resnet_backbone``) wraps torchvision's ImageNet ``resnet101``
as ``pretrained.layer1 = Sequential(conv1, bn1, relu, maxpool, layer1)`` and ``pretrained.layer2..4``; the four
stage outputs (strides 4, 8, 16, 32) are the four levels the shared ``Scratch`` fuses. Written with ``modules.tnn``
layers so parameter names are torchvision's (``conv1.weight``, ``bn1.running_var``, ``downsample.0/1``) and BatchNorm
has torch's semantics on both stacks (eps 1e-5, momentum 0.1, unbiased running variance: ``tnn.BatchNorm2d``).

Why not MindCV's ``resnet101`` (mindcv 0.3.0, inspected): its parameters are named ``gamma``/``beta``/
``moving_mean``/``moving_variance`` and ``down_sample``, and it uses MindSpore's ``nn.BatchNorm2d`` (biased running
variance on 2.0 CPU, the trap ``tnn.BatchNorm2d`` fixes), so it would need a rename table and train BN differently.
"""
from typing import List, Tuple

from modules import tnn

from .backbone import check_image_size
from .config import ResNetConfig

STAGE_STRIDES = (1, 2, 2, 2)  # torchvision: layer1 keeps the stem's stride 4, layer2..4 halve the map


class Bottleneck(tnn.Module):
    """torchvision ``Bottleneck`` (v1.5: the stride sits on the 3x3 conv), groups 1, base width 64.

    1x1 conv -> BN -> ReLU -> 3x3 conv (stride) -> BN -> ReLU -> 1x1 conv -> BN, plus the identity (or
    ``downsample(x)``), then ReLU.

    Args:
        in_channels: input channels.
        planes: bottleneck width; output channels are ``planes * expansion``.
        stride: stride of the 3x3 conv (and of the downsample).
        expansion: output / planes (4).
    """

    def __init__(self, in_channels: int, planes: int, stride: int = 1, expansion: int = 4):
        super().__init__()
        out_channels = planes * expansion
        self.conv1 = tnn.Conv2d(in_channels, planes, kernel_size=1, bias=False)
        self.bn1 = tnn.BatchNorm2d(planes)
        self.conv2 = tnn.Conv2d(planes, planes, kernel_size=3, stride=stride, padding=1, bias=False)
        self.bn2 = tnn.BatchNorm2d(planes)
        self.conv3 = tnn.Conv2d(planes, out_channels, kernel_size=1, bias=False)
        self.bn3 = tnn.BatchNorm2d(out_channels)
        if stride != 1 or in_channels != out_channels:
            self.downsample = tnn.Sequential(
                tnn.Conv2d(in_channels, out_channels, kernel_size=1, stride=stride, bias=False),
                tnn.BatchNorm2d(out_channels))
        else:
            self.downsample = None

    def forward(self, x):
        """Args: x (B, in_channels, h, w). Returns: (B, planes * expansion, h / stride, w / stride)."""
        out = tnn.relu(self.bn1(self.conv1(x)))
        out = tnn.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        identity = x if self.downsample is None else self.downsample(x)
        return tnn.relu(out + identity)


def make_stage(in_channels: int, planes: int, blocks: int, stride: int, expansion: int) -> tnn.Sequential:
    """One torchvision ``layerN``: ``blocks`` Bottlenecks, the first one striding and projecting.

    Args:
        in_channels: channels entering the stage.
        planes, blocks, stride, expansion: the stage's Bottleneck width, count, first stride, expansion.

    Returns:
        Sequential of Bottlenecks named ``0``, ``1``, ... (B, in, h, w) -> (B, planes * expansion, h/s, w/s).
    """
    layers: List[Bottleneck] = [Bottleneck(in_channels, planes, stride, expansion)]
    layers += [Bottleneck(planes * expansion, planes, 1, expansion) for _ in range(blocks - 1)]
    return tnn.Sequential(*layers)


class ResNetBackbone(tnn.Module):
    """The official zero-shot ``pretrained`` part: a torchvision-named ResNet cut into its four stages.

    Attributes:
        layer1: Sequential(conv1 7x7/2, bn1, ReLU, maxpool 3x3/2, stage 1) -> parameter names
            ``layer1.0.weight``, ``layer1.1.*``, ``layer1.4.<block>.*``.
        layer2, layer3, layer4: torchvision's stages 2-4 (``layerN.<block>.conv1.weight``, ...).

    Args:
        cfg: :class:`modules.config.ResNetConfig`.
    """

    def __init__(self, cfg: ResNetConfig):
        super().__init__()
        self.cfg = cfg
        widths = cfg.level_widths
        stage_inputs = (cfg.stem_width,) + widths[:3]
        stages = [make_stage(stage_inputs[i], cfg.planes[i], cfg.blocks[i], STAGE_STRIDES[i], cfg.expansion)
                  for i in range(4)]
        self.layer1 = tnn.Sequential(
            tnn.Conv2d(3, cfg.stem_width, kernel_size=7, stride=2, padding=3, bias=False),
            tnn.BatchNorm2d(cfg.stem_width),
            tnn.ReLU(),
            tnn.MaxPool2d(kernel_size=3, stride=2, padding=1),
            stages[0])
        self.layer2, self.layer3, self.layer4 = stages[1:]

    def forward(self, images) -> Tuple:
        """Args: images (B, 3, H, W) ImageNet-normalised, H and W multiples of 32.

        Returns: 4 maps (B, level_widths[0], H/4, W/4), (.., H/8, W/8), (.., H/16, W/16), (.., H/32, W/32).
        """
        check_image_size(images)
        level_1 = self.layer1(images)
        level_2 = self.layer2(level_1)
        level_3 = self.layer3(level_2)
        return level_1, level_2, level_3, self.layer4(level_3)


__all__ = ["Bottleneck", "make_stage", "ResNetBackbone", "STAGE_STRIDES"]
