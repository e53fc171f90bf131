"""Backbone architectures as data: one small frozen record per LSeg backbone.

Everything that differs between the official backbones (ViT size, which blocks are tapped, the width
and resampling of each reassembly level) lives here, so the layer code has no backbone if-chains.
"""
from dataclasses import dataclass
from typing import Dict, Optional, Tuple


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

    def __post_init__(self):
        if len(self.hooks) != 4 or len(self.level_widths) != 4 or len(self.level_resample) != 4:
            raise ValueError(f"backbone {self.name!r}: hooks, level_widths and level_resample need 4 entries")
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


BACKBONES: Dict[str, BackboneConfig] = {
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
}


def get_backbone_config(backbone) -> BackboneConfig:
    """Resolve a backbone name or config.

    Args:
        backbone: a key of :data:`BACKBONES` or a :class:`BackboneConfig`.

    Returns:
        the BackboneConfig.

    Raises:
        KeyError: for an unknown name (the message lists the known ones).
    """
    if isinstance(backbone, BackboneConfig):
        return backbone
    if backbone not in BACKBONES:
        raise KeyError(f"unknown backbone {backbone!r}; known: {sorted(BACKBONES)}")
    return BACKBONES[backbone]
