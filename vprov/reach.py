"""Is what a command needs reachable? One check per dependency, each bounded by a timeout.

Every command checks Kafka, Redis and the workers' web ports it needs before it starts, so that
a missing piece is one line, not a minute of retries and a traceback:

    cannot reach Kafka at 127.0.0.1:9092 (KAFKA_BOOTSTRAP_SERVERS): connection refused

Each check raises ``Unreachable``, whose text is that line: what, where, the setting that chose
the address, and why. ``vprov.cli.main`` prints it after ``error: `` and exits 3.
"""

from __future__ import annotations

import os
import re
import socket
import time
import urllib.parse
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, cast

from vprov.config import DEFAULTS_PATH, ENV_OVERRIDES, ConfigError

if TYPE_CHECKING:
    from confluent_kafka import KafkaError

    from vprov.config import Config
    from vprov.kafka.settings import KafkaAccess

DEFAULT_CONNECT_TIMEOUT = 10.0
CONNECT_TIMEOUT_ENV = "VPROV_CONNECT_TIMEOUT"
KAFKA_ENV = "KAFKA_BOOTSTRAP_SERVERS"
REDIS_ENV = "REDIS_URL"
DEFAULT_KAFKA_PORT = 9092
DEFAULT_REDIS_PORT = 6379
# librdkafka error names (KafkaError.name()) that mean "no broker to talk to"
_KAFKA_UNREACHABLE = {"_TRANSPORT", "_ALL_BROKERS_DOWN", "_TIMED_OUT", "_MSG_TIMED_OUT",
                      "_RESOLVE", "_TIMED_OUT_QUEUE", "NETWORK_EXCEPTION", "REQUEST_TIMED_OUT"}


class Refused(RuntimeError):
    """A dependency answers but will not serve us: bad credentials, a certificate we cannot
    verify, a missing ACL. ``str()`` is the one line naming the cause and the setting to fix.
    Waiting does not help, so a worker exits on it instead of waiting."""


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


def security_setting(target: object, key: str, env: Mapping[str, str] | None = None) -> str:
    """The setting that chose ``kafka.security.<key>``: its variable when set, else the file."""
    variable = next(name for name, (section, k, _) in ENV_OVERRIDES.items()
                    if (section, k) == ("kafka.security", key))
    config = cast("Config", target) if hasattr(target, "source_path") else None
    chosen = _setting(variable, f"kafka.security.{key}", config, env)
    return variable if chosen.startswith("default of ") else chosen


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


def _broker_text(error: KafkaError) -> str:
    """librdkafka's text without the broker name before it and the timing after it."""
    text = error.str() or error.name()
    text = re.sub(r"^\S+://\S+: ", "", text)
    return re.sub(r" \(after \d+ms in state \w+\)$", "", text)


def kafka_refusal(errors: list[KafkaError], target: KafkaAccess) -> Refused | None:
    """The refusal among a client's errors (a wrong password or mechanism, a certificate not
    signed by the configured CA, another TLS failure), or None."""
    sec = target.kafka_security
    where = f"Kafka at {target.bootstrap_servers}"
    for error in errors:
        text = _broker_text(error)
        if error.name() == "_AUTHENTICATION":
            if "mechanism handshake failed" in text:
                fix = security_setting(target, "sasl_mechanism")
            else:
                fix = (f"{security_setting(target, 'sasl_username')} and "
                       f"{security_setting(target, 'sasl_password')}")
            return Refused(f"{where} refused to authenticate user {sec.sasl_username!r} with "
                           f"{sec.sasl_mechanism}: {text}; check {fix}")
        if error.name() == "_SSL":
            if "certificate verify failed" in text:
                ca = sec.ssl_ca_location or "the system's CA certificates"
                return Refused(f"{where}: the broker's TLS certificate is not signed by a CA in "
                               f"{ca}; set {security_setting(target, 'ssl_ca_location')} to the "
                               "CA that signed it")
            return Refused(f"{where}: TLS handshake failed: {text}; check "
                           f"{security_setting(target, 'protocol')} and the kafka.security "
                           "certificate settings")
    return None


def authorization_hint(error: KafkaError, target: object) -> str:
    """For a request refused for want of an ACL: which principal, and how to grant it."""
    if "AUTHORIZATION_FAILED" not in error.name():
        return ""
    sec = getattr(target, "kafka_security", None)
    user = f"User:{sec.sasl_username}" if sec is not None and sec.sasl_username else "this client"
    return (f"; {user} lacks an ACL for it: `vprov acls` lists each role's, and an admin "
            "creates them with `vprov acls --apply`")


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


def kafka(target: KafkaAccess | str, timeout: float, setting: str = KAFKA_ENV) -> None:
    """A TCP connection to a bootstrap address, then a metadata request through an AdminClient
    with the configured TLS and SASL settings, both within ``timeout`` seconds; ``Unreachable``
    otherwise, or ``Refused`` as soon as the broker refuses the credentials or the
    certificate."""
    from confluent_kafka import KafkaException

    from vprov.kafka.clients import admin_client
    from vprov.kafka.settings import access

    target = access(target)
    bootstrap = target.bootstrap_servers
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
    errors: list[KafkaError] = []
    with admin_client(target, error_cb=errors.append) as admin:
        while True:  # short requests, to see a refusal among the client's errors early
            try:
                admin.list_topics(timeout=max(0.1, min(0.5, deadline - time.monotonic())))
                return
            except KafkaException as exc:
                error = exc.args[0]
            finally:
                admin.poll(0)  # runs error_cb; hands librdkafka's log lines to the logger (-v)
            refused = kafka_refusal(errors, target)
            if refused is not None:
                raise refused
            if time.monotonic() >= deadline:
                break
        reason = kafka_reason(error, timeout)
        if kafka_unreachable(error):  # librdkafka retries until the timeout
            reason = (f"the port accepts connections, but no Kafka broker answered within "
                      f"{timeout:g} s (vprov -v shows librdkafka's log)")
            if any(e.name() == "_ALL_BROKERS_DOWN" for e in errors):
                reason += (f"; the broker closed the connection: if its listener expects another "
                           f"security protocol than {target.kafka_security.protocol}, set "
                           f"{security_setting(target, 'protocol')}")
        raise Unreachable("Kafka", bootstrap, setting, reason)


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
    except (redis_py.exceptions.AuthenticationError,
            redis_py.exceptions.AuthorizationError) as exc:
        user = parts.username or "default"
        raise Refused(f"Redis at {shown} refused user {user!r}: {exc}; check the user and "
                      f"password in {setting}") from None
    except redis_py.exceptions.ConnectionError as exc:
        if "certificate verify failed" in str(exc):
            raise Refused(f"Redis at {shown}: its TLS certificate is not signed by the CA of "
                          f"ssl_ca_certs in {setting}") from None
        raise Unreachable("Redis", shown, setting, str(exc) or type(exc).__name__) from None
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
    kafka(config, timeout, kafka_setting(config))


def cluster_of(config: Config, region: str | None, timeout: float) -> None:
    """The cluster of ``region``'s topics (the global one for ``None``) answers."""
    cluster = config.cluster(region)
    if region is None or cluster == config.global_cluster:
        kafka_of(config, timeout)
        return
    variable = f"{KAFKA_ENV}_{region}"
    setting = variable if os.environ.get(variable) else \
        f"regions.{region}.kafka.bootstrap_servers in {config.source_path}"
    kafka(cluster, timeout, setting)


def clusters_of(config: Config, timeout: float) -> None:
    """Every cluster of the configuration answers (one, or the global one and the regions')."""
    for region in (None, *config.regions):
        cluster_of(config, region, timeout)


def redis_of(config: Config, timeout: float) -> None:
    redis(config.redis_url, timeout, redis_setting(config))


def kafka_failure(error: KafkaError, bootstrap: str, setting: str, target: object = None
                  ) -> str:
    """The one line for a librdkafka error raised after the checks (a broker lost mid-way, or
    a request Kafka refused)."""
    if kafka_unreachable(error):
        return str(Unreachable("Kafka", bootstrap, setting, kafka_reason(error)))
    return (f"Kafka at {bootstrap} ({setting}) refused a request: {error.str() or error.name()}"
            f"{authorization_hint(error, target)}")


def kafka_permissions(target: KafkaAccess, topics: list[str], groups: list[str],
                      timeout: float) -> None:
    """``Refused`` naming the first topic or group the principal may not use. Other errors
    (a topic that does not exist yet, a group coordinator still loading) say nothing about
    permissions and are left to the steps that follow."""
    from confluent_kafka import KafkaError, KafkaException, TopicCollection

    from vprov.kafka.clients import admin_client

    with admin_client(target) as admin:
        futures = {f"topic {name}": future for name, future in admin.describe_topics(
            TopicCollection(sorted(topics)), request_timeout=timeout).items()}
        futures.update({f"consumer group {name}": future for name, future in
                        admin.describe_consumer_groups(sorted(groups),
                                                       request_timeout=timeout).items()})
        for what, future in futures.items():
            try:
                future.result()
            except KafkaException as exc:
                error = exc.args[0]
                if error.code() in (KafkaError.TOPIC_AUTHORIZATION_FAILED,
                                    KafkaError.GROUP_AUTHORIZATION_FAILED):
                    raise Refused(f"Kafka at {target.bootstrap_servers} refused {what}: "
                                  f"{error.str() or error.name()}"
                                  f"{authorization_hint(error, target)}") from None
                # anything else (a coordinator still loading) is no answer about permissions
