"""cifar_core.resizing: the batches before the switch scaled down by area means, the switch a time budget moves and
a resumed run goes on from, and the refusal of a network that cannot take the small images."""

import helpers
import numpy as np
import pytest

from cifar_core import config as configs
from cifar_core import metrics, resizing
from cifar_core import train as T
from cifar_core.presets import get_preset

TINY = get_preset("tiny").spec
N = 40


@pytest.fixture(scope="module")
def images():
    return np.random.default_rng(0).integers(0, 256, (N, 8, 8, 3), dtype=np.uint8)


def test_low_res_first_scales_the_batches_before_the_switch(images):
    import tensorflow as tf

    config = configs.TrainConfig(flip=False, translate=0)
    repeated = T.make_dataset(images, np.arange(N), N, 16, training=True, config=config).repeat()
    switch = tf.Variable(4, dtype=tf.int64)
    sizes = [xb.shape[1] for xb, _ in resizing.low_res_first(repeated, 4, switch).take(6)]
    assert sizes == [4, 4, 4, 4, 8, 8]  # 8x8 images, 3 batches an epoch: the switch falls within the second epoch
    one = tf.data.Dataset.from_tensors((images.astype("float32"), np.zeros(N))).repeat()
    small = next(iter(resizing.low_res_first(one, 4, tf.Variable(1, dtype=tf.int64))))[0].numpy()
    np.testing.assert_allclose(small, images.reshape(-1, 4, 2, 4, 2, 3).mean(axis=(2, 4)), rtol=1e-5)  # area means
    resumed = [xb.shape[1] for xb, _ in resizing.low_res_first(repeated, 4, switch, first_step=3).take(2)]
    assert resumed == [4, 8]  # a resumed run counts from its first step
    switch.assign(100)  # a time budget moves the switch later
    assert [xb.shape[1] for xb, _ in resizing.low_res_first(repeated, 4, switch, first_step=3).take(2)] == [4, 4]


def test_a_resumed_run_goes_on_from_the_switch_its_last_epoch_recorded(tmp_path, images):
    import tensorflow as tf

    config = helpers.tiny_config(epochs=4, low_res_fraction=0.5, low_res_size=16, minutes=1.0)
    metrics.append_metrics(tmp_path, [{"kind": "epoch", "epoch": 1, "step": 3, "time": 1.0, "low_res_switch": 7}])
    repeated = tf.data.Dataset.from_tensors((images[:2].astype("float32"), np.zeros(2))).repeat()
    for first_step, expected in ((0, 6), (3, 7)):  # new: half the 12 planned steps; resumed: the record's 7
        _, switch, saved_as = resizing.progressive_resizing(TINY, config, repeated, 12, first_step, tmp_path,
                                                            lambda message: None)
        assert int(switch.numpy()) == expected and saved_as.input_shape == (None, 32, 32, 3)


def test_switch_of_reads_the_record_and_falls_back_to_the_plan():
    config = configs.TrainConfig(epochs=4, low_res_fraction=0.25)
    assert resizing.switch_of({"low_res_switch": 7.0}, config, 100) == 7.0
    for torn in ({}, {"low_res_switch": "7"}, {"low_res_switch": -1.0}, {"low_res_switch": float("inf")},
                 {"low_res_switch": True}):
        assert resizing.switch_of(torn, config, 100) == 25.0, torn
    assert resizing.switch_of({"low_res_switch": 7.0}, configs.TrainConfig(), 100) == 0.0  # no resizing


def test_check_refuses_what_the_network_cannot_take_and_says_how_to_leave_it():
    resizing.check(get_preset("report-2-1").spec, configs.TrainConfig())  # no resizing asked: nothing to check
    resizing.check(TINY, configs.TrainConfig(low_res_fraction=0.5, low_res_size=16))
    with pytest.raises(configs.SpecError, match="a Flatten makes its Dense layers depend on it") as refused:
        resizing.check(get_preset("report-2-1").spec, configs.TrainConfig(low_res_fraction=0.5, low_res_size=24))
    assert "low_res_fraction to 0" in str(refused.value)
    with pytest.raises(configs.SpecError, match="low_res_size must be below the images' 32 pixels, got 32"):
        resizing.check(TINY, configs.TrainConfig(low_res_fraction=0.5, low_res_size=32))
