"""The Python client on the seed's chunked API (fixed-size pieces with
hashes), against the real server."""

from __future__ import annotations

import os
import signal
import subprocess
import sys

import pytest

from conftest import PYTHON_DIR, Server, data, run_cli
from depot_client import Client, download, upload
from depot_client.api import EXIT_LOCAL, EXIT_REJECTED, EXIT_UNREACHABLE, LocalFileError, Rejected
from depot_client.upload import seed_identifier

PIECE = 64 << 10
# Multipart framing and parameters of one piece request, generously.
PIECE_OVERHEAD = 2048


class Stop(Exception):
    pass


def stop_after_sent(n: int):
    sent = []

    def hook(ev):
        if ev.action == "sent":
            sent.append(ev.number)
            if len(sent) >= n:
                raise Stop()

    return hook, sent


def seed_upload(server, path, **kw):
    kw.setdefault("piece_size", PIECE)
    return upload(server.client(), str(path), method="seed", progress=False, **kw)


def test_upload_then_download_is_byte_identical(server, make_file, tmp_path):
    src = make_file(3 * PIECE + 1234, seed=1)
    before = server.request_bytes()
    r = seed_upload(server, src)
    sent = server.request_bytes() - before
    assert r.method == "seed" and r.pieces == 4 and r.sent_pieces == 4 and r.skipped_pieces == 0
    assert r.file["size"] == src.stat().st_size and r.file["name"] == src.name
    # What the server received is the file plus framing.
    assert src.stat().st_size <= sent <= src.stat().st_size + 4 * PIECE_OVERHEAD
    out = tmp_path / "out.bin"
    d = download(server.client(), r.file_id, str(out), progress=False)
    assert out.read_bytes() == src.read_bytes()
    assert d.received_bytes == src.stat().st_size and d.resumed_from == 0


def test_cli_upload_prints_the_id_last_and_downloads(server, make_file, tmp_path):
    src = make_file(2 * PIECE + 5, seed=2)
    r = run_cli("upload", str(src), "--method", "seed", "--piece-size", "64KiB", server=server, check=True)
    file_id = r.stdout.strip().splitlines()[-1]
    info = server.http.get(f"{server.url}/api/files/{file_id}/info", timeout=10).json()
    assert info["size"] == src.stat().st_size
    assert "sent 3 of 3 pieces" in r.stderr
    out = tmp_path / "via-cli.bin"
    run_cli("download", file_id, str(out), server=server, check=True)
    assert out.read_bytes() == src.read_bytes()


def test_interrupted_upload_resumes_and_skips_what_was_sent(server, make_file, tmp_path):
    src = make_file(10 * PIECE + 99, seed=3)
    hook, sent = stop_after_sent(4)
    with pytest.raises(Stop):
        seed_upload(server, src, on_piece=hook)
    assert sent == [1, 2, 3, 4]
    before = server.request_bytes()
    r = seed_upload(server, src)
    received = server.request_bytes() - before
    assert r.skipped_pieces == 4 and r.sent_pieces == 7
    rest = src.stat().st_size - 4 * PIECE
    assert r.sent_bytes == rest
    assert rest <= received <= rest + 7 * PIECE_OVERHEAD
    out = tmp_path / "resumed.bin"
    download(server.client(), r.file_id, str(out), progress=False)
    assert out.read_bytes() == src.read_bytes()


def test_killed_cli_resumes(server, make_file, tmp_path):
    """SIGKILL the command line client after its third piece, run it again."""
    src = make_file(24 * PIECE, seed=4)
    env = server.env(PYTHONPATH=str(PYTHON_DIR))
    proc = subprocess.Popen(
        [sys.executable, "-m", "depot_client", "-v", "--no-progress", "upload", str(src),
         "--method", "seed", "--piece-size", "64KiB"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
    )
    seen = 0
    assert proc.stderr is not None
    for line in proc.stderr:
        if " sent " in line:
            seen += 1
            if seen == 3:
                proc.send_signal(signal.SIGKILL)
                break
    proc.wait()
    assert seen == 3 and proc.returncode == -signal.SIGKILL
    before = server.request_bytes()
    r = seed_upload(server, src)
    received = server.request_bytes() - before
    assert r.skipped_pieces >= 3 and r.sent_pieces + r.skipped_pieces == 24
    assert received <= (24 - 3) * (PIECE + PIECE_OVERHEAD)
    out = tmp_path / "killed.bin"
    download(server.client(), r.file_id, str(out), progress=False)
    assert out.read_bytes() == src.read_bytes()


def test_upload_resumes_across_a_server_restart(fresh_server, make_file, tmp_path):
    src = make_file(6 * PIECE, seed=5)
    hook, _ = stop_after_sent(3)
    with pytest.raises(Stop):
        seed_upload(fresh_server, src, on_piece=hook)
    fresh_server.stop()
    again = Server(fresh_server.data_dir).start()
    try:
        r = seed_upload(again, src)
        assert r.skipped_pieces == 3 and r.sent_pieces == 3
        out = tmp_path / "restart.bin"
        download(again.client(), r.file_id, str(out), progress=False)
        assert out.read_bytes() == src.read_bytes()
    finally:
        again.stop()


def test_reupload_of_the_same_file_sends_nothing(server, make_file):
    src = make_file(5 * PIECE + 7, seed=6)
    first = seed_upload(server, src)
    before = server.request_bytes()
    again = seed_upload(server, src)
    assert server.request_bytes() - before == 0  # only test GETs: no request body
    assert again.sent_pieces == 0 and again.skipped_pieces == 6
    assert again.file_id == first.file_id  # the same session, finished


def test_same_content_elsewhere_is_skipped_by_hash(server, make_file, tmp_path):
    """Another path (so another upload session): the pieces' hashes are on
    the server, the test GETs answer 200 and no byte is sent."""
    src = make_file(4 * PIECE + 3, seed=7)
    seed_upload(server, src)
    copy = tmp_path / "copy-of-7.bin"
    copy.write_bytes(src.read_bytes())
    assert seed_identifier(str(copy), copy.stat().st_size) != seed_identifier(str(src), src.stat().st_size)
    before = server.request_bytes()
    r = seed_upload(server, copy)
    assert server.request_bytes() - before == 0
    assert r.sent_pieces == 0 and r.skipped_pieces == 5
    assert r.file["name"] == "copy-of-7.bin"
    out = tmp_path / "copy-out.bin"
    download(server.client(), r.file_id, str(out), progress=False)
    assert out.read_bytes() == src.read_bytes()


def test_reupload_after_delete_makes_a_new_file(server, make_file, tmp_path):
    """A finished session whose file was deleted starts over on the server:
    the same upload again makes a new file."""
    src = make_file(2 * PIECE, seed=8)
    first = seed_upload(server, src)
    server.client().delete(first.file_id)
    r = seed_upload(server, src)
    assert r.file_id != first.file_id
    out = tmp_path / "after-delete.bin"
    download(server.client(), r.file_id, str(out), progress=False)
    assert out.read_bytes() == src.read_bytes()


def test_empty_file(server, tmp_path):
    src = tmp_path / "empty.txt"
    src.write_bytes(b"")
    r = seed_upload(server, src)
    assert r.pieces == 1 and r.file["size"] == 0
    out = tmp_path / "empty.out"
    download(server.client(), r.file_id, str(out), progress=False)
    assert out.read_bytes() == b""


def test_download_resumes_a_partial_file(server, tmp_path):
    """A whole-body upload, so the record has content_hash: the resumed
    download is checked against it."""
    body = data(700_000, seed=9)
    info = server.http.post(f"{server.url}/api/files/upload", params={"filename": "partial.bin"},
                         data=body, timeout=30).json()
    assert "content_hash" in info
    out = tmp_path / "partial.bin"
    part = tmp_path / "partial.bin.part"
    part.write_bytes(body[:300_000])
    before = server.response_bytes()
    d = download(server.client(), info["id"], str(out), progress=False)
    assert out.read_bytes() == body
    assert d.resumed_from == 300_000 and d.received_bytes == 400_000
    assert "content_hash" in d.checks
    # Only the rest travelled (plus headers and the JSON of info).
    assert 400_000 <= server.response_bytes() - before < 400_000 + 8192


def test_download_repairs_a_partial_file_that_is_not_this_file(server, tmp_path, capsys):
    body = data(500_000, seed=10)
    info = server.http.post(f"{server.url}/api/files/upload", params={"filename": "wrong.bin"},
                         data=body, timeout=30).json()
    out = tmp_path / "wrong.bin"
    (tmp_path / "wrong.bin.part").write_bytes(data(200_000, seed=11))  # not a prefix of the file
    d = download(server.client(), info["id"], str(out), progress=False)
    assert out.read_bytes() == body
    assert d.resumed_from == 0 and "content_hash" in d.checks
    err = capsys.readouterr().err
    # With a manifest the first bad chunk is found; without, the whole hash.
    assert "bytes from 0 do not match" in err or "does not verify" in err


def test_cli_download_resume_prints_what_it_did(server, tmp_path):
    body = data(400_000, seed=12)
    info = server.http.post(f"{server.url}/api/files/upload", params={"filename": "r.bin"},
                         data=body, timeout=30).json()
    out = tmp_path / "r.bin"
    (tmp_path / "r.bin.part").write_bytes(body[:100_000])
    r = run_cli("download", info["id"], str(out), server=server, check=True)
    assert out.read_bytes() == body
    assert "resumed at 100000" in r.stderr and r.stdout.strip().splitlines()[-1] == str(out)


def test_list_and_delete(server, make_file):
    src = make_file(PIECE + 1, seed=13, name="listed-and-deleted.bin")
    r = seed_upload(server, src)
    listing = run_cli("list", server=server, check=True).stdout
    assert r.file_id in listing and "listed-and-deleted.bin" in listing
    gone = run_cli("delete", r.file_id, server=server, check=True)
    assert gone.stdout.strip() == f"deleted {r.file_id}"
    assert r.file_id not in run_cli("list", server=server, check=True).stdout
    again = run_cli("delete", r.file_id, server=server)
    assert again.returncode == EXIT_REJECTED
    assert again.stderr.strip() == f"error: no file with id {r.file_id}"
    missing = run_cli("download", r.file_id, server=server)
    assert missing.returncode == EXIT_REJECTED and missing.stderr.startswith("error: ")
    with pytest.raises(Rejected):
        server.client().info(r.file_id)


def test_list_follows_pages(server, make_file):
    ids = {seed_upload(server, make_file(1000, seed=100 + i)).file_id for i in range(3)}
    listed = [f["id"] for f in server.client().iter_files(limit=1)]
    assert ids <= set(listed) and len(listed) == len(set(listed))


def test_errors_are_one_line_with_distinct_exit_codes(server, tmp_path):
    r = run_cli("upload", str(tmp_path / "nope.bin"), server=server)
    assert r.returncode == EXIT_LOCAL
    assert r.stderr.strip() == f"error: no such file: {tmp_path / 'nope.bin'}"
    # A port nothing listens on: take one from a stopped listener.
    import socket
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    (tmp_path / "x.bin").write_bytes(b"x")
    r = run_cli("upload", str(tmp_path / "x.bin"), server_url=f"http://127.0.0.1:{port}")
    assert r.returncode == EXIT_UNREACHABLE
    assert len(r.stderr.strip().splitlines()) == 1 and "cannot reach the server" in r.stderr
    r = run_cli("download", "01NOSUCHFILE0000000000000", server=server)
    assert r.returncode == EXIT_REJECTED and len(r.stderr.strip().splitlines()) == 1


def test_piece_over_the_server_limit_is_a_clear_refusal(tmp_path):
    s = Server(tmp_path / "small", env={"DEPOT_MAX_PIECE_SIZE": "65536"}).start()
    try:
        src = tmp_path / "big-pieces.bin"
        src.write_bytes(data(300_000, seed=14))
        r = run_cli("upload", str(src), "--method", "seed", "--piece-size", "128KiB", server=s)
        assert r.returncode == EXIT_REJECTED
        assert "413" in r.stderr and len(r.stderr.strip().splitlines()) == 1
    finally:
        s.stop()


def test_seed_entry_point_wrappers(server, make_file, tmp_path):
    src = make_file(150_000, seed=15)
    env = server.env()
    up = subprocess.run([sys.executable, str(PYTHON_DIR / "test_chunked_upload.py"), str(src)],
                        capture_output=True, text=True, env=env, timeout=120)
    assert up.returncode == 0, up.stderr
    # The seed's script speaks the chunked API it is named for.
    assert "seed upload" in up.stderr, up.stderr
    file_id = up.stdout.strip().splitlines()[-1]
    out = tmp_path / "wrapped.bin"
    down = subprocess.run([sys.executable, str(PYTHON_DIR / "download_file.py"), file_id, str(out)],
                          capture_output=True, text=True, env=env, timeout=120)
    assert down.returncode == 0, down.stderr
    assert out.read_bytes() == src.read_bytes()


def test_download_starts_over_when_if_range_does_not_match(server, tmp_path, monkeypatch, capsys):
    """If-Range carries the ETag the client knows; a server whose file is
    not that one answers 200 with the whole file, and the client starts
    over rather than appending."""
    body = data(300_000, seed=16)
    info = server.http.post(f"{server.url}/api/files/upload", params={"filename": "ifrange.bin"},
                         data=body, timeout=30).json()
    real_info = Client.info

    def stale_info(self, file_id):
        return dict(real_info(self, file_id), etag="0" * 64)

    monkeypatch.setattr(Client, "info", stale_info)
    out = tmp_path / "ifrange.bin"
    (tmp_path / "ifrange.bin.part").write_bytes(body[:100_000])
    d = download(server.client(), info["id"], str(out), progress=False)
    assert out.read_bytes() == body
    assert d.resumed_from == 0 and d.received_bytes == len(body)
    assert "sent the whole file" in capsys.readouterr().err


def test_download_refuses_to_overwrite_unless_forced(server, tmp_path):
    body = data(200_000, seed=17)
    info = server.http.post(f"{server.url}/api/files/upload", params={"filename": "keep.bin"},
                         data=body, timeout=30).json()
    out = tmp_path / "keep.bin"
    out.write_bytes(b"precious local data")
    r = run_cli("download", info["id"], str(out), server=server)
    assert r.returncode == EXIT_LOCAL, r.stderr
    assert "exists" in r.stderr and "--force" in r.stderr and len(r.stderr.strip().splitlines()) == 1
    assert out.read_bytes() == b"precious local data"
    with pytest.raises(LocalFileError):
        download(server.client(), info["id"], str(out), progress=False)
    # The partial download of the same output is resumed, not refused.
    out.unlink()
    (tmp_path / "keep.bin.part").write_bytes(body[:50_000])
    d = download(server.client(), info["id"], str(out), progress=False)
    assert d.resumed_from == 50_000 and out.read_bytes() == body
    assert not (tmp_path / "keep.bin.part").exists()
    # --force replaces.
    out.write_bytes(b"old")
    run_cli("download", info["id"], str(out), "--force", server=server, check=True)
    assert out.read_bytes() == body


def test_refused_uploads_send_nothing(tmp_path):
    """A file over the size limit, or whose bytes contradict its name, is
    refused by the client before any byte of it is sent."""
    s = Server(tmp_path / "limits", env={"DEPOT_MAX_FILE_SIZE": "100000"}).start()
    try:
        big = tmp_path / "big.bin"
        big.write_bytes(data(150_000, seed=18))
        elf = tmp_path / "cat.png"
        elf.write_bytes(b"\x7fELF\x02\x01\x01" + bytes(80))
        for method in ("auto", "seed"):
            before = s.request_bytes()
            r = run_cli("upload", str(big), "--method", method, server=s)
            assert r.returncode == EXIT_REJECTED, r.stderr
            assert "at most 100000 bytes" in r.stderr and "nothing was sent" in r.stderr
            r = run_cli("upload", str(elf), "--method", method, server=s)
            assert r.returncode == EXIT_REJECTED, r.stderr
            assert "the server would refuse cat.png" in r.stderr
            assert s.request_bytes() - before < 4096, "a refused upload sent its bytes"
        stats = s.admin.get(f"{s.url}/api/stats", timeout=10).json()
        assert stats["unique_chunks"] == 0 and stats["files"] == 0 and stats["dedup_ratio"] is None
    finally:
        s.stop()
