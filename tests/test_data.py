"""Data pipelines: tfds (mocked, no download), folders of images, the embedded digits, and the
one-line errors for bad input."""
import numpy as np
import pytest
import tensorflow as tf
import tensorflow_datasets as tfds

from pixel_cnn_pp.runtime import data


def write_png(path, image):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(tf.io.encode_png(image).numpy())


@pytest.mark.parametrize("name,shape,classes", [
    ("cifar10", (32, 32, 3), 10), ("mnist", (28, 28, 1), 10), ("imagenet32", (32, 32, 3), 1000)])
def test_tfds_datasets_with_mock_data(name, shape, classes):
    with tfds.testing.mock_data(num_examples=12):
        dataset = data.load(name)
        images, labels = next(iter(data.batches(dataset.train, 4, shuffle_seed=1, size=12)))
    assert dataset.image_shape == shape and dataset.num_classes == classes
    assert dataset.train_size == 12
    assert images.dtype == tf.uint8 and tuple(images.shape) == (4, *shape)
    assert labels.dtype == tf.int32


def test_binarized_mnist_has_two_levels():
    with tfds.testing.mock_data(num_examples=8):
        dataset = data.load("mnist", binarize=True)
        images, _ = next(iter(dataset.train.batch(8)))
    assert set(np.unique(images.numpy())) <= {0, 255}


def test_embedded_digits_are_real_images():
    dataset = data.load("digits")
    assert dataset.image_shape == (8, 8, 1) and dataset.num_classes == 10
    assert (dataset.train_size, dataset.test_size) == (1500, 297)
    images = np.stack([x.numpy() for x, _ in dataset.test])
    assert images.dtype == np.uint8 and images.max() == 255 and images.min() == 0
    assert len(np.unique(images)) == 17  # sklearn's 0..16 levels, scaled to 0..255


def test_shuffle_is_deterministic_per_seed():
    dataset = data.load("digits")
    first = [next(iter(data.batches(dataset.train, 16, seed, 1500)))[1].numpy() for seed in (1, 1, 2)]
    np.testing.assert_array_equal(first[0], first[1])
    assert (first[0] != first[2]).any()


def test_folder_split_by_order(tmp_path):
    rng = np.random.RandomState(0)
    for k in range(20):
        write_png(tmp_path / f"img_{k:02d}.png", rng.randint(0, 256, (8, 12, 3), np.uint8))
    dataset = data.load("folder", str(tmp_path))
    assert dataset.image_shape == (8, 12, 3) and dataset.num_classes == 0
    assert (dataset.train_size, dataset.test_size) == (18, 2)


def test_folder_with_train_and_test_subfolders(tmp_path):
    for split, n in (("train", 5), ("test", 3)):
        for k in range(n):
            write_png(tmp_path / split / f"{k}.png", np.full((4, 4, 1), k, np.uint8))
    dataset = data.load("folder", str(tmp_path))
    assert (dataset.train_size, dataset.test_size) == (5, 3)


@pytest.mark.parametrize("case,match", [
    ("missing", "is not a directory"),
    ("empty", "holds no images"),
    ("unreadable", "cannot read image .*broken.png"),
    ("mixed", r"has shape \(8, 8, 3\) .*has \(4, 4, 3\)"),
])
def test_bad_folders_give_one_line_errors(tmp_path, case, match):
    folder = tmp_path / "images"
    if case != "missing":
        folder.mkdir()
    if case == "unreadable":
        write_png(folder / "a.png", np.zeros((4, 4, 3), np.uint8))
        (folder / "broken.png").write_bytes(b"not a png")
    if case == "mixed":
        write_png(folder / "a.png", np.zeros((4, 4, 3), np.uint8))
        write_png(folder / "b.png", np.zeros((8, 8, 3), np.uint8))
    with pytest.raises(data.DataError, match=match) as info:
        data.load("folder", str(folder))
    assert "\n" not in str(info.value)


def test_unknown_dataset():
    with pytest.raises(data.DataError, match="--dataset='cifar100' is not one of"):
        data.load("cifar100")
