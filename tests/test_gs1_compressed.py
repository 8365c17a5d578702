"""Compressed GS1 Digital Link URIs (issue 21): the vectors of GS1's compression
toolkit and of its ports, decompressed; then served by a resolver as the uncompressed
URI is."""

from __future__ import annotations

from urllib.parse import parse_qsl, unquote

import pytest

from idnode.gs1 import PRIMARY_KEYS, InvalidGS1
from idnode.gs1compressed import decompress, expand

# (compressed path, its query, the uncompressed path, its query): made by GS1's
# JavaScript toolkit (digital-link.js), the vectors of its tests and of Trust Codes'
# Python port, checked against both where they agree. Two decode only with the
# optimisation codes in ascending AI order (1A, 9D: the toolkit sorts them), two keep
# leading zeros the toolkit drops (30=0042, 10/0012), two are composite AIs with text
# (253, 8003) that the toolkit cannot write but its layout defines.
VECTORS = [
    ("/DBFKk4awWAgmk", "", "/01/09506000164908/21/1234", ""),
    ("/ARHKVAdpQg", "", "/01/09780345418913", ""),
    ("/HxHKVAdpQgZzjr-hCDKigI", "", "/01/09780345418913/10/231/21/345345", "15=120820"),
    (
        "/HxHKVAdpQhCTxbrOF_yEFcx_4a2GeAh1mFOZkChg6Z8pgcEMEWpMganmIQ",
        "",
        "/01/09780345418913/10/38737643/21/58943",
        "15=230911&thngId=U5mQKGDpnymBwQwRakyBqeYh",
    ),
    ("/DBHKVAdpQgqrCvBv0UMG21W", "", "/01/09780345418913/21/43786", "foo=bar"),
    ("/ARHKVAdpQkIKqwo", "foo=bar", "/01/09780345418913/21/43786", "foo=bar"),
    ("/AREjalurbiAUO-cgohCz45Z67b8A", "", "/01/09421902960055/10/2010005828/21/xyz1234", ""),
    ("/CxEjalurbhQ75yCiELPjlnrtvw", "", "/01/09421902960055/10/2010005828/21/xyz1234", ""),
    (
        "/AQnYUc1gmiERBhQ0ytiyZuAGOLc1TXgpNWCv1",
        "",
        "/01/05412345000013/10/ABC%26%2B123",
        "7003=1903061658&k1=v1",
    ),
    ("/ABeRcNWtKMPA", "", "/00/106141412345678908", ""),
    ("/QUCO_anbfA", "", "/414/0614141123452", ""),
    ("/AQEd-1O2-GIGAD6A", "", "/01/00614141123452", "3103=000500"),
    ("/AQnYUc1gmiCNV4JGYgYAF6ckaEPg", "", "/01/05412345000013/10/ABC123", "3103=000189&3923=2172"),
    ("/nYVmywr8UVEnJ1oo", "", "/414/9520123456788/254/32a%2Fb", ""),
    ("/GhFKk4XBoI1XgkZ6HqypCI--g", "", "/01/09506000134352/10/ABC123/21/SER99", "17=250101"),
    ("/gAQQh0vK37o2H", "", "/8004/9520614141234567", ""),
    ("/IUOryABhUbiRTG29Zg", "", "/8006/095060001343520102/21/ABC", ""),
    ("/LRFKk4XBoAAXpyRoQ-A", "", "/01/09506000134352", "3103=000189&3923=2172"),
    ("/CxFKk4XBoE1XgkY", "", "/01/09506000134352/10/abc123", ""),
    ("/CxFKk4XBoMy-Wf3-o", "", "/01/09506000134352/10/Xyz-_1", ""),
    ("/01/09506000134352/EEarwSMXPQ9Q", "", "/01/09506000134352/10/ABC123", "17=250101"),
    ("/ARFKk4XBoGCAFQ", "", "/01/09506000134352", "30=0042"),
    ("/ohFKk4XBoMAA9g", "", "/01/09506000134352", "3922=000123"),
    ("/JTOjUqOCRUOrw", "", "/253/4000001000005ABC", ""),
    ("/gAMHCmGwJNAH7Y", "", "/8003/03870585000552987", ""),
    ("/JAaasHt_dNNt4ADESMALumsUfMAm34", "", "/8003/09421012301014f9804dbf", "240=qwe390023"),
    ("/CxFKk4XBoAgAY", "", "/01/09506000134352/10/0012", ""),
]


def _pairs(path: str, query: str) -> dict[str, str]:
    segments = [unquote(s) for s in path.strip("/").split("/")]
    return dict(zip(segments[::2], segments[1::2], strict=True)) | dict(parse_qsl(query))


@pytest.mark.parametrize(("compressed", "query", "path", "plain_query"), VECTORS)
def test_each_vector_decompresses_to_its_elements(
    compressed: str, query: str, path: str, plain_query: str
) -> None:
    segments = compressed.strip("/").split("/")
    clear = dict(zip(segments[:-1:2], segments[1:-1:2], strict=True))
    found = clear | dict(decompress(segments[-1])) | dict(parse_qsl(query))
    assert found == _pairs(path, plain_query)


@pytest.mark.parametrize(
    ("compressed", "query", "path", "plain_query"),
    [v for v in VECTORS if v[2].split("/")[1] in PRIMARY_KEYS],
)
def test_a_compressed_path_expands_to_the_uncompressed_one(
    compressed: str, query: str, path: str, plain_query: str
) -> None:
    expanded = expand(compressed, query)
    assert expanded is not None
    assert expanded[0] == path
    assert dict(parse_qsl(expanded[1])) == dict(parse_qsl(plain_query))


@pytest.mark.parametrize(
    "path", ["/01/09506000134352/21/12345", "/01/09506000134352", "/favicon.ico", "/a/b"]
)
def test_uncompressed_paths_are_left_alone(path: str) -> None:
    assert expand(path) is None


@pytest.mark.parametrize(
    ("segment", "message"),
    [
        ("sA", "no meaning for code B0"),  # 1011 0000: neither digits, a code nor F
        ("hQAA", "no AI starts 85"),
        ("DBFKk4awWA", "ends inside a value"),  # cut short
        ("heartbeat", "no AI starts"),
        ("DBFK=k4", "base64url"),
        ("A" * 1025, "base64url"),
    ],
)
def test_what_is_not_a_compressed_link_is_named(segment: str, message: str) -> None:
    with pytest.raises(InvalidGS1, match=message):
        decompress(segment)


def test_a_compressed_link_without_a_primary_key_we_serve_is_refused() -> None:
    with pytest.raises(InvalidGS1, match="without a GTIN"):
        expand("/gAQQh0vK37o2H")  # 8004, a GIAI
