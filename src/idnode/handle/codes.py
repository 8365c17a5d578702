"""Wire codes of the Handle protocol: opcodes, response codes and flag bits.

Each enum tolerates values it does not name (``_missing_`` makes a pseudo-member),
so a message from a newer peer still decodes and can be answered with "operation not
supported" instead of failing to parse.
"""

from __future__ import annotations

import enum


class _TolerantIntEnum(enum.IntEnum):
    @classmethod
    def _missing_(cls, value: object) -> _TolerantIntEnum | None:
        if not isinstance(value, int):
            return None
        member = int.__new__(cls, value)
        member._name_ = f"UNKNOWN_{value}"
        member._value_ = value
        return member


class OpCode(_TolerantIntEnum):
    """What a request asks for (header field 1). Numbers from RFC 3652 §2.2.2.1."""

    RESOLUTION = 1
    GET_SITE_INFO = 2
    CREATE_HANDLE = 100
    DELETE_HANDLE = 101
    ADD_VALUE = 102
    REMOVE_VALUE = 103
    MODIFY_VALUE = 104
    LIST_HANDLES = 105
    LIST_NAS = 106
    CHALLENGE_RESPONSE = 200
    VERIFY_RESPONSE = 201
    HOME_NA = 300
    UNHOME_NA = 301
    LIST_HOMED_NAS = 302
    SESSION_SETUP = 400
    SESSION_TERMINATE = 401
    SESSION_EXCHANGEKEY = 402
    GET_NEXT_TXN_ID = 1000
    RETRIEVE_TXN_LOG = 1001
    DUMP_HANDLES = 1002
    BACKUP_SERVER = 1003
    #: China's IDIS SDKs: log in on a TCP connection with a user name and password
    #: (CAICT's ID-SDK) or with an identity and its key (teleinfo's id-pointer-sdk).
    LOGIN = 2000
    LOGIN_ID_SYSTEM = 2001


class ResponseCode(_TolerantIntEnum):
    """Outcome of a request (header field 2); 0 in requests."""

    RESERVED = 0
    SUCCESS = 1
    ERROR = 2
    SERVER_TOO_BUSY = 3
    PROTOCOL_ERROR = 4
    OPERATION_NOT_SUPPORTED = 5
    RECURSION_COUNT_TOO_HIGH = 6
    SERVER_READ_ONLY = 7
    HANDLE_NOT_FOUND = 100
    HANDLE_ALREADY_EXISTS = 101
    INVALID_HANDLE = 102
    VALUES_NOT_FOUND = 200
    VALUE_ALREADY_EXISTS = 201
    INVALID_VALUE = 202
    OUT_OF_DATE_SITE_INFO = 300
    SERVER_NOT_RESPONSIBLE = 301
    SERVICE_REFERRAL = 302
    PREFIX_REFERRAL = 303
    INVALID_ADMIN = 400
    INSUFFICIENT_PERMISSIONS = 401
    AUTHENTICATION_NEEDED = 402
    AUTHENTICATION_FAILED = 403
    INVALID_CREDENTIAL = 404
    AUTHENTICATION_TIMEOUT = 405
    AUTHENTICATION_ERROR = 406
    # The 500s as the deployed protocol (Handle.Net) uses them.
    SESSION_TIMEOUT = 500  #: unknown or expired session: set up a new one
    SESSION_FAILED = 501
    INVALID_SESSION_KEY = 502  #: a session message whose MAC does not check
    NEED_RSA_KEY_FOR_SESSION_EXCHANGE = 503
    INVALID_SESSION_SETUP_REQUEST = 504
    SESSION_MESSAGE_REJECTED = 505  #: a session message seen before (a replay)


class OpFlag(enum.IntFlag):
    """Header op flags (RFC 3652 §2.2.2.3, plus the deployed vendor bits)."""

    NONE = 0
    AUTHORITATIVE = 0x80000000
    CERTIFY = 0x40000000
    ENCRYPT = 0x20000000
    RECURSIVE = 0x10000000
    CACHE_CERTIFY = 0x08000000
    CONTINUOUS = 0x04000000
    KEEP_ALIVE = 0x02000000
    PUBLIC_ONLY = 0x01000000
    RETURN_REQUEST_DIGEST = 0x00800000
    OVERWRITE = 0x00400000
    MINT_NEW_SUFFIX = 0x00200000
    DO_NOT_REFER = 0x00100000
    #: IDIS SDKs: the resolution request carries an identity token (a JWT) to pass on.
    RECURSION_AUTH = 0x00000004


class EnvelopeFlag(enum.IntFlag):
    """High bits of envelope byte 2; the low two bits carry a suggested major version."""

    NONE = 0
    COMPRESSED = 0x80
    ENCRYPTED = 0x40
    TRUNCATED = 0x20


class DigestAlgorithm(_TolerantIntEnum):
    """Hash algorithm byte in front of a request digest."""

    MD5_OLD_FORMAT = 0
    MD5 = 1
    SHA1 = 2
    SHA256 = 3
