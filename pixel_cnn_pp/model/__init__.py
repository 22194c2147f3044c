"""Backend-portable model code: `keras.ops` and `keras.layers` only, never TensorFlow."""
