"""The Keras optimizers the TensorFlow backend trains with.

Keras's own optimizers disagree with torch in three places, so the update rules of the
Keras optimizers used here are overridden to follow the one meaning in `bench.backend_api`:
Adam adds eps to sqrt(v_hat) (Keras adds it to sqrt(v), in torch's terms an eps of
eps / sqrt(1 - beta2^t), 32x larger at step 1), RMSprop adds eps outside the square root
(Keras: inside), and SGD momentum keeps v = m*v + g and scales by the current lr (Keras
folds lr into v, which differs as soon as the lr changes, i.e. under a schedule).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import keras
import tensorflow as tf

from .registry import ADAM_BETAS, EPSILON, OPTIMIZERS, RMSPROP_RHO

if TYPE_CHECKING:
    from .spec import RunSpec


def _dense(gradient):
    # Embedding gradients arrive as IndexedSlices; torch updates every row (momentum and
    # second moments decay for rows absent from the batch too), so update densely as well.
    return tf.convert_to_tensor(gradient) if isinstance(gradient, tf.IndexedSlices) else gradient


class Adam(keras.optimizers.Adam):
    """Keras Adam with torch's eps placement: p -= lr * m_hat / (sqrt(v_hat) + eps)."""

    def update_step(self, gradient, variable, learning_rate):
        dtype = variable.dtype
        g = tf.cast(_dense(gradient), dtype)
        b1, b2 = self.beta_1, self.beta_2
        # Bias corrections in float64 like torch's python floats: 1 - 0.999**t in float32
        # loses four digits to cancellation early in training.
        t = tf.cast(self.iterations + 1, tf.float64)
        bc1 = 1 - tf.pow(tf.constant(b1, tf.float64), t)
        bc2 = 1 - tf.pow(tf.constant(b2, tf.float64), t)
        step_size = tf.cast(tf.cast(learning_rate, tf.float64) / bc1, dtype)
        bc2_sqrt = tf.cast(tf.sqrt(bc2), dtype)
        m = self._momentums[self._get_variable_index(variable)]
        v = self._velocities[self._get_variable_index(variable)]
        self.assign_add(m, (g - m) * (1 - b1))
        self.assign_add(v, (tf.square(g) - v) * (1 - b2))
        self.assign_sub(variable, step_size * m / (tf.sqrt(v) / bc2_sqrt + self.epsilon))


class RMSprop(keras.optimizers.RMSprop):
    """Keras RMSprop with torch's eps placement: p -= lr * g / (sqrt(v) + eps)."""

    def update_step(self, gradient, variable, learning_rate):
        g = tf.cast(_dense(gradient), variable.dtype)
        lr = tf.cast(learning_rate, variable.dtype)
        v = self._velocities[self._get_variable_index(variable)]
        self.assign(v, self.rho * v + (1 - self.rho) * tf.square(g))
        self.assign_sub(variable, lr * g / (tf.sqrt(v) + self.epsilon))


class SGD(keras.optimizers.SGD):
    """SGD; with momentum torch's form v = m*v + g, p -= lr*v (nesterov: lr*(g + m*v))."""

    def update_step(self, gradient, variable, learning_rate):
        if not self.momentum:
            return super().update_step(gradient, variable, learning_rate)
        g = tf.cast(_dense(gradient), variable.dtype)
        lr = tf.cast(learning_rate, variable.dtype)
        v = self.momentums[self._get_variable_index(variable)]
        self.assign(v, self.momentum * v + g)
        step = g + self.momentum * v if self.nesterov else v
        self.assign_sub(variable, lr * step)


def optimizer(spec: RunSpec) -> keras.optimizers.Optimizer:
    """The spec's optimizer at its learning rate (adamw's decoupled decay is the Trainer's)."""
    lr = float(spec.lr)
    if spec.optimizer in ("adam", "adamw"):  # adamw's decay is applied by the Trainer
        b1, b2 = ADAM_BETAS
        return Adam(learning_rate=lr, beta_1=b1, beta_2=b2, epsilon=EPSILON)
    if spec.optimizer == "rmsprop":
        return RMSprop(learning_rate=lr, rho=RMSPROP_RHO, epsilon=EPSILON)
    return SGD(learning_rate=lr, momentum=OPTIMIZERS[spec.optimizer].momentum,
               nesterov=spec.optimizer == "nesterov")
