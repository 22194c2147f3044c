"""Datasets as tf.data pipelines of (uint8 image (H, W, C), int32 label) pairs, or of
(int32 code map (H, W), int32 label[, condition]) for a prior over discrete codes.

Sources: tensorflow-datasets (`cifar10`, `imagenet_resized/32x32`, `mnist`), a folder of images,
`digits`, the 1,797 real 8x8 handwritten digits bundled inside scikit-learn (no download),
the default of the demo, and `codes`, code maps from an .npz file (`load_codes`). As in the original: no augmentation, the incomplete last batch dropped,
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
DATASETS = tuple(TFDS) + EMBEDDED + ("folder", "codes")
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
    # Code maps: the model options the data fix (output, num_codes, condition_shape,
    # condition_codes); images: none.
    model_options: dict = dataclasses.field(default_factory=dict)


def load(name, data_dir=None, tfds_data_dir=None, binarize=False, data_path=None,
         num_codes=None):
    """The dataset called `name` (one of DATASETS). `data_dir` is the folder for 'folder';
    `data_path` the .npz file and `num_codes` the code count (None: the file's) for 'codes'."""
    if name not in DATASETS:
        raise DataError(f"--dataset={name!r} is not one of {', '.join(DATASETS)}")
    if name == "codes":
        if binarize:
            raise DataError("--binarize: --dataset=codes holds code maps, not images")
        return load_codes(data_path, num_codes)
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


def load_codes(path, num_codes=None):
    """Code maps from an .npz file: `train_codes` and `test_codes` (N, H, W) integers, and
    optionally `train_condition` / `test_condition` (N, Hc, Wc) integers (a code map, seen
    one-hot) or (N, Hc, Wc, D) floats, `train_labels` / `test_labels` (N,) integers, and the
    scalars `num_codes` and `condition_codes` (default: the largest code + 1). Checked before
    any work: shapes, dtypes, counts and code ranges, each refused in one line."""
    if not path:
        raise DataError("--dataset=codes needs --data_path=FILE.npz")
    try:
        with np.load(path) as f:
            arrays = {k: f[k] for k in f.files}
    except (OSError, ValueError) as e:
        raise DataError(f"--data_path={path!r} is not a readable .npz file ({e})")
    for key in ("train_codes", "test_codes"):
        if key not in arrays:
            raise DataError(f"--data_path={path!r} has no {key!r} array (it has "
                            f"{', '.join(sorted(arrays)) or 'none'})")
    train, test = arrays["train_codes"], arrays["test_codes"]
    for key, codes in (("train_codes", train), ("test_codes", test)):
        if codes.dtype.kind not in "iu" or codes.ndim != 3 or not len(codes):
            raise DataError(f"{key} of {path!r} must be a non-empty (N, H, W) integer array, got "
                            f"{codes.dtype} {codes.shape}")
    if train.shape[1:] != test.shape[1:]:
        raise DataError(f"train_codes are {train.shape[1:]} maps but test_codes "
                        f"{test.shape[1:]}")
    lowest = min(train.min(), test.min())
    highest = int(max(train.max(), test.max()))
    if num_codes is None:
        num_codes = int(arrays["num_codes"]) if "num_codes" in arrays else highest + 1
    if lowest < 0 or highest >= num_codes:
        raise DataError(f"codes of {path!r} lie in [{lowest}, {highest}], outside [0, "
                        f"{num_codes}) (--num_codes={num_codes})")
    options = {"output": "categorical", "num_codes": int(num_codes)}
    splits = {"train": [train.astype(np.int32)], "test": [test.astype(np.int32)]}
    num_classes = 0
    if ("train_labels" in arrays) != ("test_labels" in arrays):
        raise DataError(f"{path!r} has labels for one split only")
    if "train_labels" in arrays:
        for split in ("train", "test"):
            labels = arrays[f"{split}_labels"]
            if labels.dtype.kind not in "iu" or labels.shape != (len(splits[split][0]),) \
                    or labels.min() < 0:
                raise DataError(f"{split}_labels of {path!r} must be {len(splits[split][0])} "
                                f"integers >= 0, got {labels.dtype} {labels.shape}")
            splits[split].append(labels.astype(np.int32))
        num_classes = int(max(a.max() for a in (arrays["train_labels"],
                                                 arrays["test_labels"]))) + 1
    else:
        for split in splits:
            splits[split].append(np.zeros(len(splits[split][0]), np.int32))
    if ("train_condition" in arrays) != ("test_condition" in arrays):
        raise DataError(f"{path!r} has a condition for one split only")
    if "train_condition" in arrays:
        conditions = [arrays["train_condition"], arrays["test_condition"]]
        for split, condition in zip(splits, conditions):
            codes = condition.dtype.kind in "iu"
            if len(condition) != len(splits[split][0]) or condition.ndim != (3 if codes else 4) \
                    or condition.dtype.kind not in "iuf":
                raise DataError(
                    f"{split}_condition of {path!r} must hold one (Hc, Wc) code map or (Hc, Wc, D) "
                    f"float map per code map ({len(splits[split][0])}), got {condition.dtype} "
                    f"{condition.shape}")
            splits[split].append(condition.astype(np.int32 if codes else np.float32))
        if conditions[0].shape[1:] != conditions[1].shape[1:] \
                or conditions[0].dtype.kind != conditions[1].dtype.kind:
            raise DataError(f"train_condition ({conditions[0].dtype} {conditions[0].shape[1:]}) "
                            f"and test_condition ({conditions[1].dtype} "
                            f"{conditions[1].shape[1:]}) of {path!r} differ")
        options["condition_shape"] = tuple(conditions[0].shape[1:])
        if conditions[0].dtype.kind in "iu":
            low = min(c.min() for c in conditions)
            top = int(max(c.max() for c in conditions))
            kc = int(arrays["condition_codes"]) if "condition_codes" in arrays else top + 1
            if low < 0 or top >= kc:
                raise DataError(f"condition codes of {path!r} lie in [{low}, {top}], outside "
                                f"[0, {kc})")
            options["condition_codes"] = kc
    return Dataset("codes", train.shape[1:] + (1,), num_classes,
                   tf.data.Dataset.from_tensor_slices(tuple(splits["train"])),
                   tf.data.Dataset.from_tensor_slices(tuple(splits["test"])),
                   len(train), len(test), model_options=options)


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
    def binary(image, *given):
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
        images, *given = batch
        seeds = [tf.stack([tf.cast(key[0], tf.int64), tf.cast(key[1], tf.int64) * 2 ** 32
                           + 2 * index + draw]) for draw in (0, 1)]
        replace = tf.random.stateless_uniform(tf.shape(images), seeds[0]) < rate
        levels = tf.random.stateless_uniform(tf.shape(images), seeds[1], 0, 256, tf.int32)
        return (tf.where(replace, tf.cast(levels, images.dtype), images), *given)
    return batches.enumerate().map(apply, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)


def batches(dataset, batch_size, shuffle_seed=None, size=None):
    """Batch a split: shuffled with `shuffle_seed` (None: keep order), last batch dropped."""
    if shuffle_seed is not None:
        dataset = dataset.shuffle(min(size or 50_000, 50_000), seed=shuffle_seed,
                                  reshuffle_each_iteration=False)
    return dataset.batch(batch_size, drop_remainder=True).prefetch(tf.data.AUTOTUNE)
