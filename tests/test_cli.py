"""The idnode command, run as a user would: real processes, real files, real sockets."""

from __future__ import annotations

import json
import re
import socket
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from typer.testing import CliRunner

from bench.processes import spawned_workers, start_server
from idnode import bulk
from idnode.cli import app
from tests.conftest import RunningNode, idnode

runner = CliRunner()


def test_version() -> None:
    result = runner.invoke(app, ["--version"])
    assert result.exit_code == 0
    assert "idnode 0.1.0" in result.output


def test_init_creates_node_and_refuses_twice(tmp_path: Path) -> None:
    d = tmp_path / "node"
    result = runner.invoke(app, ["init", "-d", str(d), "--prefix", "88.200.7"])
    assert result.exit_code == 0, result.output
    assert (d / "idnode.toml").exists()
    assert (d / "admin_key.pem").stat().st_mode & 0o777 == 0o600
    assert 'admin_handle = "0.NA/88.200.7"' in (d / "idnode.toml").read_text()
    again = runner.invoke(app, ["init", "-d", str(d)])
    assert again.exit_code == 1
    assert "already initialised" in again.output


def test_commands_on_missing_node_fail_clearly(tmp_path: Path) -> None:
    result = runner.invoke(app, ["export", "-d", str(tmp_path / "none")])
    assert result.exit_code == 1
    assert "run `idnode init` first" in result.output


def test_bad_prefix_is_refused(tmp_path: Path) -> None:
    result = runner.invoke(app, ["init", "-d", str(tmp_path / "n"), "--prefix", "a/b"])
    assert result.exit_code == 1
    assert "not a valid prefix" in result.output


@pytest.mark.parametrize("parallel", [False, True], ids=["in-process", "staging-process"])
def test_demo_export_import_round_trip(
    tmp_path: Path, parallel: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Large files are staged by a second process; this one is made to count as large.
    monkeypatch.setattr(bulk, "worth_parallel", lambda size: parallel)
    a, b = tmp_path / "a", tmp_path / "b"
    assert runner.invoke(app, ["init", "-d", str(a)]).exit_code == 0
    result = runner.invoke(app, ["demo", "-d", str(a), "--serials", "50"])
    assert result.exit_code == 0, result.output
    assert "demo loaded" in result.output
    dump = tmp_path / "dump.jsonl"
    assert runner.invoke(app, ["export", "-d", str(a), "-o", str(dump)]).exit_code == 0
    lines = dump.read_text().splitlines()
    handles = [json.loads(line)["handle"] for line in lines]
    assert "88.100.1/PUMP-0050" in handles
    assert "0.NA/88.100.1" in handles

    by_prefix = runner.invoke(app, ["export", "-d", str(a), "--prefix", "88.100.1"])
    prefixed = [json.loads(line)["handle"] for line in by_prefix.output.splitlines()]
    assert prefixed == [h for h in handles if h.startswith("88.100.1/")]

    assert runner.invoke(app, ["init", "-d", str(b), "--prefix", "88.100.1"]).exit_code == 0
    result = runner.invoke(app, ["import", str(dump), "-d", str(b)])
    assert result.exit_code == 0, result.output
    # 0.NA/88.100.1 exists in b already (its own keys), so it is skipped, not overwritten.
    assert f"{len(lines) - 1} created, 0 updated, 0 unchanged, 1 skipped" in result.output
    dump_b = tmp_path / "dump_b.jsonl"
    runner.invoke(app, ["export", "-d", str(b), "-o", str(dump_b)])
    exported_b = {json.loads(x)["handle"]: x for x in dump_b.read_text().splitlines()}
    for line in lines:
        handle = json.loads(line)["handle"]
        if handle != "0.NA/88.100.1":
            assert exported_b[handle] == line  # byte-identical records


def test_demo_if_empty_does_nothing_twice(tmp_path: Path) -> None:
    runner.invoke(app, ["init", "-d", str(tmp_path)])
    runner.invoke(app, ["demo", "-d", str(tmp_path), "--serials", "5"])
    second = runner.invoke(app, ["demo", "-d", str(tmp_path), "--if-empty"])
    assert second.exit_code == 0
    assert "demo loaded" not in second.output


def test_import_refuses_a_file_with_bad_lines_unless_told_to_skip_them(tmp_path: Path) -> None:
    runner.invoke(app, ["init", "-d", str(tmp_path)])
    src = tmp_path / "in.jsonl"
    good = {"handle": "88.100.1/OK", "values": [{"index": 1, "type": "URL", "data": "http://ok"}]}
    src.write_text(
        "\n".join(
            [
                json.dumps(good),
                "{not json",
                json.dumps(
                    {
                        "handle": "88.100.1/DUP",
                        "values": [{"index": 1, "type": "A"}, {"index": 1, "type": "B"}],
                    }
                ),
                json.dumps({"handle": "no-slash", "values": []}),
                json.dumps(
                    {
                        "handle": "88.100.1/BADDATA",
                        "values": [
                            {"index": 1, "type": "A", "data": {"format": "base64", "value": "!!"}}
                        ],
                    }
                ),
            ]
        )
        + "\n"
    )
    result = runner.invoke(app, ["import", str(src), "-d", str(tmp_path)])
    assert result.exit_code == 1
    assert "nothing written: 4 of 5 rows rejected" in result.output
    export = runner.invoke(app, ["export", "-d", str(tmp_path), "--prefix", "88.100.1"])
    assert export.output == ""  # the database is as it was
    result = runner.invoke(app, ["import", str(src), "-d", str(tmp_path), "--skip-invalid"])
    assert result.exit_code == 1
    assert "1 created" in result.output
    assert "4 rejected" in result.output
    assert "line 2: bad JSON" in result.output
    assert "line 3:" in result.output
    assert "not unique" in result.output
    assert "line 4:" in result.output
    assert "line 5:" in result.output
    assert "base64" in result.output


def test_import_under_a_prefix_not_homed_is_refused_with_the_fix(tmp_path: Path) -> None:
    """Issue 21: records nobody could resolve are not imported quietly."""
    runner.invoke(app, ["init", "-d", str(tmp_path), "--prefix", "88.100.1"])
    src = tmp_path / "foreign.jsonl"
    rows = [
        {"handle": "88.100.1/MINE-1", "values": [{"index": 1, "type": "URL", "data": "a"}]},
        {"handle": "88.123.45/VALVE-1", "values": [{"index": 1, "type": "URL", "data": "b"}]},
    ]
    src.write_text("".join(json.dumps(row) + "\n" for row in rows))
    result = runner.invoke(app, ["import", str(src), "-d", str(tmp_path)])
    assert result.exit_code == 1
    assert "prefix 88.123.45 is not homed at this node: nothing imported" in result.output
    assert f"idnode prefix register 88.123.45 -d {tmp_path}" in " ".join(result.output.split())
    export = runner.invoke(app, ["export", "-d", str(tmp_path), "--prefix", "88.100.1"])
    assert "MINE-1" not in export.output
    # Homed, the same file imports.
    runner.invoke(app, ["prefix", "register", "88.123.45", "-d", str(tmp_path)])
    result = runner.invoke(app, ["import", str(src), "-d", str(tmp_path)])
    assert result.exit_code == 0, result.output
    assert "2 created" in result.output


def test_import_missing_file(tmp_path: Path) -> None:
    runner.invoke(app, ["init", "-d", str(tmp_path)])
    result = runner.invoke(app, ["import", str(tmp_path / "nope.jsonl"), "-d", str(tmp_path)])
    assert result.exit_code == 1
    assert "no such file" in result.output


def test_resolve_against_running_node(running_node: RunningNode) -> None:
    server = f"127.0.0.1:{running_node.ports.handle}"
    result = idnode("resolve", "88.100.1/PUMP-0007", "--server", server, "--json")
    assert result.returncode == 0, result.stderr
    body = json.loads(result.stdout)
    assert body["handle"] == "88.100.1/PUMP-0007"
    [url] = [v for v in body["values"] if v["type"] == "URL"]
    assert url["data"]["value"].endswith("PUMP-0007")

    table = idnode("resolve", "88.100.1/PUMP-0007", "--server", server)
    assert table.returncode == 0
    assert "serial-item" in table.stdout


def test_resolve_not_found_exit_code(running_node: RunningNode) -> None:
    server = f"127.0.0.1:{running_node.ports.handle}"
    result = idnode("resolve", "88.100.1/NOPE", "--server", server)
    assert result.returncode == 1
    assert "handle not found (100)" in result.stderr


def test_resolve_of_a_prefix_the_node_does_not_hold_says_who_and_what_to_try(
    running_node: RunningNode,
) -> None:
    """Issue 21: the handle's prefix, the server asked, and the options that help."""
    server = f"127.0.0.1:{running_node.ports.handle}"
    globally = idnode("resolve", "88.123.45/VALVE-1", "--root", server)
    assert globally.returncode == 1
    said = " ".join(globally.stderr.split())
    assert f"{server} does not hold 0.NA/88.123.45" in said
    assert f"hint: resolution started at --root {server}" in said
    assert "prefix 88.123.45" in said
    assert "--server HOST:PORT" in said
    there = idnode("resolve", "88.123.45/VALVE-1", "--server", server)
    assert there.returncode == 1
    said = " ".join(there.stderr.split())
    assert "prefix 88.123.45 is not homed at this node" in said
    assert f"hint: {server} does not hold prefix 88.123.45" in said


def test_resolve_udp_only_reports_truncation(running_node: RunningNode) -> None:
    server = f"127.0.0.1:{running_node.ports.handle}"
    result = idnode("resolve", "88.100.1/BIG", "--server", server, "--transport", "udp")
    assert result.returncode == 1
    assert "truncated" in result.stderr


def test_resolve_unreachable_server(tmp_path: Path) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    result = idnode("resolve", "88.100.1/X", "--server", f"127.0.0.1:{port}", "--timeout", "0.5")
    assert result.returncode == 1
    assert "error:" in result.stderr
    assert "Traceback" not in result.stderr


@pytest.fixture
def served_workers(demo_dir: Path) -> Iterator[tuple[int, int, int]]:
    proc, handle_port, http_port = start_server(demo_dir, workers=2)
    yield handle_port, http_port, proc.pid
    proc.terminate()
    assert proc.wait(20) == 0  # a clean shutdown on SIGTERM


def test_serve_with_two_workers_answers_on_all_transports(
    served_workers: tuple[int, int, int],
) -> None:
    handle_port, http_port, server_pid = served_workers
    assert len(spawned_workers(server_pid)) == 2
    for n in range(1, 41):
        r = httpx.get(f"http://127.0.0.1:{http_port}/api/handles/88.100.1/PUMP-{n:04d}", timeout=5)
        assert r.json()["responseCode"] == 1
    for transport in ("udp", "tcp"):
        result = idnode(
            "resolve",
            "88.100.1/PUMP-0001",
            "--server",
            f"127.0.0.1:{handle_port}",
            "--transport",
            transport,
            "--json",
        )
        assert result.returncode == 0, result.stderr


def test_serve_reports_busy_port(demo_dir: Path) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        result = idnode(
            "serve", "-d", str(demo_dir), "--handle-port", str(port), "--http-port", "0"
        )
    assert result.returncode == 1
    assert f"cannot bind TCP 127.0.0.1:{port}" in result.stderr


def test_a_multi_server_site_is_split_by_export_or_by_import(tmp_path: Path) -> None:
    a = tmp_path / "a"
    runner.invoke(app, ["init", "-d", str(a)])
    runner.invoke(app, ["demo", "-d", str(a), "--serials", "30"])
    dump = tmp_path / "all.jsonl"
    runner.invoke(app, ["export", "-d", str(a), "-o", str(dump)])
    everything = {json.loads(line)["handle"] for line in dump.read_text().splitlines()}

    parts = []
    for share in ("1/3", "2/3", "3/3"):
        result = runner.invoke(app, ["export", "-d", str(a), "--share", share, "--hash", "suffix"])
        assert result.exit_code == 0, result.output
        parts.append({json.loads(line)["handle"] for line in result.output.splitlines()})
    # The prefix handle goes to every server; every other handle to exactly one.
    assert all("0.NA/88.100.1" in part for part in parts)
    assert sum(len(part) - 1 for part in parts) == len(everything) - 1
    assert set.union(*parts) == everything

    # A server that knows its share keeps only that of a whole file.
    b = tmp_path / "b"
    init = ["init", "-d", str(b), "--prefix", "88.100.1"]
    assert runner.invoke(app, init).exit_code == 0
    with (b / "idnode.toml").open("a") as toml:
        toml.write('site_share = "2/3"\nsite_hash = "suffix"\n')
    result = runner.invoke(app, ["import", str(dump), "-d", str(b)])
    assert result.exit_code == 0, result.output
    elsewhere = len(everything) - len(parts[1])
    assert f"{len(parts[1]) - 1} created, 0 updated, 0 unchanged, 1 skipped" in result.output
    assert f"{elsewhere} left to the site's other servers" in result.output

    bad = runner.invoke(app, ["export", "-d", str(a), "--share", "4/3"])
    assert bad.exit_code == 2
    assert "1 <= N <= M" in bad.output


def test_resolve_as_an_identity_shows_the_values_it_may_read(
    running_node: RunningNode, demo_dir: Path
) -> None:
    server = f"127.0.0.1:{running_node.ports.handle}"
    anonymous = idnode("resolve", "88.100.1/PUMP-0007", "--server", server, "--json")
    admin = idnode(
        "resolve", "88.100.1/PUMP-0007", "--server", server, "--json",
        "--auth", "300:0.NA/88.100.1", "--key", str(demo_dir / "admin_key.pem"),
    )  # fmt: skip
    assert admin.returncode == 0, admin.stderr
    public = {v["index"] for v in json.loads(anonymous.stdout)["values"]}
    everything = {v["index"] for v in json.loads(admin.stdout)["values"]}
    assert public < everything
    assert everything - public == {6, 8}  # serial-item's batch (partner), customer (owner)

    wrong_key = idnode(
        "resolve", "88.100.1/PUMP-0007", "--server", server,
        "--auth", "300:0.NA/88.100.1", "--secret-file", str(demo_dir / "idnode.toml"),
    )  # fmt: skip
    assert wrong_key.returncode == 1
    no_server = runner.invoke(app, ["resolve", "88.100.1/PUMP-0007", "--auth", "300:0.NA/88.100.1"])
    assert no_server.exit_code == 2
    assert "--auth needs --server" in no_server.output


# -- messages a person can act on (issue 21) --------------------------------------------


def test_import_messages_name_the_line_and_the_fault(tmp_path: Path) -> None:
    runner.invoke(app, ["init", "-d", str(tmp_path), "--prefix", "88.100.1"])
    word = tmp_path / "word.jsonl"
    word.write_text('{"handle": "88.100.1/A", "values": [{"index": "one", "type": "URL"}]}\n')
    result = runner.invoke(app, ["import", str(word), "-d", str(tmp_path)])
    assert result.exit_code == 1
    assert 'line 1: index must be a whole number, not "one"' in result.output
    word.write_text('{"handle": "88.100.1/A", "values": [{"index": "+-5", "type": "URL"}]}\n')
    result = runner.invoke(app, ["import", str(word), "-d", str(tmp_path)])
    assert 'index must be a whole number, not "+-5"' in result.output
    assert "invalid literal" not in result.output
    latin1 = tmp_path / "latin1.jsonl"
    latin1.write_bytes(
        b'{"handle": "88.100.1/A", "values": [{"index": 1, "type": "URL", "data": "ok"}]}\n'
        b'{"handle": "88.100.1/B", "values": [{"index": 1, "type": "URL", "data": "M\xfcller"}]}\n'
    )
    result = runner.invoke(app, ["import", str(latin1), "-d", str(tmp_path)])
    assert result.exit_code == 1
    assert "line 2: not UTF-8 text: byte 0xfc at column 75" in result.output
    rows = tmp_path / "rows.csv"
    rows.write_text("serial,model\n1,88.100.1/M\n2,88.100.1/M\n3,88.100.1/M\n")
    options = ["--prefix", "88.100.1", "--mint", "P-{serial}", "-d", str(tmp_path)]
    result = runner.invoke(app, ["import", str(rows), "--template", "nosuch", *options])
    assert result.exit_code == 2
    assert result.output.count("no template nosuch") == 1


def test_serving_a_missing_node_says_so(tmp_path: Path) -> None:
    result = idnode("serve", "-d", str(tmp_path / "nowhere"))
    assert result.returncode == 1
    assert "is not an idnode data directory; run `idnode init` first" in result.stderr
    assert "port" not in result.stderr


def test_a_timeout_must_be_above_zero_and_a_refusal_is_no_traceback() -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as closed:
        closed.bind(("127.0.0.1", 0))
        port = closed.getsockname()[1]
    zero = runner.invoke(app, ["resolve", "88.100.1/A", "--server", f"127.0.0.1:{port}",
                               "--timeout", "0"])  # fmt: skip
    assert zero.exit_code == 2
    assert "must be above 0" in zero.output
    refused = idnode("resolve", "88.100.1/A", "--server", f"127.0.0.1:{port}",
                     "--timeout", "0.001", "--transport", "udp")  # fmt: skip
    assert refused.returncode == 1
    assert "Traceback" not in refused.stderr
    assert f"127.0.0.1:{port}" in refused.stderr


@pytest.mark.parametrize(
    "command", [["--help"], ["prefix", "delegate", "--help"], ["import", "--help"]]
)
def test_help_screens_show_whole_texts_at_80_columns(command: list[str]) -> None:
    result = runner.invoke(app, command, terminal_width=80, env={"COLUMNS": "80"})
    assert result.exit_code == 0
    assert "<bool>" not in result.output
    # Nothing cut off where the line ends ("...server key and an..." was).
    assert not any(re.search(r"\w\.\.\.$", line) for line in result.output.splitlines())
    assert "…" not in result.output
    assert all(len(line) <= 80 for line in result.output.splitlines())
    if "delegate" in command:
        assert "address:port[,address:port...]" in result.output
        # A docstring's paragraph is one paragraph, not broken where the source was.
        assert "how a prefix moves to new servers" in " ".join(result.output.split())


def test_printed_values_are_text_not_markup(tmp_path: Path) -> None:
    """A value holding "[/]" (rich's closing tag) printed a traceback."""
    runner.invoke(app, ["init", "-d", str(tmp_path), "--prefix", "88.100.1"])
    rows = tmp_path / "rows.jsonl"
    value = {"index": 1, "type": "NOTE", "data": "[bold]x[/] and [/]"}
    rows.write_text(json.dumps({"handle": "88.100.1/BRACKETS", "values": [value]}) + "\n")
    assert runner.invoke(app, ["import", str(rows), "-d", str(tmp_path)]).exit_code == 0
    shown = runner.invoke(app, ["history", "88.100.1/BRACKETS", "-d", str(tmp_path),
                                "--version", "1"])  # fmt: skip
    assert shown.exit_code == 0, shown.output
    assert "[bold]x[/] and [/]" in shown.output
