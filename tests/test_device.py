"""cifar_core.device: the CPU's name and bfloat16 support read from /proc/cpuinfo, the precision each kind of device
trains in (a GPU's included, faked here: this machine has none), and 'auto' made concrete."""

import types

import pytest

from cifar_core import device as devices

CPUINFO = "processor\t: 0\nmodel name\t: AMD EPYC 9R14\nflags\t\t: fpu sse avx2 {extra}\n"


@pytest.fixture
def cpuinfo(monkeypatch):
    """Sets the text device.py reads as /proc/cpuinfo."""
    def use(text):
        monkeypatch.setattr(devices, "Path", lambda path: types.SimpleNamespace(read_text=lambda: text))
    return use


@pytest.mark.parametrize("extra, bf16", [("avx512f avx512_bf16", True), ("amx_bf16 amx_tile", True),
                                         ("avx512f avx512_vnni", False), ("", False)])
def test_bfloat16_is_what_avx512_bf16_or_amx_says(cpuinfo, monkeypatch, extra, bf16):
    monkeypatch.delenv("ONEDNN_MAX_CPU_ISA", raising=False)
    cpuinfo(CPUINFO.format(extra=extra))
    assert devices.cpu_supports_bf16() is bf16
    assert devices.cpu_model() == "AMD EPYC 9R14"


def test_onednn_limited_below_bfloat16_means_a_cpu_without_it(cpuinfo, monkeypatch):
    cpuinfo(CPUINFO.format(extra="avx512_bf16"))
    monkeypatch.setenv("ONEDNN_MAX_CPU_ISA", "avx2")  # oneDNN would emulate bfloat16, slower than float32
    assert devices.cpu_supports_bf16() is False
    monkeypatch.setenv("ONEDNN_MAX_CPU_ISA", "AVX512_CORE_AMX")
    assert devices.cpu_supports_bf16() is True


def test_a_cpu_without_cpuinfo_is_named_and_trains_in_float32(monkeypatch):
    def unreadable(path):
        raise OSError("no /proc here")

    monkeypatch.setattr(devices, "Path", lambda path: types.SimpleNamespace(read_text=lambda: unreadable(path)))
    monkeypatch.setattr(devices.platform, "processor", lambda: "")
    assert devices.cpu_model() == "CPU" and devices.cpu_supports_bf16() is False


def test_this_machine_trains_on_its_cpu_in_the_precision_its_cpu_allows():
    import tensorflow as tf

    if tf.config.list_physical_devices("GPU"):
        pytest.skip("this machine has a GPU: the test below fakes one")
    info = devices.device_info.__wrapped__()
    assert info["gpus"] == 0 and info["device"].startswith("CPU: ") and info["device"].endswith(" cores)")
    assert info["bf16"] is devices.cpu_supports_bf16()
    assert info["precision"] == ("mixed_bfloat16" if info["bf16"] else "float32")
    assert devices.resolve_precision("float32") == "float32"
    assert devices.resolve_precision("auto") == devices.device_info()["precision"]


def test_a_gpu_when_there_is_one_trains_in_mixed_float16(monkeypatch):
    import tensorflow as tf

    gpus = [types.SimpleNamespace(name="/physical_device:GPU:0"), types.SimpleNamespace(name="/physical_device:GPU:1")]
    monkeypatch.setattr(tf.config, "list_physical_devices", lambda kind=None: gpus if kind == "GPU" else [])
    monkeypatch.setattr(tf.config.experimental, "get_device_details", lambda gpu: {"device_name": "NVIDIA L4"})
    assert devices.device_info.__wrapped__() == {"device": "GPU: NVIDIA L4 (x2)", "gpus": 2,
                                                 "precision": "mixed_float16", "bf16": False}


def test_a_virtual_cpu_count_that_is_no_count_splits_nothing(monkeypatch):
    import tensorflow as tf

    # int('abc') had failed the run with Python's own error; the knob is the tests' own, read leniently
    for raw in ("abc", "²", "-2", "1e3", "65"):
        monkeypatch.setenv("CIFAR_CORE_VIRTUAL_CPUS", raw)
        assert devices.make_strategy("default") is tf.distribute.get_strategy()
