"""The original optimiser and Polyak averaging: Keras twins of `nn.adam_updates`, the per-step
learning-rate decay of `train.py` and `tf.train.ExponentialMovingAverage`."""
import contextlib

import keras
from keras import ops

from pixel_cnn_pp.errors import ConfigError


@keras.saving.register_keras_serializable(package="pixel_cnn_pp")
class PerStepDecay(keras.optimizers.schedules.LearningRateSchedule):
    """lr * decay**n for the n-th update, n = 1, 2, ...: the original multiplies the learning
    rate by `lr_decay` *before* every step, so even the first step is decayed once."""

    def __init__(self, learning_rate, decay):
        self.learning_rate = float(learning_rate)
        self.decay = float(decay)

    def __call__(self, step):
        return self.learning_rate * ops.power(self.decay, ops.cast(step, "float32") + 1.0)

    def get_config(self):
        return {"learning_rate": self.learning_rate, "decay": self.decay}


@keras.saving.register_keras_serializable(package="pixel_cnn_pp")
class OriginalAdam(keras.optimizers.Optimizer):
    """Ports `nn.adam_updates(params, grads, lr, mom1, mom2)` with t = 1, 2, ...:

        m <- b1 m + (1 - b1) g,   v <- b2 v + (1 - b2) g^2
        p <- p - lr * (m / (1 - b1^t)) / sqrt(v / (1 - b2^t) + eps)

    Epsilon sits inside the square root (Keras's Adam puts it outside). Defaults are the
    original's call: b1 = 0.95, b2 = 0.9995, eps = 1e-8 (PixelSNAIL passes 1e-6), and the
    per-step decay of `train.py`. Under a tf.distribute strategy, Keras sums the replicas'
    gradients before the update, as the original sums its GPUs' gradients.
    """

    def __init__(self, learning_rate=1e-3, lr_decay=0.999995, beta_1=0.95, beta_2=0.9995,
                 epsilon=1e-8, name="original_adam", **kwargs):
        if isinstance(learning_rate, (int, float)):
            learning_rate = PerStepDecay(learning_rate, lr_decay)
        super().__init__(learning_rate=learning_rate, name=name, **kwargs)
        self.beta_1 = float(beta_1)
        self.beta_2 = float(beta_2)
        self.epsilon = float(epsilon)

    def build(self, var_list):
        if self.built:
            return
        super().build(var_list)
        self._m, self._v = self.add_optimizer_variables(var_list, ["m", "v"])

    def _backend_update_step(self, grads, trainable_variables, learning_rate):
        # The step's scalars once per step, not once per variable: every backend's update loop
        # hands `learning_rate` as it is to each `update_step`. That leaves 23 graph ops per
        # variable instead of 43: the update's trace 15.0 -> 13.2 s at the paper configuration,
        # 7.7 -> 3.8 s for the tests' tiny models (start-up time of training and of the tests).
        t = ops.cast(self.iterations + 1, "float32")
        const = lambda value: ops.convert_to_tensor(value, "float32")  # noqa: E731
        scalars = {"lr": ops.cast(learning_rate, "float32"),
                   "debias_1": 1.0 - ops.power(self.beta_1, t),
                   "debias_2": 1.0 - ops.power(self.beta_2, t),
                   "beta_1": const(self.beta_1), "beta_2": const(self.beta_2),
                   "one_minus_beta_1": const(1.0 - self.beta_1),
                   "one_minus_beta_2": const(1.0 - self.beta_2), "epsilon": const(self.epsilon)}
        super()._backend_update_step(grads, trainable_variables, scalars)

    def update_step(self, gradient, variable, learning_rate):
        """`learning_rate`: the dict of the step's scalars made by `_backend_update_step`."""
        c = {name: ops.cast(value, variable.dtype) for name, value in learning_rate.items()}
        g = ops.cast(gradient, variable.dtype)
        index = self._get_variable_index(variable)
        m = c["beta_1"] * self._m[index] + c["one_minus_beta_1"] * g
        v = c["beta_2"] * self._v[index] + c["one_minus_beta_2"] * ops.square(g)
        self.assign(self._m[index], m)
        self.assign(self._v[index], v)
        self.assign_sub(variable, c["lr"] * (m / c["debias_1"])
                        / ops.sqrt(v / c["debias_2"] + c["epsilon"]))

    def get_config(self):
        config = super().get_config()
        config.update(beta_1=self.beta_1, beta_2=self.beta_2, epsilon=self.epsilon)
        return config


class PolyakAverage:
    """Ports `tf.train.ExponentialMovingAverage(decay)` without num_updates (constant decay):
    shadow <- shadow - (1 - decay) * (shadow - param), every step, after the update.

    Shadows start at the parameters' values when this object is created. The original creates
    them before data-dependent init, so the shadows of g and b start at 1 and 0; create this
    object before `model.initialize` to do the same (the trainer does).

    Under a tf.distribute strategy, create it inside `strategy.scope()` and call `update` in
    cross-replica context (after `strategy.run`), where one assign reaches every replica.
    """

    def __init__(self, variables, decay=0.9995):
        if not 0.0 <= float(decay) < 1.0:
            raise ConfigError(f"polyak_decay must be in [0, 1), got {decay}")
        self.decay = float(decay)
        self.variables = list(variables)
        self.shadows = [
            keras.Variable(ops.convert_to_tensor(v), trainable=False,
                           name=v.name + "_ema", dtype=v.dtype)
            for v in self.variables]

    def averaged_value(self, shadow, value):
        """The shadow after one update towards `value` (also used by the stateless step)."""
        return shadow - (1.0 - self.decay) * (shadow - value)

    def update(self):
        for shadow, variable in zip(self.shadows, self.variables):
            shadow.assign(self.averaged_value(shadow, variable))

    def reset(self):
        """Set every shadow to the current parameter (for models not trained here)."""
        for shadow, variable in zip(self.shadows, self.variables):
            shadow.assign(variable)

    def copy_to_model(self):
        """Load the averaged weights into the model for good (a restored run's `ema` weights)."""
        for shadow, variable in zip(self.shadows, self.variables):
            variable.assign(shadow)

    @contextlib.contextmanager
    def averaged(self):
        """Temporarily load the averaged weights into the model (evaluation, sampling, export)."""
        raw = [ops.copy(v) for v in self.variables]  # a snapshot, not a view of v
        for shadow, variable in zip(self.shadows, self.variables):
            variable.assign(shadow)
        try:
            yield
        finally:
            for value, variable in zip(raw, self.variables):
                variable.assign(value)
