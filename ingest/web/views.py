"""What each page shows, built only from named queries of the library (no Cypher here).

Every function takes ``run(name, params) -> list[dict]`` (the query library, see
:func:`runner`) and returns plain dictionaries for the templates; the explorer
(:mod:`.app`) and the report (:mod:`.report`) render the same views. Columns are read
generically where other writers may add some: a ``label`` column or NeuronGroup property
is shown when present, and bias evidence shows every column or property the debugger
wrote (``bias_score``, ``rank``, p and q values, verdicts, ...).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from .layout import layout_circuit

__all__ = [
    "Runner",
    "runner",
    "NotFound",
    "classes_view",
    "circuit_view",
    "group_view",
    "compare_view",
    "concepts_view",
    "concept_view",
    "biased_view",
    "search_view",
    "evaluation_plots",
    "STRUCTURAL",
]

Runner = Callable[[str, dict], list]

#: NeuronGroup properties that describe the group itself (everything else on the node is evidence).
STRUCTURAL = frozenset({"uid", "class", "model", "layer", "index", "depth", "root", "channels", "n_neurons", "n_members", "n_patches", "label",
                        "root_share", "best_path", "n_paths"})
N_NODE_EXEMPLARS = 4
# properties that describe a group in words (concept labels), not bias evidence
_WORDS = ("label", "caption", "description", "labelled", "part_of_class", "name")


class NotFound(Exception):
    """The page's subject is not in the graph."""


def runner(driver: Any, database: str | None) -> Runner:
    """The query library as ``run(name, params) -> list of dict rows``."""
    from neurflow.queries import run_query

    def run(name: str, params: dict | None = None) -> list:
        return [dict(r) for r in run_query(driver, name, params or {}, database=database)]

    return run


def declared(name: str) -> set[str]:
    """The parameters a library query declares (the query files may change under us)."""
    from neurflow.queries import load_queries

    q = load_queries().get(name)
    return {p.name for p in q.params} if q else set()


def has_query(name: str) -> bool:
    from neurflow.queries import load_queries

    return name in load_queries()


def _label(*sources: Mapping[str, Any] | None) -> str | None:
    for s in sources:
        if s and s.get("label"):
            return str(s["label"])
    return None


def evidence(props: Mapping[str, Any] | None, bias: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """Bias evidence of a group: every non-structural, non-null property, then ``bias`` entries."""
    out: dict[str, Any] = {}
    props = props or {}
    if props.get("bias_score") is not None or props.get("verdict") is not None:
        for k, v in props.items():
            if k not in STRUCTURAL and not k.startswith(_WORDS) and v is not None:
                out[k] = v
    for k, v in (bias or {}).items():
        if v is not None:
            out[k] = v
    first = ["verdict", "biased", "bias_score", "bias_rank", "p_value", "q_value", "effect_p", "effect_z"]
    return {k: out[k] for k in sorted(out, key=lambda k: (first.index(k) if k in first else len(first), k))}


def exemplars_of(run: Runner, groups: Sequence[str], limit: int) -> dict[str, dict]:
    """``group_exemplars`` rows by group uid."""
    if not groups:
        return {}
    return {r["group"]: r for r in run("group_exemplars", {"groups": list(dict.fromkeys(groups)), "limit": limit})}


# ---------------------------------------------------------------------------- pages


def classes_view(run: Runner) -> dict:
    """Every ingested class per model, with circuit size, faithfulness and bias status."""
    rows = run("classes", {})
    known = ["class", "class_index", "class_name", "model", "complete", "layers", "n_groups", "n_semantic_groups", "loaded_at",
             "debugged_at", "biased_groups", "evaluated_at", "faithful"]
    extra = [k for k in (rows[0].keys() if rows else []) if k not in known]
    models: dict[str, list[dict]] = {}
    for r in rows:
        models.setdefault(r["model"], []).append(r)
    return {"models": models, "extra": extra, "n_classes": len(rows), "has_labels": has_query("find_concept")}


def _pick_class(rows: list[dict], cls: str) -> list[dict]:
    uids = list(dict.fromkeys(r["class"] for r in rows))
    if not uids:
        raise NotFound(f"no class '{cls}' in the graph")
    return [r for r in rows if r["class"] == uids[0]]


def circuit_view(run: Runner, cls: str, *, n_paths: int = 3) -> dict:
    """The concept circuit of a class as a laid-out DAG with exemplar patches per group."""
    all_rows = run("class_circuit", {"class": cls})
    rows = _pick_class(all_rows, cls)
    others = sorted({(r["class"], r["model"]) for r in all_rows} - {(rows[0]["class"], rows[0]["model"])})
    ex = exemplars_of(run, [r["group"] for r in rows], N_NODE_EXEMPLARS)
    layout = layout_circuit(rows, n_paths=n_paths)
    by_uid = {r["group"]: r for r in rows}
    nodes = []
    for box in layout.nodes:
        r = by_uid[box.group]
        props = r.get("props") or {}
        nodes.append({
            "box": box,
            "row": r,
            "label": _label(r, props),
            "exemplars": (ex.get(box.group) or {}).get("exemplars", []),
            "biased": bool(props.get("biased")),
            "verdict": props.get("verdict"),
            "bias_score": props.get("bias_score"),
        })
    first = rows[0]
    return {
        "class": first["class"],
        "class_name": first["class_name"],
        "class_index": first["class_index"],
        "model": first["model"],
        "layers": first["layers"],
        "artifact": first.get("artifact"),
        "layout": layout,
        "nodes": nodes,
        "paths": [{"weight": w, "groups": p} for w, p in layout.paths],
        "others": others,
        "n_groups": len(rows),
        "evaluation": evaluation_of(run, first["class"]),
        "status": {k: v for k, v in sorted((first.get("class_props") or {}).items()) if k.startswith(("debug", "bias_")) and v is not None},
    }


def evaluation_of(run: Runner, class_uid: str) -> dict | None:
    """``unfaithful_classes`` (with unevaluated classes) row of a class, or None if never evaluated."""
    params = {"include_unevaluated": True} if "include_unevaluated" in declared("unfaithful_classes") else {}
    for r in run("unfaithful_classes", params):
        if r.get("class") == class_uid:
            return r if r.get("evaluated_at") is not None else None
    return None


def evaluation_plots(artifact: str | None) -> list[Path]:
    """PNG plots of the class's latest ``neurflow evaluate`` run (``<artifact>/eval/*/``), if any."""
    if not artifact:
        return []
    root = Path(artifact) / "eval"
    if not root.is_dir():
        return []
    for run_dir in sorted((d for d in root.iterdir() if d.is_dir()), reverse=True):
        doc = run_dir / "evaluation.json"
        names: list[str] = []
        if doc.is_file():
            try:
                names = [str(p) for p in json.loads(doc.read_text()).get("plots", [])]
            except (OSError, json.JSONDecodeError, AttributeError):
                names = []
        files = [run_dir / Path(n).name for n in names] or sorted(run_dir.glob("*.png"))
        files = [f for f in files if f.suffix.lower() == ".png" and f.is_file()]
        if files:
            return files
    return []


def group_view(run: Runner, uid: str, media=None) -> dict:
    """One neuron group in full (``group_detail``), with the geometry to draw patch boxes."""
    rows = run("group_detail", {"group": uid})
    if not rows:
        raise NotFound(f"no neuron group '{uid}' in the graph")
    row = rows[0]
    ex = exemplars_of(run, [uid], 1)
    props = (ex.get(uid) or {}).get("props") or {}
    exemplars = []
    media_rows = media.rows([e["patch"] for e in row["exemplars"]]) if media is not None else {}
    for e in row["exemplars"]:
        item = {"e": e, "source": None, "box_pct": None}
        m = media_rows.get(e["patch"])
        if media is not None and m is not None:
            pic = media.picture(e["patch"], "source", 192, m)
            if pic is not None and e.get("box"):
                x0, y0, x1, y1 = (float(v) for v in e["box"])
                bw, bh = pic.base
                item["source"] = pic
                item["box_pct"] = (100 * x0 / bw, 100 * y0 / bh, 100 * (x1 - x0) / bw, 100 * (y1 - y0) / bh)
        exemplars.append(item)
    drops: dict[str, list[dict]] = {}
    for d in row.get("drops") or []:
        drops.setdefault(d["source"], []).append(d)
    known = ["group", "class", "class_name", "layer", "index", "depth", "root", "channels", "neurons", "semantic_groups", "exemplars",
             "incoming", "outgoing", "root_share", "similar", "drops", "bias", "label"]
    extra = {k: v for k, v in row.items() if k not in known and v is not None and v != [] and v != {}}
    return {
        "row": row,
        "label": _label(row, props),
        "exemplars": exemplars,
        "drops": drops,
        "evidence": evidence(props, row.get("bias")),
        "extra": extra,
        "n_sources": sum(1 for x in exemplars if x["source"] is not None),
    }


def compare_view(run: Runner, a: str, b: str, *, max_concepts: int = 12) -> dict:
    """Two classes layer by layer (``compare_classes``), their overlapping groups and shared atlas concepts, with patches."""
    rows = run("compare_classes", {"class_a": a, "class_b": b})
    if not rows:
        raise NotFound(f"classes '{a}' and '{b}' are not both in the graph (of one model)")
    ua, ub = rows[0]["class_a"], rows[0]["class_b"]
    names = {r["class"]: r["class_name"] for r in run("classes", {})}
    # atlas concepts both classes use (concepts: class_names per concept), most shared first
    model = ua.rsplit("/", 1)[0]
    shared = [c for c in run("concepts", {"model": model, "limit": 1000}) if names.get(ua) in c["class_names"] and names.get(ub) in c["class_names"]]
    concepts = []
    for c in shared[:max_concepts]:
        users = [r for r in run("concept_classes", {"concept": c["concept"]}) if r["class"] in (ua, ub)]
        concepts.append({"concept": c, "a": [r["group"] for r in users if r["class"] == ua], "b": [r["group"] for r in users if r["class"] == ub]})
    groups = [s[k] for r in rows for s in (r.get("similar_groups") or []) for k in ("group_a", "group_b")]
    groups += [g for c in concepts for g in c["a"] + c["b"]]
    ex = exemplars_of(run, groups, N_NODE_EXEMPLARS)
    return {"a": a, "b": b, "rows": rows, "exemplars": ex, "class_a": ua, "class_b": ub, "name_a": names.get(ua, ua), "name_b": names.get(ub, ub),
            "concepts": concepts, "n_shared_concepts": len(shared)}


def concepts_view(run: Runner, limit: int = 100) -> dict:
    return {"rows": run("concepts", {"limit": limit})}


def concept_view(run: Runner, uid: str) -> dict:
    """Which classes use a concept of the atlas (``concept_classes``), with each group's patches."""
    rows = run("concept_classes", {"concept": uid})
    if not rows:
        raise NotFound(f"no concept '{uid}' (or no class uses it)")
    ex = exemplars_of(run, [r["group"] for r in rows], N_NODE_EXEMPLARS)
    by_class: dict[str, list[dict]] = {}
    for r in rows:
        by_class.setdefault(r["class_name"], []).append(r)
    return {"uid": uid, "rows": rows, "by_class": by_class, "exemplars": ex, "layer": rows[0]["layer"]}


def biased_view(run: Runner, params: Mapping[str, Any] | None = None, *, fp_images: int = 8) -> dict:
    """``biased_groups`` in its own order, each with its patches and the false positives it explains."""
    allowed = declared("biased_groups")
    rows = run("biased_groups", {k: v for k, v in (params or {}).items() if k in allowed})
    ex = exemplars_of(run, [r["group"] for r in rows], N_NODE_EXEMPLARS)
    fps: dict[str, list[dict]] = {}
    for r in rows[:50]:
        detail = run("group_detail", {"group": r["group"]})
        drops = detail[0].get("drops") or [] if detail else []
        fps[r["group"]] = [d for d in drops if d["source"] == "fp"][:fp_images]
    first = ["rank", "group", "class_name", "layer", "verdict", "bias_score", "p_value", "q_value"]
    columns = list(rows[0].keys()) if rows else []
    columns = sorted(columns, key=lambda k: (first.index(k) if k in first else len(first), columns.index(k)))
    hidden = {"class", "class_index", "group", "channels"}
    return {"rows": rows, "exemplars": ex, "fps": fps, "columns": [c for c in columns if c not in hidden], "params": dict(params or {})}


def search_view(run: Runner, q: str) -> dict:
    """Classes whose name, index or uid contains the text; concept labels when a ``find_concept`` query exists."""
    text = q.strip().lower()
    classes = [r for r in run("classes", {}) if text and (text in str(r["class_name"]).lower() or text == str(r["class_index"]) or text in r["class"].lower())]
    labels: list[dict] = []
    if text and has_query("find_concept"):
        from neurflow.queries import get_query

        fq = get_query("find_concept")
        strings = [p for p in fq.params if p.type == "string"]
        if strings:
            labels = run("find_concept", {strings[0].name: q.strip()})
    return {"q": q, "classes": classes, "labels": labels, "label_columns": list(labels[0].keys()) if labels else []}


def compact(value: Any) -> str:
    """A cell value as short text."""
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        return f"{value:.3g}"
    if isinstance(value, (list, tuple)):
        inner = ", ".join(compact(v) for v in list(value)[:12])
        return f"[{inner}{', ...' if len(value) > 12 else ''}]"
    if isinstance(value, Mapping):
        return "{" + ", ".join(f"{k}: {compact(v)}" for k, v in value.items()) + "}"
    return str(value)


def short_group(uid: str) -> str:
    """``layer gN`` of a group uid (``{class}/{layer}/g{index}``)."""
    parts = uid.rsplit("/", 2)
    return f"{parts[-2]} {parts[-1]}" if len(parts) == 3 else uid


def unique(items: Iterable[Any]) -> list[Any]:
    return list(dict.fromkeys(items))
