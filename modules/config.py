"""Backbone architectures as data: one small frozen record per LSeg backbone.

Everything that differs between the official backbones (ViT size, which blocks are tapped, the width
and resampling of each reassembly level; the ResNet of the zero-shot ``LSegRNNetZS``: stem width, planes and block
counts per stage) lives here, so the layer code has no backbone if-chains. Two kinds: :class:`BackboneConfig`
(a timm ViT + DPT reassembly) and :class:`ResNetConfig` (a torchvision Bottleneck ResNet whose four stages are the
four levels); both name the input normalisation their weights were trained with.
"""
from dataclasses import dataclass
from typing import Dict, Optional, Tuple, Union

from foundation.images import NORMALISATIONS

# Input normalisation of each backbone kind: a key of foundation.images.NORMALISATIONS (which holds the mean/std).
NORMALISATION_NAMES = tuple(NORMALISATIONS)


class ArgumentError(ValueError):
    """A bad argument value; ``argument`` names it and :meth:`describe` puts a caller's spelling in front.

    Defined here, below every module of the package, so that the network itself can raise it; it is public as
    ``modules.factory.ArgumentError``.

    Args:
        argument: the argument's name (``"backbone"``).
        detail: what is wrong, without the name.
    """

    def __init__(self, argument: str, detail: str):
        super().__init__(f"{argument}: {detail}")
        self.argument, self.detail = argument, detail

    def describe(self, flag: str) -> str:
        """Args: flag: how the caller spells the argument (``"--backbone"``). Returns: the one-line message."""
        return f"{flag}: {self.detail}"


def _check_common(name: str, normalisation: str, **per_level: Tuple) -> None:
    """The checks both backbone kinds share: a known normalisation, and four entries (one per level) in each of
    ``per_level``."""
    if normalisation not in NORMALISATION_NAMES:
        raise ValueError(f"backbone {name!r}: normalisation must be one of {NORMALISATION_NAMES}, "
                         f"got {normalisation!r}")
    if any(len(values) != 4 for values in per_level.values()):
        raise ValueError(f"backbone {name!r}: {', '.join(per_level)} need 4 entries (one per level), got "
                         + ", ".join(str(tuple(values)) for values in per_level.values()))


@dataclass(frozen=True)
class LevelResample:
    """How one reassembly level changes the token-grid resolution after its 1x1 projection.

    Attributes:
        kind: ``"none"`` (keep the grid), ``"up"`` (ConvTranspose2d, kernel = stride = ``factor``) or
            ``"down"`` (Conv2d 3x3, stride ``factor``, padding 1).
        factor: the up/down sampling factor (1 for ``"none"``).
    """
    kind: str
    factor: int = 1

    def __post_init__(self):
        if self.kind not in ("none", "up", "down"):
            raise ValueError(f"LevelResample.kind must be 'none', 'up' or 'down', got {self.kind!r}")
        if self.kind == "none" and self.factor != 1:
            raise ValueError(f"LevelResample kind 'none' needs factor 1, got {self.factor}")
        if self.kind != "none" and self.factor < 2:
            raise ValueError(f"LevelResample kind {self.kind!r} needs factor >= 2, got {self.factor}")


NO_RESAMPLE = LevelResample("none")


def upsample(factor: int) -> LevelResample:
    """Args: factor (int). Returns: a LevelResample doing ConvTranspose2d(k=s=factor)."""
    return LevelResample("up", factor)


def downsample(factor: int) -> LevelResample:
    """Args: factor (int). Returns: a LevelResample doing Conv2d(3x3, stride=factor, padding=1)."""
    return LevelResample("down", factor)


@dataclass(frozen=True)
class BackboneConfig:
    """One LSeg image backbone: a timm-style ViT plus the DPT reassembly that taps it.

    Attributes:
        name: key in :data:`BACKBONES`.
        image_size: square image size the position embedding was trained for (grid = image_size / patch_size).
        patch_size: ViT patch size in pixels.
        width: ViT token width C.
        depth: number of transformer blocks built (blocks after ``hooks[-1]`` never affect the output
            but exist so that checkpoints load strictly).
        heads: attention heads.
        mlp_ratio: MLP hidden width / C.
        hooks: 0-based indices of the four blocks whose outputs feed the four reassembly levels.
        level_widths: channel width of each reassembly level (after its 1x1 conv).
        level_resample: per level, how the (H/p, W/p) token map is resampled; after this every level
            has resolution (H/4, W/4), (H/8, W/8), (H/16, W/16), (H/32, W/32).
        features: fusion ("scratch") width.
        out_dim: pixel-embedding width = text-embedding width of the paired CLIP text tower.
        timm_name: the timm model name whose ImageNet weights initialise the ViT.
        normalisation: input normalisation, a key of :data:`NORMALISATION_NAMES` (``"vit"``: mean = std = 0.5).
    """
    name: str
    image_size: int
    patch_size: int
    width: int
    depth: int
    heads: int
    hooks: Tuple[int, int, int, int]
    level_widths: Tuple[int, int, int, int]
    level_resample: Tuple[LevelResample, LevelResample, LevelResample, LevelResample]
    features: int = 256
    out_dim: int = 512
    mlp_ratio: float = 4.0
    timm_name: Optional[str] = None
    normalisation: str = "vit"

    def __post_init__(self):
        _check_common(self.name, self.normalisation, hooks=self.hooks, level_widths=self.level_widths,
                      level_resample=self.level_resample)
        if any(b <= a for a, b in zip(self.hooks, self.hooks[1:])) or self.hooks[-1] >= self.depth or self.hooks[0] < 0:
            raise ValueError(f"backbone {self.name!r}: hooks {self.hooks} must be strictly increasing block indices "
                             f"< depth {self.depth}")
        if self.width % self.heads:
            raise ValueError(f"backbone {self.name!r}: width {self.width} not divisible by heads {self.heads}")
        if self.image_size % self.patch_size:
            raise ValueError(f"backbone {self.name!r}: image_size {self.image_size} not a multiple of "
                             f"patch_size {self.patch_size}")
        # Each level must land on stride 4, 8, 16, 32 so the fusion blocks' x2 upsampling lines up.
        for level, (resample, stride) in enumerate(zip(self.level_resample, (4, 8, 16, 32)), start=1):
            if resample.kind == "up":
                got = self.patch_size // resample.factor
            elif resample.kind == "down":
                got = self.patch_size * resample.factor
            else:
                got = self.patch_size
            if got != stride:
                raise ValueError(f"backbone {self.name!r}: level {level} ends at stride {got}, needs {stride}")

    @property
    def grid_size(self) -> int:
        """Returns: side of the trained position-embedding grid (image_size // patch_size)."""
        return self.image_size // self.patch_size


@dataclass(frozen=True)
class ResNetConfig:
    """A torchvision Bottleneck ResNet (v1.5) as the image backbone of the zero-shot ``LSegRNNetZS``.

    The official network taps ``layer1`` (stem + stage 1), ``layer2``, ``layer3``, ``layer4`` at strides 4, 8, 16,
    32 (lang-seg ``lseg_blocks_zs._make_resnet_backbone``); the level widths are the stages' outputs.

    Attributes:
        name: key in :data:`BACKBONES`.
        stem_width: channels of the 7x7 stride-2 stem conv (64 in torchvision).
        planes: per-stage bottleneck width (the 1x1 -> 3x3 width); a stage outputs ``planes * expansion``.
        blocks: Bottleneck blocks per stage (ResNet-101: 3, 4, 23, 3).
        features: fusion ("scratch") width.
        out_dim: pixel-embedding width = text-embedding width of the paired CLIP text tower.
        expansion: Bottleneck output / planes (4 in torchvision).
        torchvision_name: the torchvision model whose ImageNet weights initialise the ResNet.
        normalisation: input normalisation, a key of :data:`NORMALISATION_NAMES` (``"imagenet"``).
    """
    name: str
    stem_width: int
    planes: Tuple[int, int, int, int]
    blocks: Tuple[int, int, int, int]
    expansion: int = 4
    torchvision_name: Optional[str] = None
    normalisation: str = "imagenet"
    features: int = 256
    out_dim: int = 512

    def __post_init__(self):
        _check_common(self.name, self.normalisation, planes=self.planes, blocks=self.blocks)
        counts = (self.stem_width, *self.planes, *self.blocks, self.features, self.out_dim, self.expansion)
        if any(not isinstance(count, int) or count < 1 for count in counts):
            raise ValueError(f"backbone {self.name!r}: stem_width, planes, blocks, features, out_dim and expansion "
                             f"must be positive integers, got {counts}")

    @property
    def level_widths(self) -> Tuple[int, int, int, int]:
        """Returns: channels of the four stage outputs (planes * expansion), the inputs of ``scratch.layer*_rn``."""
        return tuple(planes * self.expansion for planes in self.planes)


AnyBackboneConfig = Union[BackboneConfig, ResNetConfig]

BACKBONES: Dict[str, AnyBackboneConfig] = {
    # Official LSeg default: timm vit_large_patch16_384 + CLIP ViT-B/32 text tower.
    "clip_vitl16_384": BackboneConfig(
        name="clip_vitl16_384", image_size=384, patch_size=16, width=1024, depth=24, heads=16,
        hooks=(5, 11, 17, 23), level_widths=(256, 512, 1024, 1024),
        level_resample=(upsample(4), upsample(2), NO_RESAMPLE, downsample(2)),
        timm_name="vit_large_patch16_384",
    ),
    "clip_vitb32_384": BackboneConfig(
        name="clip_vitb32_384", image_size=384, patch_size=32, width=768, depth=12, heads=12,
        hooks=(2, 5, 8, 11), level_widths=(96, 192, 384, 768),
        level_resample=(upsample(8), upsample(4), upsample(2), NO_RESAMPLE),
        timm_name="vit_base_patch32_384",
    ),
    # Tiny stand-in for tests and the quick start (ViT-L/16 layout, ~180k parameters so official-format fixtures
    # stay small); out_dim matches clip_ms's "tiny" text config (embed_dim 64).
    "tiny_vit16": BackboneConfig(
        name="tiny_vit16", image_size=64, patch_size=16, width=32, depth=4, heads=2,
        hooks=(0, 1, 2, 3), level_widths=(8, 16, 32, 32),
        level_resample=(upsample(4), upsample(2), NO_RESAMPLE, downsample(2)),
        features=16, out_dim=64,
    ),
    # Official zero-shot LSegRNNetZS: torchvision's ImageNet resnet101 + CLIP ViT-B/32 text tower (not CLIP's RN101).
    "clip_resnet101": ResNetConfig(
        name="clip_resnet101", stem_width=64, planes=(64, 128, 256, 512), blocks=(3, 4, 23, 3),
        torchvision_name="resnet101",
    ),
    # Tiny stand-in for tests (the ResNet-101 layout at small widths); out_dim = clip_ms "tiny" embed_dim.
    "tiny_resnet": ResNetConfig(
        name="tiny_resnet", stem_width=8, planes=(4, 8, 16, 32), blocks=(1, 2, 1, 1), features=16, out_dim=64,
    ),
}


def get_backbone_config(backbone) -> AnyBackboneConfig:
    """Resolve a backbone name or config.

    Args:
        backbone: a key of :data:`BACKBONES`, a :class:`BackboneConfig` or a :class:`ResNetConfig`.

    Returns:
        the config.

    Raises:
        KeyError: for an unknown name (the message lists the known ones).
    """
    if isinstance(backbone, (BackboneConfig, ResNetConfig)):
        return backbone
    if backbone not in BACKBONES:
        raise KeyError(f"unknown backbone {backbone!r}; known: {sorted(BACKBONES)}")
    return BACKBONES[backbone]
