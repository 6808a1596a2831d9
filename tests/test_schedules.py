"""cifar_core.schedules: OneCycle (warm-up, then linear decay, between chosen fractions of the peak) and
BiasScaledSGD (BatchNormalization betas learn faster), both serialisable."""

import keras
import numpy as np
import pytest

from cifar_core.schedules import BiasScaledSGD, OneCycle


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
