"""The query library: every ``queries/*.cypher`` file, its header parsed, runnable by name.

The ``.cypher`` file is the single source of truth: its text is what runs (on Neo4j 5,
on the embedded server and pasted into Neo4j Browser), and its leading ``//`` comment
block is what :func:`load_queries` parses into a :class:`Query` (name, description,
typed parameters with defaults and examples, result columns). Header format::

    // <name>: <one-line description>
    //
    // <free text: what it answers, definitions; any number of lines>
    //
    // Parameters:
    //   $<name> <type>: <description>                  (required)
    //   $<name> <type> = <default>: <description>      (optional; the default is a literal)
    //   :param <name> => <example>                     (a Neo4j Browser line, one per parameter)
    //
    // Columns:
    //   <name> <type>: <description>

``Parameters: none`` declares a query without parameters. Description lines may
continue on the next, further indented, line. Types: ``string``, ``int``, ``float``,
``bool``, ``list<string>``, ``list<int>``, ``list<float>``, ``list<bool>``. Literals
(defaults and examples) are Cypher literals: ``null``, ``true``/``false``, numbers,
``'single'`` or ``"double"`` quoted strings, lists ``[1, 2]``.

Running a query (:func:`run_query`) binds the caller's values with :func:`bind_params`:
unknown, missing or mistyped parameters raise :class:`ParameterError` (an
:class:`~neurflow.ingest.errors.InputError`) whose message lists the expected
parameters; absent optional parameters get their defaults, so the text always receives
every parameter it names (Neo4j refuses a query with a missing parameter).

Nothing here imports torch or the method package.
"""

from __future__ import annotations

import difflib
import functools
import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from importlib import resources
from typing import Any

from neurflow.errors import AuthenticationFailed, DatabaseError, DatabaseUnavailable, InputError, NeurflowError

__all__ = [
    "TYPES",
    "Param",
    "Column",
    "Query",
    "QueryFileError",
    "UnknownQueryError",
    "ParameterError",
    "load_queries",
    "get_query",
    "parse_query",
    "parse_literal",
    "bind_params",
    "parse_param_value",
    "parse_cli_params",
    "run_query",
]

TYPES: tuple[str, ...] = ("string", "int", "float", "bool", "list<string>", "list<int>", "list<float>", "list<bool>")

_PACKAGE = "neurflow.queries"
_MISSING = object()


class QueryFileError(NeurflowError):
    """A packaged ``.cypher`` file has a malformed header (a bug in the library, not user input)."""


class UnknownQueryError(InputError):
    """No query of that name; ``suggestions`` holds close names."""

    def __init__(self, name: str, known: Sequence[str]) -> None:
        self.name = name
        self.suggestions = tuple(difflib.get_close_matches(name, list(known), n=3, cutoff=0.5))
        hint = f" Did you mean {' or '.join(repr(s) for s in self.suggestions)}?" if self.suggestions else ""
        super().__init__(f"unknown query '{name}'.{hint} Known queries: {', '.join(sorted(known))} (see 'neurflow query --list')")


class ParameterError(InputError):
    """A parameter is unknown, missing or of the wrong type."""


@dataclass(frozen=True)
class Param:
    """One query parameter, from the header.

    Attributes:
        name: the name, without ``$``.
        type: one of :data:`TYPES`.
        description: what it means.
        required: no default: the caller must give it.
        default: the value used when an optional parameter is not given.
        example: the value of the header's ``:param name => example`` line.
    """

    name: str
    type: str
    description: str
    required: bool
    default: Any = None
    example: Any = None

    def signature(self) -> str:
        """``name: type`` or ``name: type = default``."""
        if self.required:
            return f"{self.name}: {self.type}"
        return f"{self.name}: {self.type} = {format_literal(self.default)}"


@dataclass(frozen=True)
class Column:
    """One result column, from the header."""

    name: str
    type: str
    description: str


@dataclass(frozen=True)
class Query:
    """A query of the library.

    Attributes:
        name: the file's stem and the header's first word.
        description: the header's first line after ``name:``.
        about: the header's free text (what it answers, definitions).
        params: the parameters, in header order.
        columns: the result columns, in ``RETURN`` order.
        text: the whole file, exactly what runs.
        filename: the file's name in the package.
    """

    name: str
    description: str
    about: str
    params: tuple[Param, ...]
    columns: tuple[Column, ...]
    text: str
    filename: str

    @property
    def column_names(self) -> tuple[str, ...]:
        return tuple(c.name for c in self.columns)

    def param(self, name: str) -> Param:
        for p in self.params:
            if p.name == name:
                return p
        raise KeyError(name)

    def signature(self) -> str:
        """``name(p1: type, p2: type = default)``."""
        return f"{self.name}({', '.join(p.signature() for p in self.params)})"

    def expected(self) -> str:
        """The expected parameters, one per line, for error messages."""
        if not self.params:
            return f"'{self.name}' takes no parameters"
        lines = [f"'{self.name}' expects:"]
        for p in self.params:
            lines.append(f"  {p.signature():<36} {'(required) ' if p.required else ''}{p.description}  e.g. {p.name}={format_cli(p.example)}")
        return "\n".join(lines)


# --------------------------------------------------------------------------- literals


_NUMBER = re.compile(r"-?(?:\d+\.\d*|\.\d+|\d+)(?:[eE][-+]?\d+)?")
_WORD = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


def parse_literal(text: str) -> Any:
    """A Cypher literal: ``null``, ``true``, ``false``, numbers, quoted strings, lists.

    Raises:
        ValueError: anything else, or text left over after the literal.
    """
    value, end = _literal(text, _skip(text, 0))
    end = _skip(text, end)
    if end != len(text):
        raise ValueError(f"unexpected text after the literal: {text[end:]!r}")
    return value


def _skip(text: str, i: int) -> int:
    while i < len(text) and text[i].isspace():
        i += 1
    return i


def _literal(text: str, i: int) -> tuple[Any, int]:
    if i >= len(text):
        raise ValueError("expected a literal, found the end of the text")
    ch = text[i]
    if ch in "'\"":
        out, j = [], i + 1
        while j < len(text):
            c = text[j]
            if c == "\\" and j + 1 < len(text):
                nxt = text[j + 1]
                out.append({"n": "\n", "t": "\t", "\\": "\\", "'": "'", '"': '"'}.get(nxt, "\\" + nxt))
                j += 2
                continue
            if c == ch:
                return "".join(out), j + 1
            out.append(c)
            j += 1
        raise ValueError(f"unterminated string in {text!r}")
    if ch == "[":
        items: list[Any] = []
        j = _skip(text, i + 1)
        if j < len(text) and text[j] == "]":
            return items, j + 1
        while True:
            value, j = _literal(text, j)
            items.append(value)
            j = _skip(text, j)
            if j < len(text) and text[j] == ",":
                j = _skip(text, j + 1)
                continue
            if j < len(text) and text[j] == "]":
                return items, j + 1
            raise ValueError(f"expected ',' or ']' in {text!r}")
    m = _NUMBER.match(text, i)
    if m:
        token = m.group(0)
        return (float(token) if any(c in token for c in ".eE") else int(token)), m.end()
    m = _WORD.match(text, i)
    if m:
        word = m.group(0).lower()
        if word in ("null", "true", "false"):
            return {"null": None, "true": True, "false": False}[word], m.end()
    raise ValueError(f"not a literal: {text[i:]!r}")


def format_literal(value: Any) -> str:
    """The Cypher literal of a value (inverse of :func:`parse_literal`)."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, str):
        return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(format_literal(v) for v in value) + "]"
    raise TypeError(f"no Cypher literal for {type(value).__name__}")


def format_cli(value: Any) -> str:
    """How to write a value after ``--param name=`` on the command line."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (list, tuple)):
        return ",".join(format_cli(v) for v in value)
    return str(value)


# --------------------------------------------------------------------------- types


def _check_type(value: Any, type_: str) -> Any:
    """The value as the driver should send it, or raise TypeError/ValueError."""
    if type_.startswith("list<"):
        if not isinstance(value, (list, tuple)):
            raise TypeError(f"expected a list ({type_}), got {_describe(value)}")
        inner = type_[5:-1]
        return [_check_type(v, inner) for v in value]
    if type_ == "string":
        if isinstance(value, int) and not isinstance(value, bool):
            return str(value)  # a class index given as a number: its decimal text
        if not isinstance(value, str):
            raise TypeError(f"expected a string, got {_describe(value)}")
        return value
    if type_ == "int":
        if isinstance(value, bool) or not isinstance(value, int):
            if isinstance(value, float) and value.is_integer():
                return int(value)
            raise TypeError(f"expected an integer, got {_describe(value)}")
        return value
    if type_ == "float":
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise TypeError(f"expected a number, got {_describe(value)}")
        return float(value)
    if type_ == "bool":
        if not isinstance(value, bool):
            raise TypeError(f"expected true or false, got {_describe(value)}")
        return value
    raise TypeError(f"unknown parameter type '{type_}'")


def _describe(value: Any) -> str:
    shown = repr(value)
    if len(shown) > 40:
        shown = shown[:37] + "..."
    return f"{type(value).__name__} {shown}"


def bind_params(query: Query, values: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """Check the caller's values against the header and fill in the defaults.

    Args:
        query: the query.
        values: parameter name -> Python value (``None`` is null, allowed for optional
            parameters only). Integers are accepted for ``float`` parameters, integral
            floats for ``int`` ones, and integers for ``string`` ones (sent as their
            decimal text, so ``{"class": 309}`` works like ``{"class": "309"}``).

    Returns:
        Every declared parameter -> the value to send.

    Raises:
        ParameterError: an unknown, missing or mistyped parameter; the message lists the
            expected parameters.
    """
    values = dict(values or {})
    declared = {p.name for p in query.params}
    unknown = [k for k in values if k not in declared]
    problems: list[str] = []
    for k in unknown:
        close = difflib.get_close_matches(k, sorted(declared), n=1, cutoff=0.5)
        problems.append(f"unknown parameter '{k}'" + (f" (did you mean '{close[0]}'?)" if close else ""))
    bound: dict[str, Any] = {}
    for p in query.params:
        value = values.get(p.name, _MISSING)
        if value is _MISSING:
            if p.required:
                problems.append(f"missing required parameter '{p.name}' ({p.type})")
                continue
            value = p.default
        if value is None:
            if p.required:
                problems.append(f"parameter '{p.name}' is required and cannot be null")
                continue
            bound[p.name] = None
            continue
        try:
            bound[p.name] = _check_type(value, p.type)
        except (TypeError, ValueError) as exc:
            problems.append(f"parameter '{p.name}': {exc}")
    if problems:
        raise ParameterError("; ".join(problems) + "\n" + query.expected())
    return bound


_TRUE = {"true", "yes", "y", "1", "on"}
_FALSE = {"false", "no", "n", "0", "off"}


def parse_param_value(param: Param, raw: str) -> Any:
    """A command-line string -> the Python value for ``param``'s type.

    ``null`` is null for every type. Strings are taken as written (quotes optional:
    ``'bee'`` and ``bee`` are the same). Lists: a literal ``[1, 2]`` / ``['a', 'b']`` /
    JSON, or a comma list ``1,2`` / ``a,b``.

    Raises:
        ParameterError: the text is not a value of the type.
    """
    text = raw.strip()
    if text.lower() == "null":
        return None
    t = param.type
    try:
        if t.startswith("list<"):
            inner = Param(param.name, t[5:-1], param.description, True)
            if text.startswith("["):
                items = _parse_list(text)
                return [_coerce_item(inner, v) for v in items]
            if not text:
                return []
            return [parse_param_value(inner, part) for part in text.split(",")]
        if t == "string":
            if len(text) >= 2 and text[0] == text[-1] and text[0] in "'\"":
                return parse_literal(text)
            return raw
        if t == "int":
            return int(text)
        if t == "float":
            return float(text)
        if t == "bool":
            if text.lower() in _TRUE:
                return True
            if text.lower() in _FALSE:
                return False
            raise ValueError(text)
    except ValueError:
        pass
    article = "an" if t[0] in "aeiou" else "a"
    raise ParameterError(f"parameter '{param.name}': '{raw}' is not {article} {t}")


def _parse_list(text: str) -> list[Any]:
    try:
        value = json.loads(text)
    except json.JSONDecodeError:
        value = parse_literal(text)
    if not isinstance(value, list):
        raise ValueError(text)
    return value


def _coerce_item(param: Param, value: Any) -> Any:
    if isinstance(value, str) and param.type != "string":
        return parse_param_value(param, value)
    if param.type == "string" and isinstance(value, (int, float)) and not isinstance(value, bool):
        return str(value)
    return value


def parse_cli_params(query: Query, pairs: Sequence[str]) -> dict[str, Any]:
    """``["key=value", ...]`` from ``--param`` options -> bound parameters.

    Raises:
        ParameterError: a pair without ``=``, a parameter given twice, or any problem
            :func:`bind_params` finds.
    """
    values: dict[str, Any] = {}
    for pair in pairs:
        key, sep, raw = pair.partition("=")
        key = key.strip().lstrip("$")
        if not sep or not key:
            raise ParameterError(f"--param expects key=value, got '{pair}'\n{query.expected()}")
        if key in values:
            raise ParameterError(f"parameter '{key}' given twice")
        try:
            param = query.param(key)
        except KeyError:
            values[key] = raw  # reported as unknown by bind_params, with the expected list
            continue
        try:
            values[key] = parse_param_value(param, raw)
        except ParameterError as exc:
            raise ParameterError(f"{exc}\n{query.expected()}") from None
    return bind_params(query, values)


# --------------------------------------------------------------------------- headers


_NAME_LINE = re.compile(r"^(?P<name>[a-z][a-z0-9_]*):\s+(?P<desc>\S.*)$")
_PARAM_SPEC = re.compile(r"^\$(?P<name>[A-Za-z_][A-Za-z0-9_]*)\s+(?P<type>[a-z<>]+)\s*(?P<rest>.*)$")
_BROWSER = re.compile(r"^:param\s+(?P<name>[A-Za-z_][A-Za-z0-9_]*)\s*=>\s*(?P<value>.+)$")
_COLUMN = re.compile(r"^(?P<name>[A-Za-z_][A-Za-z0-9_]*)\s+(?P<type>[a-z<>]+):\s+(?P<desc>\S.*)$")


def parse_query(text: str, filename: str) -> Query:
    """Parse one file's header (see the module docstring).

    Raises:
        QueryFileError: the header does not follow the format.
    """
    stem = filename.rsplit("/", 1)[-1].removesuffix(".cypher")

    def fail(msg: str) -> QueryFileError:
        return QueryFileError(f"queries/{filename}: {msg}")

    header: list[str] = []
    for line in text.splitlines():
        stripped = line.strip()
        if not stripped.startswith("//"):
            break
        body = stripped[2:]
        header.append(body[1:] if body.startswith(" ") else body)
    if not header:
        raise fail("no '//' header")
    m = _NAME_LINE.match(header[0].strip())
    if not m:
        raise fail("the first line must be '// <name>: <description>'")
    if m.group("name") != stem:
        raise fail(f"the header names '{m.group('name')}' but the file is '{stem}.cypher'")
    description = m.group("desc").strip()

    about: list[str] = []
    section = "about"
    params: list[dict[str, Any]] = []
    examples: dict[str, Any] = {}
    columns: list[dict[str, str]] = []
    saw_params = saw_columns = False
    for raw in header[1:]:
        line = raw.strip()
        if line in ("Parameters:", "Parameters: none"):
            if saw_params:
                raise fail("two 'Parameters:' sections")
            section, saw_params = "params", True
            continue
        if line == "Columns:":
            if saw_columns:
                raise fail("two 'Columns:' sections")
            section, saw_columns = "columns", True
            continue
        if section == "about":
            about.append(line)
            continue
        if not line:
            section = "after"
            continue
        if section == "after":
            raise fail(f"text after a blank line must start a section: {line!r}")
        if section == "params":
            b = _BROWSER.match(line)
            if b:
                try:
                    examples[b.group("name")] = parse_literal(b.group("value"))
                except ValueError as exc:
                    raise fail(f":param {b.group('name')}: {exc}") from None
                continue
            p = _PARAM_SPEC.match(line)
            if p:
                params.append(_param_spec(p, fail))
                continue
            if params and raw.startswith("    "):
                params[-1]["description"] += " " + line
                continue
            raise fail(f"cannot read parameter line {line!r} (expected '$name type[ = default]: description' or ':param name => example')")
        if section == "columns":
            c = _COLUMN.match(line)
            if c:
                if c.group("type") not in TYPES and c.group("type") not in ("map", "list<map>", "list", "path", "node", "any"):
                    raise fail(f"column '{c.group('name')}' has unknown type '{c.group('type')}'")
                columns.append({"name": c.group("name"), "type": c.group("type"), "description": c.group("desc").strip()})
                continue
            if columns and raw.startswith("    "):
                columns[-1]["description"] += " " + line
                continue
            raise fail(f"cannot read column line {line!r} (expected 'name type: description')")
    if not saw_params:
        raise fail("no 'Parameters:' section (write 'Parameters: none' for none)")
    if not columns:
        raise fail("no 'Columns:' section")
    names = [p["name"] for p in params]
    if len(set(names)) != len(names):
        raise fail("a parameter is declared twice")
    if set(examples) != set(names):
        missing, extra = sorted(set(names) - set(examples)), sorted(set(examples) - set(names))
        raise fail(f"every parameter needs exactly one ':param' line (missing: {missing}, undeclared: {extra})")
    built = []
    for decl in params:
        example = examples[decl["name"]]
        if example is not None:
            try:
                example = _check_type(example, decl["type"])
            except (TypeError, ValueError) as exc:
                raise fail(f":param {decl['name']}: {exc}") from None
        elif decl["required"]:
            raise fail(f":param {decl['name']}: a required parameter needs a non-null example")
        built.append(Param(decl["name"], decl["type"], decl["description"].strip(), bool(decl["required"]), decl["default"], example))
    used = set(re.findall(r"\$([A-Za-z_][A-Za-z0-9_]*)", _strip_comments(text)))
    if used != set(names):
        raise fail(f"the header's parameters {sorted(names)} differ from those the query uses {sorted(used)}")
    while about and not about[-1]:
        about.pop()
    while about and not about[0]:
        about.pop(0)
    return Query(stem, description, "\n".join(about), tuple(built), tuple(Column(**c) for c in columns), text, filename)


def _param_spec(m: re.Match[str], fail) -> dict[str, Any]:
    name, type_, rest = m.group("name"), m.group("type"), m.group("rest")
    if type_ not in TYPES:
        raise fail(f"parameter '{name}' has unknown type '{type_}' (one of {', '.join(TYPES)})")
    required, default = True, None
    if rest.startswith("="):
        # the default is a literal, then ':' and the description
        body = rest[1:]
        i = _skip(body, 0)
        try:
            default, end = _literal(body, i)
        except ValueError as exc:
            raise fail(f"parameter '{name}': bad default: {exc}") from None
        rest = body[end:].strip()
        required = False
        if default is not None:
            try:
                default = _check_type(default, type_)
            except (TypeError, ValueError) as exc:
                raise fail(f"parameter '{name}': default {exc}") from None
    if not rest.startswith(":"):
        raise fail(f"parameter '{name}': expected ': description' after the type")
    return {"name": name, "type": type_, "required": required, "default": default, "description": rest[1:].strip()}


def _strip_comments(text: str) -> str:
    """The Cypher without ``//`` comments and string literals (to find ``$params``)."""
    out, i, n = [], 0, len(text)
    while i < n:
        c = text[i]
        if text.startswith("//", i):
            j = text.find("\n", i)
            i = n if j < 0 else j
            continue
        if text.startswith("/*", i):
            j = text.find("*/", i + 2)
            i = n if j < 0 else j + 2
            continue
        if c in "'\"`":
            j = i + 1
            while j < n and text[j] != c:
                j += 2 if text[j] == "\\" else 1
            i = j + 1
            out.append(" ")
            continue
        out.append(c)
        i += 1
    return "".join(out)


@functools.lru_cache(maxsize=1)
def load_queries() -> dict[str, Query]:
    """Every packaged query, by name (discovered with importlib.resources).

    Raises:
        QueryFileError: a file's header is malformed.
    """
    found: dict[str, Query] = {}
    for entry in resources.files(_PACKAGE).iterdir():
        if entry.name.endswith(".cypher") and entry.is_file():
            q = parse_query(entry.read_text(encoding="utf-8"), entry.name)
            found[q.name] = q
    return dict(sorted(found.items()))


def get_query(name: str) -> Query:
    """The query called ``name``.

    Raises:
        UnknownQueryError: no such query (with close matches).
    """
    queries = load_queries()
    try:
        return queries[name]
    except KeyError:
        raise UnknownQueryError(name, list(queries)) from None


# --------------------------------------------------------------------------- running


def run_query(driver: Any, query: str | Query, params: Mapping[str, Any] | None = None, *, database: str | None = None) -> list[Any]:
    """Run a library query by name, exactly as its file says, in a read transaction.

    Args:
        driver: a ``neo4j.Driver``.
        query: the query's name, or a :class:`Query`.
        params: parameter values (see :func:`bind_params`); absent optional ones get
            their defaults.
        database: the database (``conn.database``); None = the server's home database.

    Returns:
        The ``neo4j.Record`` list, in the query's order.

    Raises:
        UnknownQueryError / ParameterError: bad name or parameters (nothing is sent).
        DatabaseUnavailable / AuthenticationFailed / DatabaseError: the database failed;
            the message names the query, never the credentials.
    """
    import neo4j
    from neo4j.exceptions import AuthError, DriverError, Neo4jError, ServiceUnavailable, SessionExpired

    q = query if isinstance(query, Query) else get_query(query)
    bound = bind_params(q, params)
    try:
        records, _, _ = driver.execute_query(q.text, parameters_=bound, database_=database, routing_=neo4j.RoutingControl.READ)
    except AuthError:
        raise AuthenticationFailed("the graph database refused the credentials (check --user/--password or NEURFLOW_PASSWORD)") from None
    except (ServiceUnavailable, SessionExpired) as exc:
        raise DatabaseUnavailable(f"the graph database became unreachable while running query '{q.name}' ({type(exc).__name__})") from None
    except Neo4jError as exc:
        raise DatabaseError(f"query '{q.name}' failed ({exc.code}): {exc.message}") from None
    except DriverError as exc:
        raise DatabaseError(f"query '{q.name}' failed: {type(exc).__name__}: {exc}") from None
    return list(records)
