"""The extra quantization variants: ``tflite-int16x8`` and ``tflite-dynamic`` convert and run in LiteRT
in agreement with Keras, and selective int8 finds the layer int8 ruins and keeps it in float.

Tiny hand-made Keras models (32x32), no training: each conversion takes about a second.
"""

from __future__ import annotations

import numpy as np
import pytest

from edgetl.core.contract import PreprocessContract

CLASSES = ["a", "b", "c", "d"]
CONTRACT = PreprocessContract.sized(32, (127.5, 127.5, 127.5), (64.0, 64.0, 64.0))


def _pixels(n: int, seed: int) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (n, 32, 32, 3), dtype=np.uint8)


def _classifier(*, outlier: bool):
    """stem -> middle -> after -> pool -> head. ``outlier``: ``middle``'s channel 0 sits near 1000 while
    the others stay near 1, so int8's one step for the whole tensor (~4) wipes out the channels ``after``
    reads (its weights on channel 0 are zero: the outlier carries nothing downstream)."""
    from edgetl.ml._keras import keras

    k = keras()
    k.utils.set_random_seed(0)
    inputs = k.Input((32, 32, 3))
    x = k.layers.Conv2D(16, 3, activation="relu", name="stem")(inputs)
    x = k.layers.Conv2D(16, 3, name="middle")(x)  # 2304 weights: dynamic-range quantizes it (>= 1024)
    x = k.layers.Conv2D(16, 3, activation="relu", name="after")(x)
    x = k.layers.GlobalAveragePooling2D(name="pool")(x)
    outputs = k.layers.Dense(len(CLASSES), activation="softmax", name="head")(x)
    model = k.Model(inputs, outputs)
    if outlier:
        kernel, bias = model.get_layer("middle").get_weights()
        bias[0] = 1000.0
        model.get_layer("middle").set_weights([kernel, bias])
        kernel, bias = model.get_layer("after").get_weights()
        kernel[:, :, 0, :] = 0.0
        model.get_layer("after").set_weights([kernel, bias])
    return model


def _tensor_dtypes(path) -> set[str]:
    from ai_edge_litert.interpreter import Interpreter, OpResolverType

    interpreter = Interpreter(model_path=str(path), experimental_op_resolver_type=OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES)
    return {np.dtype(d["dtype"]).name for d in interpreter.get_tensor_details()}


@pytest.mark.parametrize(("target", "inner_dtype"), [("tflite-int16x8", "int16"), ("tflite-dynamic", "int8")])
def test_new_targets_convert_and_agree_with_keras(target, inner_dtype, tmp_path):
    from edgetl.core.types import IODType
    from edgetl.export.targets import TARGETS
    from edgetl.export.verify import verify_artifact
    from edgetl.runtime.formats import model_info_for

    spec = TARGETS.get(target)
    model = _classifier(outlier=False)
    artifact, facts = spec.export_function()(
        model, spec, tmp_path, class_names=CLASSES, contract=CONTRACT, representative=_pixels(16, 0), io_dtype=IODType.int8, opset=17,
    )
    assert facts["inputs"][0]["dtype"] == "float32" and facts["outputs"][0]["dtype"] == "float32"  # as the target's note says
    # int16x8: int16 activations; dynamic: int8 weights (and no QUANTIZE: its activations stay float)
    assert inner_dtype in _tensor_dtypes(artifact)
    assert ("QUANTIZE" in facts["graph"]["ops"]) is (target == "tflite-int16x8")
    pixels = _pixels(48, 1)
    verification, probs = verify_artifact(artifact, spec, model, pixels, CONTRACT)
    assert verification["top1_agreement"] >= 0.95 and verification["max_abs_diff"] < 0.02, verification
    assert model_info_for(artifact).class_names == CLASSES  # labels and contract embedded in the file


def test_int16x8_needs_representative_images():
    from edgetl.core.errors import ConfigError
    from edgetl.export.tflite import convert

    with pytest.raises(ConfigError, match="int16x8 export needs representative images"):
        convert(_classifier(outlier=False), "tflite-int16x8", representative=None, contract=CONTRACT)


@pytest.fixture(scope="module")
def sensitive():
    from edgetl.export.selective import layer_sensitivity

    model = _classifier(outlier=True)
    representative = _pixels(24, 2)
    return model, representative, layer_sensitivity(model, representative, CONTRACT, samples=16)


def test_layer_sensitivity_ranks_the_outlier_layer_first(sensitive):
    _, _, ranking = sensitive
    first, second = ranking[0], ranking[1]
    assert first["layer"] == "middle" and first["op"] == "CONV_2D" and first["rank"] == 1
    assert first["score"] > 0.5 and first["score"] > 4 * second["score"], ranking  # most of its channels' signal lost; the rest keep theirs
    assert {"stem", "middle", "after", "head"} <= {e["layer"] for e in ranking}
    ranked = [e for e in ranking if e["op"] != "SOFTMAX"]
    assert [e["score"] for e in ranked] == sorted((e["score"] for e in ranked), reverse=True)
    assert ranking[len(ranked):] == [e for e in ranking if e["op"] == "SOFTMAX"]  # it cannot change the top-1: last


def test_selective_int8_keeps_the_sensitive_layer_float_and_is_closer_to_float(sensitive, tmp_path):
    from edgetl.export.selective import export_selective
    from edgetl.export.tflite import export_tflite
    from edgetl.runtime.formats import model_info_for, open_model

    model, representative, ranking = sensitive
    artifact, facts = export_selective(
        model, tmp_path / "selective", keep_float=1, representative=representative, contract=CONTRACT, class_names=CLASSES, sensitivity=ranking,
    )
    assert facts["keep_float"] == [ranking[0]["tensor"]] and facts["keep_float_layers"] == ["middle"]
    assert facts["float_compute_ops"] == 2 and "CONV_2D" in facts["float_op_names"]  # `middle` and `after`, which reads its output
    full_int8 = export_tflite(
        model, "tflite-int8", tmp_path / "int8" / "model.tflite", class_names=CLASSES, representative=representative, contract=CONTRACT,
    )
    x = CONTRACT.normalize(_pixels(32, 3))
    reference = model.predict(x, verbose=0)
    selective_error = np.abs(open_model(artifact).predict(x) - reference).mean()
    int8_error = np.abs(open_model(full_int8).predict(x) - reference).mean()
    assert selective_error < int8_error / 5, (selective_error, int8_error)
    assert model_info_for(artifact).class_names == CLASSES


def test_selective_refuses_unknown_nodes_and_too_many(sensitive, tmp_path):
    from edgetl.core.errors import ConfigError
    from edgetl.export.selective import export_selective

    model, representative, ranking = sensitive
    with pytest.raises(ConfigError, match="not ops of this model"):
        export_selective(model, tmp_path, keep_float=["no/such/op"], representative=representative, contract=CONTRACT, class_names=CLASSES)
    with pytest.raises(ConfigError, match="quantized ops"):
        export_selective(model, tmp_path, keep_float=99, representative=representative, contract=CONTRACT, class_names=CLASSES, sensitivity=ranking)
    assert not (tmp_path / "model.tflite").exists()
