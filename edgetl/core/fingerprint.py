"""Stage fingerprints: short stable hashes of settings, image folders and parent model files.

A build stage is reused only when its fingerprint matches the one stored in its folder.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any

from edgetl.core.config import BuildConfig
from edgetl.core.digests import file_digests


def folder_signature(root: Path | None) -> str | None:
    """Hash of every file's relative path and content (SHA-256 of its bytes) under ``root``.

    Content, not stat: a file rewritten with its size and mtime restored changes the signature, and
    touching a file (or copying the folder elsewhere) does not. Digests are memoised by
    :func:`edgetl.core.digests.file_digests`, so an unchanged folder costs one ``stat`` per file.
    """
    if root is None or not Path(root).is_dir():
        return None
    files = []
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames.sort()
        files.extend(Path(dirpath) / name for name in sorted(filenames))
    readable = [f for f in files if f.is_file()]  # a dangling link or a file removed since the walk counts as absent
    try:
        digests = file_digests(readable)
    except OSError:  # a file vanished or became unreadable while hashing: hash the survivors one by one
        digests, kept = [], []
        for f in readable:
            try:
                digests.append(file_digests([f])[0])
                kept.append(f)
            except OSError:
                continue
        readable = kept
    return fingerprint([(str(f.relative_to(root)), d) for f, d in zip(readable, digests, strict=True)])


def stage_fingerprints(config: BuildConfig) -> dict[str, str]:
    """One fingerprint per stage, each covering the settings (and images) it depends on."""
    cfg = config.to_toml_dict()
    data = {
        "config": {k: v for k, v in cfg.get("data", {}).items() if k != "decode_cache"},  # where pixels are kept, not what they are
        "images": folder_signature(config.data.path),
        "val_images": folder_signature(config.data.val_path),
    }
    # Settings at their defaults are left out, so builds made before the setting existed keep their fingerprints.
    model = _without_defaults(cfg["model"], {"channels": 3, "head_units": []})
    train = _without_defaults(
        cfg["train"], {"head_optimizer": "adam", "fine_tune_optimizer": "adam", "strategy": "auto", "mixed_precision": False, "jit": False}
    )
    model_file = Path(str(config.model.name)).expanduser()
    if model_file.suffix.lower() in (".keras", ".h5", ".hdf5") and model_file.is_file():
        model["file_sha256"] = file_sha256(model_file)  # --model FILE: the file's bytes, not only its name
    train_fp = fingerprint({"stage": "train", "model": model, "data": data, "train": train})
    qat_fp = fingerprint({"stage": "qat", "after": train_fp, "qat": cfg["qat"]})
    export_fp = fingerprint({"stage": "export", "after": qat_fp, "target": config.target, "export": cfg["export"], "bench": cfg["bench"]})
    return {"train": train_fp, "qat": qat_fp, "export": export_fp}


def _without_defaults(section: dict[str, Any], defaults: dict[str, Any]) -> dict[str, Any]:
    return {key: value for key, value in section.items() if key not in defaults or value != defaults[key]}


def file_sha256(path: Path) -> str:
    """Hex SHA-256 of a file's bytes."""
    digest = hashlib.sha256()
    with Path(path).open("rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def after_parent(stage_fp: str, parent_model: Path) -> str:
    """``stage_fp`` bound to the exact model file the stage starts from.

    The float model is trained anew whenever its own stage is not reused, and training does not
    give the same bytes twice: a QAT folder made from an earlier float model must not be reused.
    """
    return fingerprint({"stage": stage_fp, "parent_sha256": file_sha256(parent_model)})


def fingerprint(data: Any) -> str:
    """Stable short hash of JSON-able data (a resolved config, say)."""
    blob = json.dumps(data, sort_keys=True, default=str).encode()
    return hashlib.sha256(blob).hexdigest()[:16]
