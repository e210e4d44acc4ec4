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
// attribution routed along the path; signed_weight = the product of the signed W.
// root_share = the sum of weight over all of the group's paths (not only those
// returned): the fraction of the root's attribution that flows through the group.
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
//   signed_weight float: product of FLOWS_TO.weight (signed W) along the path
//   root_share float: sum of weight over all paths of the group to the root
//   groups list<string>: neuron group uids, from the group up to the root
//   layers list<string>: the layer of each of those groups
//   labels list<string>: the label of each of those groups (null where unlabelled)
//   relations list<string>: FLOWS_TO.relation of each hop, bottom up (null where unlabelled)
//   shares list<float>: FLOWS_TO.share of each hop, bottom up
//   path path: the path itself, group -> ... -> root (drawn by Neo4j Browser)
MATCH (g:NeuronGroup {uid: $group})
MATCH (c:Class {uid: g.class})-[:ROOT]->(root:NeuronGroup)
MATCH p = (g)-[:FLOWS_TO*0..]->(root)
WITH g, c, p,
     reduce(w = 1.0, r IN relationships(p) | w * r.share) AS weight,
     reduce(w = 1.0, r IN relationships(p) | w * r.weight) AS signed_weight,
     reduce(s = '', n IN nodes(p) | s + n.uid + ' ') AS tie
ORDER BY weight DESC, tie
WITH g, c, sum(weight) AS root_share, collect({path: p, weight: weight, signed_weight: signed_weight}) AS paths
WITH g, c, root_share, paths[..$limit] AS top
UNWIND range(0, size(top) - 1) AS i
WITH g, c, root_share, i + 1 AS rank, top[i] AS t
RETURN g.uid AS group,
       c.uid AS class,
       g.label AS label,
       rank,
       t.weight AS weight,
       t.signed_weight AS signed_weight,
       root_share,
       [n IN nodes(t.path) | n.uid] AS groups,
       [n IN nodes(t.path) | n.layer] AS layers,
       [n IN nodes(t.path) | n.label] AS labels,
       [r IN relationships(t.path) | r.relation] AS relations,
       [r IN relationships(t.path) | r.share] AS shares,
       t.path AS path
ORDER BY rank
