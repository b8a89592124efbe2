"""A student's rights on real Google Cloud: their dataset and their bucket, nothing else.

The local emulators enforce no IAM at all: there, isolation in GCS and BigQuery is
by name only, and this module does nothing. On real Google Cloud, a roster line with
an ``email`` gives that Google account ``WRITER`` on the student's dataset (BigQuery's
dataset-level ``roles/bigquery.dataEditor``) and ``roles/storage.objectAdmin`` on the
student's bucket. Running queries also needs ``roles/bigquery.jobUser`` on the
project, which is the project owner's to grant (docs/classroom.md).
"""

from __future__ import annotations

from typing import Any

from pipeline_lib.core.config import Settings

DATASET_ROLE = "WRITER"
BUCKET_ROLE = "roles/storage.objectAdmin"


def on_real_gcp(settings: Settings, service: str) -> bool:
    """True when ``service`` (gcs, bigquery) is Google's, not an emulator."""
    if service == "gcs":
        return settings.keeps_raw_objects and not settings.storage_emulator_host
    return not settings.bigquery_emulator_host


def grant_data_access(settings: Settings, student: Any) -> list[str]:
    """Grant the student's Google account its dataset and bucket (real GCP only).

    Returns what was granted, in words (empty on the emulators or without an email).
    Both grants are upserts: a second run adds nothing."""
    if not student.email:
        return []
    granted = []
    if on_real_gcp(settings, "bigquery"):
        granted.append(_grant_dataset(settings, student.email))
    if on_real_gcp(settings, "gcs"):
        granted.append(_grant_bucket(settings, student.email))
    return granted


def _grant_dataset(settings: Settings, email: str) -> str:
    from google.cloud.bigquery import AccessEntry

    from pipeline_lib.clients.google import bigquery_client

    client = bigquery_client(settings)
    dataset = client.get_dataset(f"{settings.gcp_project}.{settings.bq_dataset}")
    entry = AccessEntry(role=DATASET_ROLE, entity_type="userByEmail", entity_id=email)
    if entry not in dataset.access_entries:
        dataset.access_entries = [*dataset.access_entries, entry]
        client.update_dataset(dataset, ["access_entries"])
    return f"{DATASET_ROLE} on dataset {settings.bq_dataset} for {email}"


def _grant_bucket(settings: Settings, email: str) -> str:
    from pipeline_lib.clients.google import storage_client

    bucket = storage_client(settings).bucket(settings.gcs_bucket)
    policy = bucket.get_iam_policy(requested_policy_version=3)
    member = f"user:{email}"
    binding = next((b for b in policy.bindings if b["role"] == BUCKET_ROLE), None)
    if binding is None:
        policy.bindings.append({"role": BUCKET_ROLE, "members": {member}})
    elif member not in binding["members"]:
        binding["members"].add(member)
    else:
        return f"{BUCKET_ROLE} on gs://{settings.gcs_bucket} for {email} (already)"
    bucket.set_iam_policy(policy)
    return f"{BUCKET_ROLE} on gs://{settings.gcs_bucket} for {email}"
