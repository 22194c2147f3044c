"""Scores of images under a trained model (train.py --mode=score): per-image and per-pixel
log-likelihoods, the likelihood ratio against a background model (Ren et al. 2019, "Likelihood
ratios for out-of-distribution detection") and the input-complexity score (Serra et al. 2020,
"Input complexity and out-of-distribution detection"); their CSV files, heatmaps, and the
detection metrics of an out-of-distribution set.

Every score is oriented as the metrics take it, higher = more out-of-distribution:
bits/dim (-log2 p(x) / dims), -LLR(x) = log p_background(x) - log p(x) (nats), and
complexity S(x) = bits/dim minus the PNG-compressed bits/dim of x.
"""
import csv
import io
import math
import os

import keras
import numpy as np
import tensorflow as tf

from pixel_cnn_pp.errors import DataError
from pixel_cnn_pp.model.levels import images_to_float
from pixel_cnn_pp.runtime import atomic, samples
from pixel_cnn_pp.runtime.ood_metrics import detection_metrics

# Score name -> its CSV column; the column holds the score itself (higher = more OOD) except
# the ratio, kept as the LLR of Ren et al. (higher = more in-distribution) and negated here.
SCORES = {"likelihood": "bits_per_dim", "likelihood_ratio": "log_likelihood_ratio",
          "complexity": "complexity"}
SYNTHETIC_OOD = ("inverted", "noise")  # made from the test split / the seed: no download


def split_arrays(split):
    """(uint8 images (N, H, W, C), int32 labels (N,)) of a tf.data split, in order."""
    images, labels = [], []
    for image, label in split.batch(1024):
        images.append(image.numpy())
        labels.append(label.numpy())
    return np.concatenate(images), np.concatenate(labels)


def pixel_log_likelihoods(model, images, labels, batch_size, what, log=print):
    """log p of each pixel in nats, (N, H, W) float32, in batches with a progress bar (every
    image, the last batch may be smaller). `labels` (N,): used by a class-conditional model."""
    step = tf.function(lambda x, y: model.log_prob(images_to_float(x), y, reduce="pixel"))
    bar = keras.utils.Progbar(len(images), unit_name="image")
    log(f"scoring {len(images)} images of {what}")
    out = []
    for start in range(0, len(images), batch_size):
        stop = min(start + batch_size, len(images))
        y = labels[start:stop].astype(np.int32) if model.num_classes else None
        out.append(step(images[start:stop], y).numpy())
        bar.update(stop)
    return np.concatenate(out)


def png_bits_per_dim(images):
    """Bits per dimension of each image compressed as a PNG at the highest zlib level, the
    generic compressor of Serra et al.'s complexity score (file overhead included)."""
    dims = int(np.prod(images.shape[1:]))
    return np.array([8.0 * len(tf.io.encode_png(image, compression=9).numpy()) / dims
                     for image in images])


def score_images(model, background, images, labels, batch_size, what, log=print):
    """{column: (N,) values} of the CSV (a label column where `labels` is given), and
    {"log_p": (N, H, W), "log_ratio": ...} maps."""
    dims = model.num_dims
    log_p = pixel_log_likelihoods(model, images, labels, batch_size, what, log)
    log_likelihood = log_p.sum(axis=(1, 2), dtype=np.float64)
    bpd = -log_likelihood / (math.log(2.0) * dims)
    columns = {"index": np.arange(len(images))}
    if labels is not None:
        columns["label"] = labels
    columns.update(bits_per_dim=bpd, log_likelihood=log_likelihood)
    maps = {"log_p": log_p}
    if background is not None:
        log_q = pixel_log_likelihoods(background, images, labels, batch_size,
                                      f"{what} (background model)", log)
        maps["log_ratio"] = log_p - log_q
        columns["log_likelihood_ratio"] = log_likelihood - log_q.sum(axis=(1, 2),
                                                                      dtype=np.float64)
    columns["complexity"] = bpd - png_bits_per_dim(images)
    return columns, maps


def ood_score(columns, name):
    """The values of score `name` oriented higher = more out-of-distribution."""
    values = np.asarray(columns[SCORES[name]], np.float64)
    return -values if name == "likelihood_ratio" else values


def metrics(inliers, outliers):
    """{score: {"auroc", "auprc", "fpr_at_80_tpr"}} of every score both sets have."""
    return {name: detection_metrics(ood_score(inliers, name), ood_score(outliers, name))
            for name, column in SCORES.items() if column in inliers and column in outliers}


def write_csv(path, columns):
    """One row per image; floats with 6 decimals."""
    names = list(columns)
    text = io.StringIO()
    writer = csv.writer(text, lineterminator="\n")
    writer.writerow(names)
    for row in zip(*(columns[n] for n in names)):
        writer.writerow([f"{v:.6f}" if isinstance(v, (float, np.floating)) else int(v)
                         for v in row])
    atomic.write_atomic(path, text.getvalue())


def write_metrics(path, table):
    text = "score,auroc,auprc,fpr_at_80_tpr\n" + "".join(
        f"{name},{m['auroc']:.6f},{m['auprc']:.6f},{m['fpr_at_80_tpr']:.6f}\n"
        for name, m in table.items())
    atomic.write_atomic(path, text)


def _to_gray(values):
    """A map (H, W) scaled to uint8 over its own range (bright = high)."""
    low, high = float(values.min()), float(values.max())
    return np.round(255.0 * (values - low) / max(high - low, 1e-12)).astype(np.uint8)


def heatmap_grid(images, maps, bits_per_dim, count=8):
    """One row per image for the `count` least typical (highest bits/dim) then the `count`
    most typical: the image, then each map (log p; log-ratio with a background), in gray."""
    order = np.argsort(-np.asarray(bits_per_dim), kind="mergesort")
    count = min(count, len(order) // 2) or 1
    chosen = np.r_[order[:count], order[-count:]]
    channels = images.shape[-1]
    tiles = []
    for k in chosen:
        tiles.append(images[k])
        for values in maps.values():
            tiles.append(np.repeat(_to_gray(values[k])[..., None], channels, axis=-1))
    return samples.image_grid(np.stack(tiles), cols=1 + len(maps))


def ood_images(name, dataset, test_images, test_labels, image_shape, seed, data_dir=None,
               tfds_data_dir=None):
    """(images, labels or None, its name) of an out-of-distribution set: `inverted` (the test
    images as 255 - x), `noise` (uniform random images, as many as the test images, seeded)
    or the test split of any dataset of `data.load`."""
    from pixel_cnn_pp.runtime import data
    if name == "inverted":
        return 255 - test_images, test_labels, f"{dataset}_inverted"
    if name == "noise":
        rng = np.random.RandomState(seed)
        return (rng.randint(0, 256, size=test_images.shape).astype(np.uint8), None,
                "uniform_noise")
    if name not in data.DATASETS:
        raise DataError(f"--ood_dataset={name!r} is not one of "
                        f"{', '.join(data.DATASETS + SYNTHETIC_OOD)}")
    other = data.load(name, data_dir, tfds_data_dir)
    if tuple(other.image_shape) != tuple(image_shape):
        raise DataError(f"--ood_dataset={name} has images of shape {tuple(other.image_shape)}; "
                        f"the model takes {tuple(image_shape)}")
    images, labels = split_arrays(other.test)
    return images, (labels if other.num_classes else None), name


def write_set(save_dir, name, images, columns, maps):
    """scores/<name>.csv and scores/<name>_heatmaps.png; returns the CSV's path."""
    folder = os.path.join(save_dir, "scores")
    tf.io.gfile.makedirs(folder)
    path = os.path.join(folder, f"{name}.csv")
    write_csv(path, columns)
    atomic.save_png(os.path.join(folder, f"{name}_heatmaps.png"),
                    heatmap_grid(images, maps, columns["bits_per_dim"]))
    return path
