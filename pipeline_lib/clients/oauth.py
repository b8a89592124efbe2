"""SASL/OAUTHBEARER tokens for Google Cloud's Managed Service for Apache Kafka, from
Application Default Credentials (Google's recommended way in: no key file to keep).

Google's brokers take the access token of a Google principal wrapped in the three
dot-separated parts of a JWT: a header whose ``alg`` is ``GOOG_OAUTH2_TOKEN``, claims
naming the principal (``sub``) and the token's expiry, and the access token itself in
the signature's place. The principal must hold ``roles/managedkafka.client``; in Kafka
ACLs it appears as ``User:<service-account email>``.
"""

from __future__ import annotations

import base64
import json
import threading
import time
from datetime import UTC
from typing import Any

from kafka.net.sasl.oauth import AbstractTokenProvider

from pipeline_lib.core.errors import ConfigError

SCOPES = ("https://www.googleapis.com/auth/cloud-platform",)


def _b64(data: str) -> str:
    return base64.urlsafe_b64encode(data.encode()).decode().rstrip("=")


def google_kafka_token(credentials: Any, now: float | None = None) -> str:
    """The token Google's managed Kafka accepts for these (refreshed) credentials."""
    principal = getattr(credentials, "service_account_email", None)
    if not principal or principal == "default":
        principal = getattr(credentials, "signer_email", None) or principal
    if not principal or principal == "default":
        raise ConfigError(
            "KAFKA_SASL_MECHANISM=OAUTHBEARER: Application Default Credentials name no "
            "service account (Google's managed Kafka authenticates service accounts). Run "
            "on a VM or service with one, or `gcloud auth application-default login "
            "--impersonate-service-account=SA_EMAIL`."
        )
    issued = int(time.time() if now is None else now)
    expiry = issued + 3600
    if credentials.expiry is not None:  # google-auth keeps it as a naive UTC datetime
        moment = credentials.expiry
        expiry = (moment if moment.tzinfo else moment.replace(tzinfo=UTC)).timestamp()
    header = json.dumps({"typ": "JWT", "alg": "GOOG_OAUTH2_TOKEN"})
    claims = json.dumps(
        {"exp": int(expiry), "iat": issued, "iss": "Google", "scope": "kafka", "sub": principal}
    )
    return ".".join((_b64(header), _b64(claims), _b64(credentials.token)))


class GoogleTokenProvider(AbstractTokenProvider):
    """kafka-python's token provider (called once per new connection): ADC credentials,
    refreshed when they expire; loaded on first use, so configuring costs nothing."""

    def __init__(self, credentials: Any = None) -> None:
        self._credentials = credentials
        self._lock = threading.Lock()

    def token(self) -> str:
        import google.auth
        from google.auth.transport.requests import Request

        with self._lock:
            if self._credentials is None:
                self._credentials, _ = google.auth.default(scopes=list(SCOPES))
            if not self._credentials.valid:
                self._credentials.refresh(Request())
            return google_kafka_token(self._credentials)
