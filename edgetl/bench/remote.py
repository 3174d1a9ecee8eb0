"""``edgetl bench --remote ssh://user@host[:port]``: the same measurement, on a board over SSH.

The board needs Python 3.8+, numpy and the runtime (onnxruntime or ai-edge-litert), nothing
of edgetl: :mod:`edgetl.bench.board_runner` is one stand-alone file. Per run: connect (the host key
checked against known_hosts), make a temp folder with ``mktemp -d``, upload the runner and the
artifacts over SFTP, ask the runner whether numpy and the runtimes import (the error names what
to ``pip install`` there), then one fresh ``python3 remote_runner.py --spec -`` per (artifact,
thread count), the spec on stdin, progress on stderr, the outcome JSON on stdout. The temp folder
is removed over SFTP at the end, whatever happened. Artifacts are planned (loaded, shapes
resolved) on this machine first, so a bad file or option fails before anything is sent.

No remote command is built from user text: the commands are fixed strings whose only
variable parts (the remote Python, the temp folder that ``mktemp`` made) go through
:func:`shlex.quote`; files travel over SFTP under names edgetl makes.

SSH library: asyncssh (pinned in pyproject.toml). Chosen over paramiko and fabric because it
implements OpenSSH's known_hosts semantics fully (hashed names, ``[host]:port``, ``@cert-authority``
and ``@revoked`` markers) and restricts the host-key algorithms it negotiates to the keys
known for the host, as OpenSSH does; it raises distinct exceptions for an unverifiable host key
and a refused key; SFTP (upload, ``rmtree``) is built in; it is pure Python over
``cryptography``, which edgetl's environment already has; and it is actively maintained.
Fabric is a task layer on paramiko, which adds nothing here. Its asyncio API is wrapped in
one private event loop, so callers stay synchronous.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import re
import shlex
import socket
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

from edgetl.bench import board_runner as remote_runner
from edgetl.bench.harness import run_bench
from edgetl.bench.isolation import error_class, measurement_spec
from edgetl.core.errors import ConfigError, MissingDependencyError, RemoteError

logger = logging.getLogger(__name__)

INSECURE_FLAG = "--insecure-no-host-key-check"
DEFAULT_KNOWN_HOSTS = Path("~/.ssh/known_hosts")
CONNECT_TIMEOUT_S = 15.0
#: A fixed command: the only shell text edgetl sends that is not built with shlex.quote.
MKTEMP_COMMAND = 'mktemp -d "${TMPDIR:-/tmp}/edgetl-bench.XXXXXXXXXX"'
RUNNER_NAME = "remote_runner.py"


# ----------------------------------------------------------------------------- the target
@dataclass(frozen=True)
class SSHTarget:
    """A board to benchmark on, and how to reach it.

    Attributes:
        user: login name (``ssh://USER@host``; this machine's user when the URL has none).
        host: name or address.
        port: SSH port.
        identity: private key file; None: ssh-agent and ``~/.ssh/id_*``.
        known_hosts: known_hosts file; None: ``~/.ssh/known_hosts``.
        insecure: accept any host key (the flag that asks for this says it is insecure).
        python: the board's Python.
    """

    user: str
    host: str
    port: int = 22
    identity: Path | None = None
    known_hosts: Path | None = None
    insecure: bool = False
    python: str = "python3"

    @property
    def address(self) -> str:
        return f"[{self.host}]:{self.port}" if ":" in self.host else f"{self.host}:{self.port}"

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"ssh://{self.user}@{host}:{self.port}"

    @property
    def known_hosts_name(self) -> str:
        """How known_hosts and ``ssh-keygen -R`` name this host: ``host``, or ``[host]:port`` off port 22."""
        return self.host if self.port == 22 else f"[{self.host}]:{self.port}"


_PASSWORD = re.compile(r"^([a-z][a-z0-9+.-]*://[^:/@\[\]]*):[^@/]*@", re.IGNORECASE)


def parse_ssh_url(url: str) -> tuple[str | None, str, int]:
    """``ssh://user@host[:port]`` -> ``(user or None, host, port)``; IPv6 hosts in brackets.

    Raises:
        ConfigError: another scheme, no host, a bad port, a password, a path, query or fragment.
    """
    usage = "pass --remote ssh://user@host[:port], e.g. ssh://pi@raspberrypi.local or ssh://pi@192.168.1.20:2222"
    text = str(url).strip()
    shown = repr(_PASSWORD.sub(r"\1:***@", text))  # never echo a password
    try:
        parts = urlsplit(text)
        port = parts.port
    except ValueError as exc:
        raise ConfigError(f"Received --remote {shown}: {exc}; {usage}") from None
    if parts.scheme != "ssh":
        raise ConfigError(f"Received --remote {shown}: not an ssh:// URL; {usage}")
    if not parts.hostname:
        raise ConfigError(f"Received --remote {shown}: no host; {usage}")
    if parts.password is not None:
        raise ConfigError(f"Received --remote {shown}: edgetl takes no password in the URL; log in with a key (--identity KEY)")
    if parts.path not in ("", "/") or parts.query or parts.fragment:
        raise ConfigError(f"Received --remote {shown}: a path, query or fragment has no meaning here; {usage}")
    if port == 0:
        raise ConfigError(f"Received --remote {shown}: port 0; {usage}")
    user = unquote(parts.username) if parts.username else None
    return user, parts.hostname, port or 22


def make_target(
    url: str,
    *,
    identity: str | os.PathLike[str] | None = None,
    known_hosts: str | os.PathLike[str] | None = None,
    insecure: bool = False,
    python: str = "python3",
) -> SSHTarget:
    """Check ``--remote`` and its companion options cheaply (nothing is contacted).

    Raises:
        ConfigError: a bad URL, a missing identity or known_hosts file, an empty remote Python.
    """
    import getpass

    user, host, port = parse_ssh_url(url)
    if identity is not None and not Path(identity).expanduser().is_file():
        raise ConfigError(f"identity file {identity} does not exist; pass --identity with a private key file")
    if known_hosts is not None and not Path(known_hosts).expanduser().is_file():
        raise ConfigError(f"known_hosts file {known_hosts} does not exist; pass an existing file or leave out --known-hosts")
    if not str(python).strip():
        raise ConfigError("Received an empty --remote-python; pass the board's Python, e.g. python3 or /home/pi/venv/bin/python")
    return SSHTarget(
        user=user or getpass.getuser(), host=host, port=port,
        identity=Path(identity).expanduser() if identity is not None else None,
        known_hosts=Path(known_hosts).expanduser() if known_hosts is not None else None,
        insecure=insecure, python=str(python),
    )


# ----------------------------------------------------------------------------- connecting
def _host_key_error(target: SSHTarget, known_hosts: Path, offered: Any) -> RemoteError:
    """Unknown host or changed key: which one, the key's fingerprint, and what to do (one line)."""
    import asyncssh

    try:
        addr = socket.getaddrinfo(target.host, target.port, proto=socket.IPPROTO_TCP)[0][4][0]
    except OSError:
        addr = target.host
    known = None
    if known_hosts.is_file():
        try:
            known = asyncssh.read_known_hosts(str(known_hosts)).match(target.host, addr, target.port)
        except (OSError, ValueError):
            known = None
    seen = f"; it offers {offered.get_algorithm()} key {offered.get_fingerprint()}" if offered is not None else ""
    name = target.known_hosts_name
    scan = f"ssh-keyscan {'-p ' + str(target.port) + ' ' if target.port != 22 else ''}{target.host}"
    if known and (known[0] or known[1]):
        return RemoteError(
            f"the host key of {target.address} does not match the one in {known_hosts}: it changed{seen}. "
            f"If the board was reinstalled, check the new key and replace the entry: ssh-keygen -R '{name}' -f {known_hosts}, "
            f"then {scan} >> {known_hosts}; {INSECURE_FLAG} skips the check (insecure)"
        )
    return RemoteError(
        f"the host key of {target.address} is not in {known_hosts} (unknown host{seen}). "
        f"Add it after checking its fingerprint: {scan} >> {known_hosts} (or log in once with ssh); "
        f"{INSECURE_FLAG} skips the check (insecure)"
    )


async def _offered_key(target: SSHTarget) -> Any:
    import asyncssh

    try:
        return await asyncio.wait_for(
            asyncssh.get_server_host_key(target.host, target.port, config=None), timeout=CONNECT_TIMEOUT_S
        )
    except (TimeoutError, OSError, asyncssh.Error):
        return None


async def _connect(target: SSHTarget):
    """An asyncssh connection, or a :class:`RemoteError` / :class:`ConfigError` saying why not."""
    import asyncssh

    if target.insecure:
        known_hosts: Any = None
        logger.warning("%s: host key not checked (%s)", target.address, INSECURE_FLAG)
    else:
        path = (target.known_hosts or DEFAULT_KNOWN_HOSTS).expanduser()
        known_hosts = str(path) if path.is_file() else asyncssh.import_known_hosts("")
    client_keys: Any = ()
    agent_path: Any = ()
    if target.identity is not None:
        try:
            client_keys = [asyncssh.read_private_key(str(target.identity))]
        except (OSError, asyncssh.KeyImportError) as exc:
            hint = "; an encrypted key must be loaded into ssh-agent (ssh-add) and --identity left out" if "assphrase" in str(exc) else ""
            raise ConfigError(f"cannot use identity {target.identity}: {' '.join(str(exc).split())}{hint}") from None
        agent_path = None  # like `ssh -o IdentitiesOnly=yes -i KEY`: only the key asked for
    try:
        return await asyncssh.connect(
            target.host, target.port, username=target.user, known_hosts=known_hosts, client_keys=client_keys,
            agent_path=agent_path, config=None, password_auth=False, kbdint_auth=False, gss_auth=False, gss_kex=False,
            connect_timeout=CONNECT_TIMEOUT_S, keepalive_interval=15,
        )
    except asyncssh.HostKeyNotVerifiable:
        raise _host_key_error(target, (target.known_hosts or DEFAULT_KNOWN_HOSTS).expanduser(), await _offered_key(target)) from None
    except asyncssh.PermissionDenied:
        which = f"key {target.identity}" if target.identity else "keys from ssh-agent and ~/.ssh"
        raise RemoteError(
            f"{target.user}@{target.address} refused the {which} (permission denied): add the public key to "
            f"~{target.user}/.ssh/authorized_keys on the board, or pass --identity KEY with a key it accepts"
        ) from None
    except TimeoutError:
        raise RemoteError(f"cannot reach {target.address}: no answer within {CONNECT_TIMEOUT_S:g} s (is the board on and on this network?)") from None
    except socket.gaierror as exc:
        raise RemoteError(f"cannot reach {target.address}: host name {target.host!r} does not resolve ({exc.strerror})") from None
    except ConnectionRefusedError:
        raise RemoteError(f"cannot reach {target.address}: connection refused (no SSH server listening on port {target.port})") from None
    except OSError as exc:
        reason = exc.strerror or " ".join(str(exc).split())
        if "refused" in str(exc).lower():
            raise RemoteError(f"cannot reach {target.address}: connection refused (no SSH server listening on port {target.port})") from None
        raise RemoteError(f"cannot reach {target.address}: {reason}") from None
    except asyncssh.Error as exc:
        raise RemoteError(f"SSH connection to {target.address} failed: {' '.join(str(exc.reason).split())}") from None


# ----------------------------------------------------------------------------- the board
class RemoteBoard:
    """A connected board: where :func:`edgetl.bench.harness.run_bench` measures when given one.

    Use as a context manager; leaving it removes the board's temp folder and disconnects.

    Raises:
        RemoteError: unreachable, refused, unverifiable host key, or the board failed a command.
        MissingDependencyError: the board's Python lacks numpy or a runtime (names the ``pip install``).
    """

    def __init__(self, target: SSHTarget) -> None:
        self.target = target
        self._loop = asyncio.new_event_loop()
        self._conn: Any = None
        self._sftp: Any = None
        self._tmp: str | None = None
        self._uploaded: dict[Path, str] = {}
        self._predictions = 0
        self._check: dict[str, Any] = {}
        self.isolation = (
            f"each (artifact, thread count) runs in a fresh Python process on the board {target.url} "
            f"({target.python} {RUNNER_NAME}, edgetl's stand-alone runner, copied over SSH)"
        )

    def _run(self, coro):
        return self._loop.run_until_complete(coro)

    # -------------------------------------------------------------- lifecycle
    def __enter__(self) -> RemoteBoard:
        try:
            self._run(self._open())
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()

    async def _open(self) -> None:
        import asyncssh

        self._conn = await _connect(self.target)
        try:
            made = await self._conn.run(MKTEMP_COMMAND, check=False)
            self._sftp = await self._conn.start_sftp_client()
            tmp = str(made.stdout or "").strip()
            if made.exit_status != 0 or not tmp.startswith("/") or "\n" in tmp or "edgetl-bench." not in tmp:
                raise RemoteError(f"cannot make a temp folder on {self.target.address} (mktemp -d: {str(made.stderr or '').strip()[:200]})")
            self._tmp = tmp
            await self._sftp.put(remote_runner.__file__, self._path(RUNNER_NAME))
        except asyncssh.Error as exc:
            raise RemoteError(f"{self.target.address}: {' '.join(str(exc.reason).split())}") from None

    def close(self) -> None:
        """Remove the board's temp folder (over SFTP, no shell) and disconnect; never raises."""
        if self._loop.is_closed():
            return
        try:
            self._run(self._close())
        except Exception as exc:  # noqa: BLE001 - cleanup must not hide the error that got us here
            logger.warning("could not clean up %s on %s: %s", self._tmp, self.target.address, exc)
        finally:
            self._loop.close()

    async def _close(self) -> None:
        try:
            if self._sftp is not None and self._tmp is not None:
                await self._sftp.rmtree(self._tmp, ignore_errors=True)
                self._tmp = None
        finally:
            if self._sftp is not None:
                self._sftp.exit()
            if self._conn is not None:
                self._conn.close()
                await self._conn.wait_closed()

    def _path(self, name: str) -> str:
        assert self._tmp is not None
        return f"{self._tmp}/{name}"

    # -------------------------------------------------------------- commands
    async def _exec(self, args: list[str], stdin: str = "", on_stderr: Callable[[str], None] | None = None):
        """Run a command whose every word is quoted; returns (exit status, signal name, stdout, stderr tail)."""
        command = " ".join(shlex.quote(a) for a in args)
        process = await self._conn.create_process(command, encoding="utf-8")
        process.stdin.write(stdin)
        process.stdin.write_eof()
        tail: list[str] = []

        async def read_stderr() -> None:
            async for line in process.stderr:
                if on_stderr is not None and line.startswith(remote_runner.PROGRESS_PREFIX):
                    on_stderr(line)
                elif line.strip():
                    tail.append(line.rstrip())
                    del tail[:-20]

        errors = asyncio.ensure_future(read_stderr())
        stdout = await process.stdout.read()
        await errors
        result = await process.wait()
        signal_name = result.exit_signal[0] if result.exit_signal else None
        return result.exit_status, signal_name, stdout, tail

    def _outcome(self, what: str, status: int | None, signal_name: str | None, stdout: str, tail: list[str]) -> dict[str, Any]:
        """The runner's JSON outcome, or a one-line error for a board that could not run it."""
        python = self.target.python
        if signal_name:
            raise RemoteError(f"{what} crashed on {self.target.address} (signal {signal_name}); the runtime may not support this board or model")
        if status == 127:
            raise RemoteError(f"{python!r} was not found on {self.target.address}; pass --remote-python with the board's Python (3.8 or later)")
        lines = [line for line in str(stdout).splitlines() if line.startswith("{")]
        try:
            outcome = json.loads(lines[-1]) if lines else None
        except ValueError:
            outcome = None
        if not isinstance(outcome, dict):
            last = tail[-1] if tail else "no output"
            raise RemoteError(f"{what} failed on {self.target.address} (exit {status}): {last[:300]}")
        if not outcome.get("ok") and outcome.get("error") == "MissingDependencyError":
            pip = outcome.get("pip") or f"{python} -m pip install numpy"
            raise MissingDependencyError(
                f"the board {self.target.address} cannot run the benchmark: {outcome.get('message')}. On the board run: {pip} "
                f"(Debian 12 / Raspberry Pi OS: in a venv, then pass --remote-python /path/to/venv/bin/python)"
            )
        return outcome

    def check_runtimes(self, runtimes: list[str]) -> dict[str, Any]:
        """Ask the board whether numpy and ``runtimes`` import; remember its machine and versions.

        Raises:
            MissingDependencyError: what to ``pip install`` on the board.
        """
        status, signal_name, stdout, tail = self._run(self._exec([self.target.python, self._path(RUNNER_NAME), "--check", *runtimes]))
        outcome = self._outcome("the import check", status, signal_name, stdout, tail)
        if not outcome.get("ok"):
            raise RemoteError(f"the import check failed on {self.target.address}: {outcome.get('message')}")
        self._check = outcome
        return outcome

    def _upload(self, path: Path) -> str:
        path = path.resolve()
        if path not in self._uploaded:
            remote = self._path(f"artifact{len(self._uploaded)}{path.suffix.lower()}")  # a name edgetl makes, never the user's
            self._run(self._sftp.put(str(path), remote))
            self._uploaded[path] = remote
        return self._uploaded[path]

    # -------------------------------------------------------------- what run_bench calls
    def measure(self, plan, threads: int, options, report: Callable[[int, int, str], None] | None = None) -> dict[str, Any]:
        """One (artifact, threads) measurement on the board, in a fresh Python process there."""
        spec = measurement_spec(plan, threads, options)
        spec["path"] = self._upload(plan.path)

        def progress(line: str) -> None:
            done, total, *message = line[len(remote_runner.PROGRESS_PREFIX):].split(maxsplit=2)
            if report is not None:
                report(int(done), int(total), " ".join(message).strip())

        status, signal_name, stdout, tail = self._run(
            self._exec([self.target.python, self._path(RUNNER_NAME), "--spec", "-", "--progress"], json.dumps(spec), progress)
        )
        outcome = self._outcome(f"benchmarking {plan.label}", status, signal_name, stdout, tail)
        if not outcome.get("ok"):
            raise error_class(outcome.get("error"))(f"on {self.target.address}: {outcome.get('message')}")
        if "machine" in outcome:
            self._check.setdefault("machine", outcome["machine"])
        return outcome["result"]

    def predict(self, model: str | os.PathLike[str], inputs: Any, *, batch_size: int = 64, threads: int | None = None) -> Any:
        """Run ``model`` over ready input tensors on the board, in a fresh Python process there; its raw outputs.

        The model and a ``.npy`` of ``inputs`` go up over SFTP, the runner's ``predict`` mode runs them in
        batches of ``batch_size`` (or the model's fixed batch), and the outputs ``.npy`` comes back
        (read with ``allow_pickle=False``); both ``.npy`` files are removed from the board.

        Args:
            inputs: ``(N, ...)`` array of the model's input dtype (already preprocessed and quantized).

        Returns:
            ``(N, ...)`` numpy array in the output tensor's own dtype.

        Raises:
            RemoteError: the board could not run it (crash, missing Python, SSH failure).
            ArtifactError, DataError, MissingDependencyError: what the runner reported.
        """
        import tempfile

        import asyncssh
        import numpy as np

        model = Path(model)
        remote_model = self._upload(model)
        self._predictions += 1
        remote_in, remote_out = self._path(f"inputs{self._predictions}.npy"), self._path(f"outputs{self._predictions}.npy")
        spec = {"mode": "predict", "path": remote_model, "runtime": None, "threads": threads, "inputs_file": remote_in,
                "outputs_file": remote_out, "batch_size": int(batch_size)}
        with tempfile.TemporaryDirectory(prefix="edgetl-predict-") as tmp:
            local_in, local_out = Path(tmp, "inputs.npy"), Path(tmp, "outputs.npy")
            np.save(local_in, np.ascontiguousarray(inputs), allow_pickle=False)
            try:
                self._run(self._sftp.put(str(local_in), remote_in))
                status, signal_name, stdout, tail = self._run(
                    self._exec([self.target.python, self._path(RUNNER_NAME), "--spec", "-"], json.dumps(spec))
                )
                outcome = self._outcome(f"predicting with {model.name}", status, signal_name, stdout, tail)
                if not outcome.get("ok"):
                    raise error_class(outcome.get("error"))(f"on {self.target.address}: {outcome.get('message')}")
                self._run(self._sftp.get(remote_out, str(local_out)))
            except asyncssh.Error as exc:
                raise RemoteError(f"{self.target.address}: {' '.join(str(exc.reason).split())}") from None
            finally:
                for name in (remote_in, remote_out):
                    try:
                        self._run(self._sftp.remove(name))
                    except (asyncssh.Error, OSError):
                        pass  # never written; the temp folder goes at close anyway
            self._check.setdefault("machine", outcome.get("machine"))
            try:
                return np.load(local_out, allow_pickle=False)
            except (OSError, ValueError) as exc:
                raise RemoteError(f"the outputs {model.name} gave on {self.target.address} are unreadable: {exc}") from None

    def machine(self) -> dict[str, Any]:
        return dict(self._check.get("machine") or {})

    def notes(self) -> dict[str, Any]:
        return {"remote": {
            "url": self.target.url, "python": self.target.python,
            "python_executable": self._check.get("python_executable"),
            "host_key_checked": not self.target.insecure, "runner": RUNNER_NAME,
            "runner_version": self._check.get("runner_version"),
        }}


def run_remote_bench(plans: list, options, target: SSHTarget, *, progress=None) -> dict[str, Any]:
    """:func:`edgetl.bench.harness.run_bench` with every measurement on the board ``target``.

    Args:
        plans: :func:`edgetl.bench.plan.plan_bench`'s plans (artifacts checked on this machine).

    Returns:
        The ``bench.json`` document; ``machine`` is the board's, ``remote`` says which board.

    Raises:
        RemoteError, MissingDependencyError, ConfigError, and the errors a measurement raises.
    """
    with RemoteBoard(target) as board:
        board.check_runtimes(sorted({plan.runtime.name for plan in plans}))
        return run_bench(plans, options, progress=progress, where=board)
