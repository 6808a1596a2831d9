"""cifar_core.keras_internals: every private part of Keras the engine relies on is still there."""

from cifar_core import keras_internals


def test_every_private_use_is_present_in_this_keras():
    gone = keras_internals.missing()
    assert gone == [], "\n".join(gone)


def test_a_removed_attribute_is_reported_by_name(monkeypatch):
    import keras

    monkeypatch.delattr(keras.callbacks.BackupAndRestore, "_load_model")
    (message,) = keras_internals.missing()
    assert message.startswith(f"keras.callbacks.BackupAndRestore._load_model is gone in Keras {keras.__version__}")


def test_each_use_names_where_and_why():
    for owner, name, why in keras_internals.PRIVATE_USES:
        assert owner.startswith("keras.") and name.startswith("_") and "." in why
