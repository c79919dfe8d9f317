"""Start or join Ray for a command: our own local Ray unless an address is given, and never a hang.

A bare `ray.init()` joins the last cluster `ray start` left in Ray's address file on this machine,
even a dead one, and then retries for ever in C++ code that defers Ctrl-C and SIGTERM. So: an
address comes only from `--address`, then `RAY_ADDRESS` (which Ray sets for a job's driver); without
one Ray starts locally. A given address is probed with a short TCP connect first, so an unreachable
one fails in seconds naming it, and while `ray.init` runs, Ctrl-C and SIGTERM kill the process at
once (the Ray processes it started share its fate).
"""
from __future__ import annotations

import contextlib
import logging
import os
import signal
import socket
import threading
from urllib.parse import urlsplit

PROBE_TIMEOUT_S = 3.0
DEFAULT_PORTS = {"": 6379, "ray": 10001}  # GCS port of `ray start --head`; Ray Client server port
TOKEN_NOTICE = "Token authentication is enabled for this Ray cluster"  # Ray's log line on every local start


class RayAddressError(Exception):
    """The Ray address the user gave cannot be used (a user error: `error: ... Fix: ...`)."""


def resolve_address(address: str | None) -> tuple[str, str]:
    """(address, where it came from): --address, else RAY_ADDRESS, else "local"."""
    if address:
        return address, "--address"
    if os.environ.get("RAY_ADDRESS"):
        return os.environ["RAY_ADDRESS"], "RAY_ADDRESS"
    return "local", "default"


def _host_port(address: str, source: str) -> tuple[str, int]:
    """The TCP endpoint behind a driver address: "host[:port]", "ray://host[:port]" or "auto"."""
    if address == "auto":
        from ray._private.services import canonicalize_bootstrap_address

        try:
            address = canonicalize_bootstrap_address("auto")
        except ConnectionError:
            raise RayAddressError(f"{source}=auto: no running Ray cluster found on this machine. "
                                  "Fix: start one (`ray start --head`), or drop the address to start a local Ray") from None
    parts = urlsplit(address if "://" in address else f"//{address}")
    if parts.scheme in ("http", "https"):
        raise RayAddressError(
            f"{source}={address} is a dashboard (job submission) address, not one a driver can join. Fix: submit "
            f"the command with `ray job submit --address {address} -- jepa ...`, or give the cluster's GCS address "
            "(HEAD:6379)")
    if parts.scheme not in DEFAULT_PORTS or not parts.hostname:
        raise RayAddressError(f"{source}={address} is not a Ray address. Fix: use HOST:PORT (e.g. 127.0.0.1:6379), "
                              "ray://HOST:10001 or auto")
    try:
        port = parts.port or DEFAULT_PORTS[parts.scheme]
    except ValueError:
        raise RayAddressError(f"{source}={address} has a bad port. Fix: use HOST:PORT (e.g. 127.0.0.1:6379)") from None
    return parts.hostname, port


def check_reachable(address: str, source: str, timeout: float = PROBE_TIMEOUT_S) -> None:
    """Fail within `timeout` seconds, naming the address, unless something listens there."""
    if address == "local":
        return
    host, port = _host_port(address, source)
    try:
        socket.create_connection((host, port), timeout=timeout).close()
    except OSError as err:
        reason = "timed out" if isinstance(err, TimeoutError) else (err.strerror or str(err))
        raise RayAddressError(
            f"cannot reach Ray at {address} ({source}; {host}:{port}: {reason}). Fix: start that cluster "
            f"(`ray start --head --port {port}`) or give a reachable --address; without --address and RAY_ADDRESS "
            "a local Ray is started") from None


@contextlib.contextmanager
def _killable():
    """Ctrl-C and SIGTERM end the process at once, even inside Ray's C++ connection loop."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    saved = {sig: signal.signal(sig, signal.SIG_DFL) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for sig, handler in saved.items():
            signal.signal(sig, handler)


class _DropTokenNotice(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return not record.getMessage().startswith(TOKEN_NOTICE)


def quiet_token_notice() -> None:
    """Drop only Ray's "token authentication is enabled" notice: it is Ray's default, not news, on every command."""
    logger = logging.getLogger("ray._private.authentication.authentication_token_setup")
    if not any(isinstance(f, _DropTokenNotice) for f in logger.filters):
        logger.addFilter(_DropTokenNotice())


def start_ray(address: str | None = None, **init_kwargs) -> str:
    """Start (or join, when an address is given) Ray unless it already runs here; return the address used."""
    import ray

    if ray.is_initialized():
        return "already initialized"
    target, source = resolve_address(address)
    check_reachable(target, source)
    quiet_token_notice()
    with _killable():
        ray.init(address=target, **init_kwargs)
    return target
