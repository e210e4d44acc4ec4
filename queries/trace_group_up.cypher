// trace_group_up: every path from one neuron group up to its class's root, strongest first
//
// Answers: how does this neuron group reach the class's logit, through which parent
// groups, and how much of the class's attribution flows through it in total?
// Paths follow FLOWS_TO (child group -> parent group, one layer up per hop) from the
// group to the root group of its class (ROOT, depth 0). A root group gives one path of
// length 0 with weight 1.
//
// Path weight (as in trace_class): weight = the product of FLOWS_TO.share along the
// path (share = |W| / sum of |W| into the same parent), the fraction of the root's
// attribution routed along the path; signed_weight = sign(product of the signed W) x
// weight (in [-1, 1]; see trace_class).
// root_share = the sum of weight over all of the group's paths (not only those
// returned): the fraction of the root's attribution that flows through the group.
// Precomputed at load (ingest/path_figures.py): root_share on the NeuronGroup (a dynamic
// program over the layered DAG), the group's strongest paths on its GroupPaths node (a
// k-best dynamic program, k = the class's paths_kept, 20 by default: at most that many
// rows, whatever $limit). Each returned path is matched once, group by group.
// Cost: one group (its GroupPaths node and $limit paths); no whole-graph scan.
//
// Classes whose subgraph is incomplete (complete = false: being reloaded, or a load that was
// interrupted) are skipped; the `classes` query lists them.
//
// Parameters:
//   $group string: the neuron group uid ('{class uid}/{layer}/g{index}', e.g. 'resnet50@1a2b3c4d5e6f/c309/layer4.1/g2'), as returned by trace_class
//   :param group => 'resnet50@1a2b3c4d5e6f/c309/layer4.1/g2'
//   $limit int = 10: paths returned
//   :param limit => 10
//
// Columns:
//   group string: the neuron group uid
//   class string: its class uid
//   label string: the group's label (`neurflow label`; null when unlabelled)
//   rank int: 1 = the strongest path
//   weight float: product of FLOWS_TO.share along the path
//   signed_weight float: sign(product of FLOWS_TO.weight, the signed W) x weight, in [-1, 1]
//   root_share float: sum of weight over all paths of the group to the root
//   groups list<string>: neuron group uids, from the group up to the root
//   layers list<string>: the layer of each of those groups
//   labels list<string>: the label of each of those groups (null where unlabelled)
//   relations list<string>: FLOWS_TO.relation of each hop, bottom up (null where unlabelled)
//   shares list<float>: FLOWS_TO.share of each hop, bottom up
//   path path: the path itself, group -> ... -> root (drawn by Neo4j Browser)
MATCH (g:NeuronGroup {uid: $group})
MATCH (c:Class {uid: g.class})-[:ROOT]->(root:NeuronGroup)
WHERE c.complete = true
MATCH (t:GroupPaths {uid: g.uid + '/paths'})
UNWIND range(0, CASE WHEN t.kept < $limit THEN t.kept ELSE $limit END - 1) AS i
WITH g, c, root, t, i, t.indices[i * (t.depth + 1)..(i + 1) * (t.depth + 1)] AS idx
MATCH path = (g) ((a:NeuronGroup)-[:FLOWS_TO]->(b:NeuronGroup WHERE b.index = idx[t.depth - b.depth]))* (root)
RETURN g.uid AS group,
       c.uid AS class,
       g.label AS label,
       i + 1 AS rank,
       t.weights[i] AS weight,
       t.signed[i] AS signed_weight,
       g.root_share AS root_share,
       [n IN nodes(path) | n.uid] AS groups,
       [n IN nodes(path) | n.layer] AS layers,
       [n IN nodes(path) | n.label] AS labels,
       [r IN relationships(path) | r.relation] AS relations,
       [r IN relationships(path) | r.share] AS shares,
       path
ORDER BY rank
