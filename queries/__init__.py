"""The Cypher query library: one query per ``.cypher`` file, the single source of truth."""
