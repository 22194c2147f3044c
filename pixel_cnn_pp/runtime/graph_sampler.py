"""Naive sampling as one TensorFlow graph: a `tf.while_loop` over pixels with stateless random
draws, so it runs fast under `tf.function`, inside a SavedModel (TF Serving) and gives the same
images for the same seed in any process. The same algorithm as `AutoregressiveModel.sample` and
the original's `sample_from_model`: one full forward pass per pixel in raster order, continuous
samples fed back, the pixel's draws only.
"""
import tensorflow as tf

from pixel_cnn_pp.model.autoregressive import float_to_images
from pixel_cnn_pp.model.mixture import UNIFORM_MIN


def sample_images(model, num_samples, seed, class_label=None):
    """uint8 images (num_samples, H, W, C) from `model`; num_samples and seed may be tensors.

    The draws of pixel k use the stateless seeds (seed, 2k) and (seed, 2k + 1) (one per shape of
    `model.distribution.uniform_shapes`), so a seed fixes the images.
    """
    height, width, channels = model.image_shape
    n = tf.convert_to_tensor(num_samples, tf.int32)
    seed = tf.cast(seed, tf.int64)
    labels = None if class_label is None else tf.broadcast_to(tf.cast(class_label, tf.int32), [n])
    shapes = model.distribution.uniform_shapes(())

    def body(k, x):
        i, j = k // width, k % width
        params = model(x, class_label=labels, training=False)[:, i, j]
        uniforms = [
            tf.random.stateless_uniform(
                tf.concat([[n], tf.constant(shape, tf.int32)], 0),
                seed=tf.stack([seed, tf.cast(2 * k + d, tf.int64)]),
                minval=UNIFORM_MIN, maxval=1.0 - UNIFORM_MIN)
            for d, shape in enumerate(shapes)]
        pixel = model.distribution.sample(params, uniforms)  # (n, C)
        mask = tf.reshape(tf.one_hot(k, height * width), (1, height, width, 1))
        x = x * (1.0 - mask) + tf.reshape(pixel, (-1, 1, 1, channels)) * mask
        return k + 1, x

    x0 = tf.zeros(tf.stack([n, height, width, channels]))
    _, x = tf.while_loop(lambda k, _: k < height * width, body, (tf.constant(0), x0))
    return float_to_images(x)
