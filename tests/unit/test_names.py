"""Replicate's names, checked before anything is sent."""

from __future__ import annotations

import pytest

from service.domain.ids import new_id, ulid
from service.domain.names import ModelRef, parse_model, parse_version

VERSION = "a" * 64


@pytest.mark.parametrize("text", ["acme/faces", "a-b/c.d_e", "0/9"])
def test_valid_model_names_parse(text: str) -> None:
    owner, name = text.split("/")

    assert parse_model(text) == ModelRef(owner, name)


@pytest.mark.parametrize(
    "text",
    [
        "acme",
        "Acme/faces",
        "acme/faces/x",
        "acme/",
        "/faces",
        "acme/fa ces",
        "-a/b",
        "",
    ],
)
def test_invalid_model_names_are_refused(text: str) -> None:
    with pytest.raises(ValueError, match="must be owner/name"):
        parse_model(text)


def test_version_ref_parses_and_prints_back() -> None:
    ref = parse_version(f"ostris/flux-dev-lora-trainer:{VERSION}")

    assert (ref.owner, ref.name, ref.version) == (
        "ostris",
        "flux-dev-lora-trainer",
        VERSION,
    )
    assert str(ref) == f"ostris/flux-dev-lora-trainer:{VERSION}"


@pytest.mark.parametrize(
    "text", ["ostris/trainer", "ostris/trainer:abc", f"ostris/trainer:{'A' * 64}"]
)
def test_invalid_version_refs_are_refused(text: str) -> None:
    with pytest.raises(ValueError, match="64-hex version id"):
        parse_version(text)


def test_ids_sort_by_creation_time() -> None:
    earlier = ulid(now_ms=1_700_000_000_000)
    later = ulid(now_ms=1_700_000_000_001)

    assert earlier < later
    assert len(earlier) == 26


def test_ids_are_ulids_in_crockford_base32(monkeypatch: pytest.MonkeyPatch) -> None:
    # 10 characters of milliseconds, then 16 of randomness (here all ones).
    monkeypatch.setattr("service.domain.ids.os.urandom", lambda n: b"\xff" * n)

    assert ulid(now_ms=1_700_000_000_000) == "01HF7YAT00" + "Z" * 16
    assert ulid(now_ms=0) == "0" * 10 + "Z" * 16


def test_new_ids_are_prefixed_and_unique() -> None:
    ids = {new_id("trn") for _ in range(1000)}

    assert len(ids) == 1000
    assert all(i.startswith("trn_") and len(i) == 30 for i in ids)
