"""google-cloud-storage against the GCS emulator over HTTP."""

import pytest
from google.api_core.exceptions import PreconditionFailed

from pipeline_lib.clients.google import storage_client


def test_upload_list_download(settings):
    client = storage_client(settings)
    bucket = client.create_bucket(settings.gcs_bucket)
    payloads = {
        f"ticks/date=2024-01-0{i}/part-{i}.json": f'{{"n": {i}}}\n'.encode() for i in range(1, 6)
    }
    for name, data in payloads.items():
        bucket.blob(name).upload_from_string(data, content_type="application/x-ndjson")
    bucket.blob("other/readme.txt").upload_from_string(b"x")

    listed = sorted(b.name for b in client.list_blobs(settings.gcs_bucket, prefix="ticks/"))
    assert listed == sorted(payloads)
    for name, data in payloads.items():
        assert bucket.blob(name).download_as_bytes() == data
    # Paging through a listing works too.
    pages = client.list_blobs(
        settings.gcs_bucket, prefix="ticks/", max_results=10, page_size=2
    ).pages
    assert sum(len(list(page)) for page in pages) == 5


def test_create_only_upload_is_enforced(settings):
    bucket = storage_client(settings).create_bucket(settings.gcs_bucket)
    bucket.blob("a.json").upload_from_string(b"first", if_generation_match=0)
    with pytest.raises(PreconditionFailed):
        bucket.blob("a.json").upload_from_string(b"second", if_generation_match=0)
    assert bucket.blob("a.json").download_as_bytes() == b"first"
