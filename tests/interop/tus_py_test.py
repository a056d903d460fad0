"""tuspy (PyPI `tuspy`) against depot's tus endpoint.

Run by tus-py.test.mjs, which starts depot, writes the test data, installs
tuspy when it is missing and checks what this script reports:

    python3 tus_py_test.py ENDPOINT DATA_FILE WORK_DIR

Three uploads of DATA_FILE, each checked here as far as tuspy shows it (its
offsets, the upload URL, the answer headers); the JSON printed on stdout
names the resulting files for the caller to download and compare. With
DEPOT_TOKEN set (a server in token mode) every tuspy client sends it
(``TusClient(headers=...)``), and an upload without it must fail with 401
first:

- resume: 1 MiB PATCHes, stopped at 4 MiB (tuspy's `stop_at`), then a new
  uploader finds the URL in tuspy's FileStorage, asks the server for the
  offset (HEAD) and sends the rest;
- checksum: 3 MiB PATCHes, each with `Upload-Checksum: sha1 ...`;
- async: the aiohttp-based AsyncUploader, 2 MiB PATCHes.

Exits non-zero with a message on stderr when anything is off. Nothing here
is collected as a test by pytest: the work is in main().
"""

import asyncio
import json
import os
import sys

MiB = 1024 * 1024
TYPE = "application/octet-stream"


def fail(msg):
    raise SystemExit(f"tuspy: {msg}")


def expect(cond, msg):
    if not cond:
        fail(msg)


def file_id(headers, what):
    fid = headers.get("depot-file-id")
    expect(fid, f"{what}: the last PATCH answer has no Depot-File-Id (headers {headers})")
    return fid


def main():
    # Imported here so that a collector (pytest) importing this file does
    # not need tuspy.
    from tusclient import client, exceptions
    from tusclient.storage import filestorage

    endpoint, data_file, work_dir = sys.argv[1:4]
    size = os.path.getsize(data_file)
    token = os.environ.get("DEPOT_TOKEN")
    tus = client.TusClient(endpoint, headers={"Authorization": f"Bearer {token}"} if token else None)
    out = {"size": size}

    # 0. Without the token the server refuses to create the upload.
    if token:
        bare = client.TusClient(endpoint).uploader(
            file_path=data_file, chunk_size=MiB, metadata={"filename": "tuspy-no-token.bin"}, retries=0
        )
        try:
            bare.upload_chunk()
        except exceptions.TusCommunicationError as e:
            expect(e.status_code == 401, f"without a token: status {e.status_code}, not 401")
        else:
            fail("an upload without a token was accepted")
        out["no_token"] = 401

    # 1. Stop at 4 MiB, then resume from the stored URL with a new uploader.
    storage_path = os.path.join(work_dir, "tuspy-urls.json")
    storage = filestorage.FileStorage(storage_path)
    name = "tuspy-resumed.bin"
    common = dict(
        file_path=data_file,
        chunk_size=MiB,
        metadata={"filename": name, "filetype": TYPE},
        store_url=True,
        url_storage=storage,
        retries=0,
    )
    first = tus.uploader(**common)
    expect(first.url is None, f"a fresh storage already had a URL: {first.url}")
    first.upload(stop_at=4 * MiB)
    expect(first.offset == 4 * MiB, f"stopped at {first.offset}, wanted {4 * MiB}")
    url = first.url
    expect(url and url.startswith(endpoint), f"upload URL {url} is not under {endpoint}")
    expect("depot-file-id" not in first.request.response_headers, "a file before the upload is complete")

    second = tus.uploader(**common)
    expect(second.url == url, f"the resumed uploader found {second.url}, not {url}")
    resumed_at = second.offset  # what the server answered to tuspy's HEAD
    second.upload()
    expect(second.offset == size, f"resumed upload ended at {second.offset} of {size}")
    out["resume"] = {
        "url": url,
        "stopped_at": first.offset,
        "resumed_at": resumed_at,
        "file_id": file_id(second.request.response_headers, "resume"),
        "name": name,
    }
    storage.close()

    # 2. Every PATCH carries a sha1 Upload-Checksum (tuspy's default algorithm).
    name = "tuspy-checksum.bin"
    up = tus.uploader(
        file_path=data_file,
        chunk_size=3 * MiB,
        metadata={"filename": name, "filetype": TYPE},
        upload_checksum=True,
        retries=0,
    )
    patches = 0
    while up.offset < size:  # the first upload_chunk creates the upload
        up.upload_chunk()
        patches += 1
        sent = up.request._request_headers.get("upload-checksum", "")
        expect(sent.startswith("sha1 "), f"PATCH {patches} carried Upload-Checksum {sent!r}")
        expect(up.request.status_code == 204, f"PATCH {patches} answered {up.request.status_code}")
    expect(patches == -(-size // (3 * MiB)), f"{patches} PATCHes")
    out["checksum"] = {"file_id": file_id(up.request.response_headers, "checksum"), "name": name, "patches": patches}

    # 3. The asyncio uploader.
    name = "tuspy-async.bin"
    aup = tus.async_uploader(
        file_path=data_file, chunk_size=2 * MiB, metadata={"filename": name, "filetype": TYPE}, retries=0
    )
    asyncio.run(aup.upload())
    expect(aup.offset == size, f"async upload ended at {aup.offset} of {size}")
    out["async"] = {"file_id": file_id(aup.request.response_headers, "async"), "name": name}

    print(json.dumps(out))


if __name__ == "__main__":
    main()
