"""cifar_core.schedules.OneCycle: linear warm-up to the peak, linear decay to zero, serialisable."""

import keras
import pytest

from cifar_core.schedules import OneCycle


@pytest.mark.parametrize("step, expected", [(0, 0.0), (5, 0.1), (10, 0.2), (55, 0.1), (100, 0.0), (150, 0.0)])
def test_one_cycle_values(step, expected):
    # peak 0.2, 100 steps, warm-up 10: up by 0.02 a step, then down by 0.2 / 90 a step
    assert float(OneCycle(0.2, 100, 10)(step)) == pytest.approx(expected, abs=1e-6)


def test_one_cycle_round_trips_through_keras_serialisation():
    schedule = OneCycle(0.2, 100, 10)
    again = keras.optimizers.schedules.deserialize(keras.optimizers.schedules.serialize(schedule))
    assert isinstance(again, OneCycle) and again.get_config() == schedule.get_config()
