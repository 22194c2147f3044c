"""Datasets as tf.data pipelines of (uint8 image (H, W, C), int32 label) pairs.

Sources: tensorflow-datasets (`cifar10`, `imagenet_resized/32x32`, `mnist`), a folder of images,
and `digits`, the 1,797 real 8x8 handwritten digits bundled inside scikit-learn (no download),
the default of the demo. As in the original: no augmentation, the incomplete last batch dropped,
a fresh shuffle every epoch (deterministic from --seed and the epoch number).
"""
import dataclasses
import os

import numpy as np
import tensorflow as tf

from pixel_cnn_pp.errors import DataError

# name -> (tfds name, train split, test split, num_classes)
TFDS = {
    "cifar10": ("cifar10", "train", "test", 10),
    "imagenet32": ("imagenet_resized/32x32", "train", "validation", 1000),
    "mnist": ("mnist", "train", "test", 10),
}
EMBEDDED = ("digits",)
DATASETS = tuple(TFDS) + EMBEDDED + ("folder",)
IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".gif")
DIGITS_TEST_SIZE = 297  # the last 297 of sklearn's 1797 digits; the first 1500 train


@dataclasses.dataclass
class Dataset:
    """A train and a test split of uint8 images with their shape and label count."""
    name: str
    image_shape: tuple
    num_classes: int
    train: tf.data.Dataset
    test: tf.data.Dataset
    train_size: int
    test_size: int
    binarized: bool = False


def load(name, data_dir=None, tfds_data_dir=None, binarize=False):
    """The dataset called `name` (one of DATASETS). `data_dir` is the folder for 'folder'."""
    if name not in DATASETS:
        raise DataError(f"--dataset={name!r} is not one of {', '.join(DATASETS)}")
    if name == "digits":
        data = _digits()
    elif name == "folder":
        data = _folder(data_dir)
    else:
        data = _tfds(name, tfds_data_dir)
    if binarize:
        data.train, data.test = (ds.map(_binarize) for ds in (data.train, data.test))
        data.binarized = True
    return data


def _binarize(image, label):
    """Threshold at half intensity: 0 or 255 (a fixed binarisation, not a sampled one)."""
    return tf.where(image >= 128, tf.constant(255, tf.uint8), tf.constant(0, tf.uint8)), label


def from_arrays(name, images, labels, test_size, num_classes):
    """A Dataset of in-memory uint8 images (N, H, W, C) and labels (N,); the last `test_size`
    images are the test split."""
    images = np.asarray(images, np.uint8)
    labels = np.asarray(labels, np.int32)
    split = len(images) - test_size

    def make(lo, hi):
        return tf.data.Dataset.from_tensor_slices((images[lo:hi], labels[lo:hi]))

    return Dataset(name, images.shape[1:], num_classes, make(0, split), make(split, None),
                   split, test_size)


def _digits():
    from sklearn.datasets import load_digits  # ships the images: no download
    digits = load_digits()
    images = np.round(digits.images * (255.0 / 16.0))[..., None]  # 17 levels -> [0, 255]
    return from_arrays("digits", images, digits.target, DIGITS_TEST_SIZE, 10)


def _tfds(name, tfds_data_dir):
    import tensorflow_datasets as tfds
    tfds_name, train_split, test_split, num_classes = TFDS[name]
    try:
        builder = tfds.builder(tfds_name, data_dir=tfds_data_dir)
        builder.download_and_prepare()
    # No network, a failed download (requests' errors are OSErrors), a full or unwritable disk,
    # or a tfds without this dataset; anything else is a bug and keeps its traceback.
    except (OSError, tf.errors.OpError, tfds.core.DatasetNotFoundError) as e:
        raise DataError(f"--dataset={name}: could not prepare tfds '{tfds_name}' "
                        f"({type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''})")
    info = builder.info
    train, test = (builder.as_dataset(split=s, as_supervised=True, shuffle_files=False)
                   for s in (train_split, test_split))
    cast = lambda image, label: (tf.cast(image, tf.uint8), tf.cast(label, tf.int32))  # noqa: E731
    return Dataset(name, tuple(info.features["image"].shape), num_classes,
                   train.map(cast), test.map(cast), _size(train), _size(test))


def _size(dataset):
    size = int(dataset.cardinality())
    if size < 0:  # unknown: count once
        size = int(dataset.reduce(0, lambda n, _: n + 1))
    return size


def _folder(data_dir):
    """All images under `data_dir` (same size and channels). Subfolders `train/` and `test/` are
    the splits when both exist; otherwise the last 10% in sorted order is the test split."""
    if not data_dir:
        raise DataError("--dataset=folder needs --data_dir")
    if not os.path.isdir(data_dir):
        raise DataError(f"--data_dir={data_dir!r} is not a directory")
    roots = [os.path.join(data_dir, s) for s in ("train", "test")]
    if all(os.path.isdir(r) for r in roots):
        train, test = (_read_images(r) for r in roots)
    else:
        images = _read_images(data_dir)
        if len(images) < 2:
            raise DataError(f"--data_dir={data_dir!r} holds {len(images)} image; need at least 2")
        n_test = max(1, len(images) // 10)
        train, test = images[:-n_test], images[-n_test:]
    if train.shape[1:] != test.shape[1:]:
        raise DataError(f"--data_dir={data_dir!r}: train images are {train.shape[1:]} but test "
                        f"images are {test.shape[1:]}")
    images = np.concatenate([train, test])
    return from_arrays("folder", images, np.zeros(len(images)), len(test), 0)


def _read_images(root):
    paths = sorted(os.path.join(d, f) for d, _, files in os.walk(root) for f in files
                   if f.lower().endswith(IMAGE_EXTENSIONS))
    if not paths:
        raise DataError(f"--data_dir={root!r} holds no images ({', '.join(IMAGE_EXTENSIONS)})")
    images, first = [], None
    for path in paths:
        try:
            image = tf.io.decode_image(tf.io.read_file(path), expand_animations=False).numpy()
        except (tf.errors.OpError, ValueError) as e:
            reason = getattr(e, "message", str(e)).splitlines()[0]
            raise DataError(f"cannot read image {path!r}: {reason}")
        if first is None:
            first = (path, image.shape)
        elif image.shape != first[1]:
            raise DataError(f"image {path!r} has shape {image.shape} (H, W, C) but {first[0]!r} "
                            f"has {first[1]}; all images must have the same size and channels")
        images.append(image)
    return np.stack(images)


def is_binary(split):
    """Whether every pixel of a split is 0 or 255 (one pass over it)."""
    def binary(image, label):
        return tf.reduce_all((image == 0) | (image == 255))
    return bool(split.map(binary).reduce(True, lambda all_so_far, b: all_so_far & b))


def mutate(batches, rate, key):
    """Batches of (uint8 images, labels) with each sub-pixel independently replaced, with
    probability `rate`, by a level drawn uniformly from the 256: the perturbation of Ren et al.
    2019 ("Likelihood ratios for out-of-distribution detection") that trains a background
    model. Stateless draws keyed by `key` (two ints: the run's seed and the epoch) and the
    batch's index, so a rerun or a resumed epoch sees the same batches. A drawn level equals
    the original with probability 1/256, so rate x 255/256 of the sub-pixels change."""
    def apply(index, batch):
        images, labels = batch
        seeds = [tf.stack([tf.cast(key[0], tf.int64), tf.cast(key[1], tf.int64) * 2 ** 32
                           + 2 * index + draw]) for draw in (0, 1)]
        replace = tf.random.stateless_uniform(tf.shape(images), seeds[0]) < rate
        levels = tf.random.stateless_uniform(tf.shape(images), seeds[1], 0, 256, tf.int32)
        return tf.where(replace, tf.cast(levels, tf.uint8), images), labels
    return batches.enumerate().map(apply, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)


def batches(dataset, batch_size, shuffle_seed=None, size=None):
    """Batch a split: shuffled with `shuffle_seed` (None: keep order), last batch dropped."""
    if shuffle_seed is not None:
        dataset = dataset.shuffle(min(size or 50_000, 50_000), seed=shuffle_seed,
                                  reshuffle_each_iteration=False)
    return dataset.batch(batch_size, drop_remainder=True).prefetch(tf.data.AUTOTUNE)
