"""``neurflow query``: listing, running with typed parameters, output formats, errors.

Runs through the real ``neurflow`` click group (``neurflow.ingest.cli:main``) with
click's CliRunner, against the graph of tests/queries/conftest.py (``loaded``). The
password travels in ``NEURFLOW_PASSWORD`` (as a user would set it), never in argv.
"""

from __future__ import annotations

import csv
import io
import json
import socket
import subprocess
import sys
import textwrap

import pytest
from click.testing import CliRunner

from neurflow.ingest.cli import main
from neurflow.queries import get_query, load_queries

SECRET = "s3cret-must-not-show"


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture(scope="module")
def cli(loaded):
    """Invoke ``neurflow query ...`` against the loaded test graph."""
    from neurflow.ingest import embedded_db

    conn = loaded.conn
    env = {"NEURFLOW_PASSWORD": embedded_db.password()}
    base = ["--uri", conn.uri, "--user", conn.user, "--database", conn.database]

    def invoke(*args: str, connect: bool = True):
        return CliRunner().invoke(main, ["query", *args, *(base if connect else [])], env=env, catch_exceptions=False)

    return invoke


def test_list_needs_no_database_and_names_every_query():
    result = CliRunner().invoke(main, ["query", "--list"], env={"NEURFLOW_URI": "bolt://127.0.0.1:1"})
    assert result.exit_code == 0, result.output
    lines = result.stdout.strip().splitlines()
    assert [line.split()[0] for line in lines] == sorted(load_queries())
    for line in lines:
        name = line.split()[0]
        assert line.split(None, 1)[1] == get_query(name).description


def test_list_as_json_describes_parameters():
    result = CliRunner().invoke(main, ["query", "--list", "--format", "json"])
    assert result.exit_code == 0, result.output
    doc = {q["name"]: q for q in json.loads(result.stdout)}
    assert set(doc) == set(load_queries())
    limit = next(p for p in doc["trace_class"]["params"] if p["name"] == "limit")
    assert limit == {"name": "limit", "type": "int", "required": False, "default": 10, "example": 10, "description": limit["description"]}
    assert [c["name"] for c in doc["trace_class"]["columns"]] == list(get_query("trace_class").column_names)


def test_list_does_not_import_torch():
    code = textwrap.dedent(
        """
        import sys
        from neurflow.ingest.cli import main
        try:
            main(["query", "--list"], standalone_mode=False)
        finally:
            print("TORCH_LOADED" if "torch" in sys.modules else "TORCH_ABSENT")
        """
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert "trace_class" in proc.stdout
    assert proc.stdout.strip().splitlines()[-1] == "TORCH_ABSENT", "'neurflow query --list' imported torch"


def test_describe_prints_the_file(cli):
    result = cli("trace_class", "--describe", connect=False)
    assert result.exit_code == 0, result.output
    assert "--param class=bee" in result.stdout and "Columns:" in result.stdout
    assert get_query("trace_class").text.strip() in result.stdout


def test_table_output(cli, loaded):
    result = cli("trace_class", "--param", "class=bee", "-p", "limit=2")
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert lines[0].split() == list(get_query("trace_class").column_names)
    assert set(lines[1]) <= {"-", " "}
    assert len(lines) == 4 and all(line.startswith(loaded.class_uid(0)) for line in lines[2:])
    assert "(2 rows)" in result.stderr


def test_json_output_equals_run_query(cli, loaded):
    result = cli("trace_class", "-p", "class=fish", "-p", "limit=3", "--format", "json")
    assert result.exit_code == 0, result.output
    doc = json.loads(result.stdout)
    expected = loaded.run("trace_class", **{"class": "fish", "limit": 3})
    assert len(doc) == len(expected) == 3
    for row, record in zip(doc, expected):
        assert list(row) == list(get_query("trace_class").column_names)
        assert row["groups"] == record["groups"] and row["weight"] == record["weight"]
        assert [n["uid"] for n in row["path"]["nodes"]] == row["groups"]
        assert all(n["_labels"] == ["NeuronGroup"] for n in row["path"]["nodes"])
        assert [r["_type"] for r in row["path"]["relationships"]] == ["FLOWS_TO"] * (len(row["groups"]) - 1)


def test_csv_output(cli, loaded):
    result = cli("compare_classes", "-p", "class_a=bee", "-p", "class_b=1", "--format", "csv")
    assert result.exit_code == 0, result.output
    rows = list(csv.reader(io.StringIO(result.stdout)))
    assert rows[0] == list(get_query("compare_classes").column_names)
    expected = loaded.run("compare_classes", class_a="bee", class_b="1")
    assert len(rows) == 1 + len(expected)
    for row, record in zip(rows[1:], expected):
        assert row[2] == record["layer"] and float(row[7]) == record["jaccard"]  # full precision
        assert json.loads(row[8]) == record["shared_channels"]


def test_list_typed_parameters(cli, loaded):
    for spelled in ("classes=fish,bee", 'classes=["fish", "bee"]', "classes=['fish','0']"):
        result = cli("biased_groups", "-p", spelled, "-p", "threshold=0", "--format", "json")
        assert result.exit_code == 0, result.output
        assert {r["class_name"] for r in json.loads(result.stdout)} == {"fish", "bee"}
    result = cli("unfaithful_classes", "-p", "include_unevaluated=true", "--format", "json")
    assert [r["class_name"] for r in json.loads(result.stdout)] == ["kite", "fish"]


def test_overview_table(cli):
    result = cli("overview")
    assert result.exit_code == 0, result.output
    assert result.stdout.splitlines()[0].split() == ["section", "name", "count", "detail"]
    assert any(line.split()[:3] == ["node", "Class", "3"] for line in result.stdout.splitlines())


def test_bad_parameter_lists_the_expected_ones(cli):
    for args, message in (
        (["-p", "class=bee", "-p", "limit=lots"], "parameter 'limit': 'lots' is not an int"),
        (["-p", "limit=3"], "missing required parameter 'class'"),
        (["-p", "klass=bee"], "unknown parameter 'klass'"),
        (["-p", "class"], "--param expects key=value"),
    ):
        result = cli("trace_class", *args)
        assert result.exit_code == 2, result.output
        assert message in result.stderr
        if "key=value" not in message:
            assert "'trace_class' expects:" in result.stderr and "limit: int = 10" in result.stderr
        assert result.stdout == ""


def test_unknown_query_suggests_close_names(cli):
    result = cli("trace_clas", "-p", "class=bee")
    assert result.exit_code == 2
    assert "unknown query 'trace_clas'" in result.stderr and "Did you mean 'trace_class'" in result.stderr


def test_no_name_is_a_usage_error():
    result = CliRunner().invoke(main, ["query"])
    assert result.exit_code == 2 and "--list" in result.output


def test_database_down_is_a_clear_error_without_the_password():
    port = _free_port()  # nothing listens there
    result = CliRunner().invoke(
        main,
        ["query", "overview", "--uri", f"bolt://127.0.0.1:{port}", "--user", "neo4j"],
        env={"NEURFLOW_PASSWORD": SECRET},
    )
    assert result.exit_code == 4, result.output
    assert "cannot reach the graph database" in result.stderr and f"127.0.0.1:{port}" in result.stderr
    assert SECRET not in result.output
    again = CliRunner().invoke(main, ["query", "overview", "--uri", f"bolt://neo4j:{SECRET}@127.0.0.1:{port}"])
    assert again.exit_code == 2, again.output  # credentials in a URI are refused, redacted
    assert "no user or password in the URI" in again.stderr and SECRET not in again.output


def test_wrong_password_is_a_clear_error(loaded):
    conn = loaded.conn
    result = CliRunner().invoke(
        main, ["query", "overview", "--uri", conn.uri, "--user", conn.user, "--database", conn.database], env={"NEURFLOW_PASSWORD": SECRET}
    )
    assert result.exit_code == 4, result.output
    assert "refused the credentials" in result.stderr and SECRET not in result.output
