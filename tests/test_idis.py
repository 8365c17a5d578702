"""China's national identifier system's own clients against a node.

The first tests run the real Java SDK (teleinfo's id-pointer-sdk 2.3.1, driven by
``../shared/idis-client/idis-check``) and read every result back; for SM2 keys, with
the hutool classes its copy lacks standing in (``tests/idis_shim``). The others speak
the IDIS extensions by hand, for what the SDK cannot be made to do: logins replayed,
forged or carried to another connection, identity tokens expired or signed by a
stranger, a login over UDP, and CAICT's password login (opcode 2000).
"""

from __future__ import annotations

import base64
import contextlib
import json
import shutil
import socket
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from idnode.auth.signatures import answer_with_private_key
from idnode.client import HandleClient, anonymous_request
from idnode.config import Config, load_config
from idnode.demo import demo_records
from idnode.domain import HandleRecord
from idnode.handle.codec import MessageFramer, decode_message, encode_message
from idnode.handle.codes import OpCode, OpFlag, ResponseCode
from idnode.handle.messages import (
    Body,
    ChallengeAnswer,
    ChallengeResponse,
    CreateHandleRequest,
    ErrorResponse,
    LoginRequest,
    Message,
    PasswordLoginRequest,
    PrefixRequest,
    ResolutionRequest,
    ResolutionResponse,
)
from idnode.handle.values import HandleValue, ValueReference
from idnode.handle.valuetypes import AdminPermission, AdminValue
from idnode.keys import PrivateKey, generate_key
from idnode.node import ADMIN_KEY_FILE, open_node
from idnode.sites import site_of
from idnode.sm2 import SM2PrivateKey
from tests.conftest import RunningNode, make_node, require_service, rsa_key, running

IDIS_CLIENT = Path(__file__).resolve().parents[2] / "shared" / "idis-client"
IDIS_CHECK = IDIS_CLIENT / "idis-check"
SHIM = Path(__file__).resolve().parent / "idis_shim"
DRIVER = Path(__file__).resolve().parent / "idis_driver"
JARS = [
    "bcpkix",
    "bcprov",
    "bcutil",
    "caffeine",
    "commons-codec",
    "commons-io",
    "gson",
    "netty-buffer",
    "netty-codec",
    "netty-common",
    "netty-handler",
    "netty-resolver",
    "netty-transport",
    "slf4j-api",
]
ADMIN = "300:0.NA/88.100.1"


@pytest.fixture(scope="module")
def node_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("idis-node")
    node = make_node(path)
    node.service.bulk.register_many(demo_records(20), replace=True)
    node.close()
    return path


@pytest.fixture(scope="module")
def server(node_dir: Path) -> Iterator[RunningNode]:
    # From idnode.toml, as `idnode serve` reads it: the node's administrator included.
    with running(load_config(node_dir, {"handle_port": 0, "http_port": 0})) as node:
        yield node


@pytest.fixture(scope="module")
def sdk() -> Path:
    missing = [j for j in JARS if not Path(f"/usr/share/java/{j}.jar").is_file()]
    if not IDIS_CHECK.is_file():
        require_service("the id-pointer SDK", f"{IDIS_CHECK} is not there")
    if shutil.which("java") is None or missing:
        require_service(
            "Java and the id-pointer SDK's jars",
            f"java or /usr/share/java/{{{','.join(missing)}}}.jar missing (.ci/run installs them)",
        )
    return IDIS_CHECK


@pytest.fixture(scope="module")
def sdk_sm2(sdk: Path, tmp_path_factory: pytest.TempPathFactory) -> list[str]:
    """The command running the SDK with tests/idis_shim ahead of its jar (see the README
    there): what its SM2 code needs."""
    if shutil.which("javac") is None:
        require_service("a Java compiler", "javac is missing (.ci/run installs a JDK)")
    classes = tmp_path_factory.mktemp("idis-shim")
    bcprov = "/usr/share/java/bcprov.jar"
    sources = [str(p) for p in SHIM.rglob("*.java")]
    compiled = subprocess.run(
        ["javac", "-nowarn", "-d", str(classes), "-cp", bcprov, *sources],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert compiled.returncode == 0, compiled.stderr
    path = [str(classes), str(IDIS_CLIENT / "id-pointer-sdk-client.jar")]
    path += [f"/usr/share/java/{j}.jar" for j in JARS]
    return ["java", "-cp", ":".join(path), "IdisCheck"]


@pytest.fixture(scope="module")
def sdk_encrypted(sdk_sm2: list[str], tmp_path_factory: pytest.TempPathFactory) -> list[str]:
    """The command running tests/idis_driver/IdisEncrypted.java: one request in an
    encrypted session, made by the SDK's own transport classes."""
    classpath = sdk_sm2[2]
    classes = tmp_path_factory.mktemp("idis-driver")
    compiled = subprocess.run(
        ["javac", "-nowarn", "-d", str(classes), "-cp", classpath]
        + [str(p) for p in DRIVER.glob("*.java")],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert compiled.returncode == 0, compiled.stderr
    return ["java", "-cp", f"{classes}:{classpath}", "IdisEncrypted"]


class Recorder:
    """A TCP relay to the node that keeps every byte each way, to see what crossed
    the wire."""

    def __init__(self, port: int) -> None:
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.sent = bytearray()  # client to server
        self.received = bytearray()  # server to client
        self._target = port
        self._sockets: list[socket.socket] = []
        self._threads: list[threading.Thread] = []
        self._lock = threading.Lock()
        self._stop = threading.Event()
        # Polled, not blocked on: closing a socket does not wake a thread in accept(),
        # which could then accept on whatever socket reuses the descriptor.
        self.listener.settimeout(0.1)
        self._accepting = threading.Thread(target=self._serve, daemon=True)
        self._accepting.start()

    def _serve(self) -> None:
        while not self._stop.is_set():
            try:
                client, _ = self.listener.accept()
            except TimeoutError:
                continue
            client.settimeout(None)
            upstream = socket.create_connection(("127.0.0.1", self._target))
            with self._lock:
                self._sockets += [client, upstream]
                for source, sink, log in (
                    (client, upstream, self.sent),
                    (upstream, client, self.received),
                ):
                    pump = threading.Thread(target=self._pump, args=(source, sink, log))
                    self._threads.append(pump)
                    pump.start()

    @staticmethod
    def _pump(source: socket.socket, sink: socket.socket, log: bytearray) -> None:
        with contextlib.suppress(OSError):
            while data := source.recv(65536):
                log.extend(data)
                sink.sendall(data)
        with contextlib.suppress(OSError):
            sink.shutdown(socket.SHUT_WR)

    def frames(self, stream: bytes | bytearray) -> list[bytes]:
        framer = MessageFramer()
        framer.receive_data(bytes(stream))
        found = []
        while (frame := framer.next_message()) is not None:
            found.append(frame)
        return found

    def close(self) -> None:
        """Stop relaying; every socket closed and every thread ended on return."""
        self._stop.set()
        self._accepting.join(10)
        self.listener.close()
        with self._lock:
            for sock in self._sockets:
                with contextlib.suppress(OSError):
                    sock.shutdown(socket.SHUT_RDWR)
            for pump in self._threads:
                pump.join(10)
            for sock in self._sockets:
                sock.close()


def idis(sdk: Path | list[str], *args: str) -> dict[str, object]:
    """One call of the SDK: its JSON answer (``ok``, ``values`` or ``error``)."""
    command = [str(sdk)] if isinstance(sdk, Path) else sdk
    done = subprocess.run(
        [*command, *args], capture_output=True, text=True, timeout=120, check=False
    )
    line = done.stdout.strip().splitlines()[-1] if done.stdout.strip() else ""
    assert line.startswith("{"), f"no answer from idis-check: {done.stdout} {done.stderr}"
    answer: dict[str, object] = json.loads(line)
    return answer


def values_of(answer: dict[str, object]) -> dict[int, tuple[str, str]]:
    assert answer["ok"] is True, answer
    found = answer["values"]
    assert isinstance(found, list)
    return {v["index"]: (v["type"], v["data"]) for v in found}


def at(server: RunningNode) -> tuple[str, str]:
    return "127.0.0.1", str(server.ports.handle)


# -- the real SDK -------------------------------------------------------------------


def test_the_sdk_resolves_whole_typed_and_missing_handles(sdk: Path, server: RunningNode) -> None:
    whole = values_of(idis(sdk, "resolve", *at(server), "88.100.1/PUMP-0001"))
    ours = HandleClient("127.0.0.1", server.ports.handle).resolve(
        "88.100.1/PUMP-0001", transport="tcp"
    )
    assert isinstance(ours.body, ResolutionResponse)
    assert set(whole) == {v.index for v in ours.body.values}
    typed = values_of(idis(sdk, "resolve", *at(server), "88.100.1/PUMP-0001", "URL"))
    assert [t for t, _ in typed.values()] == ["URL"]
    missing = idis(sdk, "resolve", *at(server), "88.100.1/NO-SUCH-PUMP")
    assert missing["ok"] is False
    assert "response code error" in str(missing["error"])


def publish_real_port(node_dir: Path, server: RunningNode) -> None:
    """The prefix record names the port the node was initialised with (0 in tests):
    point its HS_SITE at the port the server got."""
    node = open_node(Config(data_dir=node_dir))
    try:
        record = node.storage.get("0.NA/88.100.1")
        assert record is not None
        site = site_of([("127.0.0.1", server.ports.handle)])
        values = tuple(
            HandleValue(v.index, v.type, site.to_bytes()) if v.type == "HS_SITE" else v
            for v in record.values
        )
        node.service.prefixes.put_record(HandleRecord(record.handle, values))
    finally:
        node.close()


def test_the_sdk_resolves_globally_through_a_recursive_node(
    sdk: Path, server: RunningNode, node_dir: Path, tmp_path: Path
) -> None:
    """The SDK asks its "recursion server" for the bare prefix's HS_SITE, then the
    server that names for the handle. The recursive node finds the prefix record at
    its root, which here is the enterprise node itself."""
    publish_real_port(node_dir, server)
    config = Config(
        data_dir=tmp_path / "recursive",
        handle_port=0,
        http_port=0,
        role="recursive",
        root_servers=f"127.0.0.1:{server.ports.handle}",
    )
    from idnode.node import init_node

    init_node(
        config,
        None,
        {"role": "recursive", "root_servers": config.root_servers, "handle_port": 0},
    ).close()
    with running(config) as recursive:
        found = values_of(
            idis(sdk, "global", "88.100.1/PUMP-0002", f"127.0.0.1:{recursive.ports.handle}")
        )
    assert found[1] == ("TEMPLATE", "serial-item@1")
    assert found[4] == ("URL", "https://pumps.example.com/id/88.100.1/PUMP-0002")


def test_the_sdk_logs_in_with_an_rsa_key_and_administers_handles(
    sdk: Path, server: RunningNode, node_dir: Path
) -> None:
    key = str(node_dir / ADMIN_KEY_FILE)
    handle = "88.100.1/SDK-WRITES"

    def read() -> dict[int, tuple[str, str]]:
        return values_of(idis(sdk, "resolve", *at(server), handle))

    created = idis(
        sdk,
        "create",
        *at(server),
        handle,
        ADMIN,
        key,
        "1:URL:https://e.example/a",
        "2:EMAIL:x@e.example",
    )
    assert created == {"ok": True}
    assert read() == {1: ("URL", "https://e.example/a"), 2: ("EMAIL", "x@e.example")}
    assert idis(sdk, "add", *at(server), handle, ADMIN, key, "3:NOTE:added")["ok"] is True
    assert idis(sdk, "update", *at(server), handle, ADMIN, key, "1:URL:https://e.example/b")["ok"]
    assert idis(sdk, "remove", *at(server), handle, ADMIN, key, "2")["ok"] is True
    assert read() == {1: ("URL", "https://e.example/b"), 3: ("NOTE", "added")}
    assert idis(sdk, "delete", *at(server), handle, ADMIN, key)["ok"] is True
    assert idis(sdk, "resolve", *at(server), handle)["ok"] is False

    # --encrypt asks the SDK for its encrypted session; 2.3.1 never sends one (see
    # docs/wire-compatibility.md), so the write goes in the clear and must work so.
    assert idis(
        sdk, "create", *at(server), handle, ADMIN, key, "--encrypt", "1:URL:https://e.example/c"
    )["ok"]
    assert read() == {1: ("URL", "https://e.example/c")}

    # Every write went through the audit log as the identity that logged in.
    node = open_node(Config(data_dir=node_dir))
    try:
        log = node.service.writes.audit_log()
    finally:
        node.close()
    mine = [(e.operation, e.actor) for e in log if e.handle == handle]
    assert mine[:5] == [
        ("create", ADMIN),
        ("add-value", ADMIN),
        ("modify-value", ADMIN),
        ("remove-value", ADMIN),
        ("delete", ADMIN),
    ]


def sdk_pem(key: PrivateKey) -> str:
    """The public key as the SDK writes HS_PUBKEY values (ValueHelper's IDIS form):
    PEM text with CRLF line ends and 76-column lines."""
    if isinstance(key, SM2PrivateKey):
        der = key.public_key().der()
    else:
        der = key.public_key().public_bytes(
            serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
        )
    body = base64.b64encode(der).decode()
    lines = [body[i : i + 76] for i in range(0, len(body), 76)]
    return (
        "-----BEGIN PUBLIC KEY-----\r\n" + "\r\n".join(lines) + "\r\n-----END PUBLIC KEY-----\r\n"
    )


def new_identity(sdk: Path, server: RunningNode, node_dir: Path, name: str, key: PrivateKey) -> str:
    """An identity handle made through the SDK, its key as the SDK writes it (PEM
    text), then allowed to administer the prefix's handles; ``300:name``."""
    admin_key = str(node_dir / ADMIN_KEY_FILE)
    made = idis(sdk, "create", *at(server), name, ADMIN, admin_key, f"300:HS_PUBKEY:{sdk_pem(key)}")
    assert made == {"ok": True}, made
    node = open_node(Config(data_dir=node_dir))
    try:
        record = node.storage.get("0.NA/88.100.1")
        assert record is not None
        assert node.storage.get(name) is not None
        stored = node.storage.get(name)
        assert stored is not None
        assert stored.values[0].data == sdk_pem(key).encode()  # kept as written
        index = max(v.index for v in record.values if v.type == "HS_ADMIN") + 1
        grant = AdminValue(AdminPermission.ALL, ValueReference(name, 300)).to_bytes()
        node.service.prefixes.put_record(
            HandleRecord(record.handle, (*record.values, HandleValue(index, "HS_ADMIN", grant)))
        )
    finally:
        node.close()
    return f"300:{name}"


def test_the_sdk_logs_in_with_an_rsa_key_it_stored_as_pem_text(
    sdk: Path, server: RunningNode, node_dir: Path, tmp_path: Path
) -> None:
    key_file = tmp_path / "pem-user.pem"
    key = generate_key(key_file)
    who = new_identity(sdk, server, node_dir, "88.100.1/PEM-USER", key)
    handle = "88.100.1/BY-PEM-USER"
    assert idis(
        sdk, "create", *at(server), handle, who, str(key_file), "1:URL:https://e.example/p"
    )["ok"]
    assert values_of(idis(sdk, "resolve", *at(server), handle)) == {
        1: ("URL", "https://e.example/p")
    }


def test_the_sdk_logs_in_with_an_sm2_key_and_administers_handles(
    sdk: Path, sdk_sm2: list[str], server: RunningNode, node_dir: Path, tmp_path: Path
) -> None:
    key_file = tmp_path / "sm2-user.pem"
    key = generate_key(key_file, "sm2")
    who = new_identity(sdk, server, node_dir, "88.100.1/SM2-USER", key)
    handle, k = "88.100.1/SM2-WRITES", str(key_file)

    def read() -> dict[int, tuple[str, str]]:
        return values_of(idis(sdk, "resolve", *at(server), handle))

    created = idis(sdk_sm2, "create", *at(server), handle, who, k, "1:URL:https://e.example/s")
    assert created == {"ok": True}, created
    assert idis(sdk_sm2, "add", *at(server), handle, who, k, "2:NOTE:sm2")["ok"] is True
    assert idis(sdk_sm2, "update", *at(server), handle, who, k, "1:URL:https://e.example/t")["ok"]
    assert read() == {1: ("URL", "https://e.example/t"), 2: ("NOTE", "sm2")}
    assert idis(sdk_sm2, "remove", *at(server), handle, who, k, "2")["ok"] is True
    assert read() == {1: ("URL", "https://e.example/t")}
    assert idis(sdk_sm2, "delete", *at(server), handle, who, k)["ok"] is True
    assert idis(sdk, "resolve", *at(server), handle)["ok"] is False
    # A key that is not the identity's: the login fails, nothing is written.
    stranger = tmp_path / "stranger.pem"
    generate_key(stranger, "sm2")
    refused = idis(sdk_sm2, "create", *at(server), handle, who, str(stranger), "1:URL:x")
    assert refused["ok"] is False
    assert idis(sdk, "resolve", *at(server), handle)["ok"] is False

    node = open_node(Config(data_dir=node_dir))
    try:
        log = node.service.writes.audit_log()
    finally:
        node.close()
    assert [(e.operation, e.actor) for e in log if e.handle == handle] == [
        ("create", who),
        ("add-value", who),
        ("modify-value", who),
        ("remove-value", who),
        ("delete", who),
    ]


def test_the_sdk_homes_and_unhomes_a_prefix(sdk: Path, server: RunningNode, node_dir: Path) -> None:
    key = str(node_dir / ADMIN_KEY_FILE)
    assert idis(sdk, "home", *at(server), "0.NA/88.100.77", ADMIN, key) == {"ok": True}
    assert "88.100.77" in homed(node_dir)
    assert idis(sdk, "unhome", *at(server), "0.NA/88.100.77", ADMIN, key) == {"ok": True}
    assert "88.100.77" not in homed(node_dir)


def homed(node_dir: Path) -> list[str]:
    node = open_node(Config(data_dir=node_dir))
    try:
        return node.service.reads.homed_prefixes()
    finally:
        node.close()


# -- the extensions by hand -----------------------------------------------------------


class Connection:
    """One TCP connection to the node, one request and reply at a time."""

    def __init__(self, server: RunningNode) -> None:
        self.sock = socket.create_connection(("127.0.0.1", server.ports.handle), timeout=10)
        self.framer = MessageFramer()

    def ask(self, message: Message) -> Message:
        self.sock.sendall(encode_message(message))
        while (frame := self.framer.next_message()) is None:
            self.framer.receive_data(self.sock.recv(65536))
        return decode_message(frame)

    def close(self) -> None:
        self.sock.close()


def request(opcode: OpCode, body: Body, session: int, flags: OpFlag = OpFlag.NONE) -> Message:
    return Message(
        opcode=opcode,
        body=body,
        request_id=7,
        session_id=session,
        op_flags=flags | OpFlag.RETURN_REQUEST_DIGEST,
        version=(2, 10),
    )


@pytest.fixture(scope="module")
def admin_key(node_dir: Path) -> rsa.RSAPrivateKey:
    return rsa_key(node_dir / ADMIN_KEY_FILE)


def log_in(
    conn: Connection, key: rsa.RSAPrivateKey, session: int = 10001, who: str = "0.NA/88.100.1"
) -> tuple[Message, Message]:
    """An IDIS login: opcode 2001, its challenge, the signed answer; (challenge, reply)."""
    challenge = conn.ask(request(OpCode.LOGIN_ID_SYSTEM, LoginRequest(who, 300), session))
    assert challenge.response_code == ResponseCode.AUTHENTICATION_NEEDED
    assert isinstance(challenge.body, ChallengeResponse)
    assert challenge.session_id == session
    signed = answer_with_private_key(
        key, challenge.body.nonce, challenge.body.request_digest.digest, (2, 10)
    )
    answer = ChallengeAnswer("HS_PUBKEY", who, 300, signed)
    return challenge, conn.ask(request(OpCode.CHALLENGE_RESPONSE, answer, session))


def create(name: str, session: int) -> Message:
    return request(
        OpCode.CREATE_HANDLE,
        CreateHandleRequest(name, (HandleValue(1, "URL", b"https://e.example/"),)),
        session,
    )


def test_a_login_holds_for_its_connection_and_its_session_id_only(
    server: RunningNode, admin_key: rsa.RSAPrivateKey
) -> None:
    first, second = Connection(server), Connection(server)
    try:
        _, reply = log_in(first, admin_key)
        assert (reply.opcode, reply.response_code) == (OpCode.LOGIN_ID_SYSTEM, ResponseCode.SUCCESS)
        made = first.ask(create("88.100.1/LOGIN-1", 10001))
        assert made.response_code == ResponseCode.SUCCESS
        # Another session id on that connection, or that one on another: anonymous.
        assert first.ask(create("88.100.1/LOGIN-2", 10002)).response_code == (
            ResponseCode.AUTHENTICATION_NEEDED
        )
        assert second.ask(create("88.100.1/LOGIN-3", 10001)).response_code == (
            ResponseCode.AUTHENTICATION_NEEDED
        )
    finally:
        first.close()
        second.close()


def test_a_login_answer_counts_once_and_only_from_its_key(
    server: RunningNode, admin_key: rsa.RSAPrivateKey
) -> None:
    conn, other = Connection(server), Connection(server)
    try:
        challenge, _ = log_in(conn, admin_key)
        assert isinstance(challenge.body, ChallengeResponse)
        # The same answer again, here or on another connection: no challenge is open.
        signed = answer_with_private_key(
            admin_key, challenge.body.nonce, challenge.body.request_digest.digest, (2, 10)
        )
        replayed = request(
            OpCode.CHALLENGE_RESPONSE,
            ChallengeAnswer("HS_PUBKEY", "0.NA/88.100.1", 300, signed),
            10001,
        )
        assert conn.ask(replayed).response_code == ResponseCode.AUTHENTICATION_TIMEOUT
        assert other.ask(replayed).response_code == ResponseCode.AUTHENTICATION_TIMEOUT
        # Signed with another key: refused, and the connection stays anonymous.
        stranger = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        _, forged = log_in(other, stranger, session=20001)
        assert forged.response_code == ResponseCode.AUTHENTICATION_FAILED
        assert other.ask(create("88.100.1/FORGED", 20001)).response_code == (
            ResponseCode.AUTHENTICATION_NEEDED
        )
    finally:
        conn.close()
        other.close()


def test_logging_in_again_is_challenged_again(
    server: RunningNode, admin_key: rsa.RSAPrivateKey
) -> None:
    """A connection logged in as one identity cannot claim another by asking: the
    second login is challenged like the first, and the first login ends when the second
    begins, so a failed attempt leaves the connection anonymous, not as it was."""
    conn = Connection(server)
    try:
        log_in(conn, admin_key)
        assert conn.ask(create("88.100.1/AS-ADMIN", 10001)).response_code == ResponseCode.SUCCESS
        stranger = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        challenge, forged = log_in(conn, stranger, who="88.100.1/SOMEONE-ELSE")
        assert challenge.response_code == ResponseCode.AUTHENTICATION_NEEDED
        assert forged.response_code != ResponseCode.SUCCESS
        after = conn.ask(create("88.100.1/AFTER-FAILED-LOGIN", 10001))
        assert after.response_code == ResponseCode.AUTHENTICATION_NEEDED
        # Answered as another identity than the 2001 named: refused before any check.
        challenge = conn.ask(request(OpCode.LOGIN_ID_SYSTEM, LoginRequest(ADMIN[4:], 300), 10001))
        assert isinstance(challenge.body, ChallengeResponse)
        signed = answer_with_private_key(
            admin_key, challenge.body.nonce, challenge.body.request_digest.digest, (2, 10)
        )
        swapped = ChallengeAnswer("HS_PUBKEY", "88.100.1/SOMEONE-ELSE", 300, signed)
        reply = conn.ask(request(OpCode.CHALLENGE_RESPONSE, swapped, 10001))
        assert reply.response_code == ResponseCode.AUTHENTICATION_FAILED
    finally:
        conn.close()
    assert audit_actors("88.100.1/AS-ADMIN", server) == [("create", ADMIN)]
    assert audit_actors("88.100.1/AFTER-FAILED-LOGIN", server) == []


def test_a_login_over_udp_is_refused(server: RunningNode) -> None:
    message = request(OpCode.LOGIN_ID_SYSTEM, LoginRequest("0.NA/88.100.1", 300), 10001)
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.settimeout(5)
        sock.sendto(encode_message(message), ("127.0.0.1", server.ports.handle))
        reply = decode_message(sock.recv(65535))
    assert reply.response_code == ResponseCode.OPERATION_NOT_SUPPORTED


def test_home_and_unhome_need_a_node_administrator(
    server: RunningNode, admin_key: rsa.RSAPrivateKey, node_dir: Path
) -> None:
    conn = Connection(server)
    try:
        # Not logged in: challenged like any write.
        home = request(OpCode.HOME_NA, PrefixRequest("88.100.88"), 10001)
        assert conn.ask(home).response_code == ResponseCode.AUTHENTICATION_NEEDED
        log_in(conn, admin_key)
        assert conn.ask(home).response_code == ResponseCode.SUCCESS  # a bare prefix works too
        assert "88.100.88" in homed(node_dir)
        unhome = request(OpCode.UNHOME_NA, PrefixRequest("0.NA/88.100.88"), 10001)
        assert conn.ask(unhome).response_code == ResponseCode.SUCCESS
        assert conn.ask(unhome).response_code == ResponseCode.SERVER_NOT_RESPONSIBLE
    finally:
        conn.close()


def token(key: rsa.RSAPrivateKey, *, age: float = 0.0, handle: str = "0.NA/88.100.1") -> bytes:
    claims = {
        "user_handle": handle,
        "user_index": 300,
        "nonce": 42,
        "timestamp": int((time.time() - age) * 1000),
    }
    return jwt.encode(claims, key, algorithm="RS256").encode()


def resolve_with(server: RunningNode, carried: bytes | None) -> Message:
    """A resolution without PUBLIC_ONLY, carrying ``carried`` as its identity token."""
    body = ResolutionRequest("88.100.1/PUMP-0003", (), (), carried)
    message = anonymous_request(OpCode.RESOLUTION, body)
    message.op_flags = OpFlag.RETURN_REQUEST_DIGEST | OpFlag.RECURSION_AUTH
    conn = Connection(server)
    try:
        return conn.ask(message)
    finally:
        conn.close()


def types_of(reply: Message) -> set[str]:
    assert isinstance(reply.body, ResolutionResponse), reply
    return {v.type for v in reply.body.values}


def test_an_identity_token_names_the_caller_once_checked(
    server: RunningNode, admin_key: rsa.RSAPrivateKey
) -> None:
    public = types_of(resolve_with(server, None))
    assert "CUSTOMER" not in public
    assert types_of(resolve_with(server, b"")) == public  # empty: anonymous
    assert types_of(resolve_with(server, token(admin_key))) == public | {"BATCH", "CUSTOMER"}
    expired = resolve_with(server, token(admin_key, age=3600))
    assert expired.response_code == ResponseCode.AUTHENTICATION_TIMEOUT
    stranger = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    forged = resolve_with(server, token(stranger))
    assert forged.response_code == ResponseCode.AUTHENTICATION_FAILED
    unknown = resolve_with(server, token(admin_key, handle="88.100.1/NOBODY"))
    assert unknown.response_code == ResponseCode.INVALID_CREDENTIAL
    garbage = resolve_with(server, b"not a token")
    assert garbage.response_code == ResponseCode.AUTHENTICATION_FAILED
    # Claims that break arithmetic: refused, not an internal error; NaN never expires.
    for claims in ({"user_index": 1e400}, {"timestamp": "nan"}, {"timestamp": 1e400}):
        odd = {"user_handle": "0.NA/88.100.1", "user_index": 300, "nonce": 1}
        odd |= {"timestamp": int(time.time() * 1000)} | claims
        reply = resolve_with(server, jwt.encode(odd, admin_key, algorithm="RS256").encode())
        assert reply.response_code == ResponseCode.AUTHENTICATION_FAILED, claims


# -- CAICT's password login (opcode 2000) ---------------------------------------------

PASSWORD = "correct horse battery"


@pytest.fixture(scope="module")
def account(node_dir: Path, server: RunningNode) -> str:
    node = open_node(Config(data_dir=node_dir))
    try:
        node.service.accounts.add("ops", ValueReference("0.NA/88.100.1", 300), PASSWORD)
    finally:
        node.close()
    return "ops"


def password_login(conn: Connection, user: str, password: str, session: int = 0) -> Message:
    """A login as CAICT's ID-SDK sends it: no flags, the user name where a resolution
    has its handle, the password its one type."""
    message = request(OpCode.LOGIN, PasswordLoginRequest(user, password), session)
    message.op_flags = OpFlag.NONE
    return conn.ask(message)


def test_a_password_login_holds_for_its_connection(server: RunningNode, account: str) -> None:
    conn, other = Connection(server), Connection(server)
    try:
        reply = password_login(conn, account, PASSWORD)
        # Read as CAICT's SDK reads it: opcode 2000, success, a resolution's body.
        assert (reply.opcode, reply.response_code) == (OpCode.LOGIN, ResponseCode.SUCCESS)
        assert isinstance(reply.body, ResolutionResponse)
        assert reply.body.handle == account
        # That SDK's later requests carry no credential and session id 0 (or its own).
        assert conn.ask(create("88.100.1/BY-PASSWORD", 0)).response_code == ResponseCode.SUCCESS
        assert other.ask(create("88.100.1/NOT-BY-PASSWORD", 0)).response_code == (
            ResponseCode.AUTHENTICATION_NEEDED
        )
    finally:
        conn.close()
        other.close()
    assert audit_actors("88.100.1/BY-PASSWORD", server) == [("create", ADMIN)]


def audit_actors(handle: str, server: RunningNode) -> list[tuple[str, str]]:
    node = open_node(server.config)
    try:
        return [
            (e.operation, e.actor) for e in node.service.writes.audit_log() if e.handle == handle
        ]
    finally:
        node.close()


def test_a_wrong_password_or_unknown_user_gets_the_same_refusal(
    server: RunningNode, account: str
) -> None:
    conn = Connection(server)
    try:
        wrong = password_login(conn, account, "not the password")
        unknown = password_login(conn, "nobody", PASSWORD)
        for reply in (wrong, unknown):
            assert reply.response_code == ResponseCode.AUTHENTICATION_FAILED
            assert isinstance(reply.body, ErrorResponse)
            assert reply.body.message == "wrong user name or password"
        assert conn.ask(create("88.100.1/GUESSED", 0)).response_code == (
            ResponseCode.AUTHENTICATION_NEEDED
        )
    finally:
        conn.close()


def test_a_connection_gets_a_few_password_guesses_not_a_stream(
    server: RunningNode, account: str
) -> None:
    conn = Connection(server)
    try:
        for _ in range(5):
            assert password_login(conn, account, "a wrong guess").response_code == (
                ResponseCode.AUTHENTICATION_FAILED
            )
        # Refused without a check, even with the right password, on this connection.
        sixth = password_login(conn, account, PASSWORD)
        assert sixth.response_code == ResponseCode.AUTHENTICATION_FAILED
        assert isinstance(sixth.body, ErrorResponse)
        assert "too many failed logins" in sixth.body.message
    finally:
        conn.close()
    fresh = Connection(server)
    try:
        assert password_login(fresh, account, PASSWORD).response_code == ResponseCode.SUCCESS
    finally:
        fresh.close()


def test_a_password_login_over_udp_is_refused(server: RunningNode, account: str) -> None:
    message = request(OpCode.LOGIN, PasswordLoginRequest(account, PASSWORD), 0)
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.settimeout(5)
        sock.sendto(encode_message(message), ("127.0.0.1", server.ports.handle))
        reply = decode_message(sock.recv(65535))
    assert reply.response_code == ResponseCode.OPERATION_NOT_SUPPORTED


# -- the SDK's encrypted sessions (key exchange mode 3) --------------------------------


@pytest.mark.parametrize("cipher", ["sm4", "aes"])
def test_the_sdk_writes_and_reads_in_an_encrypted_session(
    cipher: str, sdk: Path, sdk_encrypted: list[str], node_dir: Path
) -> None:
    key = str(node_dir / ADMIN_KEY_FILE)
    handle = f"88.100.1/SEALED-{cipher.upper()}"
    config = load_config(node_dir, {"handle_port": 0, "http_port": 0, "session_cipher": cipher})
    with running(config) as node:
        relay = Recorder(node.ports.handle)
        try:
            where = ("127.0.0.1", str(relay.port), "0.NA/88.100.1", "300", key)
            made = idis(sdk_encrypted, *where, "create", handle, "1:URL:https://e.example/secret")
            assert made == {"ok": True, "values": []}, made
            found = values_of(idis(sdk_encrypted, *where, "resolve", handle))
            assert found == {1: ("URL", "https://e.example/secret")}
        finally:
            relay.close()
        # Read back in the clear by the plain SDK: the write is there.
        assert values_of(idis(sdk, "resolve", "127.0.0.1", str(node.ports.handle), handle)) == found
    # On the wire: each connection's first message (the setup) and its answer in the
    # clear, every later one each way encrypted; the handle and URL never visible.
    for stream in (relay.sent, relay.received):
        frames = relay.frames(stream)
        assert len(frames) >= 8
        assert [f[2] & 0x40 for f in frames].count(0) == 2  # one setup per connection
        assert handle.encode() not in stream
        assert b"https://e.example/secret" not in stream
    node_log = open_node(Config(data_dir=node_dir))
    try:
        log = node_log.service.writes.audit_log()
    finally:
        node_log.close()
    assert [(e.operation, e.actor) for e in log if e.handle == handle] == [("create", ADMIN)]


def test_the_sdk_sets_up_an_encrypted_session_with_an_sm2_key(
    sdk: Path, sdk_encrypted: list[str], server: RunningNode, node_dir: Path, tmp_path: Path
) -> None:
    key_file = tmp_path / "sealed-sm2.pem"
    who = new_identity(
        sdk, server, node_dir, "88.100.1/SEALED-SM2-USER", generate_key(key_file, "sm2")
    )
    index, _, identity = who.partition(":")
    where = (*at(server), identity, index, str(key_file), "--sm2")
    handle = "88.100.1/SEALED-BY-SM2"
    made = idis(sdk_encrypted, *where, "create", handle, "1:NOTE:sm2 and sm4")
    assert made == {"ok": True, "values": []}, made
    assert values_of(idis(sdk_encrypted, *where, "resolve", handle)) == {1: ("NOTE", "sm2 and sm4")}
    assert audit_actors(handle, server) == [("create", who)]
