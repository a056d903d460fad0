"""The Python client on the native dedup API (GET /api/chunking, missing
chunks, PUT chunks, commit, manifests)."""

from __future__ import annotations

import io
import json

import blake3
import pytest

import depot_client.api
from conftest import Server, data, run_cli
from depot_client import download, fastcdc, upload
from depot_client.api import Client, ServerFailure, Unreachable
from depot_client.upload import native_params

MIB = 1 << 20


class Stop(Exception):
    pass


def native_upload(server, path, **kw):
    return upload(server.client(), str(path), method="native", progress=False, **kw)


def our_chunks(body: bytes, params: fastcdc.Params):
    return [(off, len(c), blake3.blake3(bytes(c)).hexdigest())
            for off, c in fastcdc.iter_chunks(io.BytesIO(body), params)]


def test_server_chunker_is_the_one_we_reproduce(native_server):
    info = native_server.client().chunking()
    params, why = native_params(info)
    assert params is not None, why
    assert info["chunker_id"] == params.chunker_id


def test_server_cuts_exactly_where_we_cut(native_server):
    """A whole-body upload is cut by the server; its manifest must list the
    chunks this client computes, offset for offset, hash for hash."""
    client = native_server.client()
    params, _ = native_params(client.chunking())

    def server_chunks(body: bytes, name: str):
        info = native_server.http.post(f"{native_server.url}/api/files/upload", params={"filename": name},
                             data=body, timeout=60).json()
        return [(c["offset"], c["len"], c["hash"]) for c in client.manifest(info["id"])["chunks"]]

    golden = fastcdc.xorshift_bytes(4 * MIB)
    theirs = server_chunks(golden, "golden.bin")
    assert tuple(o + n for o, n, _ in theirs) == fastcdc.GOLDEN[1][2]
    assert theirs == our_chunks(golden, params)
    body = golden[:1_000_000] + data(3 * MIB + 12345, seed=200) + bytes(3 * MIB)  # zeros: max-size cuts
    assert server_chunks(body, "mixed.bin") == our_chunks(body, params)


def test_upload_then_download_verifies_every_chunk(native_server, make_file, tmp_path):
    src = make_file(5 * MIB + 77, seed=201)
    before = native_server.request_bytes()
    r = native_upload(native_server, src)
    received = native_server.request_bytes() - before
    assert r.method == "native" and r.sent_pieces == r.pieces > 5
    size = src.stat().st_size
    # The bytes once, plus the JSON of the missing query and the commit,
    # and each chunk's multipart framing (about 150 bytes).
    assert size <= received <= size + 400 * r.pieces + 4096
    out = tmp_path / "native.bin"
    d = download(native_server.client(), r.file_id, str(out), progress=False)
    assert out.read_bytes() == src.read_bytes()
    assert f"{r.pieces} chunk hashes" in d.checks


def test_reupload_sends_no_chunk(native_server, make_file):
    src = make_file(4 * MIB, seed=202)
    native_upload(native_server, src)
    before = native_server.request_bytes()
    r = native_upload(native_server, src)
    received = native_server.request_bytes() - before
    assert r.sent_pieces == 0 and r.skipped_pieces == r.pieces
    assert received < 200 * r.pieces + 4096  # JSON only: hashes, no content


def test_interrupted_upload_resumes(native_server, make_file, tmp_path):
    src = make_file(6 * MIB, seed=203)
    sent = []

    def stop(ev):
        if ev.action == "sent":
            sent.append(ev.size)
            if len(sent) == 5:
                raise Stop()

    with pytest.raises(Stop):
        native_upload(native_server, src, on_piece=stop)
    before = native_server.request_bytes()
    r = native_upload(native_server, src)
    received = native_server.request_bytes() - before
    # What was acknowledged is not sent again: the 5 chunks reported, and
    # the rest of the request (POST /api/chunks) that carried them.
    rest = src.stat().st_size - r.skipped_bytes
    assert r.skipped_pieces >= 5 and r.skipped_bytes >= sum(sent) and r.sent_bytes == rest > 0
    assert rest <= received <= rest + 400 * r.pieces + 4096
    out = tmp_path / "native-resumed.bin"
    download(native_server.client(), r.file_id, str(out), progress=False)
    assert out.read_bytes() == src.read_bytes()


def test_edited_file_sends_only_the_changed_chunks(native_server, make_file, tmp_path):
    src = make_file(8 * MIB, seed=204)
    first = native_upload(native_server, src)
    body = bytearray(src.read_bytes())
    body[3 * MIB:3 * MIB] = b"inserted in the middle"  # shifts everything after it
    edited = tmp_path / "edited.bin"
    edited.write_bytes(bytes(body))
    r = native_upload(native_server, edited)
    assert 1 <= r.sent_pieces <= 3, r.summary()
    assert r.sent_bytes <= 3 * MIB and r.skipped_pieces >= first.pieces - 3
    out = tmp_path / "edited-out.bin"
    download(native_server.client(), r.file_id, str(out), progress=False)
    assert out.read_bytes() == bytes(body)


def test_whole_body_upload_then_native_upload_shares_chunks(native_server, make_file):
    """Content the server cut itself is skipped by the client: same cuts."""
    src = make_file(3 * MIB + 5, seed=205)
    native_server.http.post(f"{native_server.url}/api/files/upload", params={"filename": "srv.bin"},
                  data=src.read_bytes(), timeout=60).raise_for_status()
    r = native_upload(native_server, src)
    assert r.sent_pieces == 0 and r.skipped_pieces == r.pieces


def test_download_resume_keeps_good_chunks_and_refetches_from_the_first_bad(native_server, make_file, tmp_path,
                                                                               capsys):
    src = make_file(4 * MIB, seed=206)
    r = native_upload(native_server, src)
    chunks = native_server.client().manifest(r.file_id)["chunks"]
    body = src.read_bytes()
    bad = chunks[2]
    partial = bytearray(body[: chunks[4]["offset"] + 1000])
    partial[bad["offset"] + 10] ^= 0xFF
    out = tmp_path / "damaged.bin"
    (tmp_path / "damaged.bin.part").write_bytes(bytes(partial))
    d = download(native_server.client(), r.file_id, str(out), progress=False)
    assert out.read_bytes() == body
    assert d.resumed_from == bad["offset"]
    assert d.received_bytes == len(body) - bad["offset"]
    assert f"bytes from {bad['offset']} do not match" in capsys.readouterr().err


def test_empty_file(native_server, tmp_path):
    src = tmp_path / "empty-native.txt"
    src.write_bytes(b"")
    r = native_upload(native_server, src)
    assert r.file["size"] == 0 and r.pieces == 0
    out = tmp_path / "empty-native.out"
    download(native_server.client(), r.file_id, str(out), progress=False)
    assert out.read_bytes() == b""


def test_cli_auto_uses_native(native_server, make_file, tmp_path):
    src = make_file(2 * MIB, seed=207)
    r = run_cli("upload", str(src), server=native_server, check=True)
    assert "native upload" in r.stderr
    file_id = r.stdout.strip().splitlines()[-1]
    out = tmp_path / "cli-native.bin"
    d = run_cli("download", file_id, str(out), server=native_server, check=True)
    assert out.read_bytes() == src.read_bytes() and "chunk hashes" in d.stderr


def test_cli_downloads_and_deletes_by_a_name_one_file_has(native_server, make_file, tmp_path):
    src = make_file(1 * MIB, seed=208)
    only = run_cli("upload", str(src), "--name", "only.bin", server=native_server, check=True)
    only_id = only.stdout.strip().splitlines()[-1]
    twice = [run_cli("upload", str(src), "--name", "twice.bin", server=native_server, check=True)
             .stdout.strip().splitlines()[-1] for _ in range(2)]
    out = tmp_path / "by-name.bin"
    run_cli("download", "only.bin", str(out), server=native_server, check=True)
    assert out.read_bytes() == src.read_bytes()
    r = run_cli("download", "twice.bin", str(tmp_path / "x"), server=native_server)
    assert r.returncode == 2, r.stderr
    assert "more than one file is named 'twice.bin'" in r.stderr
    assert r.stderr.index(twice[1]) < r.stderr.index(twice[0]), r.stderr
    assert not (tmp_path / "x").exists() and not (tmp_path / "x.part").exists()
    r = run_cli("delete", "nothing.bin", server=native_server)
    assert r.returncode == 5 and "no file has the id or the name 'nothing.bin'" in r.stderr, r.stderr
    r = run_cli("delete", "only.bin", server=native_server, check=True)
    assert r.stdout.strip() == f"deleted {only_id}"
    assert native_server.client().info(twice[0])["name"] == "twice.bin"
    # A depot id is taken as one without asking the server (none listens here).
    from depot_client.cli import _resolve
    assert _resolve(Client("http://127.0.0.1:9"), only_id) == only_id


def test_download_with_a_seed_fetches_only_the_changes(native_server, make_file, tmp_path):
    src = make_file(16 * MIB, seed=301)
    old = src.read_bytes()
    body = bytearray(old)
    for i, at in enumerate((2 * MIB + 77, 7 * MIB + 5, 12 * MIB + 4242)):
        body[at:at] = data(MIB, seed=400 + i)
    edited = tmp_path / "edited.bin"
    edited.write_bytes(bytes(body))
    r = native_upload(native_server, edited)
    client = native_server.client()

    out = tmp_path / "out.bin"
    before = native_server.response_bytes()
    d = download(client, r.file_id, str(out), progress=False, seeds=[str(src)])
    fetched = native_server.response_bytes() - before
    assert out.read_bytes() == bytes(body)
    # 3 MiB inserted; of the chunks around each insertion only the bytes
    # the seed does not hold are fetched (within 2 KiB), after a few
    # rounds of probes (~8 KiB an insertion); the JSON is a few KiB.
    assert 3 * MIB < fetched < 3 * MIB + 128 * 1024, fetched
    assert d.reused_bytes + d.received_bytes >= len(body)
    assert d.reused_bytes > len(old) - 64 * 1024, d

    # A damaged seed: the damaged chunk does not match, so it is put
    # together around the flipped byte (fetched whole when no probe lands
    # on it); the result still verifies.
    damaged = bytearray(old)
    damaged[5 * MIB] ^= 0xFF
    seed_dir = tmp_path / "seeds"
    seed_dir.mkdir()
    (seed_dir / "old.bin").write_bytes(bytes(damaged))
    out2 = tmp_path / "out2.bin"
    d2 = download(client, r.file_id, str(out2), progress=False, seeds=[str(seed_dir)])
    assert out2.read_bytes() == bytes(body)
    assert d2.received_bytes > d.received_bytes

    # The existing output, replaced with force, is a seed by default.
    before = native_server.response_bytes()
    download(client, r.file_id, str(src), progress=False, force=True)
    assert native_server.response_bytes() - before < 3 * MIB + 128 * 1024
    assert src.read_bytes() == bytes(body)


def test_a_seeded_download_refuses_bytes_of_another_version(native_server, make_file, tmp_path, monkeypatch):
    """Every range a delta download asks for carries If-Range on the ETag
    it started from. A server whose file is no longer that one answers 200
    with the whole file: the probes fall back to fetching whole runs, and
    the fetch of a run fails naming the 200, writing nothing into place."""
    src = make_file(2 * MIB, seed=311)
    body = bytearray(src.read_bytes())
    body[MIB:MIB] = data(64 * 1024, seed=312)
    edited = tmp_path / "edited-etag.bin"
    edited.write_bytes(bytes(body))
    r = native_upload(native_server, edited)
    real_info = Client.info
    monkeypatch.setattr(Client, "info", lambda self, file_id: dict(real_info(self, file_id), etag="0" * 64))
    out = tmp_path / "etag-out.bin"
    with pytest.raises(ServerFailure, match="and got 200"):
        download(native_server.client(), r.file_id, str(out), progress=False, seeds=[str(src)])
    assert not out.exists()


SMALL_CHUNKS = {"DEPOT_CHUNKING_MIN": "256", "DEPOT_CHUNKING_AVG": "1024", "DEPOT_CHUNKING_MAX": "4096"}


def requests_seen(server, route: str, method: str) -> int:
    """Requests the server has answered on a route template (its latency histogram's count)."""
    session = server.admin if server.admin_token else server.http
    text = session.get(server.url + "/metrics", timeout=10).text
    prefix = f'depot_http_request_duration_seconds_count{{route="{route}",method="{method}"}} '
    return next((int(float(line[len(prefix):])) for line in text.splitlines() if line.startswith(prefix)), 0)


def test_long_chunk_lists_commit_in_parts_and_resume(tmp_path, make_file):
    """More chunks than one segment: committed in parts (no POST /api/files);
    a segment whose request fails for good makes the client ask where the
    commit stands and send only what is missing."""
    s = Server(tmp_path / "small-chunks", env=SMALL_CHUNKS).start()
    try:
        src = make_file(1_500_000, seed=231)
        client = s.client()
        real_put = client.put_segment
        failed = []

        def flaky(cid, n, chunks):
            if n == 1 and not failed:
                real_put(cid, n, chunks)  # stored, but the answer is lost
                failed.append(n)
                raise Unreachable("the connection broke")
            return real_put(cid, n, chunks)

        client.put_segment = flaky
        statuses = []
        real_status = client.commit_status
        client.commit_status = lambda cid: statuses.append(cid) or real_status(cid)
        r = upload(client, str(src), method="native", progress=False)
        assert r.pieces > 1024
        assert failed == [1] and len(statuses) == 1
        out = tmp_path / "parts.out"
        download(s.client(), r.file_id, str(out), progress=False)
        assert out.read_bytes() == src.read_bytes()
        segments = -(-r.pieces // 1024)
        assert requests_seen(s, "/api/commits/{id}/segments/{n}", "PUT") == segments
        assert requests_seen(s, "/api/commits/{id}/finish", "POST") == 1
        assert requests_seen(s, "/api/files", "POST") == 0
        # The same chunks committed in one request: the same file.
        whole = s.client().commit("whole.bin", r.file["size"],
                                  [{"hash": c["hash"], "len": c["len"]}
                                   for c in s.client().manifest(r.file_id)["chunks"]])
        assert whole["etag"] == r.file["etag"]
    finally:
        s.stop()


def test_reupload_sends_its_hash_lists_in_zstd_where_the_server_takes_them(tmp_path, make_file, monkeypatch):
    """A re-upload sends only hash lists: the missing-chunks queries and the
    commit's segments. Against a server whose GET /api/chunking offers
    ``request_encodings: ["zstd"]`` they go in zstd, about half the bytes;
    against one without the field (an older server), or from a client
    without the optional zstandard package, they go plain."""
    s = Server(tmp_path / "zstd-lists", env=SMALL_CHUNKS).start()
    try:
        src = make_file(2 * MIB, seed=232)
        first = upload(s.client(), str(src), method="native", progress=False)
        assert first.pieces > 1024  # commits in parts: segments as well as queries

        def reupload(client) -> int:
            before = s.request_bytes()
            r = upload(client, str(src), method="native", progress=False)
            assert r.sent_pieces == 0 and r.file["etag"] == first.file["etag"]
            return s.request_bytes() - before

        def without_encodings(r, *args, **kw):
            # The answer an older server gives: the same, without the field.
            if r.status_code == 200 and r.url.endswith("/api/chunking"):
                info = r.json()
                del info["request_encodings"]
                r._content = json.dumps(info).encode()
            return r

        older = s.client()
        older.session.hooks["response"].append(without_encodings)
        plain = reupload(older)
        client = s.client()
        packed = reupload(client)
        assert client.zstd_json and not older.zstd_json
        assert plain > 120 * first.pieces, (plain, first.pieces)
        assert packed < 0.6 * plain, (packed, plain)

        # The same server, from a client without zstandard: the same
        # requests as to the older server, byte for byte.
        with monkeypatch.context() as m:
            m.setattr(depot_client.api, "zstandard", None)
            bare = s.client()
            assert reupload(bare) == plain and bare.zstd_json
        out = tmp_path / "zstd-lists.out"
        download(s.client(), first.file_id, str(out), progress=False)
        assert out.read_bytes() == src.read_bytes()
    finally:
        s.stop()


def test_chunks_go_in_batches_or_one_per_put_to_a_server_without_them(native_server, make_file, monkeypatch):
    """Chunks go in POST /api/chunks batches; against a server whose
    GET /api/chunking lacks the batch limits (one from before the
    endpoint), each chunk goes in a PUT of its own."""
    src = make_file(3 * MIB, seed=207)
    posts, puts = (requests_seen(native_server, "/api/chunks", "POST"),
                   requests_seen(native_server, "/api/chunks/{hash}", "PUT"))
    r = native_upload(native_server, src)
    batches = requests_seen(native_server, "/api/chunks", "POST") - posts
    assert r.sent_pieces > 3 and 1 <= batches < r.sent_pieces, (r.summary(), batches)
    assert requests_seen(native_server, "/api/chunks/{hash}", "PUT") == puts

    client = native_server.client()
    newer = client.chunking

    def older():
        info = dict(newer())
        del info["max_batch_chunks"], info["max_batch_bytes"]
        return info

    monkeypatch.setattr(client, "chunking", older)
    other = make_file(3 * MIB, seed=208)
    r = upload(client, str(other), method="native", progress=False)
    assert r.sent_pieces > 3, r.summary()
    assert requests_seen(native_server, "/api/chunks/{hash}", "PUT") - puts == r.sent_pieces
    assert requests_seen(native_server, "/api/chunks", "POST") - posts == batches
