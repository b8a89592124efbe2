"""Google Cloud clients (Cloud Storage, BigQuery, the Storage Write API) built from
:class:`Settings`.

The only module that knows the difference between an emulator and real Google
Cloud: with an emulator host set, clients use anonymous credentials and that
endpoint; without one, Application Default Credentials and Google's endpoints.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any
from urllib.parse import urlparse

from pipeline_lib.core.config import Settings

if TYPE_CHECKING:
    from google.cloud import bigquery, storage


def storage_client(settings: Settings) -> storage.Client:
    """google-cloud-storage client for the emulator or real GCS."""
    from google.cloud import storage

    if settings.storage_emulator_host:
        from google.api_core.client_options import ClientOptions
        from google.auth.credentials import AnonymousCredentials

        return storage.Client(
            project=settings.gcp_project,
            credentials=AnonymousCredentials(),
            client_options=ClientOptions(api_endpoint=settings.storage_emulator_host),
        )
    return storage.Client(project=settings.gcp_project)


def bigquery_client(settings: Settings) -> bigquery.Client:
    """google-cloud-bigquery client for the emulator or real BigQuery."""
    from google.cloud import bigquery

    if settings.bigquery_emulator_host:
        from google.api_core.client_options import ClientOptions
        from google.auth.credentials import AnonymousCredentials

        return bigquery.Client(
            project=settings.gcp_project,
            credentials=AnonymousCredentials(),
            client_options=ClientOptions(api_endpoint=settings.bigquery_emulator_host),
        )
    return bigquery.Client(project=settings.gcp_project, location=settings.bq_location)


def bigquery_write_client(settings: Settings) -> Any:
    """The Storage Write API client: on the emulator's gRPC port (the library does not
    read BIGQUERY_EMULATOR_HOST, and needs no credentials on a plain channel), or real
    BigQuery with Application Default Credentials."""
    from google.cloud.bigquery_storage_v1 import BigQueryWriteClient

    if settings.bigquery_emulator_host:
        import grpc
        from google.cloud.bigquery_storage_v1.services.big_query_write.transports import (
            BigQueryWriteGrpcTransport,
        )

        host = urlparse(settings.bigquery_emulator_host).hostname
        channel = grpc.insecure_channel(f"{host}:{settings.bigquery_emulator_grpc_port}")
        return BigQueryWriteClient(transport=BigQueryWriteGrpcTransport(channel=channel))
    return BigQueryWriteClient()
