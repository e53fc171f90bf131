"""encoding_custom.visualize and transforms.read_image: what test.py --image writes and reads."""
import os

import numpy as np
import pytest
from PIL import Image

from encoding_custom.transforms import image_to_array, read_image
from encoding_custom.visualize import colour_mask, label_colours, legend, save_segmentation


def test_palette_colours_are_distinct_not_black_and_stable_across_sizes():
    colours = label_colours(150)
    assert len({tuple(c) for c in colours.tolist()}) == 150
    assert not np.any(np.all(colours == 0, axis=1))
    np.testing.assert_array_equal(label_colours(7), colours[:7])


def test_colour_mask_paints_labels_and_leaves_ignored_pixels_black():
    labels = np.array([[0, 1], [-1, 2]])
    rgb = np.asarray(colour_mask(labels, 3))
    colours = label_colours(3)
    np.testing.assert_array_equal(rgb[0, 0], colours[0])
    np.testing.assert_array_equal(rgb[1, 1], colours[2])
    np.testing.assert_array_equal(rgb[1, 0], [0, 0, 0])


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


def test_save_segmentation_writes_mask_overlay_and_legend(tmp_path):
    path = str(tmp_path / "photo.jpg")
    Image.fromarray(np.full((20, 30, 3), 200, np.uint8)).save(path)
    prediction = np.zeros((20, 30), np.int64)
    prediction[:, 15:] = 1
    written = save_segmentation(path, ["cat", "sky"], prediction, str(tmp_path))
    assert [os.path.basename(p) for p in written] == ["photo_mask.png", "photo_overlay.png", "photo_legend.png"]
    mask, overlay = (np.asarray(Image.open(p).convert("RGB")) for p in written[:2])
    assert mask.shape == overlay.shape == (20, 30, 3)
    np.testing.assert_array_equal(mask[0, 0], label_colours(2)[0])
    np.testing.assert_array_equal(overlay[0, 0], (200 + label_colours(2)[0].astype(int)) // 2)


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
