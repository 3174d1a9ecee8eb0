"""``package --for android|ios|python``: a model as an app loads it, with loading code filled in.

:func:`build_app_package` writes the model file, ``labels.txt``, an ``edgetl.json`` for apps
(:func:`app_metadata`: what loading code needs, no build-machine details) and a README with Kotlin
(Android) or Swift (iOS) code for LiteRT, or, for Python, ``predict.py`` (ai-edge-litert or ONNX
Runtime). Every constant of the preprocessing contract is filled in.

The texts are templates (:mod:`edgetl.package.render`); class names, the file name and contract text
reach them only through the escaping writers of :mod:`edgetl.core.text` (``kotlin_string``,
``swift_string``, ``python_string``, ``markdown_text``, ``markdown_code``), and Pillow's resampling
filter by fixed lookup.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from edgetl import __version__
from edgetl.core import fs as _fs
from edgetl.core.errors import ArtifactError
from edgetl.core.metadata import SCHEMA_VERSION, ModelInfo, labels_text
from edgetl.core.text import kotlin_string, markdown_code, markdown_text, python_string, swift_string
from edgetl.core.types import PackageFor
from edgetl.package.render import markdown_names, render
from edgetl.runtime.formats import open_model, runtime_format_for

#: The LiteRT Android release the Kotlin snippet names (``com.google.ai.edge.litert:litert``, Google Maven): the
#: one matching the ai-edge-litert Python package the ``train`` extra pins (pyproject.toml: ``ai-edge-litert==2.3.0``),
#: so the app runs the runtime release edgetl verified and measured the model with. The one place to change it;
#: tests check that the README names it and holds no ``<version>`` placeholder.
LITERT_ANDROID_VERSION = "2.3.0"

_APP_METADATA_KEYS = (
    "schema_version", "kind", "target", "model_file", "dtype", "runtime", "backbone", "class_names", "preprocessing",
    "inputs", "outputs", "size_bytes", "quantization_mode", "int8_ranges", "note",
)


def app_metadata(model: Path, info: ModelInfo, metadata: dict[str, Any] | None, io: dict[str, Any]) -> dict[str, Any]:
    """The ``edgetl.json`` an app package carries: what loading code needs, no build-machine details."""
    base = {k: metadata[k] for k in _APP_METADATA_KEYS if metadata and k in metadata}
    base.update({
        "schema_version": SCHEMA_VERSION,
        "kind": model.suffix.lower().lstrip("."),
        "model_file": model.name,
        "class_names": list(info.class_names),
        "preprocessing": info.contract.to_dict(),
        "inputs": base.get("inputs") or io["inputs"],
        "outputs": base.get("outputs") or io["outputs"],
        "size_bytes": model.stat().st_size,
        "packaged_by": f"edgetl {__version__}",
    })
    accuracy = (metadata or {}).get("accuracy") or {}
    summary = {k: accuracy[k] for k in ("split", "images", "artifact_top1", "artifact_top5", "float_top1") if k in accuracy}
    if summary:
        base["accuracy"] = summary
    return base


def _kotlin_floats(values) -> str:
    """Floats as Kotlin ``Float`` literals (``127.5f``)."""
    return ", ".join(f"{float(v)!r}f" for v in values)


def _readme_values(model_name: str, info: ModelInfo, inp: dict[str, Any]) -> dict[str, object]:
    """What every app README states: the files, the classes, the preprocessing contract, the input tensor."""
    contract = info.contract
    return {
        "model_name_text": markdown_text(model_name), "model_name_code": markdown_code(model_name),
        "class_count": len(info.class_names), "class_names": markdown_names(info.class_names),
        "size_wh": f"{contract.input_width}x{contract.input_height}" + ("" if contract.input_size is not None else " (width x height)"),
        "resize_text": markdown_text(contract.resize),
        "channel_order_text": markdown_text(contract.channel_order) if contract.channels == 3 else (
            "grayscale (`L`, Pillow's ITU-R 601-2 luma: `(19595 R + 38470 G + 7471 B + 32768) >> 16`)"
        ),
        "mean": list(contract.mean), "std": list(contract.std), "input_dtype": inp["dtype"], "input_shape": list(inp["shape"]),
    }


def _mobile_values(model_name: str, info: ModelInfo, inp: dict[str, Any], out: dict[str, Any]) -> dict[str, object]:
    """The Android and iOS READMEs' shared values: :func:`_readme_values` and the tensors' quantization."""
    quantized_in, quantized_out = inp["dtype"] in ("int8", "uint8"), out["dtype"] in ("int8", "uint8")
    return {
        **_readme_values(model_name, info, inp),
        "width": info.contract.input_width, "height": info.contract.input_height, "channels": info.contract.channels,
        "input_quantization": f", then quantized with the input scale {inp['scale']!r} and zero point {inp['zero_point']}" if quantized_in else "",
        "output_dtype": out["dtype"], "output_shape": list(out["shape"]),
        "output_quantization": f" (scale {out['scale']!r}, zero point {out['zero_point']})" if quantized_out else "",
        "input_scale": repr(float(inp["scale"] or 0.0)), "input_zero_point": int(inp["zero_point"]),
        "output_scale": repr(float(out["scale"] or 0.0)), "output_zero_point": int(out["zero_point"]),
    }


def android_readme(model_name: str, info: ModelInfo, inp: dict[str, Any], out: dict[str, Any]) -> str:
    """The Android package's ``README.md``: setup steps and a Kotlin ``ImageClassifier`` for LiteRT."""
    quantized_in, quantized_out = inp["dtype"] in ("int8", "uint8"), out["dtype"] in ("int8", "uint8")
    low, high = (-128, 127) if inp["dtype"] == "int8" else (0, 255)
    if quantized_in:
        put = (
            f"                // {inp['dtype']} input: quantize with the input tensor's scale and zero point\n"
            f"                val q = Math.rint((x / INPUT_SCALE).toDouble()).toInt() + INPUT_ZERO_POINT\n"
            f"                input.put(q.coerceIn({low}, {high}).toByte())"
        )
    else:
        put = "                input.putFloat(x)"
    if quantized_out:
        mask = " and 0xFF" if out["dtype"] == "uint8" else ""
        read = f"(output.get().toInt(){mask} - OUTPUT_ZERO_POINT) * OUTPUT_SCALE"
    else:
        read = "output.getFloat()"
    return render(
        "README-android.md.tmpl", **_mobile_values(model_name, info, inp, out),
        model_name_kotlin=kotlin_string(model_name), input_bytes=1 if quantized_in else 4, put_input=put,
        output_bytes=1 if quantized_out else 4, read_output=read, litert_version=LITERT_ANDROID_VERSION,
        mean_kotlin=_kotlin_floats(info.contract.mean), std_kotlin=_kotlin_floats(info.contract.std),
    )


def ios_readme(model_name: str, info: ModelInfo, inp: dict[str, Any], out: dict[str, Any]) -> str:
    """The iOS package's ``README.md``: setup steps and a Swift ``ImageClassifier`` for LiteRT (TensorFlowLiteSwift)."""
    swift_in = {"int8": "Int8", "uint8": "UInt8"}.get(inp["dtype"], "Float32")
    if inp["dtype"] in ("int8", "uint8"):
        convert = (
            f"            // {inp['dtype']} input: quantize with the input tensor's scale and zero point\n"
            f"            let q = Int((x / inputScale).rounded(.toNearestOrEven)) + inputZeroPoint\n"
            f"            input[i] = {swift_in}(clamping: q)"
        )
    else:
        convert = "            input[i] = x"
    quantized_out = out["dtype"] in ("int8", "uint8")
    return render(
        "README-ios.md.tmpl", **_mobile_values(model_name, info, inp, out),
        mean_swift=", ".join(repr(float(v)) for v in info.contract.mean), std_swift=", ".join(repr(float(v)) for v in info.contract.std),
        model_stem_swift=swift_string(Path(model_name).stem), model_ext_swift=swift_string(Path(model_name).suffix.lstrip(".")),
        input_type=swift_in, convert_input=convert, output_type={"int8": "Int8", "uint8": "UInt8"}.get(out["dtype"], "Float32"),
        scores="raw.map { (Float($0) - Float(outputZeroPoint)) * outputScale }" if quantized_out else "raw",
    )


#: The validated contract ``resize`` names (:data:`edgetl.core.contract.RESIZE_FILTERS`) -> Pillow's constant names.
_PIL_RESAMPLING_NAMES = {"nearest": "NEAREST", "bilinear": "BILINEAR", "bicubic": "BICUBIC", "lanczos": "LANCZOS", "box": "BOX", "hamming": "HAMMING"}


def _pil_resampling_name(resize: str) -> str:
    """The ``Image.Resampling`` member for a contract's filter, by fixed lookup (never text the model supplied)."""
    try:
        return _PIL_RESAMPLING_NAMES[resize]
    except KeyError:
        raise ArtifactError(f"resize filter {resize!r} is not one of {', '.join(_PIL_RESAMPLING_NAMES)}") from None


def python_script(model_name: str, info: ModelInfo) -> str:
    """``predict.py``: a stand-alone classifier for the packaged model (numpy, Pillow, and ai-edge-litert or onnxruntime)."""
    contract = info.contract
    fmt = runtime_format_for(model_name)
    return render(
        "predict.py.tmpl", needs=fmt.runtime_package, model_name=python_string(model_name),
        width=contract.input_width, height=contract.input_height, mode=repr({"RGB": "RGB", "L": "L"}[contract.channel_order]), mean=repr([float(v) for v in contract.mean]), std=repr([float(v) for v in contract.std]),
        resample=_pil_resampling_name(contract.resize),
        runtime=render(f"predict-{fmt.runtime}.py.tmpl"),
    )


def python_readme(model_name: str, info: ModelInfo, inp: dict[str, Any]) -> str:
    """The Python package's ``README.md``: install, run ``predict.py``, the preprocessing contract."""
    quantized_in = inp["dtype"] in ("int8", "uint8")
    return render(
        "README-python.md.tmpl", **_readme_values(model_name, info, inp),
        runtime=runtime_format_for(model_name).runtime_package,
        input_quantization=(
            f"; integer inputs are quantized with the tensor's own scale ({inp['scale']!r}) and zero point ({inp['zero_point']}), rounding half to even"
            if quantized_in else ""
        ),
    )


def build_app_package(target: PackageFor, model: Path, info: ModelInfo, metadata: dict[str, Any] | None) -> tuple[dict[str, str | bytes], dict[str, Any]]:
    """Files of an Android, iOS or Python package, and their tensor facts."""
    runtime_model = open_model(model)
    io = {"inputs": [t.to_dict() for t in runtime_model.inputs], "outputs": [t.to_dict() for t in runtime_model.outputs]}
    if len(io["inputs"]) != 1 or len(io["outputs"]) != 1:
        raise ArtifactError(f"{model} has {len(io['inputs'])} inputs and {len(io['outputs'])} outputs; app packages are for one-input, one-output classifiers")
    inp, out = io["inputs"][0], io["outputs"][0]
    files: dict[str, str | bytes] = {
        model.name: model.read_bytes(),
        "labels.txt": labels_text(info.class_names),
        _fs.MARKER: json.dumps(app_metadata(model, info, metadata, io), indent=2, default=str) + "\n",
    }
    if target is PackageFor.android:
        files["README.md"] = android_readme(model.name, info, inp, out)
    elif target is PackageFor.ios:
        files["README.md"] = ios_readme(model.name, info, inp, out)
    else:
        files["README.md"] = python_readme(model.name, info, inp)
        files["predict.py"] = python_script(model.name, info)
    return files, io
