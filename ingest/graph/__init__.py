"""The graph side of ingest: what NeurFlow writes to Neo4j, and how.

==================  ==========================================================================
module              job
==================  ==========================================================================
``schema``          node labels, every ``uid`` builder, constraints and indexes
``statements``      every write statement, declared once: what it writes, who owns it
``rows``            pure row builders: a circuit artifact -> rows per statement
``writer``          ``neurflow load``: a class per managed transaction; cleanup; evaluation summary
``atlas``           ``neurflow link``: the cross-class concept atlas
``path_figures``    strongest paths to the root, computed at load time (dynamic programs)
``export``          ``neurflow export --format neo4j-admin``: the same rows as CSV for offline import
``errors``          the one translator of ``neo4j`` driver errors into the project's
==================  ==========================================================================

``schema``, ``statements``, ``rows`` and ``path_figures`` do not import the database driver.
The names below are re-exported lazily, so ``from neurflow.ingest.graph.schema import ...``
stays as cheap as the module itself.
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS: dict[str, str] = {
    **dict.fromkeys(("SCHEMA", "LABELS", "model_uid", "layer_uid", "neuron_uid", "class_uid", "sg_uid", "group_uid", "group_paths_uid", "patch_uid",
                     "concept_uid", "image_uid"), "schema"),
    **dict.fromkeys(("GraphRows", "circuit_rows", "label_props", "patch_props"), "rows"),
    **dict.fromkeys(("CLASS_DEBUG_PROPS", "CLASS_EVAL_PROPS", "ensure_schema", "run_write", "write_class", "write_classes", "write_shared",
                     "write_evaluation_summary"), "writer"),
    "translating_errors": "errors",
    "link_artifacts": "atlas",
    "export_neo4j_admin": "export",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f"{__name__}.{module}"), name)
