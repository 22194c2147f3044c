"""One training step of the original `train.py`, for every backend: the loss (summed nats of
the batch, dropout on), the original Adam (`optim.OriginalAdam`) and the Polyak average.

The TensorFlow trainer (`pixel_cnn_pp.runtime.trainer`) runs `loss` under a GradientTape in
each replica, `apply` there (Keras sums the replicas' gradients, as the original sums its GPUs')
and `update_average` in cross-replica context. The JAX benchmark runs the same `loss`, Adam and
Polyak update as one pure function (`stateless_step`), so the GPU figures measure the code that
training runs.
"""
import keras
from keras import ops

from pixel_cnn_pp.model.optim import OriginalAdam, PolyakAverage


class TrainStep:
    """The model, its optimiser and its Polyak average, created together (in this order, so the
    shadows start from the pre-init weights as the original's do; create it inside a
    tf.distribute strategy's scope to mirror them).

    learning_rate, lr_decay, adam_epsilon, polyak_decay: the original's flags of those names.
    l2_weight: lambda of `penalty` (0: none, the original's step).
    """

    def __init__(self, model, learning_rate=1e-3, lr_decay=0.999995, adam_epsilon=1e-8,
                 polyak_decay=0.9995, l2_weight=0.0):
        self.model = model
        self.l2_weight = float(l2_weight)
        self.ema = PolyakAverage(model.trainable_variables, polyak_decay)
        self.optimizer = OriginalAdam(learning_rate, lr_decay=lr_decay, epsilon=adam_epsilon)
        self.optimizer.build(model.trainable_variables)

    def loss(self, images, labels=None, condition=None):
        """Summed nats of a batch of uint8 images (B, H, W, C) (or code maps), dropout on: the
        original's loss (not a mean). `labels`: (B,) ints for a class-conditional model, else
        None; `condition`: (B, ...) maps for a model with a condition_shape."""
        return ops.sum(self.model.nll(self.model.distribution.encode(images), labels,
                                      training=True, condition=condition))

    def penalty(self, num_images):
        """l2_weight x num_images x the sum of squares of the weights the network applies,
        biases excluded: a weight-normalised layer applies g V / ||V||, whose squared norm is
        sum(g^2) (V's norm does not change the function), and the class conditioning applies
        hw as it is. Added to the summed nats of `num_images` images, so that per image the
        objective is nats + lambda ||w||^2 however a batch is split over replicas (Ren et al.'s
        background models add lambda ||w||^2 to a mean loss)."""
        weights = [v for v in self.model.trainable_variables if v.name in ("g", "hw")]
        squares = ops.sum(ops.stack([ops.sum(ops.square(w)) for w in weights]))
        return self.l2_weight * ops.cast(num_images, "float32") * squares

    def apply(self, grads):
        """The original Adam update of the model's trainable variables."""
        self.optimizer.apply(grads, self.model.trainable_variables)

    def update_average(self):
        """Polyak averaging after the update (cross-replica context under a strategy)."""
        self.ema.update()

    # -- the same step as one pure function (JAX) -------------------------------------------

    def state(self):
        """(trainable, non-trainable, optimizer, shadow) values: the state of `stateless_step`."""
        return tuple([v.value for v in variables] for variables in (
            self.model.trainable_variables, self.model.non_trainable_variables,
            self.optimizer.variables, self.ema.shadows))

    def stateless_loss(self, trainable, non_trainable, images, labels=None):
        """`loss` as a function of the variables' values: (loss, new non-trainable values)."""
        model = self.model
        mapping = list(zip(model.trainable_variables, trainable))
        mapping += list(zip(model.non_trainable_variables, non_trainable))
        with keras.StatelessScope(state_mapping=mapping) as scope:
            loss = self.loss(images, labels)
        return loss, [scope.get_current_value(v) for v in model.non_trainable_variables]

    def stateless_step(self, state, images, labels=None):
        """One step as a pure function of `state()`: (new state, loss). JAX only (its gradient
        is `jax.value_and_grad`); wrap it in `jax.jit`."""
        import jax  # the one backend-specific line: TensorFlow uses a GradientTape instead
        trainable, non_trainable, optimizer_values, shadows = state
        (loss, non_trainable), grads = jax.value_and_grad(self.stateless_loss, has_aux=True)(
            trainable, non_trainable, images, labels)
        trainable, optimizer_values = self.optimizer.stateless_apply(
            optimizer_values, grads, trainable)
        shadows = [self.ema.averaged_value(s, t) for s, t in zip(shadows, trainable)]
        return (trainable, non_trainable, optimizer_values, shadows), loss
