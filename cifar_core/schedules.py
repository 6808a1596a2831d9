"""The optimisation pieces Keras does not ship: a warm-up-then-linear-decay ("one-cycle") learning-rate schedule,
SGD with a larger learning rate for BatchNormalization's betas, and that SGD with Muon's step for the convolution
kernels, all from airbench.

Kept in their own module because they must be importable, and registered, wherever a saved model is loaded.
"""

import keras


@keras.saving.register_keras_serializable(package="cifar_core")
class OneCycle(keras.optimizers.schedules.LearningRateSchedule):
    """Linear warm-up from start_fraction * peak to peak over warmup_steps, then linear decay to
    end_fraction * peak at total_steps (airbench: 0.2 and 0.07; the classic one-cycle: 0 and 0).

    The length is a variable, so that a time budget (callbacks.make_time_budget) can move the end of the schedule
    as it learns this machine's speed; the warm-up keeps its share of the length."""

    def __init__(self, peak, total_steps, warmup_steps, start_fraction=0.0, end_fraction=0.0):
        self.peak = float(peak)
        total = max(1, int(total_steps))
        self.warmup_share = max(1, int(warmup_steps)) / total
        self.length = keras.Variable(float(total), dtype="float32", trainable=False, name="one_cycle_length")
        self.start_fraction = float(start_fraction)
        self.end_fraction = float(end_fraction)

    def set_length(self, total_steps: float) -> None:
        self.length.assign(max(1.0, float(total_steps)))

    def __call__(self, step):
        step = keras.ops.cast(step, "float32")
        total = keras.ops.convert_to_tensor(self.length)
        warmup = keras.ops.maximum(1.0, self.warmup_share * total)
        up = keras.ops.clip(step / warmup, 0.0, 1.0)
        down = keras.ops.clip((step - warmup) / keras.ops.maximum(1.0, total - warmup), 0.0, 1.0)
        rising = self.start_fraction + (1.0 - self.start_fraction) * up
        falling = 1.0 + (self.end_fraction - 1.0) * down
        return self.peak * keras.ops.where(step < warmup, rising, falling)

    def get_config(self):
        total = int(round(float(self.length.numpy())))
        return {"peak": self.peak, "total_steps": total, "warmup_steps": round(self.warmup_share * total),
                "start_fraction": self.start_fraction, "end_fraction": self.end_fraction}


@keras.saving.register_keras_serializable(package="cifar_core")
class BiasScaledSGD(keras.optimizers.SGD):
    """keras.optimizers.SGD whose normalization layers' betas (variables named "beta": BatchNormalization's and
    LayerNormalization's) learn bias_lr_scale times faster (airbench: 64, for its BatchNormalization biases).

    Scaling a gradient scales that variable's step exactly like a per-variable learning rate would, momentum
    included; the decoupled weight decay is left unscaled, as in airbench."""

    def __init__(self, *args, bias_lr_scale=1.0, **kwargs):
        super().__init__(*args, **kwargs)
        self.bias_lr_scale = float(bias_lr_scale)

    def apply(self, grads, trainable_variables=None):
        variables = trainable_variables if trainable_variables is not None else self._trainable_variables
        grads = [g * self.bias_lr_scale if g is not None and v.name == "beta" else g
                 for g, v in zip(grads, variables)]
        return super().apply(grads, trainable_variables)

    def get_config(self):
        return {**super().get_config(), "bias_lr_scale": self.bias_lr_scale}


def orthogonalize(g, steps: int = 3):
    """Muon's Newton-Schulz iteration (Jordan, 2024): g (rows, columns) -> roughly the orthogonal matrix U V^T of
    its singular value decomposition, with singular values spread over about 0.5-1.5, which trains as well. Runs on
    the short side: for `fast`, a few products of at most 256 x 2304, too cheap to measure next to a training step
    (benchmarks/README.md)."""
    ops = keras.ops
    a, b, c = 3.4445, -4.7750, 2.0315
    tall = g.shape[0] > g.shape[1]
    x = ops.transpose(g) if tall else g
    x = x / (ops.sqrt(ops.sum(ops.square(x))) + 1e-7)  # the top singular value at most 1
    for _ in range(steps):
        gram = ops.matmul(x, ops.transpose(x))
        x = a * x + ops.matmul(b * gram + c * ops.matmul(gram, gram), x)
    return ops.transpose(x) if tall else x


@keras.saving.register_keras_serializable(package="cifar_core")
class MuonSGD(BiasScaledSGD):
    """BiasScaledSGD for every variable but the convolution kernels (4-D), which take Muon's step, as in
    airbench94_muon: Nesterov momentum (filter_momentum) on the raw gradient, the kernel rescaled to a fixed norm
    (sqrt of its output channels), then a step of filter_learning_rate along the orthogonalised momentum.

    The filter rate follows the schedule's shape: it is filter_learning_rate times the schedule's current value
    over its peak (peak_learning_rate). Keras 3.15's own keras.optimizers.Muon takes AdamW's step for 4-D variables,
    hence this class. Weight decay is left out for the kernels: their norm is reset every step."""

    def __init__(self, *args, filter_learning_rate=0.24, filter_momentum=0.6, peak_learning_rate=1.0, **kwargs):
        super().__init__(*args, **kwargs)
        self.filter_learning_rate = float(filter_learning_rate)
        self.filter_momentum = float(filter_momentum)
        self.peak_learning_rate = float(peak_learning_rate)

    @staticmethod
    def is_filter(variable) -> bool:
        return len(variable.shape) == 4

    def build(self, variables):
        if self.built:
            return
        super().build(variables)
        if self.momentum == 0:  # SGD keeps no buffers then, and the kernels' own momentum still needs its own
            self.momentums = self.add_optimizer_variables(variables, "momentum")

    def _use_weight_decay(self, variable):
        return not self.is_filter(variable) and super()._use_weight_decay(variable)

    def update_step(self, gradient, variable, learning_rate):
        if not self.is_filter(variable):
            return super().update_step(gradient, variable, learning_rate)
        ops = keras.ops
        gradient = ops.cast(gradient, variable.dtype)
        rate = ops.cast(learning_rate, variable.dtype) * (self.filter_learning_rate / self.peak_learning_rate)
        buffer = self.momentums[self._get_variable_index(variable)]
        self.assign(buffer, buffer * self.filter_momentum + gradient)
        direction = gradient + self.filter_momentum * buffer  # Nesterov
        outputs = variable.shape[-1]
        kernel = variable * (outputs ** 0.5 / ops.sqrt(ops.sum(ops.square(variable))))
        step = orthogonalize(ops.reshape(direction, (-1, outputs)))
        self.assign(variable, kernel - rate * ops.reshape(step, variable.shape))

    def get_config(self):
        return {**super().get_config(), "filter_learning_rate": self.filter_learning_rate,
                "filter_momentum": self.filter_momentum, "peak_learning_rate": self.peak_learning_rate}
