#!/usr/bin/env node
// Offline Neo4j 5 Cypher check of query files with Neo4j's own parser and
// semantic analysis (@neo4j-cypher/language-support, pinned in package.json).
//
//   node tests/queries/cypher_lint.mjs queries/*.cypher
//
// Prints one JSON object per file, one per line (JSON Lines), in argv order:
//   {"file": "<path as given>",
//    "statements": <number of Cypher statements found>,
//    "errors":   [{"message", "line", "column", "severity"}, ...],
//    "warnings": [{"message", "line", "column", "severity"}, ...]}
// line and column are 1-based (start of the offending range); severity is
// "error", "warning", "information" or "hint" (the latter two are listed
// under warnings). Exit status: 0 when no file has an error, 1 when any file
// has one, 2 on a usage error or when the package cannot be loaded (run
// `npm install` in the repository root).
//
// Choices:
// - The schema is empty except for defaultLanguage "CYPHER 5" (our target is
//   Neo4j 5), so labels, properties, functions and procedures are not checked
//   against a database: only syntax and Neo4j's semantic analysis are.
// - "Parameter $x is not defined." diagnostics are dropped with the package's
//   own isNotParamError: query files take their parameters from the caller.
// - consoleCommandsEnabled: true, so Browser commands such as `:param x => 1`
//   on their own line parse as commands; in our files they sit inside `//`
//   comments anyway.
// - Project conventions checked on top of Neo4j's parser (queries/ holds one
//   query per file, run by the driver one statement per call, on Neo4j and on
//   the embedded ArcadeDB server; see docs/cypher-portability.md). Errors:
//   a file with no Cypher statement (empty, or only comments); a file with
//   more than one statement; any text, comments included, after a `;`
//   (ArcadeDB rejects that query; a bare trailing `;` is accepted).
// All files are linted in one process (loading the package takes ~1.5 s).

import { readFileSync } from 'node:fs';

const SEVERITY = { 1: 'error', 2: 'warning', 3: 'information', 4: 'hint' };

const files = process.argv.slice(2);
if (files.length === 0) {
  process.stderr.write('usage: node tests/queries/cypher_lint.mjs FILE.cypher...\n');
  process.exit(2);
}

let lib;
try {
  lib = await import('@neo4j-cypher/language-support');
} catch (err) {
  process.stderr.write(
    `cannot load @neo4j-cypher/language-support (${err.message}); ` +
      'run `npm install` in the repository root\n',
  );
  process.exit(2);
}
const { lintCypherQuery, isNotParamError, parseStatementsStrs } = lib;

const schema = { defaultLanguage: 'CYPHER 5' };

function simplify(d) {
  return {
    message: d.message,
    line: d.range.start.line + 1,
    column: d.range.start.character + 1,
    severity: SEVERITY[d.severity] ?? String(d.severity),
  };
}

// A statement that is nothing but comments and whitespace is not a query.
function isOnlyComments(stmt) {
  return (
    stmt
      .replace(/\/\*[\s\S]*?\*\//g, '')
      .replace(/\/\/[^\n]*/g, '')
      .trim()
      .replace(/;$/, '')
      .trim().length === 0
  );
}

// Position (1-based line/column) of a statement chunk. The chunks are the
// file's tokens split at ';', so their texts concatenate back to the file.
function at(text, chunks, chunk, message) {
  let offset = 0;
  for (const c of chunks) {
    if (c === chunk) break;
    offset += c.length;
  }
  const lead = chunk.length - chunk.trimStart().length;
  const before = text.slice(0, Math.min(offset + lead, text.length)).split('\n');
  return { message, line: before.length, column: before[before.length - 1].length + 1, severity: 'error' };
}

let anyError = false;
for (const file of files) {
  const result = { file, statements: 0, errors: [], warnings: [] };
  let text;
  try {
    text = readFileSync(file, 'utf8');
  } catch (err) {
    result.errors.push({ message: `cannot read file: ${err.message}`, line: 0, column: 0, severity: 'error' });
  }
  if (text !== undefined) {
    let diagnostics = [];
    const conventionErrors = [];
    try {
      ({ diagnostics } = lintCypherQuery(text, schema, { consoleCommandsEnabled: true }));
      const chunks = parseStatementsStrs(text);
      const real = chunks.filter((c) => !isOnlyComments(c));
      result.statements = real.length;
      if (real.length > 1) {
        conventionErrors.push(at(text, chunks, real[1],
          `${real.length} statements in one file: a query file holds exactly one (the driver runs one statement per call)`));
      } else if (real.length === 1 && chunks.length > 1) {
        const after = chunks[chunks.indexOf(real[0]) + 1] ?? chunks[chunks.length - 1];
        conventionErrors.push(at(text, chunks, after,
          "text after ';' (ArcadeDB rejects the query): drop the ';' or everything after it"));
      }
    } catch (err) {
      diagnostics = [{ message: `linter crashed: ${err.stack ?? err}`, range: { start: { line: -1, character: -1 } }, severity: 1 }];
    }
    for (const d of diagnostics.filter(isNotParamError)) {
      const s = simplify(d);
      (s.severity === 'error' ? result.errors : result.warnings).push(s);
    }
    result.errors.push(...conventionErrors);
    if (result.statements === 0 && result.errors.length === 0) {
      result.errors.push({ message: 'no Cypher statement in file (empty or only comments)', line: 1, column: 1, severity: 'error' });
    }
  }
  if (result.errors.length > 0) anyError = true;
  process.stdout.write(JSON.stringify(result) + '\n');
}
process.exit(anyError ? 1 : 0);
