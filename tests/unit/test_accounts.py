"""API accounts (tokens shown once, stored as sha256 only) and the per-token rate limit."""
from __future__ import annotations

import stat

import pytest

from zeroscan.accounts import TOKEN_PREFIX, AccountStore, hash_token
from zeroscan.rate_limit import TokenBucket

pytestmark = pytest.mark.unit


def test_create_stores_only_the_hash(tmp_path):
    store = AccountStore(tmp_path / "accounts.json", now_ms=lambda: 42)
    account, token = store.create("alice")
    assert token.startswith(TOKEN_PREFIX) and len(token) >= len(TOKEN_PREFIX) + 43  # 256 bits, base64
    assert account.token_sha256 == hash_token(token) and account.created_at_ms == 42
    body = (tmp_path / "accounts.json").read_text()
    assert token not in body and token[len(TOKEN_PREFIX):] not in body and account.token_sha256 in body
    assert stat.S_IMODE((tmp_path / "accounts.json").stat().st_mode) == 0o600


def test_authenticate(tmp_path):
    store = AccountStore(tmp_path / "accounts.json")
    alice, a_token = store.create("alice")
    bob, b_token = store.create("bob")
    assert a_token != b_token
    assert store.authenticate(a_token) == alice and store.authenticate(b_token) == bob
    assert store.authenticate(a_token + "x") is None
    assert store.authenticate("") is None
    assert store.authenticate(alice.token_sha256) is None  # the stored hash is not a token


def test_other_instances_see_new_accounts(tmp_path):
    server_side = AccountStore(tmp_path / "accounts.json")
    assert server_side.list() == []
    _, token = AccountStore(tmp_path / "accounts.json").create("alice")  # e.g. the CLI, later
    assert server_side.authenticate(token).name == "alice"
    assert [a.name for a in server_side.list()] == ["alice"]


def test_rotate_replaces_the_token_everywhere_at_once(tmp_path):
    clock = iter([10, 20, 30, 40])
    cli = AccountStore(tmp_path / "accounts.json", now_ms=lambda: next(clock))
    server_side = AccountStore(tmp_path / "accounts.json")
    _, old = cli.create("alice")
    _, bob = cli.create("bob")
    assert server_side.authenticate(old).name == "alice"
    account, new = cli.rotate("alice")
    assert new != old and account.created_at_ms == 10 and account.token_at_ms == 30
    assert server_side.authenticate(old) is None and server_side.authenticate(new).name == "alice"
    assert server_side.authenticate(bob).name == "bob"              # other accounts untouched
    assert new not in (tmp_path / "accounts.json").read_text()
    with pytest.raises(ValueError, match="no account 'carol'"):
        cli.rotate("carol")


def test_revoke_stops_every_token_until_rotated(tmp_path):
    cli = AccountStore(tmp_path / "accounts.json")
    server_side = AccountStore(tmp_path / "accounts.json")
    _, token = cli.create("alice")
    account = cli.revoke("alice")
    assert account.revoked and account.token_sha256 == ""
    assert server_side.authenticate(token) is None and server_side.get("alice").revoked
    assert server_side.authenticate("") is None
    _, again = cli.rotate("alice")
    assert server_side.authenticate(again).name == "alice" and not server_side.get("alice").revoked
    with pytest.raises(ValueError, match="no account"):
        cli.revoke("carol")


def test_reads_account_files_written_before_rotation_existed(tmp_path):
    (tmp_path / "accounts.json").write_text(
        '{"accounts": [{"name": "alice", "token_sha256": "%s", "created_at_ms": 5}]}' % hash_token("zs_t"))
    store = AccountStore(tmp_path / "accounts.json")
    assert store.authenticate("zs_t").name == "alice" and store.get("alice").token_at_ms == 0


@pytest.mark.parametrize("name,fragment,reason", [
    ("Alice", "account name", "upper case"),
    ("", "account name", "empty"),
    ("@admin", "account name", "the operator's marker"),
    ("a b", "account name", "space"),
])
def test_bad_names(tmp_path, name, fragment, reason):
    with pytest.raises(ValueError, match=fragment):
        AccountStore(tmp_path / "accounts.json").create(name)


def test_duplicate_name_refused(tmp_path):
    store = AccountStore(tmp_path / "accounts.json")
    store.create("alice")
    with pytest.raises(ValueError, match="already exists"):
        store.create("alice")


def test_token_bucket_burst_then_refill():
    now = [100.0]
    tb = TokenBucket(burst=3, per_s=2.0, clock=lambda: now[0])
    assert [tb.take("t1") for _ in range(3)] == [0.0, 0.0, 0.0]
    assert tb.take("t1") == pytest.approx(0.5)  # one token every 0.5 s
    assert tb.take("t2") == 0.0  # buckets are per token
    now[0] += 0.5
    assert tb.take("t1") == 0.0
    now[0] += 100
    assert [tb.take("t1") for _ in range(4)][-1] > 0  # refill stops at the burst size


@pytest.mark.parametrize("burst,rate", [(0, 1.0), (1, 0.0)])
def test_token_bucket_needs_positive_settings(burst, rate):
    with pytest.raises(ValueError, match="rate limit"):
        TokenBucket(burst, rate)


def test_cli_acts_only_as_a_live_account(tmp_path, monkeypatch, capsys):
    """`brands put --account NAME` stands for that owner: refused for an unknown or revoked
    account before anything is read or published."""
    from zeroscan.cli import main

    monkeypatch.setenv("ZEROSCAN_STATE_DIR", str(tmp_path))
    brand = tmp_path / "b.json"
    brand.write_text('{"brand_id": "acme", "name": "Acme", "trademarks": ["Acme"], "version": 1}')
    assert main(["accounts", "create", "alice", "--no-publish"]) == 0
    assert main(["accounts", "revoke", "alice", "--no-publish"]) == 0
    capsys.readouterr()
    assert main(["brands", "put", "--account", "alice", "--no-publish", str(brand)]) != 0
    assert "is revoked" in capsys.readouterr().err
    assert main(["brands", "put", "--account", "carol", "--no-publish", str(brand)]) != 0
    assert "does not exist" in capsys.readouterr().err
    assert main(["accounts", "rotate", "alice", "--no-publish"]) == 0
    assert main(["brands", "put", "--account", "alice", "--no-publish", str(brand)]) == 0
    assert main(["accounts", "list"]) == 0
    assert "alice\towner\tactive" in capsys.readouterr().out
