"""Reads and writes of one position of the sampler steps' caches (`steps.py`), in `keras.ops`.

A step runs hundreds of these a pixel, so each is as few ops as the backends allow; without XLA
TensorFlow copies a loop-carried tensor at every write, so the tables they write stay small.
"""
from keras import ops


def pick(x, index, axis):
    """x with `axis` reduced to the one entry `index` (a scalar tensor), the axis kept: a slice
    (two ops on TensorFlow, where `take` adds a negative-index fix-up). A dimension unknown
    while tracing (TensorFlow's batch) is taken whole."""
    start = [0] * len(x.shape)
    start[axis] = index
    size = [-1 if d is None else d for d in x.shape]
    size[axis] = 1
    return ops.slice(x, start, size)


def put_first(table, index, value):
    """table (N, ...) with entry `index` (a scalar) of axis 0 set to value (...): one scatter
    at one index."""
    return ops.scatter_update(table, ops.reshape(index, (1, 1)), value[None])


def put_span(table, start, values):
    """table (N, ...) with entries start, ..., start + n - 1 of axis 0 set to values (n, ...):
    one scatter (one copy of the table without XLA) for n entries."""
    index = ops.reshape(start + ops.arange(values.shape[0], dtype="int32"), (-1, 1))
    return ops.scatter_update(table, index, values)


def put_at(table, index, value):
    """table (B, N, ...) with entry `index` (a scalar) of axis 1 set to value (B, ...) in
    every image."""
    batch = ops.arange(ops.shape(value)[0], dtype="int32")
    return ops.scatter_update(table, ops.stack([batch, ops.zeros_like(batch) + index], axis=1),
                              value)


def put_row(done, index, row, height, width):
    """done (B, H * W, C) with image row `index` set to row (B, W, C)."""
    grid = ops.reshape(done, (-1, height, width, done.shape[-1]))
    return ops.reshape(put_at(grid, index, row), (-1, height * width, done.shape[-1]))
