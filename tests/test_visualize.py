"""encoding_custom.visualisation.render and transforms.read_image: what test.py --image writes and reads."""
import os
import subprocess

import numpy as np
import pytest
from PIL import Image

from encoding_custom.datasets.transforms import image_to_array, read_image, read_rgb
from encoding_custom.visualisation import render as visualize
from encoding_custom.visualisation.render import (
    ADE20K_PALETTE,
    FONT_CANDIDATES,
    colour_mask,
    find_legend_font,
    label_colours,
    legend,
    save_segmentation,
)
from foundation.labels import ade20k_labels

DEJAVU = next((p for p in FONT_CANDIDATES if os.path.basename(p) == "DejaVuSans.ttf" and os.path.isfile(p)), None)


def _lab(rgb):
    from encoding_custom.visualisation.render import _srgb_to_lab
    return _srgb_to_lab(np.asarray(rgb))


def _min_delta_e(colours):
    lab = _lab(colours)
    distance = np.linalg.norm(lab[:, None] - lab[None], axis=2)
    np.fill_diagonal(distance, np.inf)
    return distance.min()


# --- palettes ---------------------------------------------------------------------------------------------------

def test_free_label_palette_is_well_spaced_far_from_black_and_white_and_stable_across_sizes():
    colours = label_colours(150)
    assert len({tuple(c) for c in colours.tolist()}) == 150
    assert _min_delta_e(colours[:8]) > 50 and _min_delta_e(colours) > 15  # measured 64.3 and 17.6 (CIE76)
    black_white = _lab([[0, 0, 0], [255, 255, 255]])
    assert np.linalg.norm(_lab(colours)[:, None] - black_white[None], axis=2).min() > 20
    np.testing.assert_array_equal(label_colours(7), colours[:7])
    np.testing.assert_array_equal(label_colours(3, ["cat", "sky", "other"]), colours[:3])  # not all ADE20K names


def test_ade20k_names_get_the_official_ade20k_palette_by_class():
    names = ade20k_labels()
    assert ADE20K_PALETTE.shape == (150, 3)
    np.testing.assert_array_equal(label_colours(150, names), ADE20K_PALETTE)
    # MMSegmentation ADE20KDataset rows: wall, water (the pair the old palette drew as 128,0,0 / 64,0,0), flag.
    assert ADE20K_PALETTE[0].tolist() == [120, 120, 120] and ADE20K_PALETTE[149].tolist() == [92, 0, 255]
    assert names[21] == "water" and ADE20K_PALETTE[21].tolist() == [61, 230, 250]
    np.testing.assert_array_equal(label_colours(3, ["sky", "wall", "tree"]), ADE20K_PALETTE[[2, 0, 4]])
    with pytest.raises(ValueError, match="2 colours asked for 3 names"):
        label_colours(2, ["sky", "wall", "tree"])


def test_colour_mask_paints_labels_leaves_ignored_pixels_black_and_takes_a_palette():
    labels = np.array([[0, 1], [-1, 2]])
    rgb = np.asarray(colour_mask(labels, 3))
    colours = label_colours(3)
    np.testing.assert_array_equal(rgb[0, 0], colours[0])
    np.testing.assert_array_equal(rgb[1, 1], colours[2])
    np.testing.assert_array_equal(rgb[1, 0], [0, 0, 0])
    ade = label_colours(3, ["wall", "water", "sky"])
    np.testing.assert_array_equal(np.asarray(colour_mask(labels, 3, ade))[0, 1], [61, 230, 250])
    with pytest.raises(ValueError, match="label value 3 >= the 3 labels"):
        colour_mask(np.array([[3]]), 3)


# --- legends ----------------------------------------------------------------------------------------------------

def test_legend_marks_only_labels_missing_from_the_prediction():
    names = ["cat", "grass", "sky"]
    all_found = np.asarray(legend(names))
    assert all_found.shape[0] >= 3 * 20
    assert np.array_equal(all_found, np.asarray(legend(names, present=[0, 1, 2])))
    # "(not found)" after "grass" draws extra text on that row only
    marked = np.asarray(legend(names, present=[0, 2]))
    differs_by_row = np.any(marked != all_found, axis=(1, 2))
    rows = np.nonzero(differs_by_row)[0]
    assert rows.size and 22 <= rows.min() and rows.max() < 44


@pytest.mark.parametrize("fonts", [(), "dejavu"])
def test_legend_of_non_ascii_labels_never_fails_and_marks_missing_glyphs(fonts):
    """Chinese, emoji and accents with PIL's bitmap font (no font found) and with DejaVu Sans (no CJK glyphs)."""
    if fonts == "dejavu":
        if DEJAVU is None:
            pytest.skip("DejaVuSans.ttf is not installed")
        fonts = (DEJAVU,)
    names = ["猫 cat", "🐱", "café"]
    image = legend(names, font_candidates=fonts, use_fc_match=False)
    assert image.size[1] == 22 * 3 + 8
    # A character the font lacks is drawn as "?", so the row looks like the one of "? cat".
    same = legend(["? cat", "🐱", "café"], font_candidates=fonts, use_fc_match=False)
    np.testing.assert_array_equal(np.asarray(image)[:26], np.asarray(same)[:26])


@pytest.mark.skipif(DEJAVU is None, reason="DejaVuSans.ttf is not installed")
def test_a_truetype_font_is_chosen_when_it_covers_the_labels():
    assert find_legend_font(["café", "straße"], (DEJAVU,), use_fc_match=False) == DEJAVU
    assert find_legend_font(["cat"], ("/nonexistent/font.ttf",), use_fc_match=False) is None
    # DejaVu draws "é": the legend differs from the one with "e" (the bitmap font would too, but through Latin-1).
    accented = np.asarray(legend(["café"], font_candidates=(DEJAVU,), use_fc_match=False))
    plain = np.asarray(legend(["cafe"], font_candidates=(DEJAVU,), use_fc_match=False))
    assert accented.shape == plain.shape and not np.array_equal(accented, plain)


@pytest.fixture
def fake_fc_match(monkeypatch):
    """Records every fc-match run (its charset argument) and answers DejaVu; the fc-match cache is emptied around."""
    runs = []

    def run(command, **kwargs):
        runs.append(command[-1])
        return subprocess.CompletedProcess(command, 0, stdout=DEJAVU, stderr="")

    monkeypatch.setattr(visualize.shutil, "which", lambda program: "/usr/bin/" + program)
    monkeypatch.setattr(visualize.subprocess, "run", run)
    visualize._fc_match.cache_clear()
    yield runs
    visualize._fc_match.cache_clear()


@pytest.mark.skipif(DEJAVU is None, reason="DejaVuSans.ttf is not installed")
def test_fc_match_runs_only_for_characters_no_candidate_draws_once_per_character_set(fake_fc_match):
    legend(["cat", "café"], font_candidates=(DEJAVU,))
    legend(["straße"], font_candidates=(DEJAVU,))
    assert fake_fc_match == []  # DejaVu draws every character: no subprocess
    legend(["猫 cat", "草地"], font_candidates=(DEJAVU,))  # DejaVu Sans has no CJK glyphs
    legend(["地草", "cat 猫猫", "sky"], font_candidates=(DEJAVU,))  # the same missing characters
    assert fake_fc_match == [":charset=" + " ".join("%x" % ord(char) for char in sorted("猫草地"))]


# --- save_segmentation ------------------------------------------------------------------------------------------

def test_save_segmentation_writes_mask_overlay_legend_index_and_text(tmp_path):
    path = str(tmp_path / "photo.jpg")
    Image.fromarray(np.full((20, 30, 3), 200, np.uint8)).save(path)
    prediction = np.zeros((20, 30), np.uint8)
    prediction[:, 15:] = 1
    labels = ["猫", "sky"]
    written = save_segmentation(path, labels, prediction, str(tmp_path))
    assert [os.path.basename(p) for p in written] == ["photo_mask.png", "photo_overlay.png", "photo_legend.png",
                                                      "photo_index.png", "photo_legend.txt"]
    mask, overlay = (np.asarray(Image.open(p).convert("RGB")) for p in written[:2])
    assert mask.shape == overlay.shape == (20, 30, 3)
    colours = label_colours(2, labels)
    np.testing.assert_array_equal(mask[0, 0], colours[0])
    np.testing.assert_array_equal(overlay[0, 0], (200 + colours[0].astype(int)) // 2)
    index = Image.open(written[3])
    assert index.mode == "L"
    np.testing.assert_array_equal(np.asarray(index), prediction)
    text = open(written[4], encoding="utf-8").read().splitlines()
    assert text[0] == "index\tlabel\tcolour\tpixels"
    assert text[1] == "0\t猫\t#%02x%02x%02x\t0.5000" % tuple(colours[0])


def test_save_segmentation_index_png_is_16_bit_past_256_labels_and_takes_a_stem(tmp_path):
    path = str(tmp_path / "photo.png")
    Image.fromarray(np.zeros((10, 30, 3), np.uint8)).save(path)
    labels = ["label %d" % i for i in range(300)]
    prediction = (np.arange(300) % 300).reshape(10, 30).astype(np.uint16)
    written = save_segmentation(path, labels, prediction, str(tmp_path), stem="photo_2")
    assert os.path.basename(written[3]) == "photo_2_index.png"
    with Image.open(written[3]) as index:
        assert index.mode in ("I", "I;16")  # Pillow opens 16-bit grey PNGs as "I"
        np.testing.assert_array_equal(np.asarray(index), prediction)


def test_save_segmentation_refuses_a_prediction_of_another_size_or_range(tmp_path):
    path = str(tmp_path / "photo.png")
    Image.fromarray(np.zeros((10, 30, 3), np.uint8)).save(path)
    with pytest.raises(ValueError, match=r"prediction of shape \(30, 10\) for .*photo.png of 30x10 pixels"):
        save_segmentation(path, ["a"], np.zeros((30, 10), np.uint8), str(tmp_path))
    with pytest.raises(ValueError, match=r"prediction values 0..2 outside 0..1"):
        save_segmentation(path, ["a", "b"], np.full((10, 30), 2, np.uint8) * (np.arange(30) > 3), str(tmp_path))


def test_exif_rotated_photo_is_read_and_overlaid_in_its_displayed_orientation(tmp_path):
    stored = np.zeros((20, 40, 3), np.uint8)
    stored[:, :20] = (255, 0, 0)  # left half red as stored; the tag says "rotate 90 degrees clockwise to show"
    exif = Image.Exif()
    exif[0x0112] = 6
    path = str(tmp_path / "phone.jpg")
    Image.fromarray(stored).save(path, exif=exif, quality=95)
    displayed = read_rgb(path)
    assert displayed.shape == (40, 20, 3)
    assert displayed[:18, :, 0].mean() > 200 and displayed[22:, :, 0].mean() < 50  # red now on top
    assert read_image(path).shape == (3, 40, 20)
    prediction = (np.arange(40)[:, None] >= 20).repeat(20, axis=1).astype(np.uint8)
    overlay = np.asarray(Image.open(save_segmentation(path, ["red", "black"], prediction, str(tmp_path))[1]))
    assert overlay.shape == (40, 20, 3) and overlay[:18, :, 0].mean() > overlay[22:, :, 0].mean() + 90


# --- read_image: every image mode -------------------------------------------------------------------------------

def test_image_to_array_is_bit_identical_to_the_whole_array_formula():
    rgb = np.random.RandomState(0).randint(0, 256, (7, 9, 3)).astype(np.uint8)
    mean, std = (0.48, 0.45, 0.4), (0.27, 0.26, 0.28)
    old = (np.asarray(rgb, np.float32) * np.float32(1.0 / 255.0) - np.asarray(mean, np.float32)) \
        / np.asarray(std, np.float32)
    np.testing.assert_array_equal(image_to_array(Image.fromarray(rgb), mean, std), old.transpose(2, 0, 1))


def _save(tmp_path, name, image, **kwargs):
    path = str(tmp_path / name)
    image.save(path, **kwargs)
    return path


def test_read_image_normalises_rgb_and_names_a_bad_file(tmp_path):
    path = str(tmp_path / "grey.png")
    Image.fromarray(np.arange(12, dtype=np.uint8).reshape(3, 4)).save(path)  # mode L: converted to RGB
    array = read_image(path)
    assert array.shape == (3, 3, 4) and array.dtype == np.float32
    np.testing.assert_array_equal(array, image_to_array(Image.open(path).convert("RGB")))
    broken = tmp_path / "broken.jpg"
    broken.write_bytes(b"not an image")
    for bad in (str(broken), str(tmp_path / "missing.png")):
        with pytest.raises(ValueError, match="cannot read " + bad):
            read_image(bad)


def test_read_rgb_keeps_rgba_palette_cmyk_gif_one_bit_and_single_pixel_images(tmp_path):
    rgb = np.random.RandomState(0).randint(0, 256, (6, 5, 3)).astype(np.uint8)
    rgba = np.concatenate([rgb, np.full((6, 5, 1), 7, np.uint8)], axis=2)
    np.testing.assert_array_equal(read_rgb(_save(tmp_path, "a.png", Image.fromarray(rgba))), rgb)  # alpha dropped
    palette = Image.fromarray(rgb).convert("P", palette=Image.ADAPTIVE, colors=8)
    np.testing.assert_array_equal(read_rgb(_save(tmp_path, "p.png", palette)), np.asarray(palette.convert("RGB")))
    cmyk = Image.fromarray(rgb).convert("CMYK")
    np.testing.assert_array_equal(read_rgb(_save(tmp_path, "c.tiff", cmyk)), np.asarray(cmyk.convert("RGB")))
    gif = read_rgb(_save(tmp_path, "g.gif", palette))
    assert gif.shape == (6, 5, 3) and gif.dtype == np.uint8
    bits = Image.fromarray(np.eye(4, dtype=bool))
    np.testing.assert_array_equal(read_rgb(_save(tmp_path, "b.png", bits))[:, :, 1], np.eye(4) * 255)
    np.testing.assert_array_equal(read_rgb(_save(tmp_path, "one.png", Image.fromarray(rgb[:1, :1]))), rgb[:1, :1])
    assert read_image(str(tmp_path / "one.png")).shape == (3, 1, 1)


@pytest.mark.parametrize("name", ["g16.png", "g16.tiff"])
def test_16_bit_grey_is_scaled_by_its_range_not_clipped(tmp_path, name):
    values = np.array([[0, 257, 32768, 65535]], np.uint16)  # 0, 1/255, ~half, full
    path = _save(tmp_path, name, Image.fromarray(values))
    rgb = read_rgb(path)
    np.testing.assert_array_equal(rgb[:, :, 0], [[0, 1, 128, 255]])
    np.testing.assert_array_equal(rgb[:, :, 0], rgb[:, :, 2])
    np.testing.assert_allclose(read_image(path)[0], [[-1.0, 1 / 255 * 2 - 1, 128 / 255 * 2 - 1, 1.0]], atol=1e-6)


def test_float_and_32_bit_images_are_scaled_or_refused_naming_the_file(tmp_path):
    unit = np.array([[0.0, 0.5, 1.0]], np.float32)
    np.testing.assert_array_equal(read_rgb(_save(tmp_path, "f.tiff", Image.fromarray(unit)))[:, :, 1], [[0, 128, 255]])
    with pytest.raises(ValueError, match=r"cannot read .*big.tiff: float pixels must be finite and in 0..1 "
                                         r"\(found 0..300\)"):
        read_rgb(_save(tmp_path, "big.tiff", Image.fromarray(np.array([[0.0, 300.0]], np.float32))))
    wide = Image.fromarray(np.array([[0, 70000]], np.int32))
    with pytest.raises(ValueError, match=r"cannot read .*wide.tiff: I pixels span 0..70000, outside the 16-bit"):
        read_rgb(_save(tmp_path, "wide.tiff", wide))


def test_an_image_over_the_decompression_bomb_limit_is_refused_naming_it(tmp_path, monkeypatch):
    path = _save(tmp_path, "huge.png", Image.fromarray(np.zeros((8, 8, 3), np.uint8)))
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 10)  # 64 pixels > 2 x 10: PIL's error, not its warning
    with pytest.raises(ValueError, match="cannot read .*huge.png: .*exceeds limit"):
        read_image(path)
