"""The optimisation pieces Keras does not ship: a warm-up-then-linear-decay ("one-cycle") learning-rate schedule
and SGD with a larger learning rate for BatchNormalization's betas, both from airbench.

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
