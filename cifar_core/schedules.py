"""The one-cycle learning-rate schedule (Keras ships cosine but not this one).

Kept in its own module because it must be importable, and registered, wherever a saved model is loaded.
"""

import keras


@keras.saving.register_keras_serializable(package="cifar_core")
class OneCycle(keras.optimizers.schedules.LearningRateSchedule):
    """Linear warm-up from 0 to peak over warmup_steps, then linear decay to 0 at total_steps."""

    def __init__(self, peak, total_steps, warmup_steps):
        self.peak = float(peak)
        self.total_steps = int(total_steps)
        self.warmup_steps = max(1, int(warmup_steps))

    def __call__(self, step):
        step = keras.ops.cast(step, "float32")
        up = step / self.warmup_steps
        down = (self.total_steps - step) / max(1, self.total_steps - self.warmup_steps)
        return self.peak * keras.ops.clip(keras.ops.minimum(up, down), 0.0, 1.0)

    def get_config(self):
        return {"peak": self.peak, "total_steps": self.total_steps, "warmup_steps": self.warmup_steps}
