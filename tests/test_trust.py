"""Delivery a fleet can trust (issue 36): rollback, freeze, mix-and-match, revoked and rotated keys, forged indexes.

Every case is refused with one line naming its rule; a device never goes backwards.
"""

from __future__ import annotations

import copy
import json
import time

import pytest

pytest.importorskip("onnxruntime")
pytest.importorskip("starlette")

from test_server import Running
from typer.testing import CliRunner

from plada_edge.cli import app
from plada_edge.core.errors import TrustError
from plada_edge.core.keys import SigningKey, generate_keys, load_public_key, revoke_key, rotate_key
from plada_edge.core.payload import decode_payload, encode_payload
from plada_edge.device.student import load_payload
from plada_edge.device.trust import TrustStore
from plada_edge.server.http import create_app, signed_index
from plada_edge.server.packing import make_payload
from plada_edge.server.scoring import score_pack


@pytest.fixture(scope="module")
def world(tiny, tmp_path_factory):
    root = tmp_path_factory.mktemp("trust")
    scores = score_pack(tiny["root"] / "teacher.onnx", tiny["pack"], root / "scores", progress=False)
    generate_keys(root / "server.key")
    generate_keys(root / "attacker.key")
    return {"root": root, "scores": scores, "pack": tiny["pack"], "public": load_public_key(root / "server.key.pub")}


def release(world, name: str, version: int | None, key: str = "server.key", task: str = "stripes", **kw) -> bytes:
    out = world["root"] / name
    made = make_payload(world["scores"], out, count=30, signer=SigningKey(world["root"] / key), version=version,
                        task=task, **kw)  # fmt: skip
    return made.data


def one_line_refusal(argv: list[str], words: str) -> str:
    result = CliRunner().invoke(app, [str(a) for a in argv])
    lines = result.stderr.strip().splitlines()
    assert result.exit_code == 2 and len(lines) == 1 and lines[0].startswith("error: refused ("), result.output
    assert words in lines[0], lines[0]
    return lines[0]


def learn_argv(world, payload, *more) -> list:
    return ["learn", payload, "-r", world["pack"].path, "-o", world["root"] / "student", "--trust",
            world["root"] / "server.key.pub", "--arch", "tiny_cnn", "--epochs", "1", *more]  # fmt: skip


def test_rollback_expiry_and_wrong_task_are_refused_before_any_work(world):
    store, root = TrustStore(), world["public"]
    release(world, "v2.plada", 2)
    release(world, "v1.plada", 1)
    assert load_payload(world["root"] / "v2.plada", root).header["release"] == {"version": 2, "expires": None}
    one_line_refusal(learn_argv(world, world["root"] / "v1.plada"), "(rollback): task 'stripes' version 1 is older")
    assert load_payload(world["root"] / "v1.plada", root, allow_rollback=True).header["release"]["version"] == 1
    assert store.read()["roots"][next(iter(store.read()["roots"]))]["tasks"]["stripes"]["version"] == 1

    one_line_refusal(learn_argv(world, world["root"] / "v2.plada", "--task", "other"), "(wrong task): asked for task")

    p = decode_payload((world["root"] / "v2.plada").read_bytes())  # re-signed as a release that has expired
    header = {**p.header, "release": {"version": 9, "expires": int(time.time()) - 60}}
    stale = encode_payload(p.indices, p.labels, header, signer=SigningKey(world["root"] / "server.key"))
    (world["root"] / "stale.plada").write_bytes(stale)
    one_line_refusal(learn_argv(world, world["root"] / "stale.plada"), "(expired): task 'stripes' version 9 expired")

    plain = make_payload(world["scores"], world["root"] / "plain.plada", count=30, task="stripes")
    assert "release" not in plain.payload.header and plain.data[6] == 2  # unsigned, no release: version 2 bytes
    one_line_refusal(learn_argv(world, world["root"] / "plain.plada"), "(unsigned)")
    assert not (world["root"] / "student").exists()  # every refusal came before any work


def test_packing_again_makes_the_next_release(world):
    first = release(world, "again.plada", None)
    second = release(world, "again.plada", None)
    assert [decode_payload(d).header["release"]["version"] for d in (first, second)] == [1, 2]


def test_rotation_moves_trust_and_revocation_ends_it(world, tmp_path):
    root = world["public"]
    r = rotate_key(world["root"] / "server.key", tmp_path / "new.key")
    new_payload = make_payload(world["scores"], tmp_path / "new.plada", count=30, task="stripes",
                               signer=SigningKey(tmp_path / "new.key"), version=5)  # fmt: skip
    with pytest.raises(TrustError, match=r"refused \(untrusted key\): signed by key .* which root .* never trusted"):
        load_payload(new_payload.payload, root)
    text = CliRunner().invoke(app, ["trust", "add", r["rotation"], "--trust", str(world["root"] / "server.key.pub")])
    assert text.exit_code == 0 and "rotated to" in text.output, text.output
    assert load_payload(tmp_path / "new.plada", root).signer_id == r["key_id"]
    old = release(world, "old-key.plada", 6)  # the replaced key signs on: refused
    with pytest.raises(TrustError, match=r"refused \(rotated key\)"):
        load_payload(decode_payload(old), root)
    forged = json.loads((tmp_path / "new.key.rotation.json").read_text())
    forged["signed"]["new"] = world["public"].hex()
    with pytest.raises(TrustError, match=r"refused \(forged rotation\)"):
        TrustStore().apply(forged, root)

    revoke_key(tmp_path / "new.key", tmp_path / "revoked.json", reason="laptop stolen")
    out = CliRunner().invoke(
        app, ["trust", "add", str(tmp_path / "revoked.json"), "--trust", str(world["root"] / "server.key.pub")]
    )
    assert out.exit_code == 0 and "revoked" in out.output
    one_line_refusal(learn_argv(world, tmp_path / "new.plada"), "(revoked key)")
    shown = json.loads(CliRunner().invoke(app, ["trust", "show", "--json"]).stdout)
    assert sorted(k["status"] for k in next(iter(shown["roots"].values()))["keys"].values()) == ["revoked", "rotated"]


def served(world, data: bytes, name: str = "stripes") -> dict:
    p = decode_payload(data)
    meta = {"name": name, "sha256": p.sha256, "bytes": p.total_bytes, "version": p.header["release"]["version"]}
    return {name: {"data": data, "meta": meta, "header": p.header}}


def test_learn_url_holds_the_payload_to_the_signed_index(world, monkeypatch):
    signer, root = SigningKey(world["root"] / "server.key"), world["public"]
    v3 = release(world, "url-v3.plada", 3)
    tasks = served(world, v3)
    with Running(create_app(tasks, signer=signer)) as base:
        assert load_payload(f"{base}/v1/tasks/stripes", root).header["release"]["version"] == 3
        one_line_refusal(learn_argv(world, f"{base}/v1/tasks/other"), "(wrong task): the signed index")

    v2 = release(world, "url-v2.plada", 2)  # rollback: an older release served with a fresh, validly signed index
    with Running(create_app(served(world, v2), signer=signer)) as base:
        one_line_refusal(learn_argv(world, f"{base}/v1/tasks/stripes"), "(rollback)")

    # mix-and-match: task A's validly signed payload served under task B's name
    other = release(world, "url-other.plada", 7, task="stripes-b")
    mixed = served(world, other, name="stripes")
    with Running(create_app(mixed, signer=signer)) as base:
        one_line_refusal(learn_argv(world, f"{base}/v1/tasks/stripes"), "(wrong task): asked for task 'stripes'")

    # a payload that is not the release the index lists
    lying = copy.deepcopy(tasks)
    lying["stripes"]["data"] = release(world, "url-v4.plada", 4)
    lying["stripes"]["meta"]["sha256"] = decode_payload(lying["stripes"]["data"]).sha256
    lying["stripes"]["meta"]["bytes"] = len(lying["stripes"]["data"])
    index = signed_index(tasks, signer, 3600)
    monkeypatch.setattr("plada_edge.server.http.signed_index", lambda *a, **k: index)
    with Running(create_app(lying, signer=signer)) as base:
        one_line_refusal(learn_argv(world, f"{base}/v1/tasks/stripes"), "(not in the index)")

    forged = copy.deepcopy(index)
    forged["signed"]["tasks"]["stripes"]["version"] = 99  # changed after signing
    monkeypatch.setattr("plada_edge.server.http.signed_index", lambda *a, **k: forged)
    with Running(create_app(tasks, signer=signer)) as base:
        one_line_refusal(learn_argv(world, f"{base}/v1/tasks/stripes"), "(forged index): no valid signature")

    attacker = signed_index(tasks, SigningKey(world["root"] / "attacker.key"), 3600)
    monkeypatch.setattr("plada_edge.server.http.signed_index", lambda *a, **k: attacker)
    with Running(create_app(tasks, signer=signer)) as base:
        one_line_refusal(learn_argv(world, f"{base}/v1/tasks/stripes"), "(untrusted key)")

    # freeze: an index older than one already read, or one past its expiry
    old = signed_index(tasks, signer, 3600, now=time.time() - 600)
    monkeypatch.setattr("plada_edge.server.http.signed_index", lambda *a, **k: old)
    with Running(create_app(tasks, signer=signer)) as base:
        one_line_refusal(learn_argv(world, f"{base}/v1/tasks/stripes"), "(stale index)")
    expired = signed_index(tasks, signer, 60, now=time.time() + 10 - 3600)
    monkeypatch.setattr("plada_edge.server.http.signed_index", lambda *a, **k: expired)
    with Running(create_app(tasks, signer=signer)) as base:
        one_line_refusal(learn_argv(world, f"{base}/v1/tasks/stripes"), "(expired index)")
    with Running(create_app(tasks)) as base:  # a server that signs nothing cannot vouch for freshness
        one_line_refusal(learn_argv(world, f"{base}/v1/tasks/stripes"), "(no index)")


def test_build_numbers_releases_from_the_published_history(world, tiny, tmp_path):
    from plada_edge.server.http import load_published
    from plada_edge.server.tasks import build_tasks

    def build(count: int) -> dict:
        (tmp_path / "tasks.toml").write_text(
            f'[server]\ncache = "cache"\nreference = "{tiny["pack"].path}"\n'
            f'signing_key = "{world["root"] / "server.key"}"\nindex_ttl = "10m"\n\n'
            f'[tasks.stripes]\ntarget = "{tiny["root"] / "stripes.npz"}"\narch = "tiny_cnn"\nsize = 16\n'
            f'epochs = 1\nbatch_size = 32\ncount = {count}\nexpires = "30d"\n'
        )
        return build_tasks(tmp_path / "tasks.toml")["stripes"]

    first = build(30)
    assert first["version"] == 1 and first["expires"] > time.time() + 29 * 86400
    assert build(30)["steps"]["payload"] == "cached" and build(30)["version"] == 1
    assert build(40)["version"] == 2  # new content: the next release
    again = build(30)  # the old settings again: its cached payload is older than what was published
    assert again["version"] == 3 and again["steps"]["payload"] == "built"
    tasks = load_published(tmp_path / "cache")
    index = signed_index(tasks, SigningKey(world["root"] / "server.key"), 600)
    assert index["signed"]["tasks"]["stripes"]["version"] == 3
    assert TrustStore().admit_index(index, world["public"])["stripes"]["sha256"] == again["sha256"]
