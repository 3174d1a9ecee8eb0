"""Enumerations shared by the configuration, the stages and the CLI (plain enums: no pydantic here)."""

from __future__ import annotations

from enum import StrEnum


class QuantMode(StrEnum):
    """How the int8 model gets its quantization ranges."""

    qat = "qat"
    ptq = "ptq"


class IODType(StrEnum):
    """dtype of a full-integer model's input and output tensors."""

    int8 = "int8"
    uint8 = "uint8"


class LRSchedule(StrEnum):
    """Phase 2's learning-rate schedule."""

    plateau = "plateau"  # x0.3 whenever validation loss stalls for patience/2 epochs
    cosine = "cosine"  # annealed from fine_tune_lr to 1/100 of it over fine_tune_epochs


class Optimizer(StrEnum):
    """The optimizer of a training phase (``train.head_optimizer``, ``train.fine_tune_optimizer``)."""

    adam = "adam"  # edgetl's default: forgiving of the learning rate
    rmsprop = "rmsprop"  # the transfer-learning tutorial's head optimizer
    sgd = "sgd"  # SGD with momentum 0.9: the tutorial's fine-tuning optimizer, at a low learning rate


class Strategy(StrEnum):
    """How training is spread over devices and machines (``train.strategy``), through ``tf.distribute``."""

    auto = "auto"  # MirroredStrategy over every visible GPU when there are several; one device otherwise
    one = "one"  # one device (the first GPU, else the CPU)
    mirrored = "mirrored"  # MirroredStrategy over every visible GPU (or logical CPU devices when there is none)
    multiworker = "multiworker"  # MultiWorkerMirroredStrategy over the machines TF_CONFIG names


class ClassWeights(StrEnum):
    """How training weights each class's loss."""

    none = "none"  # every image counts the same
    balanced = "balanced"  # inverse class frequency: n_images / (n_classes * n_images_of_class)


class PackageFor(StrEnum):
    """What ``edgetl package`` bundles a model for."""

    c = "c"
    android = "android"
    ios = "ios"
    python = "python"
