"""Hypothesis strategies for Handle protocol values and messages."""

from __future__ import annotations

import ipaddress

from hypothesis import strategies as st

from idnode.handle.codes import DigestAlgorithm, OpCode, OpFlag, ResponseCode
from idnode.handle.messages import (
    AddValueRequest,
    ChallengeAnswer,
    ChallengeResponse,
    CreateHandleRequest,
    CreateHandleResponse,
    DeleteHandleRequest,
    ErrorResponse,
    GenericResponse,
    ListHandlesRequest,
    ListHandlesResponse,
    Message,
    ModifyValueRequest,
    RemoveValueRequest,
    RequestDigest,
    ResolutionRequest,
    ResolutionResponse,
    SiteInfoRequest,
    SiteInfoResponse,
    VerifyChallengeRequest,
)
from idnode.handle.values import HandleValue, Permission, TTLType, ValueReference
from idnode.handle.valuetypes import (
    AdminPermission,
    AdminValue,
    Interface,
    InterfaceType,
    ServerInfo,
    SiteInfo,
    TransportProtocol,
    ValueList,
)

u32 = st.integers(0, 2**32 - 1)
u16 = st.integers(0, 2**16 - 1)
u8 = st.integers(0, 255)
text = st.text(max_size=40)
handles = st.builds(lambda p, s: f"{p}/{s}", st.from_regex(r"[0-9.]{1,10}", fullmatch=True), text)
references = st.builds(ValueReference, handles, u32)

values = st.builds(
    HandleValue,
    index=st.integers(1, 2**32 - 1),
    type=text,
    data=st.binary(max_size=200),
    ttl=st.integers(-(2**31), 2**31 - 1),
    ttl_type=st.sampled_from(TTLType),
    permissions=st.builds(Permission, st.integers(0, 15)),
    timestamp=u32,
    references=st.lists(references, max_size=3).map(tuple),
)

admin_values = st.builds(AdminValue, st.builds(AdminPermission, st.integers(0, 0x0FFF)), references)
value_lists = st.builds(ValueList, st.lists(references, max_size=5).map(tuple))
addresses = st.one_of(
    st.builds(ipaddress.IPv4Address, u32),
    st.builds(ipaddress.IPv6Address, st.integers(2**96, 2**128 - 1)),
)
servers = st.builds(
    ServerInfo,
    server_id=u32,
    address=addresses,
    public_key=st.binary(max_size=64),
    interfaces=st.lists(
        st.builds(
            Interface,
            st.sampled_from(InterfaceType),
            st.sampled_from(TransportProtocol),
            u32,
        ),
        max_size=3,
    ).map(tuple),
)
sites = st.builds(
    SiteInfo,
    servers=st.lists(servers, max_size=3).map(tuple),
    serial_number=u16,
    primary_mask=u8,
    hash_option=u8,
    hash_filter=st.binary(max_size=10),
    attributes=st.lists(st.tuples(text, text), max_size=3).map(tuple),
    data_format_version=u16,
    protocol_version=st.tuples(u8, u8),
)

_common = {
    "request_id": u32,
    "session_id": u32,
    "site_info_serial": u16,
    "recursion_count": u8,
    "expiration": u32,
    "credential": st.binary(max_size=16),
    "version": st.tuples(st.just(2), st.integers(1, 11)),
    "suggested_version": st.tuples(st.integers(1, 3), u8),
}
_no_digest = st.sampled_from([OpFlag.NONE, OpFlag.AUTHORITATIVE, OpFlag.RECURSIVE])

requests = st.one_of(
    st.builds(
        Message,
        opcode=st.just(OpCode.RESOLUTION),
        body=st.builds(
            ResolutionRequest,
            handles,
            st.lists(u32, max_size=5).map(tuple),
            st.lists(text, max_size=5).map(tuple),
        ),
        op_flags=st.builds(OpFlag, u32),
        **_common,
    ),
    st.builds(
        Message, opcode=st.just(OpCode.GET_SITE_INFO), body=st.just(SiteInfoRequest()), **_common
    ),
    *(
        st.builds(
            Message,
            opcode=st.just(opcode),
            body=st.builds(body, handles, st.lists(values, max_size=3).map(tuple)),
            op_flags=st.builds(OpFlag, u32),
            **_common,
        )
        for opcode, body in (
            (OpCode.CREATE_HANDLE, CreateHandleRequest),
            (OpCode.ADD_VALUE, AddValueRequest),
            (OpCode.MODIFY_VALUE, ModifyValueRequest),
        )
    ),
    st.builds(
        Message,
        opcode=st.just(OpCode.DELETE_HANDLE),
        body=st.builds(DeleteHandleRequest, handles),
        **_common,
    ),
    st.builds(
        Message,
        opcode=st.sampled_from([OpCode.LIST_HANDLES, OpCode.LIST_HOMED_NAS]),
        body=st.builds(ListHandlesRequest, handles),
        **_common,
    ),
    st.builds(
        Message,
        opcode=st.just(OpCode.REMOVE_VALUE),
        body=st.builds(RemoveValueRequest, handles, st.lists(u32, max_size=4).map(tuple)),
        **_common,
    ),
    st.builds(
        Message,
        opcode=st.just(OpCode.CHALLENGE_RESPONSE),
        body=st.builds(ChallengeAnswer, text, handles, u32, st.binary(max_size=64)),
        **_common,
    ),
    st.builds(
        Message,
        opcode=st.just(OpCode.VERIFY_RESPONSE),
        body=st.builds(
            VerifyChallengeRequest,
            handles,
            u32,
            st.binary(max_size=32),
            # Deployed servers send the digest as a block: its length's first byte is 0.
            st.binary(max_size=64),
            st.binary(max_size=64),
        ),
        **_common,
    ),
)
_sha256 = st.builds(
    RequestDigest, st.just(DigestAlgorithm.SHA256), st.binary(min_size=32, max_size=32)
)
responses = st.one_of(
    st.builds(
        Message,
        opcode=st.just(OpCode.RESOLUTION),
        body=st.builds(ResolutionResponse, handles, st.lists(values, max_size=4).map(tuple)),
        response_code=st.just(ResponseCode.SUCCESS),
        op_flags=_no_digest,
        **_common,
    ),
    st.builds(
        Message,
        opcode=st.just(OpCode.GET_SITE_INFO),
        body=st.builds(SiteInfoResponse, sites),
        response_code=st.just(ResponseCode.SUCCESS),
        op_flags=_no_digest,
        **_common,
    ),
    st.builds(
        Message,
        opcode=st.just(OpCode.RESOLUTION),
        body=st.builds(ErrorResponse, text),
        response_code=st.sampled_from(
            [ResponseCode.HANDLE_NOT_FOUND, ResponseCode.ERROR, ResponseCode.SERVER_NOT_RESPONSIBLE]
        ),
        op_flags=_no_digest,
        **_common,
    ),
    st.builds(
        Message,
        opcode=st.sampled_from([OpCode.LIST_HANDLES, OpCode.LIST_HOMED_NAS]),
        body=st.builds(ListHandlesResponse, st.lists(handles, max_size=5).map(tuple)),
        response_code=st.just(ResponseCode.SUCCESS),
        op_flags=_no_digest,
        **_common,
    ),
    st.builds(
        Message,
        opcode=st.just(OpCode.CREATE_HANDLE),
        body=st.builds(CreateHandleResponse, st.one_of(st.none(), handles)),
        response_code=st.just(ResponseCode.SUCCESS),
        op_flags=_no_digest,
        **_common,
    ),
    st.builds(
        Message,
        opcode=st.sampled_from([OpCode.DELETE_HANDLE, OpCode.ADD_VALUE, OpCode.MODIFY_VALUE]),
        body=st.builds(GenericResponse, _sha256),
        response_code=st.just(ResponseCode.SUCCESS),
        op_flags=st.just(OpFlag.RETURN_REQUEST_DIGEST),
        **(_common | {"version": st.tuples(st.just(2), st.integers(7, 11))}),
    ),
    st.builds(
        Message,
        opcode=st.just(OpCode.ADD_VALUE),
        body=st.builds(ChallengeResponse, st.binary(min_size=1, max_size=32), _sha256),
        response_code=st.just(ResponseCode.AUTHENTICATION_NEEDED),
        op_flags=st.just(OpFlag.RETURN_REQUEST_DIGEST),
        **(_common | {"version": st.tuples(st.just(2), st.integers(7, 11))}),
    ),
)
messages = st.one_of(requests, responses)
