"""Metadata templates: field types, access levels, versions, and records made from
them, through the service (SQLite and PostgreSQL), the HTTP API and the CLI."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
from typer.testing import CliRunner

from idnode.cli import app
from idnode.config import Config
from idnode.domain import HandleRecord
from idnode.errors import (
    HandleAlreadyExists,
    HandleNotFound,
    InsufficientPermissions,
    InvalidValue,
    NoSuchResource,
)
from idnode.handle.encoded import EncodedValues
from idnode.handle.values import HandleValue, Permission, ValueReference
from idnode.handle.valuetypes import AdminPermission, AdminValue, SiteInfo, ValueList
from idnode.service import Caller, NodeService
from idnode.storage import Storage
from idnode.templates import BUILTIN, Field, Template, TemplateViolation
from tests.conftest import add_secret_admin, make_node, running

runner = CliRunner()
OWNER = ValueReference("88.100.1/OWNER", 300)
PARTNER = ValueReference("88.200.9/BUYER", 300)
GROUP = ValueReference("88.100.1/PARTNERS", 200)


@pytest.mark.parametrize(
    ("field", "good", "stored", "bad", "problem"),
    [
        (Field("s", "string"), "CP-50", "CP-50", "", "1 to 4096 characters"),
        (Field("s", "string"), "x", "x", 42, "must be text"),
        (Field("n", "number", minimum=0, maximum=10), 2.5, "2.5", 11, "at most 10"),
        (Field("n", "number", minimum=0), 3, "3", -1, "at least 0"),
        (Field("n", "number"), 1, "1", True, "must be a number"),
        (Field("n", "number"), 1, "1", float("nan"), "finite"),
        (Field("d", "date"), "2026-11-25", "2026-11-25", "25.11.2026", "YYYY-MM-DD"),
        (Field("u", "url"), "https://a.example/x", "https://a.example/x", "ftp://a/x", "http(s)"),
        (Field("e", "enum", values=("on", "off")), "on", "on", "maybe", "one of on, off"),
        (Field("r", "reference"), "88.100.1/M-1", "88.100.1/M-1", "M-1", "prefix/suffix"),
    ],
)  # fmt: skip
def test_every_field_type_takes_what_fits_and_names_what_does_not(
    field: Field, good: Any, stored: str, bad: Any, problem: str
) -> None:
    template = Template("t", 1, fields=(field,))
    values = template.values({field.name: good})
    assert values[0].type == "TEMPLATE"
    assert values[0].data == b"t@1"
    assert values[1].data == stored.encode()
    assert values[1].type == field.name.upper()
    assert template.encoded({field.name: good}).wire == EncodedValues.of(values).wire
    for make in (template.values, template.encoded):
        with pytest.raises(TemplateViolation) as failed:
            make({field.name: bad})
        assert problem in failed.value.problems[field.name]


def test_every_problem_of_a_record_is_reported_at_once() -> None:
    with pytest.raises(TemplateViolation) as failed:
        BUILTIN["serial-item"].values({"model": "oops", "colour": "red", "status": "lost"})
    assert set(failed.value.problems) == {"serial", "model", "colour", "status"}
    assert failed.value.problems["serial"] == "is required"
    assert failed.value.problems["colour"] == "not a field of serial-item@1"


def test_access_levels_become_permissions() -> None:
    fields = {"serial": "1", "model": "88.100.1/M", "batch": "88.100.1/B", "customer": "ACME"}
    values = BUILTIN["serial-item"].values(fields, readers=GROUP, timestamp=1_764_000_000)
    # Bulk registration's way of making the same record, straight to wire bytes.
    encoded = BUILTIN["serial-item"].encoded(fields, readers=GROUP, timestamp=1_764_000_000)
    assert encoded.wire == EncodedValues.of(values).wire
    by_type = {v.type: v for v in values}
    assert by_type["SERIAL"].permissions & Permission.PUBLIC_READ
    assert by_type["BATCH"].permissions == Permission.ADMIN_READ | Permission.ADMIN_WRITE
    assert by_type["CUSTOMER"].permissions == Permission.ADMIN_WRITE
    grant = AdminValue.from_bytes(by_type["HS_ADMIN"].data)
    assert grant.permissions == AdminPermission.READ_VALUE
    assert grant.admin == GROUP


@pytest.mark.parametrize(
    ("definition", "problem"),
    [
        ({"fields": []}, "non-empty list of fields"),
        ({"fields": [{"name": "a", "type": "colour"}]}, "type must be one of"),
        ({"fields": [{"name": "A b"}]}, "name: letters, digits"),
        ({"fields": [{"name": "a"}, {"name": "a"}]}, "declared twice"),
        ({"fields": [{"name": "a"}, {"name": "A"}]}, "declared twice"),
        ({"fields": [{"name": "a", "index": 1001}]}, "not one of 1, 100, 200, 1000, 1001"),
        ({"fields": [{"name": "a", "index": 3}, {"name": "b"}]}, "index 3 is taken"),
        ({"fields": [{"name": "a", "minLength": 5, "maxLength": 2}]}, "minLength is above"),
        ({"fields": [{"name": "a", "valueType": "no spaces"}]}, "valueType"),
        ({"fields": [{"name": "e", "type": "enum"}]}, "an enum needs its values"),
        ({"fields": [{"name": "a", "access": "friends"}]}, "access must be one of"),
        ({"fields": [{"name": "n", "type": "number", "minimum": "0"}]}, "must be numbers"),
        ([], "a template is"),
    ],
)
def test_malformed_templates_are_refused(definition: Any, problem: str) -> None:
    with pytest.raises(InvalidValue, match=problem):
        Template.from_json(definition, "calibration")


@pytest.fixture
def service(storage: Storage) -> NodeService:
    service = NodeService(storage, SiteInfo(servers=()), admins=[OWNER])
    service.prefixes.home_prefix("88.100.1")
    service.prefixes.put_record(
        HandleRecord(
            GROUP.handle, (HandleValue(200, "HS_VLIST", ValueList((PARTNER,)).to_bytes()),)
        )
    )
    return service


def test_each_access_level_is_read_by_whom_it_says(service: NodeService) -> None:
    owner = Caller(OWNER)
    fields = {"serial": "7", "model": "88.100.1/M", "batch": "88.100.1/B", "customer": "ACME"}
    service.writes.create_from_template("88.100.1/P7", "serial-item", fields, owner, readers=GROUP)

    def seen(caller: Caller) -> set[str]:
        record = service.reads.resolve("88.100.1/P7", caller=caller, public_only=False)
        return {v.type for v in record.values} - {"TEMPLATE", "HS_ADMIN"}

    # Anonymous: the public fields, the template, and the reader grant (HS_ADMIN values
    # are public, as in any Handle record).
    public = {v.type for v in service.reads.resolve("88.100.1/P7").values}
    assert public == {"TEMPLATE", "SERIAL", "MODEL", "HS_ADMIN"}
    assert seen(Caller(PARTNER)) == {"SERIAL", "MODEL", "BATCH"}
    assert seen(owner) == {"SERIAL", "MODEL", "BATCH", "CUSTOMER"}
    assert seen(Caller(ValueReference("88.300/STRANGER", 300))) == {"SERIAL", "MODEL"}


def test_templates_are_versioned_and_only_administrators_define_them(
    service: NodeService,
) -> None:
    owner = Caller(OWNER)
    v1 = {
        "title": "A calibration",
        "fields": [{"name": "device", "type": "reference", "required": True}],
    }
    v2 = {"fields": [*v1["fields"], {"name": "result", "type": "enum", "values": ["pass", "fail"]}]}
    assert service.templates.define_template("calibration", v1, owner).version == 1
    assert service.templates.define_template("calibration", v2, owner).version == 2
    assert [f.name for f in service.templates.template("calibration").fields] == [
        "device",
        "result",
    ]
    assert service.templates.template("calibration", 1).title == "A calibration"
    assert [t.name for t in service.templates.templates()][-1] == "calibration"

    # A record made with version 1 says so; version 1 knows no result.
    service.writes.create_from_template(
        "88.100.1/CAL-1", "calibration@1", {"device": "88.100.1/M"}, owner
    )
    assert service.reads.resolve("88.100.1/CAL-1").values[0].data == b"calibration@1"
    with pytest.raises(TemplateViolation, match="result: not a field"):
        service.writes.create_from_template(
            "88.100.1/CAL-2", "calibration@1", {"device": "88.100.1/M", "result": "pass"}, owner
        )
    with pytest.raises(HandleNotFound):
        service.reads.resolve("88.100.1/CAL-2")  # nothing was written

    with pytest.raises(InsufficientPermissions):
        service.templates.define_template("calibration", v1, Caller(PARTNER))
    with pytest.raises(InvalidValue, match="built-in"):
        service.templates.define_template("batch", v1, owner)
    with pytest.raises(NoSuchResource, match="no template nothing"):
        service.templates.template("nothing")
    with pytest.raises(NoSuchResource, match="versions 1 to 2"):
        service.templates.template("calibration", 3)


SECRET = "templates-s3cret"


def test_templates_over_http_and_the_cli(tmp_path: Path) -> None:
    node = make_node(tmp_path)
    add_secret_admin(node, OWNER, SECRET)
    node.close()
    definition = tmp_path / "calibration.json"
    definition.write_text(
        json.dumps({"title": "Calibration", "fields": [{"name": "device", "type": "reference"}]})
    )
    defined = runner.invoke(
        app, ["template", "define", "calibration", str(definition), "-d", str(tmp_path)]
    )
    assert defined.exit_code == 0, defined.output
    assert "defined calibration version 1" in defined.output
    listed = runner.invoke(app, ["template", "list", "-d", str(tmp_path), "--json"])
    assert [json.loads(line)["name"] for line in listed.output.splitlines()][-1] == "calibration"
    shown = runner.invoke(app, ["template", "show", "nothing", "-d", str(tmp_path)])
    assert shown.exit_code == 1
    assert "no template nothing" in shown.output

    with running(Config(data_dir=tmp_path, handle_port=0, http_port=0)) as server:
        templates = httpx.get(server.http + "/api/templates").json()["templates"]
        assert {"product-model", "serial-item", "part", "batch", "machine", "calibration"} <= {
            t["name"] for t in templates
        }
        one = httpx.get(server.http + "/api/templates/serial-item").json()
        assert one["fields"][0] == {
            "name": "serial",
            "type": "string",
            "required": True,
            "access": "public",
        }
        page = httpx.get(server.http + "/templates/serial-item")
        assert page.status_code == 200
        assert "<td>customer</td>" in page.text
        assert httpx.get(server.http + "/api/templates/nothing").status_code == 404
        # Writing a record from a template needs credentials like any write.
        api = server.http + "/api/handles/88.100.1/P9"
        body: dict[str, Any] = {"template": "serial-item", "fields": {"serial": "9"}}
        assert httpx.put(api, json=body).status_code == 401
        auth = (f"300%3A{OWNER.handle}", SECRET)  # index:handle, URL-encoded
        misfit = httpx.put(api, json=body | {"fields": {"serial": 9, "hue": "red"}}, auth=auth)
        assert misfit.status_code == 400
        assert misfit.json()["fields"] == {
            "hue": "not a field of serial-item@1",
            "serial": "must be text, got 9",
            "model": "is required",
        }
        assert httpx.get(api).status_code == 404  # nothing written
        body["fields"] = {"serial": "9", "model": "88.100.1/MODEL-CP-50", "customer": "ACME"}
        made = httpx.put(api, json=body | {"readers": "200:88.100.1/PARTNERS"}, auth=auth)
        assert made.status_code == 201, made.text
        public = httpx.get(api).json()["values"]
        assert [v["type"] for v in public] == ["TEMPLATE", "SERIAL", "MODEL", "HS_ADMIN"]


def test_a_template_record_edited_value_by_value_must_still_fit(service: NodeService) -> None:
    owner = Caller(OWNER)
    fields = {"serial": "8", "model": "88.100.1/M", "status": "in stock"}
    service.writes.create_from_template("88.100.1/P8", "serial-item", fields, owner)
    before = service.reads.resolve("88.100.1/P8", caller=owner).values

    def value(index: int, type_: str, data: str) -> HandleValue:
        return HandleValue(index, type_, data.encode())

    # serial-item: serial at index 2, manufactured 5, status 7 (the template's value at 1).
    refused: list[tuple[Callable[[], None], str]] = [
        (lambda: service.writes.modify_values("88.100.1/P8", [value(7, "STATUS", "lost")], owner),
         "status: must be one of"),
        (lambda: service.writes.remove_values("88.100.1/P8", [2], owner), "serial: is required"),
        (lambda: service.writes.put_values("88.100.1/P8", [value(5, "COLOUR", "red")], owner),
         "manufactured: index 5 holds MANUFACTURED in serial-item@1, not COLOUR"),
        (lambda: service.writes.add_values("88.100.1/P8", [value(5, "MANUFACTURED", "May")], owner),
         "manufactured: must be a date"),
    ]  # fmt: skip
    for edit, problem in refused:
        with pytest.raises(TemplateViolation, match=problem):
            edit()
        assert service.reads.resolve("88.100.1/P8", caller=owner).values == before  # untouched
    service.writes.modify_values("88.100.1/P8", [value(7, "STATUS", "returned")], owner)
    service.writes.add_values(
        "88.100.1/P8", [value(100, "NOTE", "values outside the template")], owner
    )
    after = {v.index: v.data for v in service.reads.resolve("88.100.1/P8", caller=owner).values}
    assert (after[7], after[100]) == (b"returned", b"values outside the template")


def test_a_number_field_edited_is_read_as_a_number(service: NodeService) -> None:
    owner = Caller(OWNER)
    service.writes.create_from_template("88.100.1/PART-1", "part", {"name": "seal"}, owner)
    # part: name at index 2, weight_kg at 5.
    for text, problem in [("-1", "must be at least 0"), ("heavy", "must be a number")]:
        with pytest.raises(TemplateViolation, match=f"weight_kg: {problem}"):
            service.writes.add_values(
                "88.100.1/PART-1", [HandleValue(5, "WEIGHT_KG", text.encode())], owner
            )
    service.writes.add_values("88.100.1/PART-1", [HandleValue(5, "WEIGHT_KG", b"0.25")], owner)


def test_fields_with_their_own_index_type_name_and_length() -> None:
    """The national system's templates: items at 2000 and up, type names kept in
    their case, length bounds, items disabled later."""
    definition = {
        "fields": [
            {"name": "en1", "valueType": "en1", "index": 2000, "required": True,
             "minLength": 2, "maxLength": 5},
            {"name": "power", "type": "number", "index": 2001, "valueType": "productPower"},
        ]
    }  # fmt: skip
    template = Template.from_json(definition, "88.100.1/META_pump")
    values = template.values({"en1": "abc", "power": 7})
    assert [(v.index, v.type, v.data) for v in values] == [
        (1, "TEMPLATE", b"88.100.1/META_pump@1"),
        (2000, "en1", b"abc"),
        (2001, "productPower", b"7"),
    ]
    assert template.given_of(values) == {"en1": "abc", "power": 7}
    with pytest.raises(TemplateViolation) as caught:
        template.values({"en1": "a"})
    assert caught.value.problems == {"en1": "must be at least 2 characters"}
    with pytest.raises(TemplateViolation, match="at most 5"):
        template.values({"en1": "abcdef"})
    # Disabled: refused in new records, kept (and not checked) in old ones.
    disabled = {**definition["fields"][1], "enabled": False}
    later = Template.from_json({"fields": [definition["fields"][0], disabled]}, "x", 2)
    later.check_values(values)
    with pytest.raises(TemplateViolation, match="disabled"):
        later.values({"en1": "abc", "power": 1})
    assert Template.from_json(later.to_json(), "x", 2) == later


@pytest.mark.parametrize("name", ["1.0.0", "V1.0", "88.100.1/META_pump", "serial-item"])
def test_template_names_of_both_apis_are_accepted(name: str) -> None:
    assert Template.from_json({"fields": [{"name": "a"}]}, name).name == name


@pytest.mark.parametrize("name", ["", "-a", "a b", "88.100.1/pump", "88.100.1/META_", "a@1"])
def test_malformed_template_names_are_refused(name: str) -> None:
    with pytest.raises(InvalidValue, match="template name"):
        Template.from_json({"fields": [{"name": "a"}]}, name)


def test_prefix_templates_updates_and_their_identifiers(tmp_path: Path) -> None:
    node = make_node(tmp_path / "node")
    admin = ValueReference("88.100.1/ADMIN", 300)
    add_secret_admin(node, admin, "secret")
    caller, service = Caller(admin), node.service
    # An ordinary record at the identifier is never overwritten by a template.
    service.prefixes.put_record(HandleRecord("88.100.1/META_taken", (HandleValue(1, "URL", b"x"),)))
    with pytest.raises(HandleAlreadyExists, match="not a template's identifier"):
        service.templates.define_template(
            "88.100.1/META_taken", {"fields": [{"name": "a"}]}, caller
        )
    assert service.templates.versions("88.100.1/META_taken") == []
    fields = [{"name": "a", "index": 2000}, {"name": "b", "index": 2001}]
    name = "88.100.1/META_kit"
    service.templates.define_template(name, {"fields": fields}, caller)
    service.writes.create_from_template("88.100.1/K1", name, {"a": "one", "b": "two"}, caller)
    # b disabled: records of the new version cannot have it set through the template,
    # but one that holds a B value anyway (written as a value) can still be updated,
    # and keeps its B.
    disabled = [fields[0], {**fields[1], "enabled": False}]
    service.templates.define_template(name, {"fields": disabled}, caller)
    service.writes.create_from_template("88.100.1/K2", name, {"a": "one"}, caller)
    service.writes.put_values("88.100.1/K2", [HandleValue(2001, "B", b"two")], caller)
    service.writes.update_fields("88.100.1/K2", {"a": "uno"}, caller)
    record = node.storage.get("88.100.1/K2")
    assert record is not None
    assert {v.type: v.data for v in record.values} == {
        "TEMPLATE": f"{name}@2".encode(),
        "A": b"uno",
        "B": b"two",
    }
    with pytest.raises(TemplateViolation, match="disabled"):
        service.writes.update_fields("88.100.1/K2", {"b": "three"}, caller)
    # Someone without rights on the prefix can neither define nor delete its templates.
    stranger = Caller(ValueReference("88.100.1/STRANGER", 300))
    with pytest.raises(InsufficientPermissions):
        service.templates.define_template("88.100.1/META_x", {"fields": fields}, stranger)
    service.templates.delete_template(name, caller)
    assert node.storage.get(name) is None
    node.close()
