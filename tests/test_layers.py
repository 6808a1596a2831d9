"""cifar_core.layers: PatchWhitening whitens patches exactly, Dirac starts convolutions as identities, the fused
BatchNormalization computes what Keras's does, the Activation's GELU has the right values and derivative, the
Conv2D's own gradients (nine taps, the float32 input gradient) are the convolution's, and all survive a save and a
safe load."""

import keras
import numpy as np
import pytest

from cifar_core import layers, models
from cifar_core.layers import Activation, BatchNormalization, Conv2D, Dirac, PatchWhitening


def _correlated_images(n=300, size=12, seed=0):
    """Smooth colour images: neighbouring pixels and channels are strongly correlated, as in photographs."""
    rng = np.random.default_rng(seed)
    base = rng.normal(size=(n, size + 1, size + 1, 1))
    smooth = (base[:, 1:, 1:] + base[:, :-1, 1:] + base[:, 1:, :-1] + base[:, :-1, :-1]) / 4
    colour = smooth * np.array([1.0, 0.8, 0.6]) + 0.2 * rng.normal(size=(n, size, size, 3)) + 0.5
    return colour.astype("float32")


def test_whitened_patches_have_zero_mean_and_identity_covariance():
    x = _correlated_images()
    layer = PatchWhitening(kernel_size=2, epsilon=1e-9)
    layer.adapt(x)
    out = np.asarray(layer(x), dtype=np.float64)
    assert out.shape == (300, 11, 11, 24)  # 2 * 3 channels * 2 * 2
    flat = out.reshape(-1, 24)
    np.testing.assert_allclose(flat.mean(axis=0), 0.0, atol=1e-3)
    np.testing.assert_allclose(np.cov(flat[:, :12], rowvar=False), np.eye(12), atol=2e-3)
    np.testing.assert_allclose(flat[:, 12:], -flat[:, :12], atol=1e-5)


def test_epsilon_damps_each_direction_by_eigenvalue_over_eigenvalue_plus_epsilon():
    # on images standardised per channel, as airbench's are: direction i keeps variance l_i / (l_i + epsilon)
    x = _correlated_images()
    layer = PatchWhitening(kernel_size=2, epsilon=0.1)
    layer.adapt(x)
    variances = np.asarray(layer(x), dtype=np.float64).reshape(-1, 24)[:, :12].var(axis=0)
    z = (x - x.mean(axis=(0, 1, 2))) / x.std(axis=(0, 1, 2))
    patches = np.concatenate([z[:, dy:dy + 11, dx:dx + 11] for dy in (0, 1) for dx in (0, 1)], axis=-1)
    eigenvalues = np.sort(np.linalg.eigvalsh(np.cov(patches.reshape(-1, 12), rowvar=False)))[::-1]
    np.testing.assert_allclose(variances, eigenvalues / (eigenvalues + 0.1), rtol=2e-3)
    assert variances[0] > 0.95 and variances[-1] < 0.7  # strong patterns pass, the faintest are not blown up


def test_nothing_in_the_whitening_is_trained():
    layer = PatchWhitening()
    layer.build((None, 32, 32, 3))
    assert layer.trainable_weights == [] and len(layer.non_trainable_weights) == 2
    assert layer.compute_output_shape((None, 32, 32, 3)) == (None, 31, 31, 24)


def test_dirac_keeps_the_first_channels_and_fills_the_rest():
    kernel = np.asarray(Dirac(seed=1)((3, 3, 4, 6)))
    for i in range(4):
        expected = np.zeros((3, 3, 4))
        expected[1, 1, i] = 1.0
        np.testing.assert_array_equal(kernel[..., i], expected)
    rest = kernel[..., 4:]
    bound = 1 / np.sqrt(3 * 3 * 4)  # PyTorch's default: uniform in +-1/sqrt(fan_in)
    assert np.all(np.abs(rest) <= bound) and np.abs(rest).max() > bound / 2


def test_a_dirac_convolution_starts_as_the_identity():
    conv = keras.layers.Conv2D(5, 3, padding="same", use_bias=False, kernel_initializer=Dirac(seed=0))
    x = np.random.default_rng(0).normal(size=(2, 8, 8, 3)).astype("float32")
    y = np.asarray(conv(x))
    np.testing.assert_allclose(y[..., :3], x, atol=1e-6)


def test_a_model_with_all_four_saves_and_loads_safely(tmp_path):
    from cifar_core.models import load_model

    model = keras.Sequential([keras.Input((32, 32, 3)), PatchWhitening(),  # the images load_model accepts
                              Conv2D(4, 3, kernel_initializer=Dirac()), BatchNormalization(),
                              Activation("gelu"), keras.layers.GlobalAveragePooling2D()])
    model.layers[0].adapt(_correlated_images(50, 32))
    model.layers[2].moving_mean.assign([0.1, -0.2, 0.3, 0.0])
    x = _correlated_images(4, 32, seed=1)
    model.save(tmp_path / "m.keras")
    again = load_model(tmp_path / "m.keras")
    assert type(again.layers[1]) is Conv2D and type(again.layers[2]) is BatchNormalization
    assert type(again.layers[3]) is Activation
    np.testing.assert_allclose(np.asarray(again(x)), np.asarray(model(x)), atol=1e-5)


def _conv_gradients(conv, x, upstream):
    import tensorflow as tf

    x = tf.constant(x)
    with tf.GradientTape() as tape:
        tape.watch(x)
        out = conv(x)
        total = tf.reduce_sum(tf.cast(out, "float32") * upstream)
    return out, tape.gradient(total, [x, conv.kernel])


def test_nine_tap_kernel_gradient_by_numpy_under_mixed_bfloat16():
    rng = np.random.default_rng(4)
    x = rng.normal(size=(3, 7, 7, 5)).astype("float32")
    upstream = rng.normal(size=(3, 7, 7, 6)).astype("float32")
    policy = keras.mixed_precision.global_policy().name
    try:
        keras.mixed_precision.set_global_policy("mixed_bfloat16")
        conv = Conv2D(6, 3, padding="same", use_bias=False)
        conv.build(x.shape)
        assert layers._gradient_plan(conv, keras.ops.cast(x, "bfloat16")) == (True, False)
        out, (input_gradient, kernel_gradient) = _conv_gradients(conv, x, upstream)
    finally:
        keras.mixed_precision.set_global_policy(policy)
    # the reference, in float64 from the bfloat16 values the layer computed with
    xb = np.asarray(keras.ops.cast(keras.ops.cast(x, "bfloat16"), "float32"), np.float64)
    kb = np.asarray(keras.ops.cast(keras.ops.cast(conv.kernel, "bfloat16"), "float32"), np.float64)
    ub = np.asarray(keras.ops.cast(keras.ops.cast(upstream, "bfloat16"), "float32"), np.float64)
    padded = np.pad(xb, ((0, 0), (1, 1), (1, 1), (0, 0)))
    expected = np.stack([np.einsum("nhwc,nhwo->co", padded[:, i:i + 7, j:j + 7], ub)
                         for i in range(3) for j in range(3)]).reshape(3, 3, 5, 6)
    outputs = sum(np.einsum("nhwc,co->nhwo", padded[:, i:i + 7, j:j + 7], kb[i, j]) for i in range(3) for j in range(3))
    flipped = np.pad(ub, ((0, 0), (1, 1), (1, 1), (0, 0)))
    expected_input = sum(np.einsum("nhwo,co->nhwc", flipped[:, 2 - i:9 - i, 2 - j:9 - j], kb[i, j])
                         for i in range(3) for j in range(3))
    scale = np.abs(expected).max()
    np.testing.assert_allclose(np.asarray(kernel_gradient, np.float64), expected, atol=0.02 * scale)
    np.testing.assert_allclose(np.asarray(out, np.float32), outputs, atol=0.02 * np.abs(outputs).max())
    np.testing.assert_allclose(np.asarray(input_gradient, np.float64), expected_input,
                               atol=0.02 * np.abs(expected_input).max())


def test_float32_input_gradient_as_a_forward_convolution_by_numpy():
    rng = np.random.default_rng(5)
    x = rng.normal(size=(2, 5, 6, 3)).astype("float32")
    upstream = rng.normal(size=(2, 5, 6, 4)).astype("float32")
    conv = Conv2D(4, 3, padding="same", use_bias=False)
    conv.build(x.shape)
    assert layers._gradient_plan(conv, keras.ops.convert_to_tensor(x)) == (False, True)
    out, (input_gradient, kernel_gradient) = _conv_gradients(conv, x, upstream)
    k = np.asarray(conv.kernel, np.float64)
    padded = np.pad(x.astype(np.float64), ((0, 0), (1, 1), (1, 1), (0, 0)))
    outputs = sum(np.einsum("nhwc,co->nhwo", padded[:, i:i + 5, j:j + 6], k[i, j]) for i in range(3) for j in range(3))
    grads = np.pad(upstream.astype(np.float64), ((0, 0), (1, 1), (1, 1), (0, 0)))
    # x[h, w] feeds out[h + 1 - i, w + 1 - j] through tap (i, j)
    expected_input = sum(np.einsum("nhwo,co->nhwc", grads[:, 2 - i:7 - i, 2 - j:8 - j], k[i, j])
                         for i in range(3) for j in range(3))
    expected_kernel = np.stack([np.einsum("nhwc,nhwo->co", padded[:, i:i + 5, j:j + 6], upstream)
                                for i in range(3) for j in range(3)]).reshape(3, 3, 3, 4)
    np.testing.assert_allclose(np.asarray(out), outputs, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(np.asarray(input_gradient), expected_input, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(np.asarray(kernel_gradient), expected_kernel, rtol=1e-5, atol=1e-5)


def test_a_step_for_images_of_any_size_chooses_the_kernel_gradient_by_the_map_it_gets():
    import tensorflow as tf

    rng = np.random.default_rng(6)
    policy = keras.mixed_precision.global_policy().name
    try:
        keras.mixed_precision.set_global_policy("mixed_bfloat16")
        conv = Conv2D(6, 3, padding="same", use_bias=False)
        conv.build((None, None, None, 5))
        assert layers._gradient_plan(conv, keras.KerasTensor((None, None, None, 5), "bfloat16")) == (None, False)
        own = keras.layers.Conv2D(6, 3, padding="same", use_bias=False)
        own.build((None, None, None, 5))
        own.kernel.assign(conv.kernel)

        @tf.function(input_signature=[tf.TensorSpec((None, None, None, 5)), tf.TensorSpec((None, None, None, 6))])
        def gradients(x, upstream):
            results = []
            for layer in (conv, own):
                with tf.GradientTape() as tape:
                    tape.watch(x)
                    total = tf.reduce_sum(tf.cast(layer(x), "float32") * upstream)
                results.append(tape.gradient(total, [x, layer.kernel]))
            return results

        for size in (7, 15):  # nine taps on 49 pixels, oneDNN's on 225, in the one trace
            x = rng.normal(size=(3, size, size, 5)).astype("float32")
            upstream = rng.normal(size=(3, size, size, 6)).astype("float32")
            (x_grad, k_grad), (x_ref, k_ref) = gradients(x, upstream)
            assert k_grad.shape == conv.kernel.shape
            np.testing.assert_allclose(np.asarray(k_grad, np.float32), np.asarray(k_ref, np.float32),
                                       atol=0.02 * np.abs(np.asarray(k_ref, np.float32)).max())
            np.testing.assert_allclose(np.asarray(x_grad, np.float32), np.asarray(x_ref, np.float32),
                                       atol=0.02 * np.abs(np.asarray(x_ref, np.float32)).max())
        # one trace holds both ways, and a condition on the map's size between them
        graph = gradients.get_concrete_function().graph
        assert {"If", "StatelessIf"} & {op.type for op in graph.get_operations()}
    finally:
        keras.mixed_precision.set_global_policy(policy)


def test_own_gradients_only_where_they_were_measured_to_pay():
    def plan(shape, dtype="bfloat16", **kwargs):
        conv = Conv2D(4, kwargs.pop("kernel_size", 3), **{"padding": "same", **kwargs})
        return layers._gradient_plan(conv, keras.ops.zeros(shape, dtype))

    nine_taps, forward_input = (True, False), (False, True)
    assert plan((2, 7, 7, 3)) == plan((2, 3, 3, 3)) == plan((2, 8, 8, 3)) == nine_taps
    assert plan((2, 15, 15, 3)) is None  # larger bfloat16 maps: TensorFlow's own gradients are faster
    any_size = keras.KerasTensor((2, None, None, 3), "bfloat16")  # chosen as each step runs
    assert layers._gradient_plan(Conv2D(4, 3, padding="same"), any_size) == (None, False)
    any_size = keras.KerasTensor((2, None, None, 3), "float32")
    assert layers._gradient_plan(Conv2D(4, 3, padding="same"), any_size) == forward_input
    assert plan((2, 7, 7, 3), "float32") == plan((2, 31, 31, 3), "float32") == forward_input
    assert plan((2, 7, 7, 3), "float16") is None
    for other in ({"padding": "valid"}, {"kernel_size": 5}, {"strides": 2}, {"dilation_rate": 2}):
        assert plan((2, 7, 7, 3), **other) is None and plan((2, 7, 7, 3), "float32", **other) is None


def test_fused_batch_normalization_by_hand():
    x = np.random.default_rng(0).normal(2.0, 3.0, (8, 5, 5, 4)).astype("float32")
    layer = BatchNormalization(momentum=0.4, epsilon=1e-3)
    layer.build(x.shape)
    layer.gamma.assign([1.0, 2.0, 0.5, -1.0])
    layer.beta.assign([0.0, 1.0, -1.0, 0.5])
    mean, variance = x.mean(axis=(0, 1, 2)), x.var(axis=(0, 1, 2))

    trained = np.asarray(layer(x, training=True))

    np.testing.assert_allclose(trained, (x - mean) / np.sqrt(variance + 1e-3) * layer.gamma.numpy()
                               + layer.beta.numpy(), rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(layer.moving_mean.numpy(), 0.6 * mean, rtol=1e-5)  # 0.4 x 0 + 0.6 x batch
    n = 8 * 5 * 5  # the moving variance takes the batch variance with Bessel's correction, as tf.keras 2 did
    np.testing.assert_allclose(layer.moving_variance.numpy(), 0.4 + 0.6 * variance * n / (n - 1), rtol=1e-5)
    inferred = np.asarray(layer(x, training=False))
    np.testing.assert_allclose(inferred, (x - layer.moving_mean.numpy()) / np.sqrt(layer.moving_variance.numpy()
                               + 1e-3) * layer.gamma.numpy() + layer.beta.numpy(), rtol=1e-4, atol=1e-4)


def test_fused_batch_normalization_matches_keras_under_mixed_bfloat16_and_without_scale():
    x = np.random.default_rng(1).normal(0.5, 2.0, (16, 6, 6, 8)).astype("float32")
    policy = keras.mixed_precision.global_policy().name
    try:
        keras.mixed_precision.set_global_policy("mixed_bfloat16")
        ours, theirs = BatchNormalization(scale=False, epsilon=1e-12), keras.layers.BatchNormalization(scale=False,
                                                                                                     epsilon=1e-12)
        out, expected = ours(x, training=True), theirs(x, training=True)
    finally:
        keras.mixed_precision.set_global_policy(policy)
    assert keras.backend.standardize_dtype(out.dtype) == "bfloat16"
    np.testing.assert_allclose(np.asarray(out, np.float32), np.asarray(expected, np.float32), atol=0.05)
    np.testing.assert_allclose(ours.moving_mean.numpy(), theirs.moving_mean.numpy(), rtol=1e-2, atol=1e-3)


def test_other_shapes_go_to_keras_code():
    x = np.random.default_rng(2).normal(size=(32, 5)).astype("float32")
    ours, theirs = BatchNormalization(), keras.layers.BatchNormalization()
    np.testing.assert_allclose(np.asarray(ours(x, training=True)), np.asarray(theirs(x, training=True)), atol=1e-5)
    np.testing.assert_allclose(ours.moving_variance.numpy(), theirs.moving_variance.numpy(), rtol=1e-6)



@pytest.mark.parametrize("training", [False, True])  # training takes the XLA-compiled float32 pass
def test_gelu_and_its_derivative_by_hand(training, monkeypatch):
    import math

    import tensorflow as tf

    compiled, made = [], layers._compiled_gelu
    monkeypatch.setattr(layers, "_compiled_gelu", lambda: compiled.append(True) or made())

    x = np.array([-5.0, -2.0, -0.5, 0.0, 0.3, 1.0, 3.0], dtype="float32")
    phi = np.array([0.5 * (1 + math.erf(v / math.sqrt(2))) for v in x])  # the normal distribution's cdf
    density = np.exp(-x.astype("float64") ** 2 / 2) / math.sqrt(2 * math.pi)
    inputs = tf.constant(x)
    with tf.GradientTape() as tape:
        tape.watch(inputs)
        outputs = Activation("gelu")(inputs, training=training)
        weighted = tf.reduce_sum(outputs * tf.range(1.0, 8.0))  # a different upstream gradient for each element
    np.testing.assert_allclose(np.asarray(outputs), x * phi, rtol=1e-6, atol=1e-6)  # 1 + erf(-3.5) in float32
    np.testing.assert_allclose(np.asarray(tape.gradient(weighted, inputs)), (phi + x * density) * np.arange(1, 8),
                               rtol=1e-5, atol=1e-7)
    assert bool(compiled) == training  # the path it took


@pytest.mark.parametrize("training", [False, True])
def test_gelu_matches_keras_under_mixed_bfloat16_and_other_activations_are_keras(training):
    import tensorflow as tf

    x = tf.constant(np.random.default_rng(3).normal(0.0, 2.0, (4, 5, 5, 3)).astype("float32"))
    policy = keras.mixed_precision.global_policy().name
    try:
        keras.mixed_precision.set_global_policy("mixed_bfloat16")
        ours, theirs = Activation("gelu"), keras.layers.Activation("gelu")
        with tf.GradientTape(persistent=True) as tape:
            tape.watch(x)
            out, expected = ours(x, training=training), theirs(x)
            total_ours = tf.reduce_sum(tf.cast(out, "float32"))
            total_theirs = tf.reduce_sum(tf.cast(expected, "float32"))
    finally:
        keras.mixed_precision.set_global_policy(policy)
    assert keras.backend.standardize_dtype(out.dtype) == "bfloat16"
    np.testing.assert_allclose(np.asarray(out, np.float32), np.asarray(expected, np.float32), atol=0.02)
    np.testing.assert_allclose(np.asarray(tape.gradient(total_ours, x)), np.asarray(tape.gradient(total_theirs, x)),
                               atol=0.02)
    y = np.array([[-1.5, 0.0, 2.0]], dtype="float32")
    for name in ("relu", "elu", "tanh", "sigmoid", "linear"):
        np.testing.assert_array_equal(np.asarray(Activation(name)(y)), np.asarray(keras.layers.Activation(name)(y)))


def test_grad_cam_from_several_threads_at_once_on_the_default_model():
    """The Classify and Layers pages run the float32 model eagerly from several sessions' threads. With
    BatchNormalization's inference through TensorFlow's fused kernel, four threads of Grad-CAM on the default model
    (which uses this layer) corrupted the heap and the process died; inference must stay on Keras's code."""
    import threading

    from cifar_core import explain

    model = models.load_model(models.DEFAULT_RUN / "model.keras")
    assert any(type(layer) is BatchNormalization for layer in model.layers)
    images = np.random.default_rng(0).integers(0, 256, (4, 32, 32, 3)).astype("uint8")
    heatmaps = {}

    def explain_image(n):
        for _ in range(10):
            heatmaps[n] = explain.grad_cam(model, images[n])[0]

    threads = [threading.Thread(target=explain_image, args=(n,)) for n in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    for n in range(4):
        np.testing.assert_allclose(heatmaps[n], explain.grad_cam(model, images[n])[0], atol=1e-5)
