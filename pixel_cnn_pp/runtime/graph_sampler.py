"""The export's sampler: the API's compiled sampler (`pixel_cnn_pp.model.sampling`, cached by
default) traced into one TensorFlow graph of core ops (While, If, Conv2D, MatMul, bitwise ops
for the draws; no PyFunc), so TF Serving users get the same fast sampler and, for a seed, the
same images as `model.sample(n, seed=seed)`; and the completion sampler, the images of
`model.complete`.
"""
import tensorflow as tf

from pixel_cnn_pp.model import sampling


@tf.autograph.experimental.do_not_convert  # keras.ops loops: nothing for AutoGraph to rewrite
def sample_images(model, num_samples, seed, class_label=None, method="cached", condition=None):
    """uint8 images (num_samples, H, W, C) (code maps: int32 (num_samples, H, W)) from
    `model`; num_samples and seed may be tensors.

    seed (int64) keys the draws by its low 32 bits, as `model.sample` does with a Python int.
    class_label: a scalar (every image) or one int per image, for a class-conditional model.
    condition: (num_samples, ...) maps for a model with a condition_shape.
    """
    n = tf.convert_to_tensor(num_samples, tf.int32)
    labels = None if class_label is None else tf.broadcast_to(tf.cast(class_label, tf.int32), [n])
    x = sampling.METHODS[method](model, n, tf.cast(seed, tf.int64), labels, condition=condition)
    return model.distribution.decode(x)


@tf.autograph.experimental.do_not_convert
def complete_images(model, images, known, seed, class_label=None, condition=None):
    """uint8 images (B, H, W, C) (or code maps) with the pixels where `known` (B, H, W) bool is
    false drawn by the cached sampler (`sampling.completion`): `model.complete`'s images.
    class_label: (B,) int32 for a class-conditional model; condition: (B, ...) or None."""
    labels = None if class_label is None else tf.cast(class_label, tf.int32)
    x = sampling.completion(model, model.distribution.encode(images), known,
                            tf.cast(seed, tf.int64), labels, condition)
    return model.distribution.decode(x)
