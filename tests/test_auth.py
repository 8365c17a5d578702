"""Authentication answers, HS_ADMIN permissions and the challenge store, without I/O."""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Mapping, Sequence

import pytest
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import dsa, rsa

from idnode.auth.challenges import ChallengeStore
from idnode.auth.handle_header import parse_handle_authorization
from idnode.auth.identity import check_answer, check_certificate_key, check_password
from idnode.auth.permissions import MAX_GROUP_DEPTH, Authorizer
from idnode.auth.signatures import (
    answer_with_private_key,
    answer_with_secret,
    check_private_key_answer,
    check_secret_answer,
)
from idnode.errors import (
    AuthenticationFailed,
    AuthenticationNeeded,
    AuthenticationTimeout,
    InsufficientPermissions,
    InvalidCredential,
)
from idnode.handle.codes import DigestAlgorithm, OpCode
from idnode.handle.messages import DeleteHandleRequest, Message, RequestDigest
from idnode.handle.values import HandleValue, ValueReference
from idnode.handle.valuetypes import AdminPermission, AdminValue, RSAPublicKey, ValueList
from idnode.handle.wire import Writer
from idnode.keys import handle_public_key, hashed_secret
from tests.clock import Clock

NONCE = b"n" * 16
DIGEST = hashlib.sha256(b"the request").digest()
SECRET = b"correct horse battery staple"


# -- secret keys -------------------------------------------------------------------


@pytest.mark.parametrize("version", [(2, 0), (2, 5), (2, 11)])
def test_secret_answer_checks_in_every_version_form(version: tuple[int, int]) -> None:
    answer = answer_with_secret(SECRET, NONCE, DIGEST, version)
    assert check_secret_answer(SECRET, NONCE, DIGEST, answer, version)
    assert not check_secret_answer(b"wrong", NONCE, DIGEST, answer, version)
    assert not check_secret_answer(SECRET, b"m" * 16, DIGEST, answer, version)
    assert not check_secret_answer(SECRET, NONCE, bytes(32), answer, version)


def test_pbkdf2_answer_layout_matches_the_deployed_encoding() -> None:
    # Built by hand: algorithm 0x22, salt block, iterations, key bits, mac block.
    salt = b"s" * 16
    key = hashlib.pbkdf2_hmac("sha1", SECRET, salt, 1000, 20)
    mac = hmac.new(key, NONCE + DIGEST, hashlib.sha1).digest()
    w = Writer()
    w.u8(0x22)
    w.block(salt)
    w.u32(1000)
    w.u32(160)
    w.block(mac)
    assert check_secret_answer(SECRET, NONCE, DIGEST, w.getvalue(), (2, 11))


@pytest.mark.parametrize(
    ("algorithm", "mac"),
    [
        (0x12, lambda s, m: hmac.new(s, m, hashlib.sha1).digest()),
        (0x13, lambda s, m: hmac.new(s, m, hashlib.sha256).digest()),
        (0x02, lambda s, m: hashlib.sha1(s + m + s).digest()),
        (0x01, lambda s, m: hashlib.md5(s + m + s).digest()),
    ],
)
def test_other_secret_algorithms(algorithm: int, mac: object) -> None:
    answer = bytes([algorithm]) + mac(SECRET, NONCE + DIGEST)  # type: ignore[operator]
    assert check_secret_answer(SECRET, NONCE, DIGEST, answer, (2, 11))
    assert not check_secret_answer(SECRET, NONCE, DIGEST, answer[:-1] + b"x", (2, 11))


@pytest.mark.parametrize(
    "answer",
    [b"", b"\x22", b"\x22\x00\x00\x00\x10", b"\x99" + bytes(20), b"\x22" + bytes(40)],
)
def test_malformed_secret_answers_are_false_not_errors(answer: bytes) -> None:
    assert not check_secret_answer(SECRET, NONCE, DIGEST, answer, (2, 11))


def test_pbkdf2_iteration_count_is_bounded() -> None:
    w = Writer()
    w.u8(0x22)
    w.block(b"salt")
    w.u32(10_000_000)
    w.u32(160)
    w.block(bytes(20))
    assert not check_secret_answer(SECRET, NONCE, DIGEST, w.getvalue(), (2, 11))


# -- public keys -------------------------------------------------------------------


@pytest.fixture(scope="module")
def rsa_key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


@pytest.mark.parametrize("version", [(2, 5), (2, 11)])
def test_rsa_answer(rsa_key: rsa.RSAPrivateKey, version: tuple[int, int]) -> None:
    public = handle_public_key(rsa_key).to_bytes()
    answer = answer_with_private_key(rsa_key, NONCE, DIGEST, version)
    assert check_private_key_answer(public, NONCE, DIGEST, answer)
    assert not check_private_key_answer(public, b"m" * 16, DIGEST, answer)
    other = rsa.generate_private_key(public_exponent=65537, key_size=1024)
    assert not check_private_key_answer(handle_public_key(other).to_bytes(), NONCE, DIGEST, answer)


def test_dsa_answer() -> None:
    key = dsa.generate_private_key(2048)
    numbers = key.public_key().public_numbers()
    from idnode.handle.valuetypes import DSAPublicKey

    public = DSAPublicKey(
        numbers.parameter_numbers.q,
        numbers.parameter_numbers.p,
        numbers.parameter_numbers.g,
        numbers.y,
    ).to_bytes()
    w = Writer()
    w.block(b"SHA-256")
    w.block(key.sign(NONCE + DIGEST, hashes.SHA256()))
    assert check_private_key_answer(public, NONCE, DIGEST, w.getvalue())


def test_garbage_public_key_answers_are_false(rsa_key: rsa.RSAPrivateKey) -> None:
    public = handle_public_key(rsa_key).to_bytes()
    assert not check_private_key_answer(public, NONCE, DIGEST, b"")
    assert not check_private_key_answer(
        public, NONCE, DIGEST, b"\x00\x00\x00\x03MD2\x00\x00\x00\x00"
    )
    assert not check_private_key_answer(b"junk", NONCE, DIGEST, b"")


# -- identity ----------------------------------------------------------------------


def test_check_answer_needs_the_named_key_value(rsa_key: rsa.RSAPrivateKey) -> None:
    me = ValueReference("0.NA/88.100.1", 300)
    values = (
        HandleValue(300, "HS_PUBKEY", handle_public_key(rsa_key).to_bytes()),
        HandleValue(301, "HS_SECKEY", SECRET),
        HandleValue(1, "URL", b"https://example.org"),
    )
    answer = answer_with_private_key(rsa_key, NONCE, DIGEST, (2, 11))
    check_answer(values, me, "HS_PUBKEY", answer, NONCE, DIGEST, (2, 11))
    with pytest.raises(AuthenticationFailed):
        check_answer(values, me, "HS_PUBKEY", answer, b"x" * 16, DIGEST, (2, 11))
    with pytest.raises(InvalidCredential, match="holds HS_PUBKEY"):
        check_answer(values, me, "HS_SECKEY", answer, NONCE, DIGEST, (2, 11))
    with pytest.raises(InvalidCredential, match="not a key"):
        check_answer(
            values, ValueReference(me.handle, 1), "HS_PUBKEY", answer, NONCE, DIGEST, (2, 11)
        )
    with pytest.raises(InvalidCredential, match="no value"):
        check_answer(
            values, ValueReference(me.handle, 9), "HS_PUBKEY", answer, NONCE, DIGEST, (2, 11)
        )
    with pytest.raises(InvalidCredential, match="not on this node"):
        check_answer(None, me, "HS_PUBKEY", answer, NONCE, DIGEST, (2, 11))
    check_password(values, ValueReference(me.handle, 301), SECRET)
    with pytest.raises(AuthenticationFailed):
        check_password(values, ValueReference(me.handle, 301), b"guess")
    with pytest.raises(InvalidCredential):
        check_password(values, me, SECRET)


def test_hashed_secret_keys_take_the_passphrase_over_basic_and_the_hash_in_answers() -> None:
    """Handle.Net's hashed secret keys: the value holds the SHA-1 hex of a passphrase."""
    me = ValueReference("88.100.1/OPS", 300)
    values = (HandleValue(300, "HS_SECKEY", hashed_secret(b"correct horse")),)
    assert check_password(values, me, b"correct horse") == me
    assert check_password(values, me, hashed_secret(b"correct horse")) == me
    with pytest.raises(AuthenticationFailed):
        check_password(values, me, b"correct pony")
    # A challenge answer is keyed with the stored bytes: a client hashes first.
    answer = answer_with_secret(hashed_secret(b"correct horse"), NONCE, DIGEST, (2, 11))
    assert check_answer(values, me, "HS_SECKEY", answer, NONCE, DIGEST, (2, 11)) == me
    plain = answer_with_secret(b"correct horse", NONCE, DIGEST, (2, 11))
    with pytest.raises(AuthenticationFailed):
        check_answer(values, me, "HS_SECKEY", plain, NONCE, DIGEST, (2, 11))


# -- permissions -------------------------------------------------------------------

ALICE = ValueReference("88.100.1/ALICE", 300)
BOB = ValueReference("88.100.1/BOB", 300)


def group(index: int, *members: ValueReference) -> HandleValue:
    return HandleValue(index, "HS_VLIST", ValueList(members).to_bytes())


def authorizer(records: Mapping[str, Sequence[HandleValue]], *admins: ValueReference) -> Authorizer:
    return Authorizer(lambda h: records.get(h.upper()), admins)


@pytest.mark.parametrize("bit", list(AdminPermission.ALL))
def test_each_permission_bit_granted_and_withheld(bit: AdminPermission) -> None:
    auth = authorizer({})
    granted = [AdminValue(bit, ALICE)]
    withheld = [AdminValue(AdminPermission.ALL & ~bit, ALICE)]
    auth.require(ALICE, bit, granted, "act")
    with pytest.raises(InsufficientPermissions, match=str(bit.name)):
        auth.require(ALICE, bit, withheld, "act")
    with pytest.raises(InsufficientPermissions):
        auth.require(BOB, bit, granted, "act")
    with pytest.raises(AuthenticationNeeded):
        auth.require(None, bit, granted, "act")


def test_index_zero_means_any_key_of_the_handle_and_case_is_folded() -> None:
    auth = authorizer({})
    grant = [AdminValue(AdminPermission.ADD_VALUE, ValueReference("88.100.1/alice", 0))]
    assert auth.permissions(ALICE, grant) == AdminPermission.ADD_VALUE
    assert (
        auth.permissions(ValueReference("88.100.1/ALICE", 301), grant) == AdminPermission.ADD_VALUE
    )


def test_nested_groups_and_cycles() -> None:
    records = {
        "0.NA/88.100.1": (
            group(200, ValueReference("88.100.1/TEAM", 1)),
            group(201, ValueReference("0.NA/88.100.1", 202)),
            group(202, ValueReference("0.NA/88.100.1", 201)),  # a cycle
        ),
        "88.100.1/TEAM": (group(1, ALICE, ValueReference("0.NA/88.100.1", 201)),),
    }
    auth = authorizer(records)
    grant = [AdminValue(AdminPermission.MODIFY_VALUE, ValueReference("0.NA/88.100.1", 200))]
    assert auth.permissions(ALICE, grant) == AdminPermission.MODIFY_VALUE
    assert auth.permissions(BOB, grant) == AdminPermission.NONE  # and the cycle ends


def test_group_nesting_is_cut_off() -> None:
    records = {
        f"G/{n}": (group(1, ValueReference(f"G/{n + 1}", 1)),) for n in range(MAX_GROUP_DEPTH + 2)
    }
    records[f"G/{MAX_GROUP_DEPTH + 2}"] = (group(1, ALICE),)
    auth = authorizer(records)
    assert auth.permissions(ALICE, [AdminValue(AdminPermission.ALL, ValueReference("G/0", 1))]) == 0
    shallow = ValueReference(f"G/{MAX_GROUP_DEPTH - 2}", 1)
    assert (
        auth.permissions(ALICE, [AdminValue(AdminPermission.ALL, shallow)]) == AdminPermission.ALL
    )


def test_node_admins_hold_everything() -> None:
    auth = authorizer({}, ValueReference("0.NA/88.100.1", 300))
    assert auth.permissions(ValueReference("0.na/88.100.1", 300), []) == AdminPermission.ALL
    assert auth.permissions(ALICE, []) == AdminPermission.NONE


# -- challenges --------------------------------------------------------------------


REQUEST = Message(OpCode.DELETE_HANDLE, DeleteHandleRequest("88.100.1/X"))
RD = RequestDigest(DigestAlgorithm.SHA256, DIGEST)


def test_a_challenge_is_answered_once() -> None:
    store = ChallengeStore(Clock(1000.0))
    challenge = store.issue(REQUEST, b"raw", RD)
    assert len(challenge.nonce) == 16
    assert store.take(challenge.session_id).request == REQUEST
    with pytest.raises(AuthenticationTimeout):
        store.take(challenge.session_id)


def test_a_challenge_expires() -> None:
    clock = Clock(1000.0)
    store = ChallengeStore(clock, lifetime=30)
    challenge = store.issue(REQUEST, b"raw", RD)
    clock.now += 31
    with pytest.raises(AuthenticationTimeout, match="expired"):
        store.take(challenge.session_id)


def test_the_store_is_bounded_and_forgets_the_oldest() -> None:
    store = ChallengeStore(Clock(1000.0), capacity=3)
    issued = [store.issue(REQUEST, b"raw", RD) for _ in range(5)]
    assert len(store) == 3
    with pytest.raises(AuthenticationTimeout):
        store.take(issued[0].session_id)
    assert store.take(issued[4].session_id).nonce == issued[4].nonce


def test_nonces_are_fresh() -> None:
    store = ChallengeStore(Clock(1000.0))
    assert len({store.issue(REQUEST, b"raw", RD).nonce for _ in range(100)}) == 100


def test_rsa_public_key_value_round_trips_through_handle_encoding(
    rsa_key: rsa.RSAPrivateKey,
) -> None:
    numbers = rsa_key.public_key().public_numbers()
    assert handle_public_key(rsa_key) == RSAPublicKey(numbers.e, numbers.n)


def test_index_zero_means_any_key_and_names_the_one_that_proved(
    rsa_key: rsa.RSAPrivateKey,
) -> None:
    other = rsa.generate_private_key(public_exponent=65537, key_size=1024)
    values = (
        HandleValue(300, "HS_PUBKEY", handle_public_key(other).to_bytes()),
        HandleValue(301, "HS_PUBKEY", handle_public_key(rsa_key).to_bytes()),
        HandleValue(302, "HS_SECKEY", SECRET),
    )
    anyone = ValueReference("0.NA/88.100.1", 0)
    answer = answer_with_private_key(rsa_key, NONCE, DIGEST, (2, 11))
    assert check_answer(values, anyone, "HS_PUBKEY", answer, NONCE, DIGEST, (2, 11)).index == 301
    assert check_password(values, anyone, SECRET).index == 302
    assert check_certificate_key(values, anyone, rsa_key.public_key()).index == 301
    with pytest.raises(AuthenticationFailed):
        check_certificate_key(
            values,
            anyone,
            rsa.generate_private_key(public_exponent=65537, key_size=1024).public_key(),
        )
    with pytest.raises(InvalidCredential, match="holds HS_SECKEY"):
        check_certificate_key(values, ValueReference(anyone.handle, 302), rsa_key.public_key())


def test_sha256_secret_answer_is_hash_of_secret_signed_secret() -> None:
    answer = bytes([0x03]) + hashlib.sha256(SECRET + NONCE + DIGEST + SECRET).digest()
    assert check_secret_answer(SECRET, NONCE, DIGEST, answer, (2, 11))
    assert not check_secret_answer(b"other", NONCE, DIGEST, answer, (2, 11))


# -- the HTTP API's Authorization: Handle header ------------------------------------


def test_handle_header_fields_are_parsed_quoted_or_bare() -> None:
    auth = parse_handle_authorization(
        'sessionId="abc-1", id="300:0.NA/88.100.1" ,type=HS_PUBKEY,'
        ' cnonce="AAAAAAAAAAAAAAAAAAAAAA==", alg="SHA256", signature="c2ln"'
    )
    assert auth.session_id == "abc-1"
    assert auth.authenticating
    assert auth.identity() == ValueReference("0.NA/88.100.1", 300)
    assert auth.client_nonce() == bytes(16)
    w = Writer()
    w.block(b"SHA-256")
    w.block(b"sig")
    assert auth.protocol_answer() == w.getvalue()
    named_only = parse_handle_authorization('sessionId="abc-1"')
    assert not named_only.authenticating
    assert parse_handle_authorization('clientCert="true"').client_cert
    assert parse_handle_authorization('version="0", sessionId=x').session_id == "x"


def test_handle_header_secret_algorithms_become_protocol_answers() -> None:
    base = 'id="300:X/Y", type="HS_SECKEY", cnonce="AA==", signature="c2ln", alg='
    assert parse_handle_authorization(base + '"HMAC-SHA256"').protocol_answer() == b"\x13sig"
    assert parse_handle_authorization(base + '"sha-1"').protocol_answer() == b"\x02sig"
    pbkdf2 = parse_handle_authorization(
        base + '"PBKDF2WithHmacSHA1", salt="c2FsdA==", iterations="1000", length="160"'
    ).protocol_answer()
    w = Writer()
    w.u8(0x22)
    w.block(b"salt")
    w.u32(1000)
    w.u32(160)
    w.block(b"sig")
    assert pbkdf2 == w.getvalue()


@pytest.mark.parametrize(
    ("header", "problem"),
    [
        ('version="2", sessionId="x"', "version"),
        ('sessionId="x" id="y"', "malformed"),
        ('id="300:X/Y", type="HS_WHAT", alg="SHA256", signature="AA==", cnonce="AA=="', "type"),
        ('id="300:X/Y", type="HS_SECKEY", alg="ROT13", signature="AA==", cnonce="AA=="', "alg"),
        ('id="300:X/Y", type="HS_PUBKEY", alg="SHA256", signature="***", cnonce="AA=="', "base64"),
        ('id="300:X/Y", type="HS_SECKEY", alg="PBKDF2-HMAC-SHA1", signature="AA=="', "salt"),
    ],
)
def test_bad_handle_headers_are_refused_with_a_reason(header: str, problem: str) -> None:
    with pytest.raises(AuthenticationFailed, match=problem):
        parse_handle_authorization(header).protocol_answer()
