"""The TensorFlow side shared by every model: training, data, checkpoints, export, TF1 loading.
Two modules import no TensorFlow: `hardware` (it acts before TensorFlow starts) and `config`
(the JAX benchmark reads it)."""
