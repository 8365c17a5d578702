"""Every shell example in README.md and docs/*.md, run as a reader runs it (issue 21).

Each file's ``sh`` blocks run in order in one bash session, as a reader pastes them
into one terminal, in a directory of their own holding what the docs assume: the demo
node in ``.idnode-demo`` (also ``.idnode``) served by ``idnode serve``, the admin key in
``admin_key.pem``, ``.venv`` and ``idnode`` on the PATH. The documented addresses
(``localhost:8000``, port 2641, the walk-through's 2700-2705 and 8700-8705) become free
ports; a long-running ``idnode serve`` in an example is started, seen serving and
stopped. What a block needs that its page leaves to the reader (a CSV file to import,
an identity with a secret) is made first by the :data:`PLAN` entry, which says so.

A block the test cannot run says why in :data:`PLAN`, with the test that runs the same
commands; a new block with no entry fails the test, so that no example goes unchecked.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from tests.conftest import free_port, make_node, require_service

ROOT = Path(__file__).resolve().parent.parent
FILES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
SECRET = "ops-secret-2026"  # the secret of 88.100.1/OPS, made for the examples that use it
# The demo admin, as the docs write it; the identity OPS as http-api.md assumes it.
ADMIN = "--auth 300:0.NA/88.100.1 --key admin_key.pem"
MAKE_OPS = (
    f"idnode create 88.100.1/OPS -v 300:HS_SECKEY:{SECRET} {ADMIN} >/dev/null\n"
    "idnode admin grant 0.NA/88.100.1 300:88.100.1/OPS --index 120"
    f" --permissions list_handles,add_handle,add_value,modify_value,read_value {ADMIN}"
    " >/dev/null\n"
)
PUMPS_CSV = (
    "serial,model,manufactured,status\n"
    "1,88.100.1/MODEL-CP-50,2026-01-05,in stock\n"
    "2,88.100.1/MODEL-CP-100,2026-01-06,returned\n"
)


@dataclass(frozen=True)
class Run:
    """Run the block; ``before`` first (what the page leaves to the reader), its
    lines matching ``only`` if given (a block mixing commands and settings)."""

    before: str = ""
    replace: dict[str, str] = field(default_factory=dict)
    only: str | None = None
    may_fail: tuple[str, ...] = ()  #: lines whose failure the page describes
    after: str = ""


@dataclass(frozen=True)
class Skip:
    why: str


# By file and the block's first command line (its start is enough).
PLAN: dict[tuple[str, str], Run | Skip] = {
    ("README.md", "make run"): Skip(
        "`make run` is `idnode init`, `idnode demo` and `idnode serve` of the demo, which is"
        " how every sandbox here starts; `make test` is what CI runs"
    ),
    ("README.md", ".venv/bin/idnode resolve"): Run(),
    ("README.md", ".venv/bin/idnode create"): Run(),
    ("README.md", "idnode init --data-dir /var/lib/idnode"): Run(
        before='printf \'{"handle": "88.123.45/VALVE-1", "values": [{"index": 1, "type":'
        ' "URL", "data": "https://valves.example.com/1"}]}\\n\' > records.jsonl\n'
    ),
    ("docs/cli.md", "idnode init -d /var/lib/idnode"): Run(),
    ("docs/cli.md", "idnode serve -d /var/lib/idnode"): Run(
        before="openssl req -x509 -newkey rsa:2048 -nodes -keyout node.key -out node.pem"
        " -days 1 -subj /CN=localhost 2>/dev/null\ncp node.pem clients.pem\n"
    ),
    ("docs/cli.md", "idnode resolve 88.100.1/PUMP-0001 --type URL"): Run(
        replace={"10.0.0.1:2641": "127.0.0.1:2641"}
    ),
    ("docs/cli.md", "idnode import pumps-2026.csv"): Run(
        before=f"printf '{PUMPS_CSV}' > pumps-2026.csv\n"
    ),
    ("docs/cli.md", "idnode report-stats -d plant"): Run(
        replace={"-d plant": "-d .idnode-demo", "http://10.0.1.1:8000": "http://127.0.0.1:8000"}
    ),
    ("docs/cli.md", "idnode migrate"): Skip(
        "needs a PostgreSQL server of its own; tests/test_transfer.py runs `idnode migrate`"
        " to PostgreSQL and back"
    ),
    ("docs/cli.md", "idnode backup -d .idnode-demo"): Run(),
    ("docs/operations.md", "python -m build"): Skip(
        "builds from a checkout and installs system-wide; tests/test_packaging.py builds"
        " the wheel and sdist, installs the wheel in a fresh environment and runs it"
    ),
    ("docs/operations.md", "python3 -m venv /opt/idnode"): Skip(
        "needs root and systemd; tests/test_deploy_files.py verifies the unit with systemd-analyze"
    ),
    ("docs/operations.md", "docker build -t idnode ."): Skip(
        "needs a Docker daemon; tests/test_deploy_files.py builds the image where one runs"
        " and lints the Dockerfile"
    ),
    ("docs/operations.md", "/opt/idnode/bin/pip install --upgrade"): Skip(
        "needs the systemd service installed; tests/test_rolling_restart.py sends the"
        " same SIGHUP to `idnode serve --workers 2` under load"
    ),
    ("docs/operations.md", "idnode backup -d .idnode-demo --to nightly.tar.gz"): Run(),
    ("docs/operations.md", "curl -s localhost:8000/metrics | grep '^idnode_request"): Run(),
    ("docs/operations.md", "idnode restore --from nightly.tar.gz -d drill"): Run(
        # The drill's server runs beside the commands that use it, as in a second
        # terminal; stopped with the session.
        replace={
            "idnode serve -d drill --handle-port 2741 --http-port 8100": "command idnode serve"
            " -d drill --handle-port 2741 --http-port 8100 --log-level warning &\n"
            "wait_healthy 8100"
        }
    ),
    ("docs/cli.md", "idnode prefix delegate 88.100 -d top"): Run(
        before="idnode init -d top --role top-level --prefix 88 >/dev/null\n"
    ),
    ("docs/cli.md", "idnode account add mes-line-3"): Run(
        before=MAKE_OPS + "printf '%s\\n' 'line-3-password' > line3.pw\n"
    ),
    ("docs/cli.md", "idnode create 88.100.1/PUMP-9000"): Run(),
    ("docs/cli.md", "idnode add 88.100.1/PUMP-9000"): Run(),
    ("docs/cli.md", "IDNODE_SECRET=... idnode list"): Run(
        replace={"IDNODE_SECRET=...": f"IDNODE_SECRET={SECRET}"}
    ),
    ("docs/cli.md", "idnode admin grant"): Run(),
    ("docs/cli.md", "idnode identity create"): Run(),
    ("docs/cli.md", "idnode keygen ops2.secret"): Run(),
    ("docs/cli.md", "idnode search"): Run(),
    ("docs/cli.md", "idnode history"): Run(
        # Versions 2 and 3 to compare and go back to.
        before=f"idnode modify 88.100.1/PUMP-0001 -v 7:STATUS:returned {ADMIN} >/dev/null\n"
        f"idnode modify 88.100.1/PUMP-0001 -v '7:STATUS:in service' {ADMIN} >/dev/null\n"
    ),
    ("docs/gs1.md", "curl -i http://localhost:8000/01/"): Run(
        before=f"idnode create 88.100.1/01/09506000134352 -v 1:URL:https://pumps.example.com/cp-50"
        f" {ADMIN} >/dev/null\n"
    ),
    ("docs/hierarchy.md", "idnode prefix delegate 88.100 -d top"): Run(
        before="idnode init -d top --role top-level --prefix 88 >/dev/null\n"
    ),
    ("docs/hierarchy.md", "idnode prefix delegate 88.100.1 -d sec --site 10.0.3.1"): Run(
        before="idnode init -d sec --role secondary --prefix 88.100 >/dev/null\n",
        only=r"^idnode ",  # the rest are idnode.toml settings, shown beside the commands
    ),
    (
        "docs/hierarchy.md",
        "idnode prefix delegate 88.100.1 -d sec --site 10.0.3.1:2641 --admin",
    ): Run(
        before="cp .idnode-demo/admin_pub.pem ent_admin_pub.pem\nidnode init -d ent"
        " --role enterprise --prefix 88.100.1 >/dev/null 2>&1 || true\n",
        only=r"^idnode prefix",  # report-stats needs the walk-through's parent: run there
    ),
    ("docs/hierarchy.md", "source .venv/bin/activate"): Run(
        after="for port in 8700 8701 8702 8703 8704 8705; do wait_healthy $port; done\n"
    ),
    ("docs/hierarchy.md", "idnode resolve 88.100.1/PUMP-0001 --root 127.0.0.1:2700"): Run(
        may_fail=("--server 127.0.0.1:2700",)  # "the root alone: a referral", exit code 1
    ),
    ("docs/hierarchy.md", "idnode report-stats -d $H/ent"): Run(
        # "The enterprise's counts reach its database every stats_flush_seconds, 10 s":
        # until they have, there is nothing to report.
        before="for _ in $(seq 150); do idnode stats -d $H/ent --json | grep -q 88.100.1"
        " && break; sleep 0.2; done\n"
    ),
    ("docs/hierarchy.md", "kill $(cat $H/sec-a.pid)"): Run(after="kill $(cat $H/*.pid) || true\n"),
    ("docs/http-api.md", "curl 'localhost:8000/api/handles"): Run(),
    ("docs/http-api.md", "AUTH='300%3A88.100.1/OPS:'"): Run(before=MAKE_OPS + f"SECRET={SECRET}\n"),
    ("docs/http-api.md", "S=$(curl -s -X POST localhost:8000/api/sessions)"): Run(),
    ("docs/http-api.md", "openssl req -new -x509"): Skip(
        "needs the node served over TLS; tests/test_http_tls.py serves one and writes with"
        " such a client certificate"
    ),
    ("docs/http-api.md", "curl 'http://localhost:8000/api/search"): Run(),
    ("docs/http-api.md", "curl -u \"$AUTH\" -H 'Content-Type: text/csv'"): Run(
        before=f"printf '{PUMPS_CSV}' > pumps.csv\n"
    ),
    ("docs/http-api.md", 'curl -u "$AUTH" -X PUT'): Run(),
    ("docs/idis-api.md", "printf '%s\\n' 'pump-erp-2026!' > erp.pw"): Run(),
    ("docs/traceability.md", "cat > events.jsonld"): Run(),
    ("docs/traceability.md", "AUTH='300%3A88.100.1/OPS:'"): Run(
        before=MAKE_OPS + f"SECRET={SECRET}\n"
    ),
    ("docs/traceability.md", "curl 'localhost:8000/epcis/events"): Run(),
    ("docs/traceability.md", "curl 'localhost:8000/api/trace/"): Run(),
    ("docs/traceability.md", "idnode trace recall"): Run(),
    ("docs/traceability.md", "curl -u \"$AUTH\" -H 'Content-Type: application/json'"): Run(),
    ("docs/idis-api.md", "idnode keygen app.key > app_pub.json"): Run(),
}

# The documented addresses, and what each becomes in a sandbox.
_DEMO_PORTS = {"2641": "handle", "8000": "http"}
_WALK_PORTS = [str(p) for p in (*range(2700, 2706), *range(8700, 8706), 2741, 8100)]

PRELUDE = r"""
set -eo pipefail
trap 'kill $(jobs -p) 2>/dev/null || true' EXIT  # servers an example left running
mkdir -p var/lib
curl() {  # an HTTP error fails the example, as a reader would see it fail
    command curl --fail-with-body "$@"
}
wait_healthy() {  # PORT: until the node whose HTTP port it is answers /healthz
    for _ in $(seq 300); do
        command curl -sf "http://127.0.0.1:$1/healthz" >/dev/null && return 0
        sleep 0.1
    done
    echo "no node answered on port $1" >&2; return 1
}
free_port() {
    python -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0))
print(s.getsockname()[1])'
}
serve_briefly() {  # idnode serve ARGS on free ports: started, seen serving, stopped
    local log; log=$(mktemp)
    command idnode serve "$@" --handle-port "$(free_port)" --http-port "$(free_port)" >"$log" 2>&1 &
    local pid=$!
    for _ in $(seq 300); do
        if grep -q "idnode serving" "$log"; then kill "$pid"; wait "$pid" || true; return 0; fi
        kill -0 "$pid" 2>/dev/null || { cat "$log" >&2; return 1; }
        sleep 0.1
    done
    cat "$log" >&2; kill "$pid"; return 1
}
"""


@dataclass
class Block:
    file: str
    number: int
    text: str

    @property
    def first(self) -> str:
        return next(
            line for line in self.text.splitlines() if line.strip() and not line.startswith("#")
        )


def blocks() -> list[Block]:
    found = []
    for path in FILES:
        name = str(path.relative_to(ROOT))
        pattern = re.compile(r"^```sh\n(.*?)^```", re.M | re.S)
        for number, match in enumerate(pattern.finditer(path.read_text()), 1):
            found.append(Block(name, number, match[1]))
    return found


def plan_of(block: Block) -> Run | Skip | None:
    matches = [
        (key, entry)
        for key, entry in PLAN.items()
        if key[0] == block.file and block.first.startswith(key[1])
    ]
    if not matches:
        return None
    return max(matches, key=lambda found: len(found[0][1]))[1]  # the most specific


def test_every_shell_example_has_a_plan() -> None:
    missing = [f"{b.file} block {b.number}: {b.first}" for b in blocks() if plan_of(b) is None]
    assert not missing, "say in PLAN how each is checked:\n" + "\n".join(missing)
    unused = [key for key in PLAN if not any(plan_of(b) is PLAN[key] for b in blocks())]
    assert not unused, f"PLAN entries for examples that are gone: {unused}"


def _needs(tool: str) -> None:
    if shutil.which(tool) is None:
        require_service(tool, "it is not installed (.ci/run installs it; the examples use it)")


@pytest.fixture(scope="module")
def venv_bin() -> Path:
    return Path(sys.executable).parent


def _sandbox(tmp_path: Path, venv_bin: Path, ports: dict[str, str]) -> Path:
    """The directory the docs assume: the demo node (also as .idnode) on the ports
    that stand for 2641 and 8000 (its site information names them), its admin key,
    .venv; GS1 resolution under its prefix, as docs/gs1.md sets it up."""
    node = make_node(
        tmp_path / ".idnode-demo",
        gs1_prefix="88.100.1",
        handle_port=int(ports["2641"]),
        http_port=int(ports["8000"]),
    )
    node.close()
    (tmp_path / ".idnode").symlink_to(".idnode-demo")
    (tmp_path / ".venv").symlink_to(venv_bin.parent)
    shutil.copy(tmp_path / ".idnode-demo" / "admin_key.pem", tmp_path / "admin_key.pem")
    return tmp_path


def _script(file: str, ports: dict[str, str], sandbox: Path) -> tuple[str, list[str]]:
    parts = [PRELUDE, f"cd {sandbox}\n"]
    notes = []
    for block in (b for b in blocks() if b.file == file):
        entry = plan_of(block)
        assert entry is not None
        if isinstance(entry, Skip):
            notes.append(f"{block.file} block {block.number} not run: {entry.why}")
            continue
        text = block.text
        if entry.only is not None:
            text = "\n".join(line for line in text.splitlines() if re.match(entry.only, line))
        for old, new in entry.replace.items():
            text = text.replace(old, new)
        lines = []
        for line in text.splitlines():
            command, hash_, comment = line.partition(" #")
            if any(marker in command for marker in entry.may_fail):
                command += " || true"
            # A server started in the foreground: seen serving, then stopped.
            command = re.sub(r"^idnode serve ", "serve_briefly ", command)
            lines.append(command + hash_ + comment)
        parts.append(f"echo '### {block.file} block {block.number}' >&2\n")
        parts.append(_localized(entry.before, ports, sandbox))
        parts.append(_localized("\n".join(lines), ports, sandbox) + "\n")
        parts.append(_localized(entry.after, ports, sandbox))
    return "".join(parts), notes


def _localized(text: str, ports: dict[str, str], sandbox: Path) -> str:
    text = text.replace("/var/lib/", f"{sandbox}/var/lib/").replace(
        "/tmp/hierarchy", f"{sandbox}/h"
    )
    text = re.sub(r"--server 127\.0\.0\.1(?=\s|$)", "--server 127.0.0.1:2641", text)
    for old, new in ports.items():
        text = re.sub(rf"(?<=[:\s]){old}\b", new, text)
    return text


@pytest.mark.parametrize("file", sorted({b.file for b in blocks() if isinstance(plan_of(b), Run)}))
def test_the_examples_of_a_page_run_as_written(file: str, tmp_path: Path, venv_bin: Path) -> None:
    for tool in ("curl", "jq", "openssl"):
        _needs(tool)
    ports = {old: str(free_port()) for old in (*_DEMO_PORTS, *_WALK_PORTS)}
    sandbox = _sandbox(tmp_path, venv_bin, ports)
    env = {k: v for k, v in os.environ.items() if not k.startswith("IDNODE_")}
    env |= {
        "PATH": f"{venv_bin}{os.pathsep}{env.get('PATH', '')}",
        "IDNODE_ROOT_SERVERS": f"127.0.0.1:{ports['2641']}",
        "IDNODE_SERVER": f"127.0.0.1:{ports['2641']}",
        "COLUMNS": "100",
    }
    demo = subprocess.run(
        ["idnode", "demo", "-d", str(sandbox / ".idnode-demo"), "--serials", "300"],
        env=env, capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert demo.returncode == 0, demo.stderr
    server = subprocess.Popen(
        [sys.executable, "-m", "idnode", "serve", "-d", str(sandbox / ".idnode-demo"),
         "--handle-port", ports["2641"], "--http-port", ports["8000"], "--log-level", "warning"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env,
    )  # fmt: skip
    try:
        script, notes = _script(file, ports, sandbox)
        script = script.replace(f"cd {sandbox}\n", f"cd {sandbox}\nwait_healthy {ports['8000']}\n")
        done = subprocess.run(
            ["bash", "-c", script], cwd=sandbox, env=env, capture_output=True, text=True,
            timeout=600, check=False,
        )  # fmt: skip
        last = re.findall(r"^### (.*)$", done.stderr, re.M)
        assert done.returncode == 0, (
            f"{last[-1] if last else file} failed:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
        )
    finally:
        server.terminate()
        server.wait(timeout=30)
    for note in notes:
        print(note)
