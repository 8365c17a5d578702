"""Structured value data laid out by hand from RFC 3651 §3.2 and the deployed encodings."""

from __future__ import annotations

import ipaddress

import pytest

from idnode.errors import RemoteProtocolError
from idnode.handle.values import Permission, ValueReference
from idnode.handle.valuetypes import (
    AdminPermission,
    AdminValue,
    Alias,
    DSAPublicKey,
    Interface,
    InterfaceType,
    RSAPublicKey,
    SecretKey,
    ServerInfo,
    ServiceHandle,
    SiteInfo,
    TransportProtocol,
    ValueList,
    parse_data,
    parse_public_key,
)
from tests.wirebytes import h, string


def test_hs_admin_layout() -> None:
    wire = h("0fff") + string("0.NA/88.100.1") + h("0000012c")
    admin = AdminValue(AdminPermission.ALL, ValueReference("0.NA/88.100.1", 300))
    assert admin.to_bytes() == wire
    assert parse_data("HS_ADMIN", wire) == admin


def test_admin_permission_bit_strings_match_handle_net() -> None:
    # Handle.Net shows list-handles first: add handle is the last character.
    assert AdminPermission.ADD_HANDLE.bit_string() == "000000000001"
    assert AdminPermission.LIST_HANDLES.bit_string() == "100000000000"
    assert AdminPermission.from_bit_string("011111110011") == AdminPermission(0x7F3)
    with pytest.raises(ValueError, match="twelve"):
        AdminPermission.from_bit_string("0111")


def test_value_permission_bit_strings() -> None:
    default = Permission.ADMIN_READ | Permission.ADMIN_WRITE | Permission.PUBLIC_READ
    assert default.bit_string() == "1110"
    assert Permission.from_bit_string("1100") == Permission.ADMIN_READ | Permission.ADMIN_WRITE


def test_hs_vlist_layout() -> None:
    wire = h("00000002") + string("0.NA/88") + h("0000012c") + string("88/ADMINS") + h("000000c8")
    vlist = ValueList((ValueReference("0.NA/88", 300), ValueReference("88/ADMINS", 200)))
    assert vlist.to_bytes() == wire
    assert parse_data("hs_vlist", wire) == vlist


def test_hs_site_layout_with_ipv4_server() -> None:
    wire = (
        h("0001")  # data format version
        + h("02 0a")  # protocol 2.10
        + h("0003")  # serial number
        + h("80")  # primary
        + h("00")  # hash option: by prefix
        + string("")  # hash filter
        + h("00000001")  # one attribute
        + string("desc")
        + string("pump node")
        + h("00000001")  # one server
        + h("00000001")  # server id
        + bytes(12)
        + bytes([192, 0, 2, 7])  # IPv4 in the last four bytes
        + string("KEY")  # public key block
        + h("00000002")  # two interfaces
        + h("03 01 00000a51")  # admin+query, TCP, 2641
        + h("02 00 00000a51")  # query, UDP, 2641
    )
    site = SiteInfo(
        servers=(
            ServerInfo(
                1,
                ipaddress.IPv4Address("192.0.2.7"),
                b"KEY",
                (
                    Interface(InterfaceType.ADMIN_AND_QUERY, TransportProtocol.TCP, 2641),
                    Interface(InterfaceType.QUERY, TransportProtocol.UDP, 2641),
                ),
            ),
        ),
        serial_number=3,
        attributes=(("desc", "pump node"),),
    )
    assert site.to_bytes() == wire
    assert parse_data("HS_SITE", wire) == site


def test_hs_site_with_ipv6_server_round_trips() -> None:
    site = SiteInfo(servers=(ServerInfo(2, ipaddress.IPv6Address("2001:db8::1"), b"", ()),))
    assert SiteInfo.from_bytes(site.to_bytes()) == site


def test_rsa_public_key_layout_uses_java_biginteger_bytes() -> None:
    key = RSAPublicKey(exponent=65537, modulus=0xC0FFEE)
    wire = (
        string("RSA_PUB_KEY")
        + h("0000")
        + h("00000003 010001")
        + h("00000004 00c0ffee")  # top bit set: a leading zero byte, as Java writes it
    )
    assert key.to_bytes() == wire
    assert parse_public_key(wire) == key


def test_dsa_public_key_round_trips() -> None:
    key = DSAPublicKey(q=11, p=23, g=4, y=8)
    assert parse_data("HS_PUBKEY", key.to_bytes()) == key


def test_unknown_key_type_is_a_protocol_error() -> None:
    with pytest.raises(RemoteProtocolError, match="unsupported public key"):
        parse_public_key(string("ECC_PUB_KEY") + h("0000"))


def test_alias_serv_and_seckey_are_plain_bytes() -> None:
    assert parse_data("HS_ALIAS", b"88.100.1/OTHER") == Alias("88.100.1/OTHER")
    assert parse_data("HS_SERV", b"0.NA/88") == ServiceHandle("0.NA/88")
    assert parse_data("HS_SECKEY", b"\x01\x02") == SecretKey(b"\x01\x02")
    assert Alias("x/y").to_bytes() == b"x/y"


def test_unstructured_types_stay_bytes() -> None:
    assert parse_data("URL", b"http://x") == b"http://x"


@pytest.mark.parametrize("vtype", ["HS_ADMIN", "HS_VLIST", "HS_SITE", "HS_PUBKEY"])
def test_malformed_structured_data_is_a_protocol_error(vtype: str) -> None:
    with pytest.raises(RemoteProtocolError):
        parse_data(vtype, h("00ff00ff00ff"))


def test_trailing_bytes_in_admin_are_refused() -> None:
    wire = AdminValue(AdminPermission.ALL, ValueReference("0.NA/1", 1)).to_bytes() + b"\x00"
    with pytest.raises(RemoteProtocolError, match="trailing"):
        AdminValue.from_bytes(wire)
