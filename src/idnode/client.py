"""A blocking Handle protocol client: UDP first, TCP when the answer is truncated.

It speaks to any Handle server (idnode, Handle.Net, ...). Used by ``idnode resolve``
and by the tests and benchmarks; the codec does the protocol, this file only the I/O.
"""

from __future__ import annotations

import secrets
import socket
import time
from dataclasses import dataclass
from typing import Literal

from idnode.errors import IdnodeError, RemoteProtocolError
from idnode.handle.codec import MAX_MESSAGE_LENGTH, MessageFramer, decode_message, encode_message
from idnode.handle.codes import OpCode, OpFlag
from idnode.handle.messages import Body, Message, ResolutionRequest, SiteInfoRequest

__all__ = ["HandleClient", "ServerUnreachable", "Transport"]

Transport = Literal["auto", "udp", "tcp"]


class ServerUnreachable(IdnodeError):
    """The server refused, could not be found, or did not answer in time."""


@dataclass
class HandleClient:
    host: str = "127.0.0.1"
    port: int = 2641
    timeout: float = 3.0
    #: UDP sends before giving up (each waits timeout / attempts).
    udp_attempts: int = 3

    def resolve(
        self,
        handle: str,
        indexes: tuple[int, ...] = (),
        types: tuple[str, ...] = (),
        transport: Transport = "auto",
    ) -> Message:
        return self.request(OpCode.RESOLUTION, ResolutionRequest(handle, indexes, types), transport)

    def site_info(self, transport: Transport = "auto") -> Message:
        return self.request(OpCode.GET_SITE_INFO, SiteInfoRequest(), transport)

    def request(self, opcode: OpCode, body: Body, transport: Transport = "auto") -> Message:
        msg = Message(
            opcode=opcode,
            body=body,
            request_id=secrets.randbits(31),
            op_flags=OpFlag.RETURN_REQUEST_DIGEST,
        )
        data = encode_message(msg)
        if transport in ("auto", "udp"):
            try:
                reply = self._udp(data, msg.request_id)
            except ServerUnreachable:
                if transport == "udp":
                    raise
            else:
                if not reply.truncated or transport == "udp":
                    return reply
        return self._tcp(data, msg.request_id)

    def _address(self, kind: socket.SocketKind) -> tuple[socket.AddressFamily, tuple[str, int]]:
        try:
            info = socket.getaddrinfo(self.host, self.port, type=kind)[0]
        except socket.gaierror as exc:
            raise ServerUnreachable(f"cannot resolve host {self.host}: {exc.strerror}") from exc
        host, port = info[4][0], info[4][1]
        return info[0], (str(host), int(port))

    def _udp(self, data: bytes, request_id: int) -> Message:
        family, addr = self._address(socket.SOCK_DGRAM)
        with socket.socket(family, socket.SOCK_DGRAM) as sock:
            sock.connect(addr)
            per_try = self.timeout / self.udp_attempts
            for _ in range(self.udp_attempts):
                sock.send(data)
                deadline = time.monotonic() + per_try
                while (left := deadline - time.monotonic()) > 0:
                    sock.settimeout(left)
                    try:
                        packet = sock.recv(65535)
                    except TimeoutError:
                        break
                    except OSError as exc:
                        raise ServerUnreachable(
                            f"{self.host}:{self.port}/udp: {exc.strerror}"
                        ) from exc
                    reply = _matching(packet, request_id)
                    if reply is not None:
                        return reply
        raise ServerUnreachable(f"no UDP answer from {self.host}:{self.port} in {self.timeout}s")

    def _tcp(self, data: bytes, request_id: int) -> Message:
        _family, addr = self._address(socket.SOCK_STREAM)
        try:
            with socket.create_connection(addr, timeout=self.timeout) as sock:
                sock.sendall(data)
                framer = MessageFramer()
                while True:
                    chunk = sock.recv(65536)
                    if not chunk:
                        raise RemoteProtocolError("server closed the connection without answering")
                    framer.receive_data(chunk)
                    if framer.buffered > MAX_MESSAGE_LENGTH + 20:
                        raise RemoteProtocolError("server sent an oversized answer")
                    while (frame := framer.next_message()) is not None:
                        reply = _matching(frame, request_id)
                        if reply is not None:
                            return reply
        except TimeoutError as exc:
            raise ServerUnreachable(
                f"no TCP answer from {self.host}:{self.port} in {self.timeout}s"
            ) from exc
        except OSError as exc:
            raise ServerUnreachable(f"{self.host}:{self.port}/tcp: {exc.strerror or exc}") from exc


def _matching(packet: bytes, request_id: int) -> Message | None:
    """The decoded reply if it answers our request; stray or garbled packets are ignored."""
    try:
        reply = decode_message(packet)
    except RemoteProtocolError:
        return None
    return reply if reply.request_id == request_id and reply.is_response else None
