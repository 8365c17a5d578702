"""Handle protocol requests to responses, as bytes to bytes. No sockets here.

The UDP and TCP servers hand every datagram or frame to :meth:`Dispatcher.handle`
and send back what it returns. A message that cannot be parsed gets a
PROTOCOL_ERROR reply when its envelope and header can at least be read (so the client
can match it to its request), and is dropped otherwise; a failure inside the service
gets an ERROR reply and is logged. Nothing a client sends stops the server.
"""

from __future__ import annotations

import dataclasses
import logging
import struct
import time
from collections.abc import Callable

from idnode.errors import IdnodeError, OperationNotSupported, ProtocolError
from idnode.handle.codec import (
    ENVELOPE_SIZE,
    HEADER_SIZE,
    decode_message,
    digest_request,
    encode_message,
)
from idnode.handle.codes import OpCode, OpFlag, ResponseCode
from idnode.handle.messages import (
    PROTOCOL_VERSION,
    Body,
    ErrorResponse,
    Message,
    ResolutionRequest,
    ResolutionResponse,
    SiteInfoRequest,
    SiteInfoResponse,
    Truncated,
)
from idnode.service import NodeService

__all__ = ["Dispatcher"]

log = logging.getLogger("idnode.handle")

# Flags a response carries over from its request.
_ECHOED_FLAGS = OpFlag.RETURN_REQUEST_DIGEST | OpFlag.PUBLIC_ONLY | OpFlag.CERTIFY
# How long a client may treat a response as fresh (header expiration field).
_RESPONSE_LIFETIME = 43_200
_REPLY_FIELDS = struct.Struct(">BBBBII")
_RETURN_DIGEST = int(OpFlag.RETURN_REQUEST_DIGEST)
_ECHOED_INT = int(_ECHOED_FLAGS)


class Dispatcher:
    def __init__(
        self,
        service: NodeService,
        *,
        udp_max_response: int = 512,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._service = service
        self._udp_max = udp_max_response
        self._clock = clock
        self._reply_flags: dict[int, OpFlag] = {}

    def handle(self, data: bytes, *, udp: bool) -> bytes | None:
        """The reply to one request message, or None when no reply should be sent."""
        try:
            request = decode_message(data)
        except ProtocolError as exc:
            return self._reply_to_garbage(data, exc)
        if request.is_response:
            return None  # never answer a response: that is how reflection loops start
        try:
            code, body = ResponseCode.SUCCESS, self._execute(request)
        except IdnodeError as exc:
            code, body = exc.response_code, ErrorResponse(exc.message)
        except Exception:
            log.exception("internal error serving opcode %s", int(request.opcode))
            code, body = ResponseCode.ERROR, ErrorResponse("internal server error")
        reply = self._reply(request, data, code, body)
        if udp and len(reply) > self._udp_max:
            reply = self._reply(request, data, code, Truncated())
        return reply

    def truncated(self, data: bytes) -> bytes | None:
        """A truncated answer ("ask again over TCP") to a request, without serving it.

        For rate limiting: the reply carries no data, so it costs nothing to compute
        and cannot amplify. None when the request cannot be read or is a response.
        """
        try:
            request = decode_message(data)
        except ProtocolError:
            return None
        if request.is_response:
            return None
        return self._reply(request, data, ResponseCode.SUCCESS, Truncated())

    def _execute(self, request: Message) -> Body:
        match request.body:
            case ResolutionRequest(handle, indexes, types):
                record = self._service.resolve(handle, indexes=indexes, types=types)
                return ResolutionResponse(record.handle, record.values)
            case SiteInfoRequest():
                return SiteInfoResponse(self._service.site_info())
            case _:
                raise OperationNotSupported(
                    f"opcode {int(request.opcode)} ({request.opcode.name}) is not supported"
                )

    def _reply(self, request: Message, raw: bytes, code: ResponseCode, body: Body) -> bytes:
        version = min(request.version, PROTOCOL_VERSION)
        flags = self._flags_for(request.op_flags)
        if int(flags) & _RETURN_DIGEST and isinstance(
            body, ResolutionResponse | SiteInfoResponse | ErrorResponse
        ):
            body = dataclasses.replace(body, request_digest=digest_request(raw, version))
        return encode_message(
            Message(
                opcode=request.opcode,
                body=body,
                response_code=code,
                op_flags=flags,
                request_id=request.request_id,
                session_id=request.session_id,
                version=version,
                suggested_version=PROTOCOL_VERSION,
                expiration=int(self._clock()) + _RESPONSE_LIFETIME,
            )
        )

    def _flags_for(self, request_flags: OpFlag) -> OpFlag:
        # Flag arithmetic on IntFlag members is slow; there are only a few combinations.
        echoed = int(request_flags) & _ECHOED_INT
        flags = self._reply_flags.get(echoed)
        if flags is None:
            flags = OpFlag(echoed) | OpFlag.AUTHORITATIVE
            self._reply_flags[echoed] = flags  # at most 2**3 keys: the echoed bits
        return flags

    def _reply_to_garbage(self, data: bytes, exc: ProtocolError) -> bytes | None:
        # Read just enough to address a reply; the lengths need not be trustworthy.
        if len(data) < ENVELOPE_SIZE + HEADER_SIZE:
            return None
        major, minor, _, _, session_id, request_id = _REPLY_FIELDS.unpack_from(data)
        opcode, response_code = struct.unpack_from(">II", data, ENVELOPE_SIZE)
        if response_code != 0:
            return None
        log.debug("protocol error from client: %s", exc.message)
        return encode_message(
            Message(
                opcode=OpCode(opcode),
                body=ErrorResponse(exc.message),
                response_code=exc.response_code,
                op_flags=OpFlag.AUTHORITATIVE,
                request_id=request_id,
                session_id=session_id,
                version=min((major, minor), PROTOCOL_VERSION),
                suggested_version=PROTOCOL_VERSION,
                expiration=int(self._clock()) + _RESPONSE_LIFETIME,
            )
        )
