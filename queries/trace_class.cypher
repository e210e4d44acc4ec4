// trace_class: the strongest paths of neuron groups through a class's concept circuit, each ending at the class root
//
// Answers: which chains of neuron groups, from a lower layer up to the class's logit
// group, carry the most of the class's attribution (paper Section 3.5, Figure 1)?
// Every path starts at a neuron group of depth $depth (default: the deepest layer of
// the circuit) and follows FLOWS_TO (child group -> parent group, one layer up per
// hop) to the group the class points at with ROOT (depth 0, the logit layer).
//
// Path weight: weight = the product of FLOWS_TO.share along the path, where
// share = |W(child, parent)| / (sum of |W| over all edges into that parent) and W is
// the paper's W(G_i, G_j) (sum of Eq. 4 hypertree weights). Each hop keeps the
// fraction of the parent's incoming attribution that comes from the child, so the
// weight is the fraction of the root's attribution routed along the path; the
// weights of all paths that start at one depth sum to 1 (when every group above
// that depth has incoming edges). signed_weight = sign(product of the signed W along
// the path) x weight: in [-1, 1], |signed_weight| = weight, and its sign tells whether
// the chain excites (+) or inhibits (-) the logit. (Until this version it was the
// product of the raw W values, which grows without bound with depth: 2.46e17 on a
// resnet50 class of 11 layers.)
// Precomputed: the loader stores each group's strongest paths (a k-best dynamic program
// over the layered DAG, ingest/path_figures.py) on GroupPaths nodes, k = the class's
// paths_kept (20 by default); this query merges those of the start depth's groups and
// matches each returned path once, so its cost does not grow with the number of paths
// (10^5 to 10^7 at paper depth). When a group at the start depth has more paths than
// it keeps, at most paths_kept rows are returned (the merged ranks beyond are not exact).
// Cost: per class (the class's GroupPaths nodes and $limit paths); no whole-graph scan.
// Run it in Neo4j Browser to see the paths drawn (column `path`); after `neurflow label`
// the groups carry words too (column `labels`: "flowers -> flowers + bee -> bee").
//
// Classes whose subgraph is incomplete (complete = false: being reloaded, or a load that was
// interrupted) are skipped; the `classes` query lists them.
//
// Parameters:
//   $class string: the class, by name ('bee'), index (309 or '309') or uid ('resnet50@1a2b3c4d5e6f/c309')
//   :param class => 'bee'
//   $model string = null: the model, by uid or name; null = every model (a class name may exist in several)
//   :param model => null
//   $depth int = null: the depth the paths start at (1 = the layer below the logit); null or larger than the circuit = its deepest layer
//   :param depth => null
//   $limit int = 10: paths returned per class
//   :param limit => 10
//
// Columns:
//   class string: the class uid
//   rank int: 1 = the strongest path of the class
//   weight float: product of FLOWS_TO.share along the path (fraction of the root's attribution)
//   signed_weight float: sign(product of FLOWS_TO.weight, the signed W) x weight, in [-1, 1]
//   groups list<string>: neuron group uids, from the start group up to the root
//   layers list<string>: the layer of each of those groups
//   labels list<string>: the label of each of those groups (`neurflow label`; null where unlabelled)
//   relations list<string>: FLOWS_TO.relation of each hop, bottom up (how the lower group feeds the upper one; null where unlabelled)
//   shares list<float>: FLOWS_TO.share of each hop, bottom up
//   path path: the path itself, start group -> ... -> root (drawn by Neo4j Browser)
MATCH (c:Class)-[:OF_MODEL]->(m:Model)
WHERE toString($class) IN [c.uid, c.name, toString(c.index)]
  AND c.complete = true
  AND ($model IS NULL OR $model IN [m.uid, m.name])
MATCH (c)-[:ROOT]->(root:NeuronGroup)
CALL (c) {
  MATCH (c)-[:HAS_GROUP]->(g:NeuronGroup)
  RETURN max(g.depth) AS deepest
}
WITH c, root, CASE WHEN $depth IS NULL OR $depth > deepest THEN deepest ELSE $depth END AS start_depth
MATCH (t:GroupPaths {class: c.uid})
WHERE t.depth = start_depth
UNWIND range(0, t.kept - 1) AS i
WITH c, root, t, i
ORDER BY t.weights[i] DESC, t.group, i
WITH c, root, collect({t: t, i: i}) AS ranked, max(CASE WHEN t.n_paths > t.kept THEN 1 ELSE 0 END) AS truncated
WITH c, root, ranked[..CASE WHEN truncated = 1 AND c.paths_kept < $limit THEN c.paths_kept ELSE $limit END] AS top
UNWIND range(0, size(top) - 1) AS j
WITH c, root, j + 1 AS rank, top[j].t AS t, top[j].i AS i
WITH c, root, rank, t, i, t.indices[i * (t.depth + 1)..(i + 1) * (t.depth + 1)] AS idx
MATCH (start:NeuronGroup {uid: t.group})
MATCH path = (start) ((a:NeuronGroup)-[:FLOWS_TO]->(b:NeuronGroup WHERE b.index = idx[t.depth - b.depth]))* (root)
RETURN c.uid AS class,
       rank,
       t.weights[i] AS weight,
       t.signed[i] AS signed_weight,
       [n IN nodes(path) | n.uid] AS groups,
       [n IN nodes(path) | n.layer] AS layers,
       [n IN nodes(path) | n.label] AS labels,
       [r IN relationships(path) | r.relation] AS relations,
       [r IN relationships(path) | r.share] AS shares,
       path
ORDER BY class, rank
