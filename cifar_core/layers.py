"""Layers the builder uses beyond Keras's own: airbench's fixed patch-whitening first layer and the identity
("Dirac") initialisation of its convolutions, a BatchNormalization that trains through TensorFlow's fused
kernel, an Activation whose GELU has a hand-written gradient, and a Conv2D with gradients of its own where oneDNN's
were measured slow (the input gradient in float32, the kernel gradient of small bfloat16 maps).

All are registered as serialisable, so a saved model.keras loads with safe_mode=True wherever this module is
imported (models.py imports it).
"""

from __future__ import annotations

import functools

import keras
import numpy as np

from .device import device_info


@keras.saving.register_keras_serializable(package="cifar_core")
class PatchWhitening(keras.layers.Layer):
    """A fixed convolution that whitens kernel_size x kernel_size patches (Jordan, airbench, 2024).

    `adapt(images)` sets it from data, like Keras's Normalization.adapt: on images standardised per channel (as
    airbench's inputs are, so that epsilon means the same), the kernel holds the eigenvectors of the patch
    covariance scaled by 1/sqrt(eigenvalue + epsilon), and their negatives, so the output has
    2 * channels * kernel_size**2 channels. The standardisation and the mean patch are folded into the kernel and
    the bias. Nothing in it is trained.
    """

    def __init__(self, kernel_size: int = 2, epsilon: float = 5e-4, **kwargs):
        super().__init__(**kwargs)
        self.kernel_size = int(kernel_size)
        self.epsilon = float(epsilon)

    def build(self, input_shape):
        k, channels = self.kernel_size, int(input_shape[-1])
        self.filters = 2 * channels * k * k
        self.kernel = self.add_weight(shape=(k, k, channels, self.filters), initializer="zeros", trainable=False,
                                      name="kernel")
        self.bias = self.add_weight(shape=(self.filters,), initializer="zeros", trainable=False, name="bias")

    def call(self, inputs):
        kernel = keras.ops.cast(self.kernel, inputs.dtype)
        return keras.ops.conv(inputs, kernel, padding="valid") + keras.ops.cast(self.bias, inputs.dtype)

    def compute_output_shape(self, input_shape):
        k = self.kernel_size
        height, width = (None if side is None else side - k + 1 for side in input_shape[1:3])
        return (input_shape[0], height, width, 2 * input_shape[-1] * k * k)

    def adapt(self, images) -> None:
        """images: float (n, height, width, channels), already scaled as this layer's input will be."""
        x = np.asarray(images, dtype=np.float32)
        k = self.kernel_size
        if not self.built:
            self.build(x.shape)
        _, h, w, c = x.shape
        channel_mean = x.mean(axis=(0, 1, 2), dtype=np.float64)
        channel_std = x.std(axis=(0, 1, 2), dtype=np.float64) + 1e-8
        z = ((x - channel_mean) / channel_std).astype(np.float32)
        # Each patch as a row in the kernel's (ky, kx, c) order, from k * k shifted contiguous slices: faster than
        # a transposed sliding-window view, whose copy is strided (benchmarks/README.md).
        shifted = [z[:, dy:h - k + 1 + dy, dx:w - k + 1 + dx] for dy in range(k) for dx in range(k)]
        patches = np.concatenate(shifted, axis=-1).reshape(-1, k * k * c)
        patch_mean = patches.mean(axis=0, dtype=np.float64)
        covariance = (patches.T @ patches).astype(np.float64) / len(patches) - np.outer(patch_mean, patch_mean)
        eigenvalues, eigenvectors = np.linalg.eigh(covariance)
        scaled = eigenvectors[:, ::-1] / np.sqrt(eigenvalues[::-1] + self.epsilon)  # columns, largest first
        on_z = np.concatenate([scaled, -scaled], axis=1)
        # conv(z) = conv(x) with the kernel's rows divided by their channel's std, minus the means' projection.
        row_scale = np.tile(1.0 / channel_std, k * k)
        kernel = on_z * row_scale[:, None]
        bias = -(np.tile(channel_mean, k * k) * row_scale + patch_mean) @ on_z
        self.kernel.assign(kernel.reshape(k, k, c, self.filters).astype("float32"))
        self.bias.assign(bias.astype("float32"))

    def get_config(self):
        return {**super().get_config(), "kernel_size": self.kernel_size, "epsilon": self.epsilon}


@keras.saving.register_keras_serializable(package="cifar_core")
class Dirac(keras.initializers.VarianceScaling):
    """airbench's convolution initialisation: PyTorch's default (uniform, bound 1/sqrt(fan_in)), except that the
    first min(in, out) output channels start as exact copies of the input channels (torch.nn.init.dirac_), so the
    stack starts close to an identity map."""

    def __init__(self, scale=1 / 3, mode="fan_in", distribution="uniform", seed=None, **kwargs):
        super().__init__(scale=scale, mode=mode, distribution=distribution, seed=seed, **kwargs)

    def __call__(self, shape, dtype=None):
        kernel = super().__call__(shape, dtype=dtype)
        k_h, k_w, c_in, c_out = shape
        eye = np.zeros(shape, dtype="float32")
        keep = np.ones(shape, dtype="float32")
        for i in range(min(c_in, c_out)):
            eye[k_h // 2, k_w // 2, i, i] = 1.0
            keep[:, :, :, i] = 0.0
        return kernel * keras.ops.cast(keep, kernel.dtype) + keras.ops.cast(eye, kernel.dtype)


@keras.saving.register_keras_serializable(package="cifar_core")
class Conv2D(keras.layers.Conv2D):
    """keras.layers.Conv2D with two gradients of its own, for a 3x3 "same" convolution of stride 1 on a CPU, where
    oneDNN's were measured slow (benchmarks/README.md); the same values, to rounding:

    - in float32, the input gradient is a forward convolution of the output gradient with the kernel turned half a
      turn, its input and output channels swapped. On a plain AVX2 CPU oneDNN's float32 Conv2DBackpropInput took
      up to 7x the forward convolution of the same size (655 against 86 ms for fast's 3x3 map of 256 channels);
      the forward one took about half of it over fast's six convolutions.
    - in bfloat16, on maps of at most NINE_TAPS_MAX_PIXELS pixels, the kernel gradient is nine matrix products of
      shifted input slices with the output gradient, one per kernel tap: there oneDNN's bfloat16
      Conv2DBackpropFilter takes 3-6x the forward convolution's time, and the products about 40% less than it. On
      larger maps they lose, and in float32 on an AVX2 CPU they lost everywhere. A model for images of any size
      (progressive resizing) chooses by the map's size as each step runs.
    """

    def convolution_op(self, inputs, kernel):
        plan = _gradient_plan(self, inputs)
        if plan is None:
            return super().convolution_op(inputs, kernel)
        return _conv_own_gradients(inputs, keras.ops.cast(kernel, inputs.dtype), *plan)


NINE_TAPS_MAX_PIXELS = 64  # 7x7 and 3x3 maps gain; 15x15 lose (benchmarks/README.md)


def _gradient_plan(layer, inputs) -> tuple[bool | None, bool] | None:
    """(nine taps for the kernel gradient, a forward convolution for the input gradient), or None where TensorFlow's
    own gradients are used: another convolution, another precision, a GPU. Nine taps None: the map's size is known
    only when the step runs (a model for images of any size, under progressive resizing), which then chooses."""
    shape = tuple(inputs.shape)
    if not (keras.backend.backend() == "tensorflow" and len(shape) == 4
            and tuple(layer.kernel_size) == (3, 3) and tuple(layer.strides) == (1, 1)
            and tuple(layer.dilation_rate) == (1, 1) and layer.padding == "same" and layer.groups == 1
            and layer.data_format == "channels_last" and not device_info()["gpus"]):
        return None
    dtype = keras.backend.standardize_dtype(inputs.dtype)
    if dtype == "float32":
        return False, True
    if dtype == "bfloat16" and None in shape[1:3]:
        return None, False
    if dtype == "bfloat16" and shape[1] * shape[2] <= NINE_TAPS_MAX_PIXELS:
        return True, False
    return None


def _conv_own_gradients(x, kernel, taps_for_kernel: bool | None, forward_for_input: bool):
    import tensorflow as tf

    @tf.custom_gradient
    def conv(x, kernel):
        def by_taps(upstream):
            height, width, channels = tf.shape(x)[1], tf.shape(x)[2], x.shape[3]
            padded = tf.pad(x, [[0, 0], [1, 1], [1, 1], [0, 0]])
            rows = tf.reshape(upstream, [-1, upstream.shape[-1]])
            taps = [tf.matmul(tf.reshape(padded[:, i:i + height, j:j + width], [-1, channels]), rows,
                              transpose_a=True) for i in range(3) for j in range(3)]
            return tf.reshape(tf.stack(taps), kernel.shape)

        def by_onednn(upstream):
            return tf.raw_ops.Conv2DBackpropFilter(input=x, filter_sizes=tf.shape(kernel), out_backprop=upstream,
                                                   strides=[1, 1, 1, 1], padding="SAME")

        def grad(upstream):
            if forward_for_input:  # dx = dy correlated with the kernel turned 180 degrees, channels swapped
                turned = tf.transpose(tf.reverse(kernel, [0, 1]), [0, 1, 3, 2])
                input_gradient = tf.nn.conv2d(upstream, turned, 1, "SAME")
            else:
                input_gradient = tf.raw_ops.Conv2DBackpropInput(
                    input_sizes=tf.shape(x), filter=kernel, out_backprop=upstream, strides=[1, 1, 1, 1],
                    padding="SAME")
            if taps_for_kernel is None:
                small = tf.shape(x)[1] * tf.shape(x)[2] <= NINE_TAPS_MAX_PIXELS
                kernel_gradient = tf.cond(small, lambda: by_taps(upstream), lambda: by_onednn(upstream))
            else:
                kernel_gradient = (by_taps if taps_for_kernel else by_onednn)(upstream)
            return input_gradient, kernel_gradient

        return tf.nn.conv2d(x, kernel, 1, "SAME"), grad

    return conv(x, kernel)


@keras.saving.register_keras_serializable(package="cifar_core")
class BatchNormalization(keras.layers.BatchNormalization):
    """keras.layers.BatchNormalization trained through TensorFlow's fused kernel (FusedBatchNormV3, as tf.keras 2
    did) for images with channels last; inference and anything else go to Keras's own code. Keras 3 computes the
    moments and the normalisation as separate operations, in float32 even under mixed bfloat16; the fused kernel
    trains a `fast` step about a fifth faster (benchmarks/README.md). As in tf.keras 2, the moving variance averages
    the batch variance with Bessel's correction."""

    def call(self, inputs, training=None, mask=None):
        import tensorflow as tf

        fused = training and mask is None and len(inputs.shape) == 4 and self.axis in (-1, 3)
        if not fused or keras.backend.backend() != "tensorflow":
            # Inference stays Keras's: the Layers and Classify pages run it eagerly from several sessions' threads
            # at once, and TensorFlow 2.21's fused kernel then corrupted the heap (reproduced with four threads of
            # Grad-CAM). Predictions fold it away anyway (models.serving_model).
            return super().call(inputs, training=training, mask=mask)
        channels = inputs.shape[-1]
        scale = tf.convert_to_tensor(self.gamma) if self.scale else tf.ones([channels], tf.float32)
        offset = tf.convert_to_tensor(self.beta) if self.center else tf.zeros([channels], tf.float32)
        outputs, mean, variance, *_ = tf.compat.v1.nn.fused_batch_norm(
            inputs, scale, offset, mean=self.moving_mean, variance=self.moving_variance, epsilon=self.epsilon,
            is_training=True, exponential_avg_factor=1.0 - self.momentum)
        self.moving_mean.assign(mean)
        self.moving_variance.assign(variance)
        return outputs


@keras.saving.register_keras_serializable(package="cifar_core")
class Activation(keras.layers.Activation):
    """keras.layers.Activation whose "gelu" (exact, erf-based, as Keras's and PyTorch's default) has its derivative
    written out, Phi(x) + x * phi(x), instead of TensorFlow differentiating erf's composite graph. Same values, fewer
    elementwise passes, a faster training step (benchmarks/README.md). Every other activation is Keras's own.

    In training, the values and the derivative are each one XLA-compiled pass computed in float32 (in bfloat16 too:
    XLA fuses the casts into the pass), where TensorFlow runs each elementwise operation as a pass of its own over the
    whole map: half the time of those passes, and a `fast-small` bfloat16 step ×1.14 faster. Compiled in bfloat16
    they gained nothing, since XLA's CPU backend computes erf slowly there (benchmarks/README.md). Inference keeps the
    uncompiled pass: the pages run it eagerly from several sessions' threads, on batches of every size, and XLA would
    compile for each new shape."""

    def call(self, inputs, training=None):
        if self.activation is not keras.activations.gelu or keras.backend.backend() != "tensorflow":
            return super().call(inputs)
        return _gelu(inputs, compiled=bool(training))


def _cdf(x):
    import tensorflow as tf

    return 0.5 * (1.0 + tf.math.erf(x * 0.7071067811865476))  # Phi(x), 0.707... = 1 / sqrt(2)


def _density(x):
    import tensorflow as tf

    return 0.3989422804014327 * tf.exp(-0.5 * x * x)  # phi(x), 0.398... = 1 / sqrt(2 pi)


@functools.cache
def _compiled_gelu():
    """GELU's values and derivative as XLA-compiled functions computing in float32, made once per process so that
    every model shares their traces."""
    import tensorflow as tf

    @tf.function(jit_compile=True)
    def values(x):
        x32 = tf.cast(x, tf.float32)
        return tf.cast(x32 * _cdf(x32), x.dtype)

    @tf.function(jit_compile=True)
    def derivative(x, upstream):
        x32 = tf.cast(x, tf.float32)
        return tf.cast(tf.cast(upstream, tf.float32) * (_cdf(x32) + x32 * _density(x32)), x.dtype)

    return values, derivative


def _gelu(x, compiled: bool = False):
    import tensorflow as tf

    @tf.custom_gradient
    def gelu(x):
        if compiled:
            values, derivative = _compiled_gelu()
            return values(x), lambda upstream: derivative(x, upstream)
        cdf = _cdf(x)
        return x * cdf, lambda upstream: upstream * (cdf + x * _density(x))

    return gelu(x)
