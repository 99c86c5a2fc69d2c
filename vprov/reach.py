"""Is what a command needs reachable? One check per dependency, each bounded by a timeout.

Every command checks Kafka, Redis and the workers' web ports it needs before it starts, so that
a missing piece is one line, not a minute of retries and a traceback:

    cannot reach Kafka at 127.0.0.1:9092 (KAFKA_BOOTSTRAP_SERVERS): connection refused

Each check raises ``Unreachable``, whose text is that line: what, where, the setting that chose
the address, and why. ``vprov.cli.main`` prints it after ``error: `` and exits 3.
"""

from __future__ import annotations

import os
import socket
import time
import urllib.parse
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING

from vprov.config import DEFAULTS_PATH, ConfigError

if TYPE_CHECKING:
    from confluent_kafka import KafkaError

    from vprov.config import Config

DEFAULT_CONNECT_TIMEOUT = 10.0
CONNECT_TIMEOUT_ENV = "VPROV_CONNECT_TIMEOUT"
KAFKA_ENV = "KAFKA_BOOTSTRAP_SERVERS"
REDIS_ENV = "REDIS_URL"
DEFAULT_KAFKA_PORT = 9092
DEFAULT_REDIS_PORT = 6379
# librdkafka error names (KafkaError.name()) that mean "no broker to talk to"
_KAFKA_UNREACHABLE = {"_TRANSPORT", "_ALL_BROKERS_DOWN", "_TIMED_OUT", "_MSG_TIMED_OUT",
                      "_RESOLVE", "_TIMED_OUT_QUEUE", "NETWORK_EXCEPTION", "REQUEST_TIMED_OUT"}


class Unreachable(RuntimeError):
    """A dependency does not answer. ``str()`` is the one line to show:
    ``cannot reach WHAT at ADDRESS (SETTING): REASON[; HINT]``."""

    def __init__(self, what: str, address: str, setting: str, reason: str,
                 hint: str = "") -> None:
        self.what = what
        self.address = address
        self.setting = setting
        self.reason = reason
        self.hint = hint
        line = f"cannot reach {what} at {address} ({setting}): {reason}"
        super().__init__(f"{line}; {hint}" if hint else line)


# --- the timeout ---------------------------------------------------------------------------------


def seconds(text: str, name: str) -> float:
    """A timeout in seconds, greater than 0; ValueError names ``name``."""
    try:
        value = float(text)
    except ValueError:
        raise ValueError(f"{name}={text!r}: expected seconds, e.g. 10") from None
    if not value > 0 or value == float("inf"):
        raise ValueError(f"{name}={text!r}: expected seconds greater than 0")
    return value


def connect_timeout(option: float | None = None, env: Mapping[str, str] | None = None) -> float:
    """``--connect-timeout``, else ``$VPROV_CONNECT_TIMEOUT``, else 10 s."""
    if option is not None:
        return option
    raw = (os.environ if env is None else env).get(CONNECT_TIMEOUT_ENV, "")
    if not raw.strip():
        return DEFAULT_CONNECT_TIMEOUT
    try:
        return seconds(raw.strip(), CONNECT_TIMEOUT_ENV)
    except ValueError as exc:
        raise ConfigError(str(exc)) from None


# --- which setting chose an address --------------------------------------------------------------


def _setting(variable: str, key: str, config: Config | None, env: Mapping[str, str] | None
             ) -> str:
    env = os.environ if env is None else env
    if env.get(variable):
        return variable
    if config is not None and Path(config.source_path) != DEFAULTS_PATH:
        return f"{key} in {config.source_path}"
    return f"default of {variable}"


def kafka_setting(config: Config | None = None, env: Mapping[str, str] | None = None) -> str:
    """``KAFKA_BOOTSTRAP_SERVERS`` when set, else the configuration file's key, else the
    packaged default."""
    return _setting(KAFKA_ENV, "kafka.bootstrap_servers", config, env)


def redis_setting(config: Config | None = None, env: Mapping[str, str] | None = None) -> str:
    return _setting(REDIS_ENV, "redis.url", config, env)


def option_setting(option: str, value: str, default: str | None) -> str:
    """``--global-url``, or ``default of --global-url`` when ``value`` is the default."""
    return f"default of {option}" if default is not None and value == default else option


# --- reasons -------------------------------------------------------------------------------------


def os_reason(exc: BaseException, timeout: float, host: str | None = None) -> str:
    """A short, lower-case reason for a failed connection or request."""
    import httpx

    if isinstance(exc, httpx.RemoteProtocolError):
        return "the connection was closed without an HTTP answer"
    if type(exc).__module__.startswith(("httpx", "httpcore")):  # the OS error they wrap
        cause = exc.__cause__ or exc.__context__
        return os_reason(cause, timeout, host) if cause else f"no HTTP answer ({exc!r})"
    if isinstance(exc, ConnectionRefusedError):
        return "connection refused"
    if isinstance(exc, TimeoutError):  # socket.timeout too
        return f"no answer within {timeout:g} s"
    if isinstance(exc, socket.gaierror):
        return f"cannot resolve host {host}" if host else "cannot resolve the host"
    if isinstance(exc, ConnectionResetError):
        return "connection reset"
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror[:1].lower() + exc.strerror[1:]
    text = str(exc) or type(exc).__name__
    return text[:1].lower() + text[1:]


def kafka_reason(error: KafkaError, timeout: float | None = None) -> str:
    """What a librdkafka error says about the broker, for the one line."""
    name = error.name()
    if name in ("_TIMED_OUT", "_TIMED_OUT_QUEUE", "REQUEST_TIMED_OUT") and timeout:
        return f"no answer within {timeout:g} s"
    if name in ("_TRANSPORT", "_ALL_BROKERS_DOWN"):
        return "broker transport failure (no connection to a broker)"
    return error.str() or name


def kafka_unreachable(error: KafkaError) -> bool:
    """Whether a librdkafka error means no broker answered (rather than a refused request)."""
    return error.name() in _KAFKA_UNREACHABLE


# --- addresses -----------------------------------------------------------------------------------


def kafka_addresses(bootstrap: str) -> list[tuple[str, int]]:
    """``host:port`` pairs of a bootstrap list (``PLAINTEXT://`` prefixes and ``[v6]`` hosts
    allowed); ValueError on a malformed entry."""
    found = []
    for entry in (e.strip() for e in bootstrap.split(",")):
        if not entry:
            continue
        if "://" in entry:
            entry = entry.split("://", 1)[1]
        if entry.startswith("["):
            host, _, rest = entry[1:].partition("]")
            port_text = rest.removeprefix(":")
        elif entry.count(":") == 1:
            host, _, port_text = entry.partition(":")
        else:
            host, port_text = entry, ""
        try:
            port = int(port_text) if port_text else DEFAULT_KAFKA_PORT
        except ValueError:
            raise ValueError(f"{bootstrap!r}: {entry!r} is not host:port") from None
        if not host or not 0 < port < 65536:
            raise ValueError(f"{bootstrap!r}: {entry!r} is not host:port")
        found.append((host, port))
    if not found:
        raise ValueError(f"{bootstrap!r}: no host:port")
    return found


def redact(url: str) -> str:
    """``url`` with its password replaced by ``***``."""
    parts = urllib.parse.urlsplit(url)
    if parts.password is None:
        return url
    user = parts.username or ""
    host = parts.netloc.rpartition("@")[2]
    return urllib.parse.urlunsplit(parts._replace(netloc=f"{user}:***@{host}"))


def _tcp(host: str, port: int, timeout: float) -> None:
    with socket.create_connection((host, port), timeout=timeout):
        pass


# --- the checks ----------------------------------------------------------------------------------


def kafka(bootstrap: str, timeout: float, setting: str = KAFKA_ENV) -> None:
    """A TCP connection to a bootstrap address, then a metadata request through an AdminClient,
    both within ``timeout`` seconds; ``Unreachable`` otherwise."""
    from confluent_kafka import KafkaException

    from vprov.admin import admin_client  # admin imports this module

    deadline = time.monotonic() + timeout
    try:
        addresses = kafka_addresses(bootstrap)
    except ValueError as exc:
        raise Unreachable("Kafka", bootstrap, setting, str(exc)) from None
    failures = []
    for host, port in addresses:
        try:
            _tcp(host, port, max(0.05, deadline - time.monotonic()))
            break
        except OSError as exc:
            failures.append((f"{host}:{port}", os_reason(exc, timeout, host)))
    else:
        reasons = {reason for _, reason in failures}
        reason = (reasons.pop() if len(reasons) == 1
                  else ", ".join(f"{addr}: {why}" for addr, why in failures))
        raise Unreachable("Kafka", bootstrap, setting, reason)
    admin = admin_client(bootstrap)
    try:
        admin.list_topics(timeout=max(0.1, deadline - time.monotonic()))
    except KafkaException as exc:
        reason = kafka_reason(exc.args[0], timeout)
        if kafka_unreachable(exc.args[0]):  # librdkafka retries until the timeout
            reason = (f"the port accepts connections, but no Kafka broker answered within "
                      f"{timeout:g} s (vprov -v shows librdkafka's log)")
        raise Unreachable("Kafka", bootstrap, setting, reason) from None
    finally:
        admin.poll(0)  # hands librdkafka's log lines to the logger (shown with -v)


def redis(url: str, timeout: float, setting: str = REDIS_ENV) -> None:
    """A TCP connection (unless a unix socket) and a PING within ``timeout``; ``Unreachable``
    otherwise."""
    import redis as redis_py
    from redis.backoff import NoBackoff
    from redis.retry import Retry

    shown = redact(url)
    parts = urllib.parse.urlsplit(url)
    if parts.scheme not in ("redis", "rediss", "unix"):
        raise Unreachable("Redis", shown, setting,
                          "expected a redis://, rediss:// or unix:// URL")
    deadline = time.monotonic() + timeout
    if parts.scheme != "unix":
        host = parts.hostname or "localhost"
        try:
            port = parts.port or DEFAULT_REDIS_PORT
        except ValueError:
            raise Unreachable("Redis", shown, setting, "the port is not a number") from None
        try:
            _tcp(host, port, timeout)
        except OSError as exc:
            raise Unreachable("Redis", shown, setting, os_reason(exc, timeout, host)) from None
    left = max(0.1, deadline - time.monotonic())
    try:
        client = redis_py.Redis.from_url(url, socket_connect_timeout=left, socket_timeout=left,
                                         retry=Retry(NoBackoff(), 0))
    except ValueError as exc:
        raise Unreachable("Redis", shown, setting, str(exc)) from None
    try:
        client.ping()
    except redis_py.exceptions.TimeoutError:
        raise Unreachable("Redis", shown, setting, f"no answer within {timeout:g} s") from None
    except redis_py.exceptions.AuthenticationError as exc:
        raise Unreachable("Redis", shown, setting, f"authentication failed ({exc})") from None
    except (redis_py.exceptions.RedisError, OSError) as exc:
        raise Unreachable("Redis", shown, setting,
                          os_reason(exc, timeout) if isinstance(exc, OSError)
                          else str(exc) or type(exc).__name__) from None
    finally:
        client.close()


def http(url: str, what: str, timeout: float, setting: str, hint: str = "") -> None:
    """Any HTTP answer to ``GET /health`` within ``timeout`` (a worker still starting answers
    503: it is there). ValueError when ``url`` is not ``http://host:port``."""
    from vprov.webclient import NoAnswer, WebClient

    client = WebClient(url, timeout)
    try:
        client.get("/health")
    except NoAnswer as exc:
        raise Unreachable(what, client.base_url, setting, os_reason(exc, timeout, client.host),
                          hint) from None
    finally:
        client.close()


def kafka_of(config: Config, timeout: float) -> None:
    kafka(config.bootstrap_servers, timeout, kafka_setting(config))


def redis_of(config: Config, timeout: float) -> None:
    redis(config.redis_url, timeout, redis_setting(config))


def kafka_failure(error: KafkaError, bootstrap: str, setting: str) -> str:
    """The one line for a librdkafka error raised after the checks (a broker lost mid-way, or
    a request Kafka refused)."""
    if kafka_unreachable(error):
        return str(Unreachable("Kafka", bootstrap, setting, kafka_reason(error)))
    return f"Kafka at {bootstrap} ({setting}) refused a request: {error.str() or error.name()}"
