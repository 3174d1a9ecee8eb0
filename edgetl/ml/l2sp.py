"""L2-SP: fine-tuning pulled toward the pretrained weights (Li, Grandvalet and Davoine, ICML 2018,
"Explicit inductive bias for transfer learning with convolutional networks").

The penalty added to the training loss is

    alpha/2 * sum ||w - w_source||^2   over the transferred (backbone) weights that train,
  + beta/2  * sum ||w||^2              over the new head's weights,

where ``w_source`` are the weights the backbone had right after it was built with its pretrained
weights (:func:`snapshot`, taken before phase 1). Plain fine-tuning has no such term: besides
the starting point and early stopping nothing keeps the features learned on ImageNet, and with a
few images per class the top blocks drift toward features that fit the training images only.

What is penalised: every trainable variable of a trainable layer (kernels, biases, depthwise
kernels, BatchNorm gamma/beta, custom layers' variables such as MobileNetV3's), never a
non-trainable one (BatchNorm moving statistics) and nothing in a frozen layer: those contribute 0
and get no gradient. Which layers train is read when Keras traces the train step, i.e. after each
``model.compile`` (every phase compiles), so the penalty follows the phase's freezing.

Default beta: 0.01, the value the paper uses for the head together with alpha = 0.1 (their
experiments; reimplementations such as Zhijian's ``L2SP(alpha=0.1, beta=0.01)`` use the same pair).
``--l2sp ALPHA`` keeps that beta; ``--l2sp ALPHA,BETA`` sets both.

How it is attached (:func:`attached`): a zero-argument callable added with ``model.add_loss``, which
Keras adds to the loss of every train step of every later ``compile``/``fit``, plus an instance
``train_step`` that (a) lets the callable contribute only while the train step is traced, so
``val_loss`` stays the data loss alone (early stopping, best-epoch choice and phase 3's "kept only
if validation loss falls" judge the fit to held-out images exactly as without L2-SP; the training
``loss`` includes the penalty, as Keras' weight regularizers do) and (b) reports the penalty as
``l2sp`` in the epoch logs (the value at the epoch's last step; ``history.json`` keeps it). Both are
removed when the block ends: the model saved afterwards carries nothing of L2-SP, so ``.keras``/
``.h5`` files, SavedModel and TFLite conversion are as without it.

QAT (:func:`qat_source`): the anchor is the float model QAT starts from, every weight of it, the
head included, with alpha (beta has no role: QAT adds no new layer). The ImageNet weights are
not used there: ``edgetl qat`` starts from a saved float run that no longer has them, and QAT's
purpose is to adapt *that* model to int8 rounding without losing what fine-tuning learned. The
weights of tfmot's ``QuantizeWrapperV2`` (``quant_<layer>``) are found through its ``.layer`` by
the inner layer's name; quantizer variables (ranges) have no anchor and are not penalised.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from edgetl.core.config import L2SP_DEFAULT_BETA
from edgetl.core.errors import ConfigError
from edgetl.ml._keras import tf
from edgetl.ml.backbones.spec import is_head_layer

log = logging.getLogger(__name__)

#: The paper's head weight decay, used when ``--l2sp`` gives alpha alone (see the module docstring).
DEFAULT_BETA = L2SP_DEFAULT_BETA

#: A weight's identity across models: (name of the layer that owns it, the variable's name without
#: ``:0``, e.g. ``("c1", "c1/kernel")``). For a tfmot ``QuantizeWrapperV2`` the layer is the wrapped one
#: (``wrapper.layer``), whose variables keep their float names, so a float model's weights and its QAT
#: model's map onto each other. (Not an index into the layer's ``weights``: tfmot takes the kernel out
#: of the wrapped layer's list and tracks it on the wrapper.)
Key = tuple[str, str]


def check_l2sp(l2sp: tuple[float, float] | None, weights: str) -> None:
    """Refuse L2-SP when training from scratch (``--weights none``): there are no source weights."""
    if l2sp is not None and str(weights).lower() == "none":
        raise ConfigError("--l2sp pulls fine-tuning toward pretrained weights, and --weights none has none; drop --l2sp ([train] l2sp) or use pretrained weights")


def _owned(model) -> Iterator[tuple[Any, Any]]:
    """``(top-level layer, layer owning the weights)`` for each layer of ``model``: the same layer,
    or for a tfmot quantize wrapper (any layer with an inner ``.layer``) the wrapped layer."""
    for top in model.layers:
        inner = getattr(top, "layer", None)
        yield top, (inner if inner is not None and hasattr(inner, "weights") else top)


def _key(inner, variable) -> Key:
    return inner.name, variable.name.rsplit(":", 1)[0]


def snapshot(model) -> dict[Key, np.ndarray]:
    """Copies of every weight of ``model`` (trainable or not), by :data:`Key`: the L2-SP source.

    Take it right after the pretrained model is built, before phase 1 trains anything. A name that
    two variables share (a custom layer that does not scope its variables) is ambiguous and left out.
    """
    source: dict[Key, np.ndarray] = {}
    ambiguous: set[Key] = set()
    for top, inner in _owned(model):
        for v in top.weights:
            key = _key(inner, v)
            if key in source:
                ambiguous.add(key)
            source[key] = np.array(v.numpy(), copy=True)
    for key in ambiguous:
        del source[key]
    if ambiguous:
        log.warning("L2-SP: %d variable names occur twice in the model and are not penalised: %s", len(ambiguous), ", ".join(k[1] for k in sorted(ambiguous)[:5]))
    return source


def qat_source(float_model) -> dict[Key, np.ndarray]:
    """The QAT anchor: the float model's weights (see the module docstring for why)."""
    return snapshot(float_model)


@dataclass
class Term:
    """One penalised variable: ``coef/2 * ||variable - anchor||^2`` (``anchor`` None: toward 0)."""

    key: Key
    variable: Any
    anchor: np.ndarray | None
    coef: float
    head: bool


def penalty_terms(model, source: dict[Key, np.ndarray], alpha: float, beta: float, *, new_head: bool = True) -> list[Term]:
    """The variables L2-SP penalises now (trainable variables of trainable layers) and how.

    ``new_head``: the head is new (fine-tuning): its weights decay toward 0 with ``beta``; False
    (QAT): the head has an anchor like every other layer and is pulled toward it with ``alpha``.
    A trainable variable without an anchor of the same shape (a QAT range, a layer the source
    lacks) is left out.
    """
    terms: list[Term] = []
    skipped = []
    for top, inner in _owned(model):
        head = new_head and is_head_layer(inner.name)
        for v in top.trainable_weights:
            key = _key(inner, v)
            if head:
                if beta > 0:
                    terms.append(Term(key, v, None, beta, True))
                continue
            anchor = source.get(key)
            if anchor is None or tuple(anchor.shape) != tuple(v.shape):
                skipped.append(v.name)
                continue
            if alpha > 0:
                terms.append(Term(key, v, anchor, alpha, False))
    if skipped:
        log.debug("L2-SP: %d trainable variables have no source weight and are not penalised: %s", len(skipped), ", ".join(skipped[:10]))
    return terms


def penalty_value(model, source: dict[Key, np.ndarray], alpha: float, beta: float, *, new_head: bool = True) -> dict[str, float]:
    """The penalty now, computed in NumPy: ``total`` (what the loss adds), ``source_sq``
    (sum of ``||w - w_source||^2`` over the anchored weights) and ``head_sq`` (``||w||^2`` of the head's)."""
    source_sq = head_sq = total = 0.0
    for term in penalty_terms(model, source, alpha, beta, new_head=new_head):
        w = term.variable.numpy().astype(np.float64)
        sq = float(np.sum(np.square(w if term.anchor is None else w - term.anchor)))
        total += term.coef / 2 * sq
        if term.head:
            head_sq += sq
        else:
            source_sq += sq
    return {"total": total, "source_sq": source_sq, "head_sq": head_sq}


@dataclass
class _State:
    """What the attached callable and train step share (plain Python: Keras does not track it)."""

    alpha: float
    beta: float
    new_head: bool
    anchors: dict[Key, Any] = field(default_factory=dict)
    in_train_step: bool = False
    last: Any = None


def _penalty_tensor(model, source: dict[Key, np.ndarray], state: _State):
    t = tf()
    parts = []
    for term in penalty_terms(model, source, state.alpha, state.beta, new_head=state.new_head):
        if term.anchor is None:
            diff = term.variable
        else:
            if term.key not in state.anchors:  # a constant made once, outside any traced function
                with t.init_scope():
                    state.anchors[term.key] = t.constant(term.anchor, dtype=term.variable.dtype)
            diff = term.variable - state.anchors[term.key]
        parts.append(0.5 * term.coef * t.reduce_sum(t.square(t.cast(diff, t.float32))))
    return t.add_n(parts) if parts else t.constant(0.0)


@contextmanager
def attached(model, source: dict[Key, np.ndarray], alpha: float, beta: float = DEFAULT_BETA, *, new_head: bool = True):
    """Add the L2-SP penalty to ``model``'s training loss while the block runs (see the module docstring).

    Every ``compile``/``fit`` inside the block trains with it; on exit the model is as before.
    Yields a callable returning :func:`penalty_value` for the model's current weights and freezing.
    """
    state = _State(float(alpha), float(beta), new_head)

    def l2sp_loss():
        if not state.in_train_step:
            return None  # evaluation, prediction, `model.losses` outside fit: the data loss alone
        state.last = _penalty_tensor(model, source, state)
        return state.last

    model_class = type(model)

    def train_step(data):
        state.in_train_step = True
        try:
            logs = model_class.train_step(model, data)
        finally:
            state.in_train_step = False
        if state.last is not None and isinstance(logs, dict):
            logs = {**logs, "l2sp": state.last}
        state.last = None
        return logs

    model.add_loss(l2sp_loss)
    model.train_step = train_step
    _reset_functions(model)
    try:
        yield lambda: penalty_value(model, source, state.alpha, state.beta, new_head=state.new_head)
    finally:
        _detach(model, l2sp_loss)


def _reset_functions(model) -> None:
    """Make Keras trace its train/test functions again (they are cached until the next compile)."""
    for name in ("train_function", "test_function"):
        if getattr(model, name, None) is not None:
            setattr(model, name, None)


def _detach(model, loss_fn) -> None:
    # tf_keras keeps a callable loss as functools.partial(_tag_callable, fn) in `_callable_losses`.
    kept = [fn for fn in model._callable_losses if not (fn is loss_fn or loss_fn in getattr(fn, "args", ()))]
    removed = len(model._callable_losses) - len(kept)
    model._callable_losses[:] = kept
    if removed != 1:
        log.warning("L2-SP: expected to remove 1 callable loss from the model, removed %d", removed)
    if "train_step" in vars(model):
        del model.train_step
    _reset_functions(model)


def describe(value: dict[str, float], alpha: float, beta: float) -> str:
    """One log line's worth: the penalty and its parts."""
    return (
        f"L2-SP penalty {value['total']:.4g} (alpha {alpha:g} x ||w - w_source||^2 {value['source_sq']:.4g} / 2"
        f" + beta {beta:g} x ||w_head||^2 {value['head_sq']:.4g} / 2)"
    )
