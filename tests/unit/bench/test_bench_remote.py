"""`edgetl bench --remote` against a real OpenSSH sshd on 127.0.0.1, and the stand-alone runner.

The fixture starts Debian's ``/usr/sbin/sshd`` on a free loopback port with a throwaway host key,
a throwaway client key in a temporary AuthorizedKeysFile, and a temporary sshd_config; the
"board" is this machine, its Python the repo's venv (``--remote-python``). Without sshd the
tests skip with the reason, unless ``EDGETL_REQUIRE_SSHD=1`` (CI), where they fail.
"""

from __future__ import annotations

import getpass
import json
import os
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
from typer.testing import CliRunner

from edgetl.bench import board_runner as remote_runner
from edgetl.bench.remote import INSECURE_FLAG, parse_ssh_url
from edgetl.cli.app import app
from edgetl.core.errors import ConfigError
from tests.helpers import assert_one_line_error, build_onnx_model, build_tflite_models

runner = CliRunner()
REPO_ROOT = Path(__file__).resolve().parents[3]
SSHD = "/usr/sbin/sshd"


def run(*args):
    return runner.invoke(app, [str(a) for a in args], env={"COLUMNS": "200"})


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _unavailable(reason: str):
    if os.environ.get("EDGETL_REQUIRE_SSHD") == "1":
        pytest.fail(f"EDGETL_REQUIRE_SSHD=1 but {reason}")
    pytest.skip(reason)


def _keygen(path: Path) -> Path:
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "edgetl-test", "-f", str(path)], check=True, timeout=30)
    return path


@pytest.fixture(scope="module")
def sshd(tmp_path_factory):
    """A real sshd on 127.0.0.1:PORT: ``{"port", "user", "key", "other_key", "known_hosts", "host_pub", "dir"}``."""
    if not Path(SSHD).exists() or shutil.which("ssh-keygen") is None:
        _unavailable(f"no OpenSSH server ({SSHD}) or ssh-keygen (apt-get install openssh-server)")
    root = tmp_path_factory.mktemp("sshd")
    host_key = _keygen(root / "host_ed25519")
    client_key = _keygen(root / "client_ed25519")
    other_key = _keygen(root / "stranger_ed25519")  # never authorized
    (root / "authorized_keys").write_text(Path(f"{client_key}.pub").read_text())
    port = _free_port()
    config = root / "sshd_config"
    config.write_text(
        f"Port {port}\nListenAddress 127.0.0.1\nHostKey {host_key}\nAuthorizedKeysFile {root / 'authorized_keys'}\n"
        f"PidFile {root / 'sshd.pid'}\nStrictModes no\nUsePAM no\nPubkeyAuthentication yes\nPasswordAuthentication no\n"
        "KbdInteractiveAuthentication no\nPermitRootLogin prohibit-password\nSubsystem sftp internal-sftp\n"
        "MaxStartups 50\nLogLevel VERBOSE\n"
    )
    if os.geteuid() == 0:
        Path("/run/sshd").mkdir(mode=0o755, exist_ok=True)  # sshd's privilege separation folder
    check = subprocess.run([SSHD, "-t", "-f", str(config)], capture_output=True, text=True, timeout=30)
    if check.returncode != 0:
        _unavailable(f"sshd rejects the test config: {check.stderr.strip()[-300:]}")
    log = root / "sshd.log"
    proc = subprocess.Popen([SSHD, "-D", "-e", "-f", str(config)], stdout=subprocess.DEVNULL, stderr=open(log, "w"))
    deadline = time.monotonic() + 15
    while True:
        if proc.poll() is not None:
            _unavailable(f"sshd exited with {proc.returncode}: {log.read_text()[-400:]}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1):
                break
        except OSError:
            if time.monotonic() > deadline:
                proc.kill()
                _unavailable(f"sshd did not listen on 127.0.0.1:{port} within 15 s: {log.read_text()[-400:]}")
            time.sleep(0.1)
    host_pub = Path(f"{host_key}.pub").read_text().split()
    known_hosts = root / "known_hosts"
    known_hosts.write_text(f"[127.0.0.1]:{port} {host_pub[0]} {host_pub[1]}\n")
    yield {"port": port, "user": getpass.getuser(), "key": client_key, "other_key": other_key, "known_hosts": known_hosts,
           "dir": root, "log": log}
    proc.terminate()
    try:
        proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
        proc.kill()


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    root = tmp_path_factory.mktemp("remote_models")
    tflite = build_tflite_models(root)
    return {"onnx": build_onnx_model(root / "tiny.onnx"), "int8": tflite["int8"], "fp32": tflite["fp32"]}


def _url(sshd) -> str:
    return f"ssh://{sshd['user']}@127.0.0.1:{sshd['port']}"


def _remote(sshd, *extra, python: str | None = None, known_hosts: Path | None = None):
    args = ["--remote", _url(sshd), "--identity", sshd["key"], "--remote-python", python or sys.executable]
    if known_hosts is not False:
        args += ["--known-hosts", known_hosts or sshd["known_hosts"]]
    return [*args, *extra]


def _remote_temp_dirs() -> set[str]:
    base = Path(os.environ.get("TMPDIR", "/tmp"))
    return {p.name for p in base.glob("edgetl-bench.*")}


def _shape(value):
    """The schema of a JSON value: keys and types, not the numbers."""
    if isinstance(value, dict):
        return {k: _shape(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_shape(value[0])] if value else []
    return type(value).__name__ if value is not None else "null"


# ----------------------------------------------------------------------------- the loopback board
def test_remote_bench_tflite_and_onnx_over_loopback(sshd, models, tmp_path):
    before = _remote_temp_dirs()
    out = tmp_path / "remote"
    args = [models["int8"], models["onnx"], "--threads", "1,2", "--runs", "25", "--warmup", "2"]
    result = run("bench", *args, *_remote(sshd), "--out", out)
    assert result.exit_code == 0, result.output
    assert f"wrote {out / 'bench.json'}" in result.stdout
    doc = json.loads((out / "bench.json").read_text())
    local = tmp_path / "local"
    assert run("bench", *args, "--out", local).exit_code == 0
    local_doc = json.loads((local / "bench.json").read_text())

    # the same schema as a local run, plus where it ran
    remote_shape, local_shape = _shape(doc), _shape(local_doc)
    assert remote_shape.pop("remote") == {"url": "str", "python": "str", "python_executable": "str", "host_key_checked": "bool",
                                          "runner": "str", "runner_version": "int"}
    assert remote_shape == local_shape
    assert doc["remote"]["url"] == _url(sshd) and doc["remote"]["host_key_checked"] is True
    assert doc["remote"]["python"] == sys.executable
    assert doc["machine"]["cpu"] and doc["machine"]["cores"] >= 1 and doc["machine"]["distro"]
    assert "on the board " + _url(sshd) in doc["method"]["isolation"]
    assert [e["label"] for e in doc["artifacts"]] == ["tiny_int8.tflite", "tiny.onnx"]
    assert doc["artifacts"][0]["path"] == str(models["int8"])  # the local file it measured, not the board's copy
    for entry in doc["artifacts"]:
        assert [r["threads"] for r in entry["results"]] == [1, 2]
        for r in entry["results"]:
            s = r["stats"]
            assert len(r["samples_ms"]) == s["runs"] == 25 and s["warmup"] == 2
            assert 0 < s["min_ms"] <= s["p50_ms"] <= s["p90_ms"] <= s["p99_ms"] <= s["max_ms"] < 1000
            assert 0 < r["cold_start_ms"] < 60_000 and 20 < r["peak_rss_mib"] < 2000
    assert doc["artifacts"][1]["provider"] == "CPUExecutionProvider"
    assert {o["op"] for o in doc["artifacts"][1]["results"][0]["op_profile"]} >= {"Conv"}
    report = (out / "report.md").read_text()
    assert "| tiny_int8.tflite | LiteRT" in report and _url(sshd) in report
    assert _remote_temp_dirs() <= before, "the board's temp folder was left behind"


def test_unknown_host_key_is_refused_then_accepted_with_the_insecure_flag(sshd, models, tmp_path):
    empty = tmp_path / "known_hosts"
    empty.write_text("")
    result = run("bench", models["onnx"], "--runs", "3", *_remote(sshd, known_hosts=empty), "--out", tmp_path / "o")
    assert_one_line_error(result, f"127.0.0.1:{sshd['port']}", "not in", str(empty), "unknown host",
                          f"ssh-keyscan -p {sshd['port']} 127.0.0.1", INSECURE_FLAG, "SHA256:")
    assert not (tmp_path / "o").exists()
    ok = run("bench", models["onnx"], "--runs", "3", *_remote(sshd, known_hosts=empty), INSECURE_FLAG, "--out", tmp_path / "o")
    assert ok.exit_code == 0, ok.output
    assert json.loads((tmp_path / "o" / "bench.json").read_text())["remote"]["host_key_checked"] is False


def test_changed_host_key_is_refused(sshd, models, tmp_path):
    other = Path(f"{sshd['other_key']}.pub").read_text().split()
    changed = tmp_path / "known_hosts"
    changed.write_text(f"[127.0.0.1]:{sshd['port']} {other[0]} {other[1]}\n")
    result = run("bench", models["onnx"], "--runs", "3", *_remote(sshd, known_hosts=changed), "--out", tmp_path / "o")
    assert_one_line_error(result, "does not match", "changed", f"ssh-keygen -R '[127.0.0.1]:{sshd['port']}'", INSECURE_FLAG)


def test_a_key_the_board_does_not_accept_is_refused(sshd, models, tmp_path):
    args = ["--remote", _url(sshd), "--identity", sshd["other_key"], "--known-hosts", sshd["known_hosts"],
            "--remote-python", sys.executable]
    result = run("bench", models["onnx"], "--runs", "3", *args, "--out", tmp_path / "o")
    assert_one_line_error(result, f"{sshd['user']}@127.0.0.1:{sshd['port']} refused the key", str(sshd["other_key"]), "authorized_keys")


def test_a_closed_port_is_unreachable(sshd, models, tmp_path):
    port = _free_port()
    args = ["--remote", f"ssh://{sshd['user']}@127.0.0.1:{port}", "--identity", sshd["key"], "--known-hosts", sshd["known_hosts"]]
    result = run("bench", models["onnx"], "--runs", "3", *args, "--out", tmp_path / "o")
    assert_one_line_error(result, f"cannot reach 127.0.0.1:{port}", "connection refused")


@pytest.mark.skipif(not Path("/usr/bin/python3").exists(), reason="no system python3")
def test_a_board_python_without_the_packages_says_what_to_pip_install(sshd, models, tmp_path):
    probe = subprocess.run(["/usr/bin/python3", "-c", "import numpy"], capture_output=True)
    result = run("bench", models["onnx"], "--runs", "3", *_remote(sshd, python="/usr/bin/python3"), "--out", tmp_path / "o")
    wanted = "onnxruntime" if probe.returncode == 0 else "numpy onnxruntime"
    assert_one_line_error(result, f"127.0.0.1:{sshd['port']}", f"/usr/bin/python3 -m pip install {wanted}")


def test_a_board_with_numpy_but_no_onnxruntime(sshd, models, tmp_path):
    """A board Python where only onnxruntime is missing (the venv's Python with onnxruntime made unimportable)."""
    wrapper = tmp_path / "python-without-ort"
    wrapper.write_text(
        "#!/bin/sh\n"
        f"exec {sys.executable} -c 'import runpy, sys; sys.modules[\"onnxruntime\"] = None; sys.argv = sys.argv[1:]; "
        "runpy.run_path(sys.argv[0], run_name=\"__main__\")' \"$@\"\n"
    )
    wrapper.chmod(0o755)
    result = run("bench", models["onnx"], models["int8"], "--runs", "3", *_remote(sshd, python=str(wrapper)), "--out", tmp_path / "o")
    assert_one_line_error(result, "onnxruntime is not installed", f"{sys.executable} -m pip install onnxruntime")
    err = result.stderr
    assert "install numpy" not in err and "ai-edge-litert" not in err


def test_a_board_without_that_python(sshd, models, tmp_path):
    result = run("bench", models["onnx"], "--runs", "3", *_remote(sshd, python="/nonexistent/python3"), "--out", tmp_path / "o")
    assert_one_line_error(result, "'/nonexistent/python3' was not found", "--remote-python")


def test_remote_python_with_shell_characters_is_not_run_by_a_shell(sshd, models, tmp_path):
    marker = tmp_path / "pwned"
    result = run("bench", models["onnx"], "--runs", "3", *_remote(sshd, python=f"python3; touch {marker}"), "--out", tmp_path / "o")
    assert result.exit_code != 0 and "was not found" in result.stderr
    assert not marker.exists()


# ----------------------------------------------------------------------------- bad options, no board needed
@pytest.mark.parametrize(
    "url, fragment",
    [
        ("http://pi@host", "not an ssh:// URL"),
        ("pi@host", "not an ssh:// URL"),
        ("ssh://", "no host"),
        ("ssh://pi@host:99999", "Port out of range"),
        ("ssh://pi@host:abc", "Port could not be cast"),
        ("ssh://pi:secret@host", "no password in the URL"),
        ("ssh://pi:secret@host:99999", "Port out of range"),
        ("ssh://pi@host/home/pi", "a path, query or fragment"),
    ],
)
def test_bad_ssh_urls_are_one_line_errors(models, tmp_path, url, fragment):
    result = run("bench", models["onnx"], "--remote", url, "--out", tmp_path / "o")
    assert_one_line_error(result, "--remote", fragment)
    assert "secret" not in result.stderr  # a password is never echoed


def test_parse_ssh_url():
    assert parse_ssh_url("ssh://pi@raspberrypi.local") == ("pi", "raspberrypi.local", 22)
    assert parse_ssh_url("ssh://pi@192.168.1.20:2222") == ("pi", "192.168.1.20", 2222)
    assert parse_ssh_url("ssh://[::1]:2200") == (None, "::1", 2200)
    with pytest.raises(ConfigError):
        parse_ssh_url("ssh://host:0")


def test_remote_options_need_remote(models, tmp_path):
    assert_one_line_error(run("bench", models["onnx"], INSECURE_FLAG, "--out", tmp_path / "o"), "need --remote")


def test_missing_identity_file(models, tmp_path):
    result = run("bench", models["onnx"], "--remote", "ssh://pi@127.0.0.1", "--identity", tmp_path / "nokey", "--out", tmp_path / "o")
    assert_one_line_error(result, "identity file", "nokey", "does not exist")


# ----------------------------------------------------------------------------- the runner on its own
def _run_runner_without_edgetl(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    """The runner file executed as a script with ``edgetl`` made unimportable: it must not need it."""
    code = ("import runpy, sys; sys.modules['edgetl'] = None; sys.argv = sys.argv[1:]; "
            "runpy.run_path(sys.argv[0], run_name='__main__')")
    return subprocess.run([sys.executable, "-c", code, remote_runner.__file__, *args], capture_output=True, text=True,
                          cwd=cwd, timeout=120)


def test_runner_runs_stand_alone_and_agrees_with_bench_measure(models, tmp_path):
    import numpy as np

    from edgetl.bench.isolation import measure

    x = np.random.default_rng(1).integers(-128, 127, (1, 16, 16, 3), dtype=np.int8)
    np.save(tmp_path / "x.npy", x)
    proc = _run_runner_without_edgetl(str(models["int8"]), "--runs", "7", "--warmup", "1", "--input", "x.npy",
                                      "--save-outputs", "out.npz", "--progress", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-2000:]
    outcome = json.loads(proc.stdout.strip().splitlines()[-1])
    assert outcome["ok"] and outcome["runner_version"] == remote_runner.RUNNER_VERSION
    assert remote_runner.PROGRESS_PREFIX + "0 7 cold start" in proc.stderr
    result = outcome["result"]
    assert result["stats"]["runs"] == 7 and result["input_source"] == "files"
    spec = {"path": str(models["int8"]), "runtime": "litert", "threads": 1, "shapes": [[1, 16, 16, 3]], "dtypes": ["int8"],
            "warmup": 1, "runs": 7, "duration_s": None, "profile_runs": 0, "seed": 0}
    assert set(measure(spec)) | {"input_source"} == set(result)
    # the saved outputs are what LiteRT gives for that input, and the digest says so
    from edgetl.runtime.litert import LiteRTModel

    (expected,) = LiteRTModel(models["int8"]).invoke_raw([x])
    saved = np.load(tmp_path / "out.npz")["arr_0"]
    assert np.array_equal(saved, expected)
    assert outcome["outputs"] == remote_runner.output_digests([expected])


def test_runner_reports_a_bad_model_and_a_bad_input(models, tmp_path):
    proc = _run_runner_without_edgetl(str(tmp_path / "missing.onnx"), cwd=tmp_path)
    assert proc.returncode == remote_runner.EXIT_FAILED
    outcome = json.loads(proc.stdout.strip().splitlines()[-1])
    assert outcome == {"ok": False, "error": "ArtifactError", "message": f"model file {tmp_path / 'missing.onnx'} does not exist"}
    import numpy as np

    np.save(tmp_path / "wrong.npy", np.zeros((1, 8), np.float32))
    proc = _run_runner_without_edgetl(str(models["onnx"]), "--runs", "2", "--input", "wrong.npy", cwd=tmp_path)
    outcome = json.loads(proc.stdout.strip().splitlines()[-1])
    assert proc.returncode == remote_runner.EXIT_FAILED and outcome["error"] == "DataError" and "wrong.npy holds float32 [1, 8]" in outcome["message"]


def test_cpu_model_names_arm_boards():
    pi4 = "processor\t: 0\nBogoMIPS\t: 108.00\nCPU implementer\t: 0x41\nCPU part\t: 0xd08\n" * 4
    assert remote_runner.cpu_model(pi4, "Raspberry Pi 4 Model B Rev 1.4\x00") == "Raspberry Pi 4 Model B Rev 1.4 (4x Cortex-A72)"
    big_little = "CPU implementer\t: 0x41\nCPU part\t: 0xd05\n" * 4 + "CPU implementer\t: 0x41\nCPU part\t: 0xd0b\n" * 4
    assert remote_runner.cpu_model(big_little, "") == "4x Cortex-A55 + 4x Cortex-A76"
    assert remote_runner.cpu_model("model name\t: AMD EPYC 7B13\nflags\t: sse\n", "") == "AMD EPYC 7B13"


def test_runner_statistics_are_bench_summarize():
    from edgetl.bench.stats import summarize

    samples = [3.0, 1.0, 2.0, 10.0, 4.0]
    assert summarize(samples, 2, batch=2).to_dict() == remote_runner.latency_stats(samples, 2, batch=2)


def test_runner_op_profile_ranks_kernel_time_per_op_type():
    """The one implementation (the board runner's): ONNX Runtime's raw profile events -> top ops.

    Only kernel time counts (not the fences around it, not the session's own events)."""
    events = [
        {"cat": "Node", "name": "conv_kernel_time", "dur": 30, "args": {"op_name": "Conv"}},
        {"cat": "Node", "name": "conv_fence_before", "dur": 5, "args": {"op_name": "Conv"}},
        {"cat": "Node", "name": "relu_kernel_time", "dur": 10, "args": {"op_name": "Relu"}},
        {"cat": "Session", "name": "model_run", "dur": 100},
    ]
    assert remote_runner.top_ops_from_profile(events, 5) == [
        {"op": "Conv", "total_ms": 0.03, "percent": 75.0, "calls": 1},
        {"op": "Relu", "total_ms": 0.01, "percent": 25.0, "calls": 1},
    ]
    assert [row["op"] for row in remote_runner.top_ops_from_profile(events, 1)] == ["Conv"]
