"""cifar_core.schedules: OneCycle (warm-up, then linear decay, between chosen fractions of the peak),
BiasScaledSGD (BatchNormalization betas learn faster) and MuonSGD (Muon's step for convolution kernels), all
serialisable."""

import keras
import numpy as np
import pytest

from cifar_core.schedules import BiasScaledSGD, MuonSGD, OneCycle, orthogonalize


@pytest.mark.parametrize("step, expected", [(0, 0.0), (5, 0.1), (10, 0.2), (55, 0.1), (100, 0.0), (150, 0.0)])
def test_one_cycle_values(step, expected):
    # peak 0.2, 100 steps, warm-up 10: up by 0.02 a step, then down by 0.2 / 90 a step
    assert float(OneCycle(0.2, 100, 10)(step)) == pytest.approx(expected, abs=1e-6)


@pytest.mark.parametrize("step, expected", [(0, 0.3), (23, 1.5), (62, 1.5 * (1 - 0.93 * 39 / 77)), (100, 0.105),
                                            (120, 0.105)])
def test_one_cycle_with_airbench_fractions(step, expected):
    # peak 1.5 over 100 steps: from 0.2 x 1.5 up to 1.5 at step 23, then down to 0.07 x 1.5 at step 100
    assert float(OneCycle(1.5, 100, 23, 0.2, 0.07)(step)) == pytest.approx(expected, abs=1e-5)


def test_one_cycle_round_trips_through_keras_serialisation():
    schedule = OneCycle(0.2, 100, 10, 0.2, 0.07)
    again = keras.optimizers.schedules.deserialize(keras.optimizers.schedules.serialize(schedule))
    assert isinstance(again, OneCycle) and again.get_config() == schedule.get_config()


def test_betas_take_bias_lr_scale_times_the_step():
    beta, kernel = keras.Variable(np.zeros(3), name="beta"), keras.Variable(np.zeros(3), name="kernel")
    optimizer = BiasScaledSGD(0.01, momentum=0.0, bias_lr_scale=64.0)
    grad = np.ones(3, dtype="float32")
    optimizer.apply([grad, grad], [beta, kernel])
    np.testing.assert_allclose(np.asarray(kernel), -0.01)
    np.testing.assert_allclose(np.asarray(beta), -0.64)


def test_bias_lr_scale_one_is_plain_nesterov_sgd():
    ours, plain = keras.Variable(np.ones(2), name="beta"), keras.Variable(np.ones(2), name="beta")
    a = BiasScaledSGD(0.1, momentum=0.85, nesterov=True, weight_decay=0.01)
    b = keras.optimizers.SGD(0.1, momentum=0.85, nesterov=True, weight_decay=0.01)
    for grad in ([0.5, -1.0], [0.2, 0.3], [-0.4, 0.1]):
        a.apply([np.array(grad, "float32")], [ours])
        b.apply([np.array(grad, "float32")], [plain])
    np.testing.assert_allclose(np.asarray(ours), np.asarray(plain), rtol=1e-6)


def test_bias_scaled_sgd_round_trips_through_keras_serialisation():
    optimizer = BiasScaledSGD(0.5, momentum=0.85, nesterov=True, bias_lr_scale=64.0)
    again = keras.optimizers.deserialize(keras.optimizers.serialize(optimizer))
    assert isinstance(again, BiasScaledSGD) and again.bias_lr_scale == 64.0 and again.momentum == 0.85


def newton_schulz_reference(g, steps=3):
    """The quintic iteration of airbench94_muon, written out in NumPy on the wide side."""
    x = g.T if g.shape[0] > g.shape[1] else g
    x = x / (np.linalg.norm(x) + 1e-7)
    for _ in range(steps):
        gram = x @ x.T
        x = 3.4445 * x + (-4.7750 * gram + 2.0315 * gram @ gram) @ x
    return x.T if g.shape[0] > g.shape[1] else x


@pytest.mark.parametrize("shape", [(36, 8), (8, 36), (16, 16)])
def test_orthogonalize_matches_the_numpy_iteration(shape):
    g = np.random.default_rng(0).normal(size=shape).astype("float32")
    np.testing.assert_allclose(np.asarray(orthogonalize(keras.ops.convert_to_tensor(g))),
                               newton_schulz_reference(g.astype("float64")), atol=1e-4)


def test_orthogonalize_keeps_the_singular_vectors_and_evens_the_singular_values():
    rng = np.random.default_rng(1)
    u, _ = np.linalg.qr(rng.normal(size=(40, 8)))
    v, _ = np.linalg.qr(rng.normal(size=(8, 8)))
    g = (u * np.linspace(1.0, 4.0, 8)) @ v.T  # singular values 1..4
    out = np.asarray(orthogonalize(keras.ops.convert_to_tensor(g.astype("float32"))))
    singular = np.linalg.svd(out, compute_uv=False)
    assert singular.min() > 0.5 and singular.max() < 1.5  # 1..4 became about 1
    cosine = np.sum(out * (u @ v.T)) / (np.linalg.norm(out) * np.linalg.norm(u @ v.T))
    assert cosine > 0.98


def test_muon_steps_a_kernel_along_its_orthogonalised_gradient_at_a_fixed_norm():
    rng = np.random.default_rng(2)
    start = rng.normal(size=(3, 3, 4, 6)).astype("float32")
    grad = rng.normal(size=(3, 3, 4, 6)).astype("float32")
    kernel = keras.Variable(start, name="kernel")
    # at a schedule value of 0.5 of the peak 2.0, the filter rate is 0.3 x 0.25
    optimizer = MuonSGD(0.5, momentum=0.85, nesterov=True, weight_decay=0.1, filter_learning_rate=0.3,
                        peak_learning_rate=2.0)
    optimizer.apply([grad], [kernel])
    normalized = start * np.sqrt(6) / np.linalg.norm(start)
    # first step: the buffer is the gradient, Nesterov's direction 1.6 x it, and the iteration ignores scale
    step = newton_schulz_reference((1.6 * grad).reshape(-1, 6).astype("float64")).reshape(start.shape)
    np.testing.assert_allclose(np.asarray(kernel), normalized - 0.075 * step, atol=1e-4)  # no weight decay


def test_muon_keeps_its_kernel_momentum_when_the_sgd_part_has_none():
    grad = np.ones((1, 1, 2, 2), "float32")
    kernel = keras.Variable(np.eye(2, dtype="float32").reshape(1, 1, 2, 2) * np.sqrt(2), name="kernel")
    optimizer = MuonSGD(1.0, momentum=0.0, filter_learning_rate=0.1, peak_learning_rate=1.0)
    optimizer.apply([grad], [kernel])
    optimizer.apply([grad], [kernel])
    # Muon's buffer (momentum 0.6) after two equal gradients: 1, then 0.6 + 1 times the gradient
    (buffer,) = optimizer.momentums
    np.testing.assert_allclose(np.asarray(buffer), 1.6 * grad, atol=1e-6)


def test_muon_takes_bias_scaled_sgd_steps_for_everything_else():
    ours = [keras.Variable(np.ones(3), name="beta"), keras.Variable(np.ones((4, 2)), name="kernel")]
    plain = [keras.Variable(np.ones(3), name="beta"), keras.Variable(np.ones((4, 2)), name="kernel")]
    a = MuonSGD(0.1, momentum=0.85, nesterov=True, weight_decay=0.01, bias_lr_scale=8.0)
    b = BiasScaledSGD(0.1, momentum=0.85, nesterov=True, weight_decay=0.01, bias_lr_scale=8.0)
    for value in (0.5, -0.2, 0.3):
        grads = [np.full(3, value, "float32"), np.full((4, 2), -value, "float32")]
        a.apply(grads, ours)
        b.apply(grads, plain)
    for x, y in zip(ours, plain):
        np.testing.assert_allclose(np.asarray(x), np.asarray(y), rtol=1e-6)


def test_muon_round_trips_through_keras_serialisation():
    optimizer = MuonSGD(1.65, momentum=0.85, nesterov=True, bias_lr_scale=64.0, filter_learning_rate=0.24,
                        peak_learning_rate=1.65)
    again = keras.optimizers.deserialize(keras.optimizers.serialize(optimizer))
    assert isinstance(again, MuonSGD) and (again.filter_learning_rate, again.filter_momentum,
                                           again.peak_learning_rate, again.bias_lr_scale) == (0.24, 0.6, 1.65, 64.0)
