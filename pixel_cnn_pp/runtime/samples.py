"""Sample grids on disk: `<save_dir>/samples/<stem>.png` (one grid) and `.npy` (the images)."""
import math
import os

import numpy as np
import tensorflow as tf

from pixel_cnn_pp.runtime import atomic


def image_grid(images, min_side=256, cols=None):
    """(N, H, W, C) uint8 -> one (rows*H*s, cols*W*s, C) grid, upscaled by an integer s so that
    small images stay visible, with 1-pixel gaps; `cols` images per row (default: a square)."""
    images = np.asarray(images)
    n, h, w, c = images.shape
    cols = cols or math.ceil(math.sqrt(n))
    rows = math.ceil(n / cols)
    scale = max(1, min_side // (cols * w))
    tiles = images.repeat(scale, axis=1).repeat(scale, axis=2)
    th, tw = h * scale, w * scale
    grid = np.full((rows * (th + 1) - 1, cols * (tw + 1) - 1, c), 255, np.uint8)
    for k in range(n):
        r, q = divmod(k, cols)
        grid[r * (th + 1):r * (th + 1) + th, q * (tw + 1):q * (tw + 1) + tw] = tiles[k]
    return grid


def write(save_dir, images, stem, cols=None):
    """Write uint8 images (N, H, W, C) as a grid PNG (`cols` per row) and an .npy file; returns
    the PNG path. Code maps (N, H, W) are written as the .npy file only (its path returned)."""
    folder = os.path.join(save_dir, "samples")
    tf.io.gfile.makedirs(folder)
    if np.ndim(images) == 3:
        path = os.path.join(folder, stem + ".npy")
        atomic.save_npy(path, images)
        return path
    path = os.path.join(folder, stem + ".png")
    atomic.save_png(path, image_grid(images, cols=cols))
    atomic.save_npy(os.path.join(folder, stem + ".npy"), images)
    return path
