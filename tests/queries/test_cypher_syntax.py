"""Every queries/*.cypher file must be valid Neo4j 5 Cypher.

Checked offline with Neo4j's own parser and semantic analysis
(npm package @neo4j-cypher/language-support, pinned in package.json and run by
tests/queries/cypher_lint.mjs). It knows nothing of the embedded ArcadeDB
server's gaps: see docs/cypher-portability.md for those.

- `node` not on PATH: skipped, with the reason (CI has node).
- `node` present but node_modules missing: FAILS, telling you to run `npm install`.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
LINTER = REPO / "tests" / "queries" / "cypher_lint.mjs"
PACKAGE_DIR = REPO / "node_modules" / "@neo4j-cypher" / "language-support"
QUERY_FILES = sorted((REPO / "queries").glob("*.cypher"))

NODE = shutil.which("node")
pytestmark = pytest.mark.skipif(
    NODE is None,
    reason="`node` is not on PATH: cannot run Neo4j's Cypher parser "
    "(@neo4j-cypher/language-support); install Node.js >= 20 and run `npm install`",
)


def _require_package() -> None:
    if not (PACKAGE_DIR / "package.json").is_file():
        pytest.fail(
            f"{PACKAGE_DIR.relative_to(REPO)} is missing: run `npm install` in {REPO} "
            "(make test does this) to install the Cypher linter",
            pytrace=False,
        )


def run_linter(files: list[Path]) -> dict[str, dict]:
    """Lint all files in one node process; return {path as given: result}."""
    _require_package()
    proc = subprocess.run(
        [NODE, str(LINTER), *map(str, files)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=300,
    )
    if proc.returncode not in (0, 1):
        pytest.fail(
            f"cypher_lint.mjs exited {proc.returncode}\nstdout:\n{proc.stdout}\n"
            f"stderr:\n{proc.stderr}",
            pytrace=False,
        )
    results = {}
    for line in proc.stdout.splitlines():
        if line.strip():
            obj = json.loads(line)
            results[obj["file"]] = obj
    assert set(results) == {str(f) for f in files}, (
        f"linter did not report on every file\nstdout:\n{proc.stdout}\nstderr:\n{proc.stderr}"
    )
    any_error = any(r["errors"] for r in results.values())
    assert proc.returncode == (1 if any_error else 0), (
        f"exit status {proc.returncode} does not match the reported errors"
    )
    return results


def _fmt(result: dict) -> str:
    return "\n".join(
        f"  {result['file']}:{d['line']}:{d['column']}: {d['severity']}: {d['message']}"
        for d in result["errors"] + result["warnings"]
    )


@pytest.fixture(scope="module")
def lint_results() -> dict[str, dict]:
    if not QUERY_FILES:
        return {}
    return run_linter(QUERY_FILES)


@pytest.mark.parametrize(
    "query_file", QUERY_FILES, ids=[p.name for p in QUERY_FILES]
)
def test_query_file_is_valid_neo4j5_cypher(query_file: Path, lint_results):
    result = lint_results[str(query_file)]
    assert not result["errors"], (
        f"{query_file.relative_to(REPO)} is not valid Neo4j 5 Cypher:\n{_fmt(result)}"
    )


# --- The linter itself must catch errors (also guards the no-query-files case) ---

BROKEN = "MATCH (n RETURN n\n"
VALID = "UNWIND $rows AS r MERGE (n:Neuron {uid: r.uid}) SET n += r.props RETURN count(n)\n"
REMOVED_4X = "CREATE CONSTRAINT ON (n:L) ASSERT n.p IS UNIQUE\n"  # what py2neo emits
BROWSER_PARAMS = (
    "// Top inputs of a neuron. In Neo4j Browser:\n"
    "// :param x => 1\n"
    "// :param target => 'layer4.0:12'\n"
    "MATCH (a:Neuron)-[r:FEEDS]->(b:Neuron {uid: $target})\n"
    "RETURN a {.uid, .name} AS src, r.weight AS w\n"
    "ORDER BY w DESC LIMIT $x\n"
)


@pytest.fixture(scope="module")
def self_check(tmp_path_factory) -> dict[str, dict]:
    d = tmp_path_factory.mktemp("cypher_lint")
    files = {}
    for name, text in {
        "broken": BROKEN,
        "valid": VALID,
        "removed_4x": REMOVED_4X,
        "browser_params": BROWSER_PARAMS,
        "comments_only": "// :param x => 1\n",
        "two_statements": "MATCH (n) RETURN n;\nMATCH (m) RETURN m\n",
        "text_after_semicolon": "MATCH (n) RETURN n;\n// end\n",
        "bare_trailing_semicolon": "MATCH (n) RETURN n;\n",
    }.items():
        p = d / f"{name}.cypher"
        p.write_text(text)
        files[name] = p
    results = run_linter(list(files.values()))
    return {name: results[str(p)] for name, p in files.items()}


def test_linter_reports_syntax_error(self_check):
    errors = self_check["broken"]["errors"]
    assert errors, "MATCH (n RETURN n was not reported"
    assert errors[0]["line"] == 1 and errors[0]["severity"] == "error"


def test_linter_accepts_valid_query_with_parameters(self_check):
    result = self_check["valid"]
    assert not result["errors"], _fmt(result)


def test_linter_reports_syntax_removed_in_neo4j5(self_check):
    errors = self_check["removed_4x"]["errors"]
    assert errors, "4.x `CREATE CONSTRAINT ON ... ASSERT` was not reported"
    assert any("REQUIRE" in e["message"] or "ASSERT" in e["message"] for e in errors), errors


def test_linter_ignores_browser_params_in_comments(self_check):
    result = self_check["browser_params"]
    assert not result["errors"], _fmt(result)


def test_linter_rejects_file_without_query(self_check):
    assert self_check["comments_only"]["errors"]


def test_linter_enforces_one_statement_per_file(self_check):
    assert self_check["two_statements"]["errors"]
    # ArcadeDB rejects anything after a ';' (a bare trailing ';' is fine on both)
    assert self_check["text_after_semicolon"]["errors"]
    result = self_check["bare_trailing_semicolon"]
    assert not result["errors"], _fmt(result)
