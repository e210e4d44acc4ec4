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
// that depth has incoming edges). signed_weight = the product of the signed W along
// the path (its sign tells whether the chain excites or inhibits the logit).
// Run it in Neo4j Browser to see the paths drawn (column `path`); after `neurflow label`
// the groups carry words too (column `labels`: "flowers -> flowers + bee -> bee").
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
//   signed_weight float: product of FLOWS_TO.weight (signed W) along the path
//   groups list<string>: neuron group uids, from the start group up to the root
//   layers list<string>: the layer of each of those groups
//   labels list<string>: the label of each of those groups (`neurflow label`; null where unlabelled)
//   relations list<string>: FLOWS_TO.relation of each hop, bottom up (how the lower group feeds the upper one; null where unlabelled)
//   shares list<float>: FLOWS_TO.share of each hop, bottom up
//   path path: the path itself, start group -> ... -> root (drawn by Neo4j Browser)
MATCH (c:Class)-[:OF_MODEL]->(m:Model)
WHERE toString($class) IN [c.uid, c.name, toString(c.index)]
  AND ($model IS NULL OR $model IN [m.uid, m.name])
MATCH (c)-[:ROOT]->(root:NeuronGroup)
CALL (c) {
  MATCH (c)-[:HAS_GROUP]->(g:NeuronGroup)
  RETURN max(g.depth) AS deepest
}
WITH c, root, CASE WHEN $depth IS NULL OR $depth > deepest THEN deepest ELSE $depth END AS start_depth
MATCH p = (start:NeuronGroup)-[:FLOWS_TO*0..]->(root)
WHERE start.class = c.uid AND start.depth = start_depth
WITH c, p,
     reduce(w = 1.0, r IN relationships(p) | w * r.share) AS weight,
     reduce(w = 1.0, r IN relationships(p) | w * r.weight) AS signed_weight,
     reduce(s = '', n IN nodes(p) | s + n.uid + ' ') AS tie
ORDER BY weight DESC, tie
WITH c, collect({path: p, weight: weight, signed_weight: signed_weight})[..$limit] AS top
UNWIND range(0, size(top) - 1) AS i
WITH c, i + 1 AS rank, top[i] AS t
RETURN c.uid AS class,
       rank,
       t.weight AS weight,
       t.signed_weight AS signed_weight,
       [n IN nodes(t.path) | n.uid] AS groups,
       [n IN nodes(t.path) | n.layer] AS layers,
       [n IN nodes(t.path) | n.label] AS labels,
       [r IN relationships(t.path) | r.relation] AS relations,
       [r IN relationships(t.path) | r.share] AS shares,
       t.path AS path
ORDER BY class, rank
