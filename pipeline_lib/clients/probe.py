"""Why a Kafka broker refused this client, asked of the broker itself.

kafka-python's clients raise the same bootstrap timeout for a dead broker, a refused
login, an untrusted certificate, a protocol mismatch and a mechanism the cluster does
not offer (the cause is logged, and not always: a refused connection may close before
its answer is read). When a client cannot bootstrap, one blocking connection replays
the steps (TCP, TLS, SASL handshake, SASL login) and names the step that failed.
"""

from __future__ import annotations

import contextlib
import re
import socket
import ssl
import time
from typing import TYPE_CHECKING, Any

from pipeline_lib.core.errors import PipelineError

if TYPE_CHECKING:
    from pipeline_lib.core.config import Settings

PROBE_TIMEOUT_S = 5.0  # per socket operation (at most what is left of the deadline)
PROBE_DEADLINE_S = 12.0  # for the whole probe, however many bootstrap servers


class _Refused(PipelineError):
    """The broker's answer, as one line for the user."""


def refusal(settings: Settings, security: dict[str, Any]) -> str | None:
    """The reason the first reachable bootstrap broker refuses a client with these
    ``security`` arguments (see :func:`pipeline_lib.clients.kafka_security`), or None
    when no broker answers, or the broker accepts the login (the cause lies elsewhere)."""
    deadline = time.monotonic() + PROBE_DEADLINE_S
    for server in settings.kafka_bootstrap_servers.split(","):
        left = deadline - time.monotonic()
        if left <= 0:
            return None
        with contextlib.ExitStack() as cleanup:
            try:
                host, _, port = server.strip().rpartition(":")
                host = host.strip("[]")
                timeout = min(PROBE_TIMEOUT_S, left)
                sock = socket.create_connection((host, int(port)), timeout=timeout)
            except (OSError, ValueError):
                continue  # nothing listens there: try the next server
            cleanup.callback(sock.close)
            try:
                _probe(sock, host, settings, security, cleanup)
            except _Refused as reason:
                return f"Kafka at {server.strip()} {reason}"
            except PipelineError as error:  # e.g. credentials for a token: its own line
                return str(error)
            except (OSError, EOFError):  # a frozen or closing broker: try the next one
                continue
            except Exception:  # an answer the probe cannot read: no diagnosis
                return None
            return None
    return None


def _probe(
    sock: socket.socket,
    host: str,
    settings: Settings,
    security: dict[str, Any],
    cleanup: contextlib.ExitStack,
) -> None:
    from kafka.protocol.parser import KafkaProtocol

    protocol = settings.kafka_security_protocol
    parser = KafkaProtocol(client_id="pipeline-probe")
    if protocol in {"SSL", "SASL_SSL"}:
        sock = _tls(sock, host, protocol, security)
        cleanup.callback(sock.close)
    elif _speaks_tls(sock, parser):
        raise _Refused(
            f"speaks TLS and this client {protocol}: set KAFKA_SECURITY_PROTOCOL=SASL_SSL (or SSL)"
        )
    mechanism = security.get("sasl_mechanism")
    if mechanism:
        _sasl(sock, parser, host, mechanism, security)
    else:
        _no_sasl(sock, parser, protocol)


def _speaks_tls(sock: socket.socket, parser: Any) -> bool:
    """Send a Kafka ApiVersions request in the clear: a TLS server answers with an
    alert record (0x15 0x03 ...); a Kafka listener's answer is read to its end, so the
    next request on this connection starts clean."""
    from kafka.protocol.metadata.api_versions import ApiVersionsRequest

    request = ApiVersionsRequest()
    request.API_VERSION = 0
    parser.send_request(request)
    sock.sendall(parser.send_bytes())
    data = sock.recv(65536)
    if data[:2] == b"\x15\x03":
        return True
    while not parser.receive_bytes(data):
        data = sock.recv(65536)
        if not data:
            raise EOFError("the broker closed the connection")
    return False


def _tls(sock: socket.socket, host: str, protocol: str, security: dict[str, Any]) -> Any:
    context = ssl.create_default_context(cafile=security.get("ssl_cafile"))
    if security.get("ssl_certfile"):
        try:
            context.load_cert_chain(security["ssl_certfile"], security.get("ssl_keyfile"))
        except (ssl.SSLError, OSError) as error:
            raise _Refused(
                f"was not asked: the client certificate or key cannot be used ({error}): "
                "check KAFKA_SSL_CERTFILE and KAFKA_SSL_KEYFILE"
            ) from None
    try:
        return context.wrap_socket(sock, server_hostname=host)
    except ssl.SSLCertVerificationError as error:
        if error.verify_code == 62:  # X509_V_ERR_HOSTNAME_MISMATCH
            raise _Refused(
                f"showed a TLS certificate for another name than {host!r} "
                f"({error.verify_message}): use the address the certificate names in "
                "KAFKA_BOOTSTRAP_SERVERS"
            ) from None
        trusted = security.get("ssl_cafile") or "the system's CAs"
        raise _Refused(
            f"showed a TLS certificate this client does not trust ({error.verify_message}): "
            f"KAFKA_SSL_CAFILE must hold the CA that signed the brokers' certificates "
            f"(now: {trusted})"
        ) from None
    except ssl.SSLError as error:
        if re.search(r"WRONG_VERSION_NUMBER|record layer|UNEXPECTED_EOF", str(error)):
            # A plaintext listener reads the TLS hello as a Kafka request and hangs up.
            raise _Refused(
                f"closed the connection at the TLS handshake: it does not speak TLS and "
                f"this client {protocol} does: set KAFKA_SECURITY_PROTOCOL=PLAINTEXT (or "
                "SASL_PLAINTEXT)"
            ) from None
        raise _Refused(f"refused the TLS handshake ({error.reason or error})") from None


def _call(sock: Any, parser: Any, request: Any) -> Any:
    parser.send_request(request)
    sock.sendall(parser.send_bytes())
    while True:
        data = sock.recv(65536)
        if not data:
            raise EOFError("the broker closed the connection")
        responses = parser.receive_bytes(data)
        if responses:
            return responses[0][1]


def _handshake(sock: Any, parser: Any, mechanism: str) -> Any:
    from kafka.protocol.sasl import SaslHandshakeRequest

    handshake = SaslHandshakeRequest(mechanism=mechanism)
    handshake.API_VERSION = 1
    return _call(sock, parser, handshake)


def _no_sasl(sock: Any, parser: Any, protocol: str) -> None:
    """A client without SASL: does the listener ask for a login? (A SASL listener
    answers a handshake with the mechanisms it offers; any other refuses it.)"""
    answer = _handshake(sock, parser, "PLAIN")
    if answer.mechanisms:
        sasl = "SASL_SSL" if protocol == "SSL" else "SASL_PLAINTEXT"
        raise _Refused(
            f"asks for a SASL login (it offers {', '.join(answer.mechanisms)}) and this "
            f"client uses {protocol}: set KAFKA_SECURITY_PROTOCOL={sasl} and KAFKA_SASL_MECHANISM"
        )


def _sasl(sock: Any, parser: Any, host: str, mechanism: str, security: dict[str, Any]) -> None:
    from kafka.net.sasl import get_sasl_mechanism
    from kafka.protocol.sasl import SaslAuthenticateRequest

    answer = _handshake(sock, parser, mechanism)
    if not answer.mechanisms:
        tls = "SSL" if security.get("security_protocol") == "SASL_SSL" else "PLAINTEXT"
        raise _Refused(f"takes no SASL login on this listener: set KAFKA_SECURITY_PROTOCOL={tls}")
    if answer.error_code != 0 or mechanism not in answer.mechanisms:
        offered = ", ".join(answer.mechanisms) or "none"
        raise _Refused(
            f"does not offer the SASL mechanism {mechanism} (it offers {offered}): set "
            "KAFKA_SASL_MECHANISM"
        )
    login = get_sasl_mechanism(mechanism)(host=host, **security)
    while not login.is_done():
        request = SaslAuthenticateRequest(auth_bytes=login.auth_bytes())
        request.API_VERSION = 0
        answer = _call(sock, parser, request)
        if answer.error_code != 0:
            who = (
                "the OAUTHBEARER token"
                if mechanism == "OAUTHBEARER"
                else f"user {security.get('sasl_plain_username')!r}"
            )
            raise _Refused(
                f"refused the login of {who} ({mechanism}: {answer.error_message}): check "
                "KAFKA_SASL_USERNAME and KAFKA_SASL_PASSWORD"
            )
        login.receive(answer.auth_bytes)
