"""Identities held by another node: an enterprise node lets an administrator whose
secret key lives at its parent write, by asking the parent (opcode 201, verify
challenge) whether the answer proves that key. Real nodes on loopback."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from idnode.auth.signatures import answer_with_secret
from idnode.client import Credentials, HandleClient
from idnode.domain import HandleRecord
from idnode.errors import HandleNotFound, InvalidCredential
from idnode.handle.codes import OpCode, ResponseCode
from idnode.handle.messages import CreateHandleRequest, ResolutionResponse
from idnode.handle.values import HandleValue, Permission, ValueReference
from idnode.handle.valuetypes import AdminPermission, AdminValue
from idnode.node import open_node
from tests.test_hierarchy import Hierarchy

OPERATOR = ValueReference("88.100/OPERATOR", 300)
SECRET = b"parent-s3cret"


@pytest.fixture
def nodes(tmp_path: Path) -> Iterator[Hierarchy]:
    h = Hierarchy(tmp_path)
    try:
        parent = h.start("parent", "secondary", "88.100")
        root = h.start("root", "root", None)
        h.delegate("root", "88.100", parent)
        h.start("enterprise", "enterprise", "88.100.1", root_servers=f"{root[0]}:{root[1]}")
        node = open_node(h.nodes["parent"].config)
        try:  # the operator's secret key: held by the parent only
            key = HandleValue(
                OPERATOR.index,
                "HS_SECKEY",
                SECRET,
                permissions=Permission.ADMIN_READ | Permission.ADMIN_WRITE,
            )
            node.service.prefixes.put_record(HandleRecord(OPERATOR.handle, (key,)))
        finally:
            node.close()
        node = open_node(h.nodes["enterprise"].config)
        try:  # ... and an administrator of the enterprise's prefix
            prefix = node.storage.get("0.NA/88.100.1")
            assert prefix is not None
            grant = AdminValue(AdminPermission.ALL, OPERATOR).to_bytes()
            values = (*prefix.values, HandleValue(102, "HS_ADMIN", grant))
            node.service.prefixes.put_record(HandleRecord(prefix.handle, values))
        finally:
            node.close()
        yield h
    finally:
        h.stop_all()


def _create(h: Hierarchy, handle: str, secret: bytes) -> ResponseCode:
    client = HandleClient(*h.at("enterprise"), timeout=5)
    value = HandleValue(1, "URL", b"https://pumps.example/new")
    (reply,) = client.authenticated(
        OpCode.CREATE_HANDLE,
        CreateHandleRequest(handle, (value,)),
        Credentials(OPERATOR, secret=secret),
    )
    return reply.response_code


def test_an_administrator_held_by_the_parent_writes_at_the_enterprise(nodes: Hierarchy) -> None:
    assert _create(nodes, "88.100.1/BY-PARENT-ADMIN", SECRET) == ResponseCode.SUCCESS
    found = HandleClient(*nodes.at("enterprise")).resolve("88.100.1/BY-PARENT-ADMIN")
    assert isinstance(found.body, ResolutionResponse)
    assert _create(nodes, "88.100.1/WRONG", b"not-the-secret") == (
        ResponseCode.AUTHENTICATION_FAILED
    )


def test_the_home_of_a_secret_key_answers_verify_challenge(nodes: Hierarchy) -> None:
    parent = HandleClient(*nodes.at("parent"), timeout=5)
    nonce, digest = os.urandom(16), os.urandom(32)
    good = answer_with_secret(SECRET, nonce, digest, (2, 11))
    bad = answer_with_secret(b"guess", nonce, digest, (2, 11))
    assert parent.verify_challenge(OPERATOR, nonce, digest, good) is True
    assert parent.verify_challenge(OPERATOR, nonce, digest, bad) is False
    # An answer to another nonce does not count.
    assert parent.verify_challenge(OPERATOR, os.urandom(16), digest, good) is False
    with pytest.raises(HandleNotFound, match="not held here"):
        parent.verify_challenge(ValueReference("88.100/NOBODY", 300), nonce, digest, good)
    with pytest.raises(InvalidCredential):  # the handle, but no secret key at that index
        parent.verify_challenge(ValueReference(OPERATOR.handle, 301), nonce, digest, good)


def test_an_identity_nobody_holds_is_an_invalid_credential(nodes: Hierarchy) -> None:
    client = HandleClient(*nodes.at("enterprise"), timeout=5)
    value = HandleValue(1, "URL", b"https://pumps.example/new")
    (reply,) = client.authenticated(
        OpCode.CREATE_HANDLE,
        CreateHandleRequest("88.100.1/BY-NOBODY", (value,)),
        Credentials(ValueReference("88.100/NOBODY", 300), secret=SECRET),
    )
    assert reply.response_code == ResponseCode.INVALID_CREDENTIAL


def test_an_unreachable_home_is_an_authentication_error(nodes: Hierarchy) -> None:
    nodes.stop("parent")
    assert _create(nodes, "88.100.1/PARENT-DOWN", SECRET) == ResponseCode.AUTHENTICATION_ERROR
