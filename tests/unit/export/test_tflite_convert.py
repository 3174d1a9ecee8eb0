"""edgetl's TFLite conversion route: the frozen inference function gives the same flatbuffer as
``TFLiteConverter.from_keras_model`` (op for op, tensor for tensor, weight for weight), without the
SavedModel round trip that made up ~90% of an export's time; and the SavedModel route still takes
over when freezing fails."""

from __future__ import annotations

import logging

import numpy as np
import pytest

from edgetl.export import tflite as tflite_exporter
from tests.helpers import savedmodel_route, structure


def test_structure_tells_different_models_apart(int8_export, fp32_export):
    """The comparison below could fail: int8 and fp32 of one model differ in it."""
    int8 = structure(int8_export[0].read_bytes())
    fp32 = structure(fp32_export[0].read_bytes())
    assert int8 != fp32 and len(int8) > 50


@pytest.mark.slow  # 90 s for the SavedModel route; the slow QAT matrix asserts the same on every backbone's QAT model
def test_qat_int8_conversion_equals_the_savedmodel_route(qat_run, trained_run):
    """The QAT model (FakeQuant ranges) -> full-integer int8: identical to the SavedModel route."""
    from edgetl.ml.qat import representative_images

    representative = representative_images(trained_run.split, 16, 0)
    contract = trained_run.contract
    fast = tflite_exporter.convert(qat_run.model, "tflite-int8", representative=representative, contract=contract)
    reference = savedmodel_route(qat_run.model, "tflite-int8", representative, contract)
    fast_structure, reference_structure = structure(fast), structure(reference)
    assert fast_structure == reference_structure
    assert any(name == "CONV_2D" for name, _ in fast_structure)
    # A dynamic batch dimension, as from_keras_model gives (`edgetl bench --batch` resizes it).
    assert fast_structure[0][1][0][2][0] == -1


def test_float_conversion_equals_the_savedmodel_route(trained_run):
    fast = tflite_exporter.convert(trained_run.model, "tflite-fp32", representative=None, contract=trained_run.contract)
    reference = savedmodel_route(trained_run.model, "tflite-fp32", None, trained_run.contract)
    assert structure(fast) == structure(reference)


def test_savedmodel_route_takes_over_when_freezing_fails(monkeypatch, caplog):
    from edgetl.core.contract import PreprocessContract
    from edgetl.ml._keras import keras

    keras().utils.set_random_seed(0)
    model = keras().Sequential([keras().layers.Input((16, 16, 3)), keras().layers.Conv2D(4, 3, activation="relu"), keras().layers.GlobalAveragePooling2D(), keras().layers.Dense(3, activation="softmax")])
    contract = PreprocessContract(input_size=16)
    representative = np.random.default_rng(0).integers(0, 256, (8, 16, 16, 3), dtype=np.uint8)
    fast = tflite_exporter.convert(model, "tflite-int8", representative=representative, contract=contract)

    def refuse(model):
        raise ValueError("cannot freeze this model")

    monkeypatch.setattr(tflite_exporter, "_frozen_converter", refuse)
    with caplog.at_level(logging.INFO, logger="edgetl.export.tflite"):
        fallback = tflite_exporter.convert(model, "tflite-int8", representative=representative, contract=contract)
    assert "cannot freeze this model" in caplog.text and "SavedModel route" in caplog.text
    assert structure(fallback) == structure(fast)


def test_unknown_route_is_refused_by_name():
    from edgetl.core.contract import PreprocessContract
    from edgetl.core.errors import ConfigError

    with pytest.raises(ConfigError, match="unknown conversion route 'fast'"):
        tflite_exporter.convert(None, "tflite-fp32", representative=None, contract=PreprocessContract(input_size=16), route="fast")
