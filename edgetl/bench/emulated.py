"""An emulated arm64 board on this machine: Debian's arm64 Python under ``qemu-aarch64-static``.

The recipe shared/STACK.md found to work in a sandbox without binfmt_misc (where
``debootstrap --arch=arm64`` cannot run its second stage):

1. an arm64 Debian root, made once and cached: ``debootstrap --foreign --arch=arm64
   --variant=minbase --include=python3.11 bookworm ROOT MIRROR``, then ``dpkg -x`` of every
   downloaded ``.deb`` into ROOT (:func:`prepare_root`);
2. PyPI's aarch64 wheels of numpy and of the runtime versions that work under Debian's qemu 7.2,
   unzipped into one folder put on ``sys.path`` (:func:`prepare_wheels`);
3. ``qemu-aarch64-static -L ROOT ROOT/usr/bin/python3.11`` with that folder on ``PYTHONPATH``
   (:func:`guest_command`). qemu-user is no chroot: the guest reads and writes this machine's paths.

``benchmarks/arm64_qemu.py`` (which prepares them: ``--setup-only``) and the ``arm64-emulated``
board of :mod:`edgetl.bench.boards` (which only uses a prepared cache, :func:`cached_guest`) share
this module. Emulated timings are not latency figures (:data:`NOT_LATENCY`).
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import subprocess
import sys
import tempfile
import time
import zipfile
from pathlib import Path

from edgetl.core.errors import ConfigError

logger = logging.getLogger(__name__)

DEFAULT_MIRROR = os.environ.get("EDGETL_DEBIAN_MIRROR", "http://deb.debian.org/debian")
SUITE = "bookworm"
GUEST_PYTHON = "usr/bin/python3.11"
# The newest versions seen to work under Debian bookworm's qemu-user-static 7.2 (shared/STACK.md):
# onnxruntime 1.32.0 segfaults at import (1.20.1, 1.22.0, 1.24.1 work), ai-edge-litert 2.3.0 at
# invoke (1.4.0 works).
GUEST_WHEELS = ("numpy==2.4.6", "onnxruntime==1.24.1", "ai-edge-litert==1.4.0")
WHEEL_PLATFORMS = ("manylinux2014_aarch64", "manylinux_2_17_aarch64", "manylinux_2_27_aarch64", "manylinux_2_28_aarch64", "manylinux_2_34_aarch64")
NOT_LATENCY = (
    "Emulated timings are NOT latency figures: qemu-user translates every arm64 instruction into x86 code, "
    "so they say nothing about an arm64 board's speed. They only show that the model ran."
)
SETUP_COMMAND = "python benchmarks/arm64_qemu.py --setup-only"


class SetupError(ConfigError):
    """The emulated root, the wheels or the tools could not be prepared."""


def default_cache() -> Path:
    """Where the root and the wheels are kept: ``EDGETL_ARM64_CACHE``, else ``~/.cache/edgetl/arm64``."""
    return Path(os.environ.get("EDGETL_ARM64_CACHE", Path.home() / ".cache" / "edgetl" / "arm64")).expanduser()


def run_tool(cmd: list[str], **kwargs) -> subprocess.CompletedProcess:
    """Run a setup command; a non-zero exit is a :class:`SetupError` with the last lines of its output."""
    logger.debug("$ %s", " ".join(cmd))
    result = subprocess.run(cmd, capture_output=True, text=True, **kwargs)
    if result.returncode != 0:
        tail = (result.stderr or result.stdout).strip().splitlines()[-5:]
        raise SetupError(f"{' '.join(cmd[:3])} ... failed (exit {result.returncode}): {' | '.join(tail)}")
    return result


def ensure_tools() -> None:
    """qemu-aarch64-static, debootstrap and dpkg; apt-get installs the first two when missing (as root)."""
    missing = [pkg for tool, pkg in (("qemu-aarch64-static", "qemu-user-static"), ("debootstrap", "debootstrap"))
               if shutil.which(tool) is None and not Path("/usr/sbin", tool).exists()]
    if missing:
        if os.geteuid() != 0:
            raise SetupError(f"missing {', '.join(missing)}: sudo apt-get install -y {' '.join(missing)}")
        logger.info("installing %s", " ".join(missing))
        run_tool(["apt-get", "update", "-qq"])
        run_tool(["apt-get", "install", "-y", "-qq", *missing], env={**os.environ, "DEBIAN_FRONTEND": "noninteractive"})
    if shutil.which("dpkg") is None:
        raise SetupError("dpkg is missing: this needs a Debian-based host")


def qemu_version() -> str:
    out = run_tool([shutil.which("qemu-aarch64-static") or "qemu-aarch64-static", "--version"]).stdout
    return out.splitlines()[0].strip() if out else "unknown"


def _stamp(path: Path) -> dict | None:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def _root_paths(cache: Path) -> tuple[Path, Path]:
    return cache / f"debian-{SUITE}-arm64", cache / f"debian-{SUITE}-arm64.json"


def _site_paths(cache: Path) -> tuple[Path, Path]:
    name = "site-" + "-".join(w.replace("==", "") for w in GUEST_WHEELS)
    return cache / name, cache / f"{name}.json"


def prepare_root(cache: Path, mirror: str = DEFAULT_MIRROR) -> tuple[Path, dict]:
    """The arm64 Debian root (cached); returns it and how long it took to make (from its stamp when cached)."""
    root, stamp_path = _root_paths(cache)
    stamp = _stamp(stamp_path)
    if stamp and (root / GUEST_PYTHON).exists():
        return root, {**stamp, "cached": True}
    if root.exists():
        shutil.rmtree(root)  # a half-made root from an interrupted run
    cache.mkdir(parents=True, exist_ok=True)
    debootstrap = shutil.which("debootstrap") or "/usr/sbin/debootstrap"
    start = time.perf_counter()
    logger.info("debootstrap --foreign arm64 %s from %s (first run only)", SUITE, mirror)
    run_tool([debootstrap, "--foreign", "--arch=arm64", "--variant=minbase", "--include=python3.11", SUITE, str(root), mirror])
    debootstrap_s = time.perf_counter() - start
    debs = sorted((root / "var" / "cache" / "apt" / "archives").glob("*.deb"))
    if not debs:
        raise SetupError(f"debootstrap left no .deb files in {root}/var/cache/apt/archives")
    start = time.perf_counter()
    for deb in debs:  # the second stage cannot run without binfmt_misc: unpack every package by hand
        run_tool(["dpkg", "-x", str(deb), str(root)])
    unpack_s = time.perf_counter() - start
    if not (root / GUEST_PYTHON).exists():
        raise SetupError(f"{root / GUEST_PYTHON} is missing after unpacking {len(debs)} packages")
    for deb in debs:
        deb.unlink()  # 40 MB the root does not need once unpacked
    stamp = {"debootstrap_s": round(debootstrap_s, 1), "unpack_s": round(unpack_s, 1), "packages": len(debs),
             "mirror": mirror, "made": time.strftime("%Y-%m-%d %H:%M:%S")}
    stamp_path.write_text(json.dumps(stamp, indent=1))
    return root, {**stamp, "cached": False}


def prepare_wheels(cache: Path) -> tuple[Path, dict]:
    """aarch64 wheels of :data:`GUEST_WHEELS` unzipped into one folder (cached)."""
    site, stamp_path = _site_paths(cache)
    stamp = _stamp(stamp_path)
    if stamp and site.is_dir():
        return site, {**stamp, "cached": True}
    if site.exists():
        shutil.rmtree(site)
    start = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="edgetl-wheels-") as tmp:
        platforms = [arg for p in WHEEL_PLATFORMS for arg in ("--platform", p)]
        run_tool([sys.executable, "-m", "pip", "download", "-q", "--no-deps", "--only-binary=:all:", *platforms,
                  "--python-version", "3.11", "--implementation", "cp", "--abi", "cp311", "-d", tmp, *GUEST_WHEELS])
        wheels = sorted(Path(tmp).glob("*.whl"))
        if len(wheels) != len(GUEST_WHEELS):
            raise SetupError(f"pip download gave {[w.name for w in wheels]}, expected one wheel per {GUEST_WHEELS}")
        partial = site.with_name(site.name + ".partial")
        shutil.rmtree(partial, ignore_errors=True)
        for wheel in wheels:
            with zipfile.ZipFile(wheel) as archive:
                archive.extractall(partial)
        for so in partial.rglob("*.so*"):  # zipfile drops the executable bit
            so.chmod(0o755)
        partial.rename(site)
        names = [w.name for w in wheels]
    stamp = {"wheels": names, "download_and_unzip_s": round(time.perf_counter() - start, 1), "made": time.strftime("%Y-%m-%d %H:%M:%S")}
    stamp_path.write_text(json.dumps(stamp, indent=1))
    return site, {**stamp, "cached": False}


def guest_command(root: Path, site: Path) -> tuple[list[str], dict[str, str]]:
    """The command prefix and environment that run the emulated arm64 Python."""
    qemu = shutil.which("qemu-aarch64-static") or "qemu-aarch64-static"
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTHON")}
    env.update({"PYTHONPATH": str(site), "PYTHONNOUSERSITE": "1", "PYTHONDONTWRITEBYTECODE": "1"})
    return [qemu, "-L", str(root), str(root / GUEST_PYTHON)], env


def cached_guest(cache: Path | None = None) -> tuple[list[str], dict[str, str]]:
    """:func:`guest_command` for an already prepared cache; nothing is downloaded or made here.

    Raises:
        ConfigError: qemu-aarch64-static is missing, or the root or wheels are not prepared (one line
            naming the command that prepares them).
    """
    cache = cache or default_cache()
    root, root_stamp = _root_paths(cache)
    site, site_stamp = _site_paths(cache)
    if shutil.which("qemu-aarch64-static") is None:
        raise ConfigError("the arm64-emulated board needs qemu-aarch64-static: sudo apt-get install -y qemu-user-static, "
                          f"then {SETUP_COMMAND}")
    missing = [what for what, ok in (("the arm64 Debian root", (root / GUEST_PYTHON).exists() and root_stamp.is_file()),
                                     ("the aarch64 wheels", site.is_dir() and site_stamp.is_file())) if not ok]
    if missing:
        raise ConfigError(f"the arm64-emulated board is not prepared ({' and '.join(missing)} missing in {cache}): "
                          f"run {SETUP_COMMAND} first (EDGETL_ARM64_CACHE chooses the folder)")
    return guest_command(root, site)
