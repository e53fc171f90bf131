"""The plain folder set tools: the synthetic folder set generator and the colour-mask conversion."""
import os
import pathlib

import numpy as np
import pytest
from PIL import Image

from encoding_custom.datasets.colour_masks import convert_folder, convert_mask, read_colour_table
from encoding_custom.datasets.folder_synthetic import look_style, name_appearance, write_synthetic_folder

STACK_INDEPENDENT = ("numpy and Pillow file code: no MindSpore call; byte equality is only asserted between two "
                     "writes on the same stack")

NAMES = ["sky", "grass", "café", "草地", "road"]


def _files(root, kind, split):
    return sorted(os.listdir(os.path.join(root, kind, split)))


def _read(path, dtype=np.uint8):
    with Image.open(path) as image:
        return np.asarray(image, dtype)


def _mask(root, split, stem):
    return _read(os.path.join(root, "annotations", split, stem + ".png"))


@pytest.fixture(scope="module")
def folder_set(tmp_path_factory):
    root = str(tmp_path_factory.mktemp("folder") / "set")
    info = write_synthetic_folder(root, NAMES, n_train=10, n_val=3, seed=0, size=(32, 48))
    return root, info


# --- the synthetic folder set ---------------------------------------------------------------------------------

def test_generator_writes_the_layout_with_matching_stems_and_sizes(folder_set):
    root, info = folder_set
    assert info == {"root": root, "labels": NAMES, "n_train": 10, "n_val": 3, "seed": 0, "look": 0}
    for split, count in (("train", 10), ("val", 3)):
        images, masks = _files(root, "images", split), _files(root, "annotations", split)
        assert images == [f"img_{index:05d}.jpg" for index in range(1, count + 1)]
        assert [os.path.splitext(name)[0] for name in images] == [os.path.splitext(name)[0] for name in masks]
        for image_name, mask_name in zip(images, masks):
            with Image.open(os.path.join(root, "images", split, image_name)) as image, \
                    Image.open(os.path.join(root, "annotations", split, mask_name)) as mask:
                assert (image.format, image.mode, mask.format, mask.mode) == ("JPEG", "RGB", "PNG", "L")
                assert image.size == mask.size and all(32 <= side <= 48 for side in image.size)
    assert not [name for name in os.listdir(root) if name.startswith(".")]  # no temporary left


def test_labels_file_round_trips_non_ascii_names(folder_set):
    root, _ = folder_set
    with open(os.path.join(root, "labels.txt"), "rb") as handle:
        assert handle.read() == "sky\ngrass\ncafé\n草地\nroad\n".encode("utf-8")


def test_mask_values_are_classes_or_ignore_and_every_class_is_in_train(folder_set):
    root, _ = folder_set
    seen = set()
    for split in ("train", "val"):
        for name in _files(root, "annotations", split):
            values = set(np.unique(_mask(root, split, os.path.splitext(name)[0])).tolist())
            assert values <= set(range(len(NAMES))) | {255}
            assert 255 in values and len(values - {255}) >= 2  # the ignore patch, a background and a shape
            if split == "train":
                seen |= values
    assert seen == set(range(len(NAMES))) | {255}


def test_same_arguments_give_identical_bytes_and_another_look_other_images(tmp_path):
    roots = [str(tmp_path / name) for name in ("a", "b", "c")]
    for root, look in zip(roots, (2, 2, 3)):
        write_synthetic_folder(root, NAMES, 3, 1, seed=5, size=(24, 32), look=look)

    def contents(root, kind):
        folder = os.path.join(root, kind, "train")
        return [pathlib.Path(folder, name).read_bytes() for name in sorted(os.listdir(folder))]

    for kind in ("images", "annotations"):
        assert contents(roots[0], kind) == contents(roots[1], kind)
    assert all(a != c for a, c in zip(contents(roots[0], "images"), contents(roots[2], "images")))
    assert look_style(2) != look_style(3) and look_style(0) == look_style(0)


def test_a_name_looks_the_same_in_sets_of_other_looks_and_orders(tmp_path):
    # The second set shares two names at other mask values: appearance must follow the name, not the value.
    first, second = ["sky", "grass", "café", "草地"], ["草地", "brick", "sky", "sand"]
    means = []
    for names, look, root in ((first, 0, tmp_path / "a"), (second, 5, tmp_path / "b")):
        write_synthetic_folder(str(root), names, 8, 1, seed=1, size=(32, 40), look=look)
        pixels = {name: [] for name in ("sky", "草地")}
        for stem in (os.path.splitext(name)[0] for name in _files(str(root), "annotations", "train")):
            image = _read(os.path.join(root, "images", "train", stem + ".jpg"), np.float64)
            mask = _mask(str(root), "train", stem)
            for name in pixels:
                pixels[name].append(image[mask == names.index(name)])
        means.append({name: np.concatenate(found).mean(axis=0) for name, found in pixels.items()})
    for name in ("sky", "草地"):
        # Measured: 29 levels per channel at most, sky in look 5, the largest shift of looks 1..12 (the look's
        # brightness and contrast plus the per-image brightness); two random class colours differ by ~65 per
        # channel on average.
        assert np.abs(means[0][name] - means[1][name]).max() < 32, name
    colour_a, angle_a, _ = name_appearance("sky")
    colour_b, angle_b, _ = name_appearance("sky")
    assert np.array_equal(colour_a, colour_b) and angle_a == angle_b
    assert not np.array_equal(name_appearance("sky")[0], name_appearance("草地")[0])


def test_png_images_and_another_ignore_value(tmp_path):
    root = str(tmp_path / "png")
    write_synthetic_folder(root, ["a", "b"], 2, 1, size=(16, 20), ignore_value=2, image_format="png")
    assert _files(root, "images", "val") == ["img_00001.png"]
    assert set(np.unique(_mask(root, "train", "img_00001")).tolist()) <= {0, 1, 2}
    assert 2 in np.unique(_mask(root, "train", "img_00001"))


@pytest.mark.parametrize("arguments, argument", [
    ({"names": []}, "names"),
    ({"names": ["sky", "sky"]}, "names"),
    ({"names": ["sky", "  "]}, "names"),
    ({"names": ["sky", "two\nlines"]}, "names"),
    ({"names": ["a", "b", "c"], "ignore_value": 2}, "names"),
    ({"ignore_value": 300}, "ignore_value"),
    ({"n_train": 0}, "n_train"),
    ({"n_val": 0}, "n_val"),
    ({"look": -1}, "look"),
    ({"size": (4, 8)}, "size"),
    ({"image_format": "bmp"}, "image_format"),
])
def test_generator_arguments_are_checked(tmp_path, arguments, argument):
    call = {"root": str(tmp_path / "set"), "names": ["sky", "grass"], "n_train": 1, "n_val": 1, **arguments}
    with pytest.raises(ValueError, match=argument):
        write_synthetic_folder(**call)
    assert not os.path.exists(tmp_path / "set")


def test_generator_refuses_a_folder_that_is_not_empty(tmp_path):
    (tmp_path / "mine.txt").write_text("keep")
    with pytest.raises(FileExistsError, match="not an empty folder"):
        write_synthetic_folder(str(tmp_path), ["sky", "grass"], 1, 1)
    assert os.listdir(tmp_path) == ["mine.txt"]


# --- colour tables and masks ----------------------------------------------------------------------------------

def _write(path, text):
    path.write_text(text, encoding="utf-8")
    return str(path)


def test_colour_table_skips_comments_and_keeps_names_with_spaces(tmp_path):
    path = _write(tmp_path / "colours.txt", "\ufeff# R G B name\n\n0 0 0 background\n128 64 128 road surface\n"
                                            "  70 130 180   草地 \n")
    assert read_colour_table(path) == [((0, 0, 0), "background"), ((128, 64, 128), "road surface"),
                                       ((70, 130, 180), "草地")]


@pytest.mark.parametrize("text, expected", [
    ("0 0 0 sky\n1 x 2 grass\n", "line 2: R G B must be whole numbers"),
    ("# c\n0 0 256 sky\n", "line 2: R G B must be 0..255"),
    ("0 0 0 sky\n\n0 0 0 grass\n", "line 3: colour (0, 0, 0) is already class 'sky'"),
    ("0 0 0 sky\n1 1 1 sky\n", "line 2: name 'sky' is already"),
    ("0 0 0\n", "line 1: expected 'R G B name'"),
    ("# only a comment\n\n", "no 'R G B name' entries"),
])
def test_colour_table_errors_name_the_file_and_line(tmp_path, text, expected):
    path = _write(tmp_path / "colours.txt", text)
    with pytest.raises(ValueError) as error:
        read_colour_table(path)
    assert str(error.value).startswith(path) and expected in str(error.value) and "\n" not in str(error.value)


TABLE = [((0, 0, 0), "background"), ((200, 0, 0), "car"), ((0, 0, 200), "sky")]


def test_rgb_and_rgba_masks_map_colours_to_table_rows(tmp_path):
    rgb = np.array([[[0, 0, 0], [200, 0, 0], [0, 0, 200]], [[0, 0, 200], [0, 0, 200], [200, 0, 0]]], np.uint8)
    Image.fromarray(rgb).save(tmp_path / "rgb.png")
    Image.fromarray(np.dstack([rgb, np.full(rgb.shape[:2], 255, np.uint8)])).save(tmp_path / "rgba.png")
    for name in ("rgb.png", "rgba.png"):
        mask = convert_mask(str(tmp_path / name), TABLE)
        assert mask.dtype == np.uint8
        np.testing.assert_array_equal(mask, [[0, 1, 2], [2, 2, 1]])
    with pytest.raises(ValueError, match="needs a colour table"):
        convert_mask(str(tmp_path / "rgb.png"))


def _palette_mask(path, values):
    image = Image.fromarray(np.asarray(values, np.uint8), mode="P")
    palette = np.zeros((256, 3), np.uint8)
    palette[1], palette[2], palette[255] = (200, 0, 0), (0, 0, 200), (224, 224, 192)  # VOC's border colour
    image.putpalette(palette.ravel().tolist())
    image.save(path)
    return str(path)


def test_palette_masks_keep_their_indices_and_the_ignore_border(tmp_path):
    values = [[0, 1, 255], [2, 2, 0]]
    path = _palette_mask(tmp_path / "voc.png", values)
    with Image.open(path) as image:
        assert image.mode == "P"
    np.testing.assert_array_equal(convert_mask(path), values)
    # With a table, a palette mask is compared by colour: the border colour is then not a class.
    with pytest.raises(ValueError, match=r"colour \(224, 224, 192\) \(1 pixels\)"):
        convert_mask(path, TABLE)


def test_an_unknown_colour_is_named_with_its_file_and_pixel_count(tmp_path):
    rgb = np.zeros((4, 5, 3), np.uint8)
    rgb[0, :3], rgb[3, 4] = (1, 2, 3), (9, 9, 9)
    path = str(tmp_path / "odd.png")
    Image.fromarray(rgb).save(path)
    with pytest.raises(ValueError) as error:
        convert_mask(path, TABLE)
    message = str(error.value)
    assert message == f"{path}: colour (1, 2, 3) (3 pixels) is not in the colour table (and 1 more unknown colours)"


# --- whole folders --------------------------------------------------------------------------------------------

def _source(tmp_path, masks):
    """Image folder (one JPEG per mask, of its size) and mask folder from ``{stem: palette values}``."""
    images, mask_folder = tmp_path / "JPEGImages", tmp_path / "SegmentationClass"
    images.mkdir()
    mask_folder.mkdir()
    for stem, values in masks.items():
        height, width = np.asarray(values).shape
        Image.new("RGB", (width, height), (90, 90, 90)).save(images / f"{stem}.jpg")
        _palette_mask(mask_folder / f"{stem}.png", values)
    return str(images), str(mask_folder)


def test_convert_folder_writes_images_masks_and_labels(tmp_path):
    images, masks = _source(tmp_path, {"2007_000032": [[0, 1, 255]], "2007_000039": [[2, 0, 0], [1, 1, 255]]})
    out = str(tmp_path / "out")
    assert convert_folder(images, masks, out, "train", names=["background", "car", "草地"]) == 2
    assert _files(out, "images", "train") == ["2007_000032.jpg", "2007_000039.jpg"]
    assert _files(out, "annotations", "train") == ["2007_000032.png", "2007_000039.png"]
    with Image.open(os.path.join(out, "annotations", "train", "2007_000039.png")) as written:
        assert written.mode == "L"
        np.testing.assert_array_equal(np.asarray(written), [[2, 0, 0], [1, 1, 255]])
    with open(os.path.join(out, "labels.txt"), encoding="utf-8") as handle:
        assert handle.read() == "background\ncar\n草地\n"
    # The val split joins the same set; a split with other names does not.
    assert convert_folder(images, masks, out, "val", names=["background", "car", "草地"]) == 2
    with pytest.raises(ValueError, match="other class names"):
        convert_folder(images, masks, out, "val", names=["background", "bus", "草地"])


def test_convert_folder_with_a_colour_table_writes_its_names(tmp_path):
    (tmp_path / "images").mkdir()
    (tmp_path / "masks").mkdir()
    Image.new("RGB", (2, 1)).save(tmp_path / "images" / "a.png")
    Image.fromarray(np.array([[[0, 0, 200], [200, 0, 0]]], np.uint8)).save(tmp_path / "masks" / "a.png")
    out = str(tmp_path / "out")
    assert convert_folder(str(tmp_path / "images"), str(tmp_path / "masks"), out, "val", colours=TABLE) == 1
    np.testing.assert_array_equal(_mask(out, "val", "a"), [[2, 1]])
    with open(os.path.join(out, "labels.txt"), encoding="utf-8") as handle:
        assert handle.read() == "background\ncar\nsky\n"


def test_convert_folder_refuses_an_orphan_mask_before_writing(tmp_path):
    images, masks = _source(tmp_path, {"a": [[0, 1]]})
    _palette_mask(tmp_path / "SegmentationClass" / "b.png", [[0, 1]])
    out = tmp_path / "out"
    with pytest.raises(ValueError, match=r"b\.png: no image of that stem"):
        convert_folder(images, masks, str(out), "train", names=["background", "car"])
    assert not out.exists()


def test_convert_folder_refuses_values_outside_the_names_and_missing_names(tmp_path):
    images, masks = _source(tmp_path, {"a": [[0, 5, 255]]})
    with pytest.raises(ValueError, match=r"a\.png: mask value 5 \(1 pixels\) is no class \(0\.\.1\)"):
        convert_folder(images, masks, str(tmp_path / "out"), "train", names=["background", "car"])
    with pytest.raises(ValueError, match="give names"):
        convert_folder(images, masks, str(tmp_path / "out"), "train")


def test_convert_folder_keeps_a_synthetic_sets_masks(folder_set, tmp_path):
    root, _ = folder_set
    out = str(tmp_path / "copy")
    count = convert_folder(os.path.join(root, "images", "val"), os.path.join(root, "annotations", "val"), out,
                           "val", names=NAMES)
    assert count == 3
    for name in _files(root, "annotations", "val"):
        stem = os.path.splitext(name)[0]
        np.testing.assert_array_equal(_mask(out, "val", stem), _mask(root, "val", stem))
