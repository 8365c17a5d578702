"""The one exception hierarchy of idnode, and the one place it maps to wire codes.

Every error a front end can report carries the Handle response code it stands for.
The Handle servers put that code in the response header; the HTTP API turns it into a
status with :func:`http_status` and a JSON body with the same ``responseCode``; the
CLI prints the message and exits non-zero. Adding an error means adding a class here,
never a translation table in a front end.

The root, :class:`IdnodeError`, and the protocol errors the codec raises are defined
in :mod:`idnode.handle.errors` (the codec imports nothing else of idnode) and
re-exported here: import every error from this module.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from idnode.handle.codes import ResponseCode
from idnode.handle.errors import (
    IdnodeError,
    LocalProtocolError,
    MessageTooLarge,
    ProtocolError,
    RemoteProtocolError,
)

if TYPE_CHECKING:
    from idnode.handle.values import HandleValue

__all__ = [
    "AnsweredError",
    "AuthenticationError",
    "AuthenticationFailed",
    "AuthenticationNeeded",
    "AuthenticationTimeout",
    "BadRequestParameter",
    "ConfigError",
    "HandleAlreadyExists",
    "HandleNotFound",
    "IdnodeError",
    "InsufficientPermissions",
    "InvalidCredential",
    "InvalidDocument",
    "InvalidHandle",
    "InvalidQueryParameter",
    "InvalidSessionKey",
    "InvalidValue",
    "LocalProtocolError",
    "MessageTooLarge",
    "MethodNotAllowed",
    "NoSuchResource",
    "NoSuchTemplate",
    "NotResponsible",
    "OperationNotSupported",
    "ProtocolError",
    "QueryTooLarge",
    "RecursionTooDeep",
    "Referral",
    "RemoteProtocolError",
    "ResourceExists",
    "ServerBusy",
    "ServerError",
    "SessionFailed",
    "SessionMessageRejected",
    "SessionTimeout",
    "StorageError",
    "TemplateExists",
    "TemplateNotPublished",
    "TooManyFailures",
    "ValueAlreadyExists",
    "ValuesNotFound",
    "epcis_exception_of",
    "error_for",
    "http_status",
    "http_status_of",
    "idhub_code_of",
    "snms_status_of",
]


class OperationNotSupported(IdnodeError):
    response_code = ResponseCode.OPERATION_NOT_SUPPORTED


class ServerBusy(IdnodeError):
    response_code = ResponseCode.SERVER_TOO_BUSY


class TooManyFailures(ServerBusy):
    """This address failed to authenticate too often; it may try again later."""

    http_status = 429


class ServerError(IdnodeError):
    """Something failed on our side; the message is safe to show to the client."""

    response_code = ResponseCode.ERROR


class HandleNotFound(IdnodeError):
    response_code = ResponseCode.HANDLE_NOT_FOUND


class HandleAlreadyExists(IdnodeError):
    response_code = ResponseCode.HANDLE_ALREADY_EXISTS


class InvalidHandle(IdnodeError):
    response_code = ResponseCode.INVALID_HANDLE


class ValuesNotFound(IdnodeError):
    response_code = ResponseCode.VALUES_NOT_FOUND


class InvalidValue(IdnodeError):
    response_code = ResponseCode.INVALID_VALUE


class NotResponsible(IdnodeError):
    """The handle's prefix is not homed on this node."""

    response_code = ResponseCode.SERVER_NOT_RESPONSIBLE

    def __init__(self, message: str, *, prefix: str | None = None) -> None:
        super().__init__(message)
        #: The prefix that is not homed, when that is the reason (a front end may
        #: say how to home it).
        self.prefix = prefix


class Referral(IdnodeError):
    """This node does not hold the handle, but holds the delegation that says who does.

    Sent as a service referral (302) whose body carries the delegation record's
    HS_SITE / HS_SERV values; a resolver asks those sites next.
    """

    response_code = ResponseCode.SERVICE_REFERRAL

    def __init__(self, message: str, handle: str, values: Sequence[HandleValue]) -> None:
        super().__init__(message)
        self.handle = handle
        self.values = tuple(values)


class RecursionTooDeep(IdnodeError):
    """Referrals, service handles or aliases went round in a loop or too far."""

    response_code = ResponseCode.RECURSION_COUNT_TOO_HIGH
    http_status = 508


class MethodNotAllowed(OperationNotSupported):
    """An HTTP method a resource does not offer (405 rather than 501)."""

    http_status = 405


class BadRequestParameter(IdnodeError):
    """A query parameter of the HTTP API that cannot be used as given."""

    response_code = ResponseCode.PROTOCOL_ERROR


class NoSuchResource(IdnodeError):
    """An HTTP path that names nothing (no handle involved, so not HANDLE_NOT_FOUND)."""

    response_code = ResponseCode.ERROR
    http_status = 404


class InvalidDocument(InvalidValue):
    """A document to capture (EPCIS) that is not valid: refused whole."""


class InvalidQueryParameter(InvalidValue):
    """A query parameter that is unknown or has a value it cannot take (EPCIS)."""


class ResourceExists(IdnodeError):
    """A named thing (an EPCIS named query) exists already."""

    response_code = ResponseCode.HANDLE_ALREADY_EXISTS
    http_status = 409


class QueryTooLarge(IdnodeError):
    """A query would return more than its caller allowed (EPCIS maxEventCount)."""

    response_code = ResponseCode.INVALID_VALUE
    http_status = 413


class NoSuchTemplate(NoSuchResource):
    """No template of that name (or version) is defined here."""


class TemplateExists(IdnodeError):
    """A template of that name is defined already (where one is being created)."""

    response_code = ResponseCode.HANDLE_ALREADY_EXISTS


class TemplateNotPublished(IdnodeError):
    """The template is withdrawn: records are not made from it until it is published."""

    response_code = ResponseCode.INVALID_VALUE
    http_status = 409


class ValueAlreadyExists(IdnodeError):
    response_code = ResponseCode.VALUE_ALREADY_EXISTS


class AuthenticationNeeded(IdnodeError):
    """The operation needs an identity and the request carried none."""

    response_code = ResponseCode.AUTHENTICATION_NEEDED


class InsufficientPermissions(IdnodeError):
    """The identity is known, but no HS_ADMIN value grants it this operation."""

    response_code = ResponseCode.INSUFFICIENT_PERMISSIONS


class AuthenticationFailed(IdnodeError):
    """The answer to a challenge, or a password, did not prove the identity."""

    response_code = ResponseCode.AUTHENTICATION_FAILED


class InvalidCredential(IdnodeError):
    """The identity's key value is missing or unusable (wrong type, malformed)."""

    response_code = ResponseCode.INVALID_CREDENTIAL


class AuthenticationError(IdnodeError):
    """The identity could not be checked: its home server, asked to verify the
    answer (opcode 201), could not be reached or did not say."""

    response_code = ResponseCode.AUTHENTICATION_ERROR


class AuthenticationTimeout(IdnodeError):
    """An answer to a challenge that is unknown, already used, or expired."""

    response_code = ResponseCode.AUTHENTICATION_TIMEOUT


class SessionTimeout(IdnodeError):
    """A message in a Handle protocol session that is unknown or has expired; the
    client sets up a new one."""

    response_code = ResponseCode.SESSION_TIMEOUT


class SessionFailed(IdnodeError):
    """A session could not be set up (unsupported key exchange, unusable key)."""

    response_code = ResponseCode.SESSION_FAILED


class InvalidSessionKey(IdnodeError):
    """A session message whose MAC does not check with the session's key."""

    response_code = ResponseCode.INVALID_SESSION_KEY


class SessionMessageRejected(IdnodeError):
    """A session message whose counter was seen before: a replay."""

    response_code = ResponseCode.SESSION_MESSAGE_REJECTED


class StorageError(IdnodeError):
    """The database refused or failed an operation (corrupt file, wrong schema, ...)."""


class ConfigError(IdnodeError):
    """The configuration or the data directory is not usable as given."""


class AnsweredError(IdnodeError):
    """A server's answer with a response code no class here stands for (an unknown
    code, or one only servers send, such as SERVER_READ_ONLY); it carries the code."""

    def __init__(self, code: ResponseCode, message: str) -> None:
        super().__init__(message)
        self.code = code

    # An instance's code, where every other class has one of its own.
    @property
    def response_code(self) -> ResponseCode:  # type: ignore[override]
        return self.code


# The other direction: the class an answer's response code stands for, so that a
# client raises what a server of ours raised. A code that several classes carry is
# answered by the plainest of them.
_ANSWERS: dict[ResponseCode, type[IdnodeError]] = {
    cls.response_code: cls
    for cls in (
        ServerError,
        ServerBusy,
        ProtocolError,
        OperationNotSupported,
        RecursionTooDeep,
        HandleNotFound,
        HandleAlreadyExists,
        InvalidHandle,
        ValuesNotFound,
        ValueAlreadyExists,
        InvalidValue,
        NotResponsible,
        AuthenticationNeeded,
        InsufficientPermissions,
        AuthenticationFailed,
        InvalidCredential,
        AuthenticationTimeout,
        AuthenticationError,
        SessionTimeout,
        SessionFailed,
        InvalidSessionKey,
        SessionMessageRejected,
    )
}


def error_for(code: ResponseCode, message: str) -> IdnodeError:
    """The exception a server's answer with ``code`` stands for (a referral is not
    among them: it needs the values it refers to; see :class:`Referral`)."""
    cls = _ANSWERS.get(code)
    return AnsweredError(code, message) if cls is None else cls(message)


# Handle.Net's JSON API answers with these HTTP statuses; clients written for it
# branch on them, so they are part of the wire contract.
_HTTP_STATUS: dict[ResponseCode, int] = {
    ResponseCode.SUCCESS: 200,
    ResponseCode.ERROR: 500,
    ResponseCode.SERVER_TOO_BUSY: 503,
    ResponseCode.PROTOCOL_ERROR: 400,
    ResponseCode.OPERATION_NOT_SUPPORTED: 501,
    ResponseCode.HANDLE_NOT_FOUND: 404,
    ResponseCode.HANDLE_ALREADY_EXISTS: 409,
    ResponseCode.INVALID_HANDLE: 400,
    ResponseCode.VALUES_NOT_FOUND: 200,
    ResponseCode.VALUE_ALREADY_EXISTS: 409,
    ResponseCode.INVALID_VALUE: 400,
    ResponseCode.SERVER_NOT_RESPONSIBLE: 400,
    ResponseCode.SERVICE_REFERRAL: 400,
    ResponseCode.PREFIX_REFERRAL: 400,
    ResponseCode.AUTHENTICATION_NEEDED: 401,
}


def http_status_of(exc: IdnodeError) -> int:
    """The HTTP status for an error: its own if it has one, else by its response code."""
    return exc.http_status or http_status(exc.response_code)


def http_status(code: ResponseCode) -> int:
    """The HTTP status the Handle.Net JSON API uses for a response code."""
    status = _HTTP_STATUS.get(code)
    if status is not None:
        return status
    if 400 <= code < 500:
        return 403
    return 500


# The national system's HTTP APIs answer HTTP 200 with a code in the body: SNMS a
# ``status`` (1 success, -1 not logged in, -2 refused, -3 no permission, -4 internal),
# IDHub a DOIP ``code``. The most specific class listed first wins.
_SNMS_STATUS: tuple[tuple[type[IdnodeError], int], ...] = (
    (TooManyFailures, -2),
    (AuthenticationNeeded, -1),  # a wrong login is -2, as SNMS documents
    (InsufficientPermissions, -3),
    (ServerError, -4),
    (StorageError, -4),
)
_IDHUB_CODE: tuple[tuple[type[IdnodeError], int], ...] = (
    (TooManyFailures, 401),
    (AuthenticationNeeded, 102),
    (AuthenticationFailed, 401),
    (AuthenticationError, 401),
    (InvalidCredential, 401),
    (InsufficientPermissions, 403),
    (NoSuchTemplate, 604),
    (TemplateNotPublished, 600),
    (HandleNotFound, 104),
    (HandleAlreadyExists, 105),
    (TemplateExists, 105),
    (NotResponsible, 701),
    (MethodNotAllowed, 405),
    (OperationNotSupported, 405),
    (BadRequestParameter, 106),
    (InvalidHandle, 106),
    (InvalidValue, 601),
    (ServerError, 500),
    (StorageError, 500),
)


def snms_status_of(exc: IdnodeError) -> int:
    """The SNMS ``status`` for an error: -2 (refused, the message says why) unless a
    more precise one applies."""
    return next((code for kind, code in _SNMS_STATUS if isinstance(exc, kind)), -2)


def idhub_code_of(exc: IdnodeError) -> int:
    """The IDHub (DOIP) ``code`` for an error; 500 for one it has no code for."""
    return next((code for kind, code in _IDHUB_CODE if isinstance(exc, kind)), 500)


def epcis_exception_of(exc: IdnodeError) -> str:
    """The EPCIS REST binding's name for an error (its problem ``type`` is
    ``epcisException:<name>``)."""
    if isinstance(exc, InvalidQueryParameter):
        return "QueryParameterException"
    if isinstance(exc, QueryTooLarge):
        return "QueryTooLargeException"
    if isinstance(exc, InvalidValue | InvalidHandle | ResourceExists):
        return "ValidationException"
    if isinstance(exc, AuthenticationNeeded | InsufficientPermissions | AuthenticationFailed
                  | InvalidCredential | AuthenticationError):  # fmt: skip
        return "SecurityException"
    if isinstance(exc, NoSuchResource):
        return "NoSuchNameException"
    return "ImplementationException"
