"""Issue 12, finding 1: a Keras model file from someone else never runs code on load.

Each hostile model holds a real tf_keras ``Lambda`` whose bytecode writes a marker file when it
runs. Saved as HDF5 (``m.h5``), as HDF5 bytes named ``model.keras`` and as a real ``.keras`` zip,
it goes through the real CLI: every command that loads a Keras model refuses it on one line
naming the layer, and the marker never appears. With ``--trust-model`` it loads and the marker
does appear, which shows the marker would catch a load that ran the code.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import h5py
import numpy as np
import pytest
from PIL import Image

from edgetl.core.contract import PreprocessContract
from edgetl.core.errors import ArtifactError, ConfigError
from tests.helpers import assert_one_line_error
from tests.helpers import run_cli as run

CLASSES = ["a", "b"]


def _keras():
    from edgetl.ml._keras import keras

    return keras()


def _lambda_model(marker: Path):
    """32 px in, 2 classes out, through a Lambda whose code writes ``marker`` when it runs."""
    k = _keras()
    evil = eval(f"lambda t: (__import__('pathlib').Path({str(marker)!r}).write_text('pwned'), t)[1]")  # noqa: S307
    inputs = k.Input((32, 32, 3))
    x = k.layers.Lambda(evil, name="evil")(inputs)
    x = k.layers.GlobalAveragePooling2D()(x)
    return k.Model(inputs, k.layers.Dense(len(CLASSES), activation="softmax")(x))


def _run_folder(folder: Path, model_file: str, kind: str) -> Path:
    """An ``edgetl.json`` beside the model, shaped like the ones edgetl writes."""
    contract = PreprocessContract(input_size=32)
    meta = {
        "schema_version": 1, "kind": kind, "model_file": model_file, "backbone": "mobilenet_v2", "input_size": 32,
        "class_names": CLASSES, "preprocessing": contract.to_dict(), "val_accuracy": 0.5, "config": {},
    }
    (folder / "edgetl.json").write_text(json.dumps(meta))
    return folder


@pytest.fixture(scope="module")
def hostile(tmp_path_factory):
    """Hostile run folders in three formats, an image folder and an image; the marker path."""
    root = tmp_path_factory.mktemp("hostile")
    marker = root / "MARKER"
    model = _lambda_model(marker)
    h5 = root / "h5"
    h5.mkdir()
    model.save(h5 / "m.h5")
    named = root / "h5-named-keras"
    named.mkdir()
    shutil.copy(h5 / "m.h5", named / "model.keras")  # HDF5 bytes under the zip format's suffix
    zipped = root / "zip"
    zipped.mkdir()
    model.save(zipped / "model.keras")
    assert (zipped / "model.keras").read_bytes()[:2] == b"PK" and (named / "model.keras").read_bytes()[:4] == b"\x89HDF"
    _run_folder(h5, "m.h5", "keras-qat")
    _run_folder(named, "model.keras", "keras-float")
    _run_folder(zipped, "model.keras", "keras-float")
    rng = np.random.default_rng(0)
    for cls in CLASSES:
        (root / "data" / cls).mkdir(parents=True)
        for i in range(4):
            Image.fromarray(rng.integers(0, 255, (32, 32, 3), dtype=np.uint8)).save(root / "data" / cls / f"{i}.png")
    marker.unlink()  # building the model ran the Lambda once
    return {"root": root, "marker": marker, "h5": h5, "named": named, "zip": zipped, "data": root / "data", "image": root / "data" / "a" / "0.png"}


@pytest.fixture()
def env(hostile):
    hostile["marker"].unlink(missing_ok=True)
    yield hostile
    hostile["marker"].unlink(missing_ok=True)


COMMANDS = {
    "predict DIR": lambda h, layout, out: ["predict", h[layout], h["image"]],
    "eval DIR": lambda h, layout, out: ["eval", h[layout], "--data", h["data"]],
    "eval FILE": lambda h, layout, out: ["eval", next(p for p in h[layout].iterdir() if p.suffix in (".h5", ".keras")), "--data", h["data"]],
    "export": lambda h, layout, out: ["export", "--model", h[layout], "--data", h["data"], "--out", out],
    "qat": lambda h, layout, out: ["qat", "--model", h[layout], "--data", h["data"], "--out", out],
    "qat --mode ptq": lambda h, layout, out: ["qat", "--model", h[layout], "--data", h["data"], "--out", out, "--mode", "ptq"],
}
CASES = [
    *[(command, layout) for command in ("predict DIR", "eval DIR", "eval FILE") for layout in ("h5", "named", "zip")],
    ("export", "h5"), ("export", "zip"), ("qat", "named"), ("qat", "zip"), ("qat --mode ptq", "named"),
]


@pytest.mark.parametrize("command, layout", CASES, ids=[f"{c}-{layout}" for c, layout in CASES])
def test_cli_refuses_code_in_a_model_file(env, tmp_path, command, layout):
    out = tmp_path / "out"
    result = run(*COMMANDS[command](env, layout, out))
    assert_one_line_error(result, "Lambda layer 'evil'", "(Python code)", "--trust-model")
    assert not env["marker"].exists(), "the model's code ran"
    assert not out.exists(), "a refused model left an output folder"


@pytest.mark.parametrize("layout", ["h5", "named", "zip"])
def test_trust_model_loads_it_and_runs_its_code(env, layout):
    result = run("predict", env[layout], env["image"], "--json", "--trust-model")
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["predictions"][0]["top"][0]["label"] in CLASSES
    assert env["marker"].read_text() == "pwned"  # the marker does catch a load that runs the code


def test_python_api_refuses_too(env):
    from edgetl.device.evaluate import evaluate
    from edgetl.ml.model_io import load_keras_artifact

    for layout in ("h5", "named", "zip"):
        with pytest.raises(ArtifactError, match=r"Lambda layer 'evil' \(Python code\)"):
            load_keras_artifact(env[layout])
    with pytest.raises(ArtifactError, match="--trust-model"):
        evaluate(env["h5"], env["data"])
    assert not env["marker"].exists()


def _save_h5(model, path: Path) -> Path:
    model.save(path)
    return path


def test_lambda_nested_in_an_inner_model_and_in_a_wrapper_is_found(env, tmp_path):
    """The walk reaches layers of models inside models and layers inside wrappers."""
    from edgetl.ml.keras_safety import load_keras_model

    k = _keras()
    inner = _lambda_model(env["marker"])
    outer = k.Sequential([k.Input((32, 32, 3)), inner])
    wrapped_in = k.Input((2, 32, 32, 3))
    wrapped = k.Model(wrapped_in, k.layers.TimeDistributed(k.layers.Lambda(inner.get_layer("evil").function, name="evil"))(wrapped_in))
    env["marker"].unlink(missing_ok=True)
    for model in (outer, wrapped):
        path = _save_h5(model, tmp_path / f"{model.name}.h5")
        with pytest.raises(ArtifactError, match="Lambda layer 'evil'"):
            load_keras_model(path)
    assert not env["marker"].exists()


def _edit_config(src: Path, dst: Path, edit) -> Path:
    shutil.copy(src, dst)
    with h5py.File(dst, "r+") as f:
        config = json.loads(f.attrs["model_config"])
        edit(config)
        f.attrs["model_config"] = json.dumps(config)
    return dst


def test_unknown_classes_foreign_modules_and_weights_only_files_are_refused(tmp_path):
    """No Lambda needed: a class outside tf_keras/tfmot/edgetl, a module tf_keras would import,
    a TFOpLambda carrying bytecode, and an HDF5 file with weights only."""
    from edgetl.ml.keras_safety import load_keras_model

    k = _keras()
    inputs = k.Input((4,))
    model = k.Model(inputs, k.layers.Dense(2, name="head")(inputs + 3.0))  # `+ 3.0` is a TFOpLambda
    plain = _save_h5(model, tmp_path / "plain.h5")
    assert load_keras_model(plain).count_params() == 10  # TFOpLambda naming tf.__operators__.add is fine

    def layer(config, class_name):
        return next(entry for entry in config["config"]["layers"] if entry["class_name"] == class_name)

    cases = {
        "unknown class 'Popen'": lambda c: layer(c, "Dense").update(class_name="Popen"),
        "module 'subprocess'": lambda c: layer(c, "Dense").update(module="subprocess"),
        "TFOpLambda layer": lambda c: layer(c, "TFOpLambda")["config"].update(function=["YmFk", None, None]),
        "function 'exec' in layer 'head'": lambda c: layer(c, "Dense")["config"].update(
            activation={"module": "builtins", "class_name": "function", "config": "exec", "registered_name": "function"}
        ),
    }
    for fragment, edit in cases.items():
        path = _edit_config(plain, tmp_path / "edited.h5", edit)
        with pytest.raises(ArtifactError, match=fragment) as info:
            load_keras_model(path)
        assert "\n" not in str(info.value) and "--trust-model" in str(info.value)
    model.save_weights(tmp_path / "weights.h5")
    with pytest.raises(ArtifactError, match="no model_config"):
        load_keras_model(tmp_path / "weights.h5")
    (tmp_path / "junk.keras").write_bytes(b"not a model")
    with pytest.raises(ArtifactError, match="not a Keras model"):
        load_keras_model(tmp_path / "junk.keras")


def test_weights_option_reads_weights_only(env):
    """``--weights PATH`` goes to ``load_weights``, which reads weight arrays, never the config:
    a hostile model given as weights fails to fit, and its code does not run."""
    from edgetl.ml.backbones import build_classifier
    from edgetl.ml.backbones.spec import BACKBONES

    for layout, name in (("h5", "m.h5"), ("zip", "model.keras")):
        with pytest.raises(ConfigError, match="cannot load weights"):
            build_classifier(BACKBONES.get("mobilenet_v2"), 2, 32, 0.35, str(env[layout] / name))
    assert not env["marker"].exists()


def test_edgetl_models_pass_the_check(trained_run, shapes_dir):
    """No false positive on what edgetl writes: a trained float run (a .keras zip whose config also
    holds the optimizer) evaluates through the CLI. The QAT run's .h5 goes through the same loader
    in test_qat_export.py::test_qat_model_reloads."""
    result = run("eval", trained_run.out_dir, "--data", shapes_dir, "--json")
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["num_images"] > 0


@pytest.mark.slow  # ~20 s on an idle 2-core machine, over a minute when it is busy
def test_mobilenet_v3_float_and_qat_models_pass_the_check(tmp_path):
    """edgetl's own layers (HardSigmoid) and QAT configs (EdgetlOutputQuantizeConfig) are allowed
    (checked by hand as well for efficientnet_b0, efficientnet_v2_b0, efficientnet_lite0, mobilenet_v3_large)."""
    from edgetl.ml.backbones import build_classifier
    from edgetl.ml.backbones.spec import BACKBONES
    from edgetl.ml.keras_safety import load_keras_model
    from edgetl.ml.quantize import quantize_model

    spec = BACKBONES.get("mobilenet_v3_small")
    model, _ = build_classifier(spec, 3, 32, spec.default_alpha, "none")
    model.save(tmp_path / "model.keras")
    _save_h5(quantize_model(model, spec.qat_recipe), tmp_path / "qat_model.h5")
    for name in ("model.keras", "qat_model.h5"):
        assert load_keras_model(tmp_path / name).output_shape == (None, 3)
