"""Analytic floating-point operation count of one LSeg forward (case 1), as a function of the configuration.

Conventions: one multiply-add = 2 FLOP; only matrix products and convolutions are counted (patch embedding, ViT
linear layers and attention products, readout projections, reassembly and fusion convolutions, the pixel head, the
pixel-text product and the CLIP text transformer). Element-wise work (LayerNorm, softmax, GELU/ReLU, BatchNorm,
L2 normalisation, bilinear resizing, additions) is left out: it is a few percent of the total and runs far below
the machine's matmul throughput, which is what "achieved GFLOP/s" is compared with.
"""
import dataclasses
from typing import Dict, Tuple


@dataclasses.dataclass(frozen=True)
class TextFlopConfig:
    """The CLIP text transformer as far as its FLOP count is concerned.

    Args:
        width: residual width (512 for CLIP ViT-B/32).
        layers: number of transformer blocks (12).
        context_length: tokens per label; CLIP always runs the full padded context (77).
        embed_dim: output projection width (512).
        mlp_ratio: hidden width of the MLP / width (4).
    """

    width: int = 512
    layers: int = 12
    context_length: int = 77
    embed_dim: int = 512
    mlp_ratio: float = 4.0


@dataclasses.dataclass(frozen=True)
class LSegFlopConfig:
    """The parts of an LSeg network and input that determine its FLOP count.

    Args:
        image_hw: input height and width in pixels (multiples of 32).
        patch_size: ViT patch size (16 or 32).
        vit_width: ViT token width (1024 for ViT-L).
        vit_mlp_ratio: ViT MLP hidden width / width (4).
        hooks: indices of the four blocks whose outputs are reassembled; blocks after the last hook are not run.
        reassemble_channels: widths of the four reassembly levels (256, 512, 1024, 1024 for ViT-L).
        features: fusion width (256).
        embed_dim: pixel/text embedding width (512).
        n_labels: number of labels the pixels are compared with.
        readout: "project" (Linear 2C->C per level), or "ignore"/"add" (no matmul).
        spatial_blocks: depth of the spatial regularisation block (0 for arch_option 0); each is a 3x3 single-channel
            conv applied to every label map at H/2 x W/2.
        text: the text encoder, or None when the text features come from the cache.
    """

    image_hw: Tuple[int, int] = (480, 480)
    patch_size: int = 16
    vit_width: int = 1024
    vit_mlp_ratio: float = 4.0
    hooks: Tuple[int, int, int, int] = (5, 11, 17, 23)
    reassemble_channels: Tuple[int, int, int, int] = (256, 512, 1024, 1024)
    features: int = 256
    embed_dim: int = 512
    n_labels: int = 150
    readout: str = "project"
    spatial_blocks: int = 0
    text: "TextFlopConfig | None" = TextFlopConfig()


# The official backbones (isl-org/lang-seg lseg_vit.py / lseg_blocks.py), at 480x480 with the 150 ADE20K labels.
VITL16_480 = LSegFlopConfig()
VITB32_480 = LSegFlopConfig(patch_size=32, vit_width=768, hooks=(2, 5, 8, 11), reassemble_channels=(96, 192, 384, 768))


def _conv(out_h: int, out_w: int, c_in: int, c_out: int, kernel: int) -> int:
    """FLOP of a dense convolution producing an out_h x out_w x c_out map (2 per multiply-add)."""
    return 2 * out_h * out_w * c_out * c_in * kernel * kernel


def _strided_out(size: int, kernel: int = 3, stride: int = 2, padding: int = 1) -> int:
    return (size + 2 * padding - kernel) // stride + 1


def text_encoder_flops(text: TextFlopConfig, n_labels: int) -> int:
    """FLOP of encoding ``n_labels`` labels with the CLIP text transformer.

    Args:
        text: the text transformer's configuration.
        n_labels: labels encoded (one sequence of ``context_length`` tokens each).

    Returns:
        FLOP (int). Per layer and sequence: QKV + output projection 4 L w^2 multiply-adds, MLP 2 r L w^2, attention
        products 2 L^2 w; plus the final projection of the end-of-text token (w x embed_dim).
    """
    L, w = text.context_length, text.width
    per_layer = 2 * (4 * L * w * w + 2 * text.mlp_ratio * L * w * w + 2 * L * L * w)
    per_label = text.layers * per_layer + 2 * w * text.embed_dim
    return int(round(n_labels * per_label))


def lseg_forward_flops(cfg: LSegFlopConfig) -> Dict[str, int]:
    """FLOP of one LSeg forward of a single image, by stage.

    Args:
        cfg: the network and input configuration.

    Returns:
        dict of FLOP (int) with keys ``patch_embed``, ``vit_blocks``, ``readout``, ``reassemble``, ``fusion``,
        ``head`` (1x1 conv to the embedding width), ``pixel_text`` (similarity product), ``spatial_blocks``,
        ``text_encoder`` (0 when ``cfg.text`` is None), ``image_total`` (everything but the text encoder) and
        ``total``.

    Raises:
        ValueError: if the image size is not a multiple of 32 or a reassembly level would need an unsupported
            resampling (the official networks only down-sample the deepest level by 2).
    """
    H, W = cfg.image_hw
    if H % 32 or W % 32:
        raise ValueError(f"image_hw {cfg.image_hw}: LSeg needs height and width that are multiples of 32")
    p, D = cfg.patch_size, cfg.vit_width
    gh, gw = H // p, W // p
    n_patches = gh * gw
    tokens = n_patches + 1  # plus the class token
    out: Dict[str, int] = {}

    out["patch_embed"] = _conv(gh, gw, 3, D, p)
    n_blocks = max(cfg.hooks) + 1
    per_block = 2 * (4 * tokens * D * D + 2 * cfg.vit_mlp_ratio * tokens * D * D + 2 * tokens * tokens * D)
    out["vit_blocks"] = int(round(n_blocks * per_block))

    out["readout"] = 4 * 2 * n_patches * (2 * D) * D if cfg.readout == "project" else 0

    # Reassembly level i ends at stride 4 * 2**i of the image; the token grid is at stride p.
    reassemble = 0
    level_hw = []
    for i, channels in enumerate(cfg.reassemble_channels):
        stride = 4 * 2**i
        reassemble += _conv(gh, gw, D, channels, 1)
        if p > stride:  # ConvTranspose with kernel = stride = p / stride: every token makes a factor^2 patch
            factor = p // stride
            reassemble += 2 * n_patches * channels * channels * factor * factor
            level_hw.append((gh * factor, gw * factor))
        elif p == stride:
            level_hw.append((gh, gw))
        elif stride == 2 * p:  # 3x3 conv, stride 2, padding 1
            oh, ow = _strided_out(gh), _strided_out(gw)
            reassemble += _conv(oh, ow, channels, channels, 3)
            level_hw.append((oh, ow))
        else:
            raise ValueError(f"patch_size {p}: reassembly level {i + 1} would need stride {stride}, unsupported")
    out["reassemble"] = reassemble

    # Fusion: layerN_rn 3x3 convs, then per level one residual unit (deepest level) or two (others), each with two
    # 3x3 convs, followed by x2 upsampling and a 1x1 out conv at the upsampled size.
    F = cfg.features
    fusion = 0
    for (h, w), channels in zip(level_hw, cfg.reassemble_channels):
        fusion += _conv(h, w, channels, F, 3)
    for i, (h, w) in enumerate(level_hw):
        units = 1 if i == len(level_hw) - 1 else 2
        fusion += units * 2 * _conv(h, w, F, F, 3)
        fusion += _conv(2 * h, 2 * w, F, F, 1)
    out["fusion"] = fusion

    head_h, head_w = 2 * level_hw[0][0], 2 * level_hw[0][1]  # H/2 x W/2
    out["head"] = _conv(head_h, head_w, F, cfg.embed_dim, 1)
    out["pixel_text"] = 2 * head_h * head_w * cfg.embed_dim * cfg.n_labels
    out["spatial_blocks"] = cfg.spatial_blocks * _conv(head_h, head_w, 1, 1, 3) * cfg.n_labels
    out["text_encoder"] = text_encoder_flops(cfg.text, cfg.n_labels) if cfg.text is not None else 0

    out["image_total"] = sum(v for k, v in out.items() if k != "text_encoder")
    out["total"] = out["image_total"] + out["text_encoder"]
    return out


def format_breakdown(cfg: LSegFlopConfig) -> str:
    """Args: cfg. Returns: a Markdown table of :func:`lseg_forward_flops` in GFLOP with each stage's share."""
    counts = lseg_forward_flops(cfg)
    lines = ["| stage | GFLOP | share of total |", "|---|---|---|"]
    for name, value in counts.items():
        if name in ("image_total", "total"):
            continue
        lines.append(f"| {name} | {value / 1e9:.2f} | {100.0 * value / counts['total']:.1f}% |")
    lines.append(f"| image side (all but text) | {counts['image_total'] / 1e9:.2f} | "
                 f"{100.0 * counts['image_total'] / counts['total']:.1f}% |")
    lines.append(f"| **total** | **{counts['total'] / 1e9:.2f}** | 100% |")
    return "\n".join(lines)


if __name__ == "__main__":
    for title, config in (("clip_vitl16_384 at 480x480, 150 labels, 77-token text context", VITL16_480),
                          ("clip_vitb32_384 at 480x480, 150 labels, 77-token text context", VITB32_480)):
        print(f"### {title}\n\n{format_breakdown(config)}\n")
