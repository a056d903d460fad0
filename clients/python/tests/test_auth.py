"""Tokens: the client sends ``Authorization: Bearer`` (from ``token=`` or
``DEPOT_TOKEN``) on every request, and a server in token mode refuses a
request without one (401) or without the permission (403) with a clear
message and exit code 5. The server tests are skipped with
``DEPOT_TEST_AUTH=local``."""

from __future__ import annotations

import pytest
import requests

from conftest import AUTH, run_cli
from depot_client import Client, Rejected
from depot_client.api import EXIT_REJECTED, EXIT_USAGE, UsageError

TOKEN = "dpt_01JDX3E5C9R2T7VQ4M8N6P0WAB_c2VjcmV0LXNlY3JldC1zZWNyZXQtc2VjcmV0LXNlY3JldA"

token_mode = pytest.mark.skipif(AUTH != "token", reason="DEPOT_TEST_AUTH=local: the server takes no tokens")


def test_the_token_comes_from_the_argument_or_the_environment(monkeypatch):
    monkeypatch.delenv("DEPOT_TOKEN", raising=False)
    assert "Authorization" not in Client("http://localhost:1").session.headers
    monkeypatch.setenv("DEPOT_TOKEN", f" {TOKEN}\n")
    c = Client("http://localhost:1")
    assert c.session.headers["Authorization"] == f"Bearer {TOKEN}"
    assert TOKEN not in repr(c) and "DEPOT_TOKEN" in repr(c)
    assert Client("http://localhost:1", token="dpt_other_x").session.headers["Authorization"] == "Bearer dpt_other_x"
    monkeypatch.setenv("DEPOT_TOKEN", "")
    assert "Authorization" not in Client("http://localhost:1").session.headers
    with pytest.raises(UsageError) as e:
        Client("http://localhost:1", token="two words")
    assert "two words" not in e.value.message


@token_mode
def test_without_a_token_the_server_answers_401(server):
    r = requests.get(f"{server.url}/api/files", timeout=10)
    assert r.status_code == 401
    assert r.headers["WWW-Authenticate"].startswith("Bearer")
    assert r.json()["error"] == "unauthorized"
    with pytest.raises(Rejected) as e:
        Client(server.url, token=None).iter_files().__next__()
    assert e.value.status == 401 and "set DEPOT_TOKEN" in e.value.message


@token_mode
def test_the_cli_without_or_with_a_bad_token_exits_5_saying_why(server, make_file):
    src = make_file(1000, seed=300)
    r = run_cli("upload", str(src), server=server, token="")
    assert r.returncode == EXIT_REJECTED, r.stderr
    assert len(r.stderr.strip().splitlines()) == 1 and "needs a token: set DEPOT_TOKEN" in r.stderr
    r = run_cli("list", server=server, token=TOKEN)
    assert r.returncode == EXIT_REJECTED, r.stderr
    assert "refused the token from DEPOT_TOKEN" in r.stderr and "c2Vj" not in r.stderr
    r = run_cli("list", server=server, token="not a token")
    assert r.returncode == EXIT_USAGE and "not a token" not in r.stderr


@token_mode
def test_a_token_without_the_permission_gets_403_and_a_message_naming_it(server, make_file):
    src = make_file(5000, seed=301)
    reader = server.make_token(["read"])
    r = run_cli("upload", str(src), "--method", "native", server=server, token=reader)
    assert r.returncode == EXIT_REJECTED, r.stderr
    assert "403" in r.stderr and "lacks this permission" in r.stderr, r.stderr
    uploaded = run_cli("upload", str(src), server=server, check=True).stdout.strip().splitlines()[-1]
    r = run_cli("delete", uploaded, server=server, token=reader)
    assert r.returncode == EXIT_REJECTED and "403" in r.stderr, r.stderr
    assert server.client(token=reader).info(uploaded)["id"] == uploaded


@token_mode
def test_another_tenant_sees_nothing_of_ours(server, make_file):
    src = make_file(3000, seed=302)
    ours = run_cli("upload", str(src), server=server, check=True).stdout.strip().splitlines()[-1]
    theirs = server.client(token=server.make_token(["read", "write", "delete"], tenant="pytest-other"))
    assert ours not in {f["id"] for f in theirs.iter_files()}
    with pytest.raises(Rejected) as e:
        theirs.info(ours)
    assert e.value.status == 404
