"""``neurflow export --format neo4j-admin``: the graph of many classes as CSV for offline bulk import.

``neo4j-admin database import full`` builds a new Neo4j database from CSV files far faster
than transactional writes (Neo4j's manual recommends it for initial loads of large graphs;
docs/loading.md). This module writes those files from the SAME rows as ``neurflow load``
(:func:`~neurflow.ingest.graph.rows.artifact_rows`) and ``neurflow link``
(:func:`~neurflow.ingest.graph.atlas.atlas_rows_of_artifacts`), interpreted through the same
statement table (:mod:`.statements`), so the imported graph equals the loaded one:

* one node file per label, ``nodes_<Label>.csv``: ``uid:ID(<Label>)`` (the uid is stored as the
  ``uid`` property; one id space per label), ``:LABEL``, then every property as
  ``name:<type>``; shared nodes (Model, Layer, Neuron, Run) appear once however many classes
  use them (later rows win, as MERGE + SET does);
* one relationship file per statement and type, ``relationships_<statement>_<TYPE>.csv``:
  ``:START_ID(<Label>)``, ``:END_ID(<Label>)``, ``:TYPE``, then the properties (one
  relationship per start, end and type, as MERGE gives);
* types from the values: ``boolean``, ``long`` (Python int), ``double`` (Python float, written
  with ``repr`` so it parses back to the same 64-bit value; ``float`` would be 32-bit),
  ``string``, and the same with ``[]`` for lists, elements joined by ``;`` (the default
  ``--array-delimiter``; a string element containing ``;`` is refused);
* ``schema.cypher``: the constraints and indexes (neo4j-admin creates none), and
  ``README.txt`` with the exact import command.

Differences from an online load, inherent to the CSV format: a null or an empty list is an
empty field, and an empty field sets no property, so such properties are absent rather
than null or ``[]`` (Cypher reads an absent property as null). Classes are ``complete = true``
with ``loaded_at`` = the export time.

The embedded ArcadeDB server cannot run ``neo4j-admin`` (it is Neo4j's own offline tool), so
the tests check the files at the parser level: read back with the header types, they give
the nodes, properties and relationships the loader writes for the same artifacts.
"""

from __future__ import annotations

import csv
import math
import shlex
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, cast

from .rows import GraphRows
from .schema import SCHEMA
from .statements import ATLAS_WRITES, LOAD_WRITES, Write

__all__ = ["ARRAY_DELIMITER", "ExportResult", "graph_of_rows", "write_neo4j_admin", "export_artifacts", "import_command", "read_neo4j_admin"]

ARRAY_DELIMITER = ";"

# (label, uid) -> properties;  (statement, type, start label, start uid, end label, end uid) -> properties
Nodes = dict[tuple[str, str], dict[str, object]]
Rels = dict[tuple[str, str, str, str, str, str], dict[str, object]]


@dataclass
class ExportResult:
    """What an export wrote."""

    directory: Path
    node_files: list[Path] = field(default_factory=list)
    relationship_files: list[Path] = field(default_factory=list)
    nodes: int = 0
    relationships: int = 0
    bytes: int = 0
    seconds: float = 0.0
    command: str = ""


def graph_of_rows(class_rows: Iterable[GraphRows], atlas_rows: Iterable[Mapping[str, list[dict]]] = (), *, loaded_at: str | None = None) -> tuple[Nodes, Rels]:
    """The nodes and relationships that the load (and link) statements write for these rows.

    Interprets :data:`~.statements.LOAD_WRITES` and :data:`~.statements.ATLAS_WRITES` the way
    their Cypher does (MERGE on uid, ``SET += props``, one relationship per ends and type), in
    load order, without a database. Nulls are dropped (a null property does not exist).
    """
    nodes: Nodes = {}
    rels: Rels = {}
    loaded_at = loaded_at or time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())

    def apply(w: Write, rows: list[dict]) -> None:
        for r in rows:
            if w.node is not None:
                props = nodes.setdefault((w.node.label, r["uid"]), {"uid": r["uid"]})
                if w.node.props_map:
                    props.update(r[w.node.props_map])
                props.update({p: r[k] for p, k in w.node.props})
            for rel in w.rels:
                key = (w.name, rel.type, rel.start[0], r[rel.start[1]], rel.end[0], r[rel.end[1]])
                rels.setdefault(key, {}).update({p: r[k] for p, k in rel.props})

    for rows in class_rows:
        for w in LOAD_WRITES:
            apply(w, rows.rows.get(w.name, []))
        nodes[("Class", rows.cls)].update(complete=True, loaded_at=loaded_at)  # MARK_COMPLETE
    for atlas in atlas_rows:
        for w in ATLAS_WRITES:
            apply(w, atlas.get(w.name, []))
    for props in (*nodes.values(), *rels.values()):
        for k in [k for k, v in props.items() if v is None]:
            del props[k]
    return nodes, rels


def _type_of(name: str, values: Iterable[Any]) -> str | None:
    """The neo4j-admin type of a column, or None when every value is null or an empty list."""
    kinds: set[str] = set()
    shapes: set[bool] = set()  # list or not
    for v in values:
        if v is None:
            continue
        is_list = isinstance(v, (list, tuple))
        shapes.add(is_list)
        for x in v if is_list else (v,):
            kinds.add("boolean" if isinstance(x, bool) else "long" if isinstance(x, int) else "double" if isinstance(x, float) else
                      "string" if isinstance(x, str) else type(x).__name__)
    if len(shapes) > 1:
        raise ValueError(f"property '{name}' mixes lists and single values; the CSV header needs one type")
    if not kinds:
        return None
    if kinds == {"long", "double"}:
        kinds = {"double"}
    if len(kinds) != 1 or not kinds <= {"boolean", "long", "double", "string"}:
        raise ValueError(f"property '{name}' has values of types {sorted(kinds)}; the CSV header needs one type")
    return kinds.pop() + ("[]" if True in shapes else "")


def _scalar(x: object, kind: str, name: str) -> str:
    if kind == "boolean":
        return "true" if x else "false"
    if kind == "double":
        f = float(x)  # type: ignore[arg-type]
        return "NaN" if math.isnan(f) else ("Infinity" if f > 0 else "-Infinity") if math.isinf(f) else repr(f)
    if kind == "long":
        return str(int(x))  # type: ignore[call-overload]
    return str(x)


def _field(v: object, kind: str, name: str) -> str:
    if v is None:
        return ""
    if kind.endswith("[]"):
        base = kind[:-2]
        parts = [_scalar(x, base, name) for x in cast(Iterable[Any], v)]
        if base == "string" and any(ARRAY_DELIMITER in p for p in parts):
            raise ValueError(f"a string in list property '{name}' contains the array delimiter '{ARRAY_DELIMITER}'")
        return ARRAY_DELIMITER.join(parts)
    return _scalar(v, kind, name)


def _write_csv(path: Path, header: list[str], rows: Iterable[list[str]]) -> int:
    with path.open("w", newline="", encoding="utf-8") as f:
        w = csv.writer(f, lineterminator="\n")
        w.writerow(header)
        n = 0
        for row in rows:
            w.writerow(row)
            n += 1
    return n


def write_neo4j_admin(nodes: Nodes, rels: Rels, out: Path, *, database: str = "neo4j") -> ExportResult:
    """Write ``nodes`` and ``rels`` (:func:`graph_of_rows`) as neo4j-admin CSV files into ``out``.

    Args:
        out: the directory (created; existing export files in it are replaced).
        database: the database name in the printed import command.
    """
    start = time.perf_counter()
    out.mkdir(parents=True, exist_ok=True)
    res = ExportResult(directory=out)
    by_label: dict[str, list[tuple[str, dict]]] = {}
    for (label, uid), props in sorted(nodes.items()):
        by_label.setdefault(label, []).append((uid, props))
    for label, items in by_label.items():
        names = sorted({k for _, p in items for k in p} - {"uid"})
        typed = [(k, t) for k in names if (t := _type_of(f"{label}.{k}", (p.get(k) for _, p in items))) is not None]
        header = [f"uid:ID({label})", ":LABEL", *(f"{k}:{t}" for k, t in typed)]
        path = out / f"nodes_{label}.csv"
        res.nodes += _write_csv(path, header, ([uid, label, *(_field(p.get(k), t, k) for k, t in typed)] for uid, p in items))
        res.node_files.append(path)
    by_stmt: dict[tuple[str, str, str, str], list[tuple[str, str, dict]]] = {}
    for (stmt, typ, sl, su, el, eu), props in sorted(rels.items(), key=lambda kv: kv[0]):
        by_stmt.setdefault((stmt, typ, sl, el), []).append((su, eu, props))
    for (stmt, typ, sl, el), rel_items in by_stmt.items():
        names = sorted({k for _, _, p in rel_items for k in p})
        typed = [(k, t) for k in names if (t := _type_of(f"{typ}.{k}", (p.get(k) for _, _, p in rel_items))) is not None]
        header = [f":START_ID({sl})", f":END_ID({el})", ":TYPE", *(f"{k}:{t}" for k, t in typed)]
        path = out / f"relationships_{stmt}_{typ}.csv"
        res.relationships += _write_csv(path, header, ([su, eu, typ, *(_field(p.get(k), t, k) for k, t in typed)] for su, eu, p in rel_items))
        res.relationship_files.append(path)
    (out / "schema.cypher").write_text("".join(f"{s};\n" for s in SCHEMA), encoding="utf-8")
    res.command = import_command(res, database=database)
    (out / "README.txt").write_text(_readme(res, database), encoding="utf-8")
    res.bytes = sum(p.stat().st_size for p in (*res.node_files, *res.relationship_files))
    res.seconds = time.perf_counter() - start
    return res


def import_command(res: ExportResult, *, database: str = "neo4j") -> str:
    """The ``neo4j-admin database import full`` command for an export, run from its directory."""
    parts = ["neo4j-admin", "database", "import", "full", f"--array-delimiter={ARRAY_DELIMITER}", "--multiline-fields=true",
             *(f"--nodes={p.name}" for p in res.node_files), *(f"--relationships={p.name}" for p in res.relationship_files), database]
    return " ".join(shlex.quote(p) for p in parts)


def _readme(res: ExportResult, database: str) -> str:
    files = "\n".join(f"  {p.name}" for p in (*res.node_files, *res.relationship_files))
    return f"""NeurFlow graph export for neo4j-admin (Neo4j 5) -- written by `neurflow export --format neo4j-admin`.

{res.nodes} nodes, {res.relationships} relationships in:
{files}
  schema.cypher   constraints and indexes (neo4j-admin creates none)

Import into a NEW, EMPTY database '{database}' (stop the DBMS first, or at least do not create
the database yet; neo4j-admin refuses an existing one unless --overwrite-destination=true).
Run from this directory:

  {res.command}

Then start Neo4j, create the database if it is not the default one
(CREATE DATABASE {database}; Enterprise Edition), and create the schema:

  cypher-shell -d {database} -f schema.cypher

Headers follow neo4j-admin's conventions: uid:ID(<Label>) (uid kept as a property, one id space
per label), :LABEL, :START_ID(<Label>), :END_ID(<Label>), :TYPE, typed properties such as
weight:double and channels:long[] (array elements separated by '{ARRAY_DELIMITER}'). An empty
field sets no property: nulls and empty lists are absent after the import.

The result is the graph `neurflow load` + `neurflow link` write for the same artifacts.
"""


def export_artifacts(paths: Sequence[Path], out: Path, *, link: bool = True, database: str = "neo4j") -> ExportResult:
    """Export every artifact at or below ``paths`` (all classes at once) for neo4j-admin.

    Args:
        link: include the concept atlas (Concept, HAS_CONCEPT, EXPRESSES, SIMILAR_TO), as
            ``neurflow load`` followed by ``neurflow link`` would write it.

    Raises:
        InputError: no artifacts under ``paths``.
        ArtifactError: an artifact is incomplete or corrupt (nothing is written then).
        ValueError: a property cannot be typed for the CSV header.
    """
    from ..pipeline import find_artifacts
    from .rows import artifact_rows

    dirs = find_artifacts([Path(p) for p in paths])
    class_rows = [artifact_rows(d) for d in dirs]
    atlases = []
    if link:
        from .atlas import atlas_rows_of_artifacts

        atlases = [rows for _, rows in atlas_rows_of_artifacts(dirs).values()]
    nodes, rels = graph_of_rows(class_rows, atlases)
    return write_neo4j_admin(nodes, rels, Path(out), database=database)


def read_neo4j_admin(directory: Path) -> tuple[Nodes, Rels]:
    """Read an export back, applying its header types (for tests and checks; what
    neo4j-admin would import, property for property).

    Relationship keys carry the statement name from the file name.
    """
    nodes: Nodes = {}
    rels: Rels = {}
    for path in sorted(Path(directory).glob("nodes_*.csv")):
        with path.open(newline="", encoding="utf-8") as f:
            reader = csv.reader(f)
            header = next(reader)
            for row in reader:
                label = row[1]
                props = {"uid": row[0], **_parse(header[2:], row[2:])}
                nodes[(label, row[0])] = props
    for path in sorted(Path(directory).glob("relationships_*.csv")):
        stem = path.stem[len("relationships_"):]  # <statement>_<TYPE>
        with path.open(newline="", encoding="utf-8") as f:
            reader = csv.reader(f)
            header = next(reader)
            sl, el = header[0][len(":START_ID("):-1], header[1][len(":END_ID("):-1]
            for row in reader:
                typ = row[2]
                name = stem[: -len(typ) - 1]
                rels[(name, typ, sl, row[0], el, row[1])] = _parse(header[3:], row[3:])
    return nodes, rels


def _parse(header: list[str], fields: list[str]) -> dict[str, object]:
    out: dict[str, object] = {}
    for h, v in zip(header, fields, strict=True):
        name, _, kind = h.rpartition(":")
        if v == "":
            continue
        if kind.endswith("[]"):
            out[name] = [_parse_scalar(x, kind[:-2]) for x in v.split(ARRAY_DELIMITER)]
        else:
            out[name] = _parse_scalar(v, kind)
    return out


def _parse_scalar(v: str, kind: str) -> object:
    if kind == "boolean":
        return v == "true"  # neo4j-admin: true only for exactly 'true'
    if kind == "long":
        return int(v)
    if kind == "double":
        return float({"NaN": "nan", "Infinity": "inf", "-Infinity": "-inf"}.get(v, v))
    return v
