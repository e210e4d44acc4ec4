// biased_groups: neuron groups that `neurflow debug` scored as biased, across classes, most biased first
//
// Answers: which neuron groups make a class predicted for the wrong reasons (paper
// Section 5, image debugging: e.g. "flower" groups in the circuit of "bee")? `neurflow
// debug` writes its evidence on each NeuronGroup of a debugged class: bias_score in
// [0, 1] (higher = more biased: as active on false positives as on true positives, times
// masking it removes false positives beyond random groups of its size (p <= 0.05), times how many
// other classes share its concepts), bias_rank (1 = the most biased group of its class),
// biased (bias_score >= the class's bias_threshold), and the parts of the evidence.
// Groups never debugged have no bias_score and are never listed. The class a group
// biases is the class whose circuit holds it; similar_classes adds the classes whose
// neuron groups share its neurons (SIMILAR_TO, from `neurflow link`).
//
// Parameters:
//   $threshold float = null: the smallest bias_score listed; null = the groups the debugger marked biased (biased = true)
//   :param threshold => null
//   $model string = null: the model, by uid or name; null = every model
//   :param model => null
//   $classes list<string> = null: only these classes, each by name, index or uid (as $class in trace_class); null = every class
//   :param classes => null
//   $limit int = 50: groups returned
//   :param limit => 50
//
// Columns:
//   rank int: 1 = the highest bias_score among the listed groups
//   group string: the neuron group uid
//   class string: the uid of the class it biases (whose circuit holds it)
//   class_name string: that class's name
//   class_index int: that class's index
//   layer string: the group's layer
//   channels list<int>: its neurons' channels
//   bias_score float: in [0, 1], higher = more biased
//   bias_rank int: rank within its class (1 = most biased)
//   biased bool: bias_score >= the class's bias_threshold
//   fp_metric float: mean group-concept metric M (paper Section 5) over the class's false positives
//   tp_metric float: the same over its true positives
//   mask_fp_flip float: fraction of false positives no longer predicted as the class when the group is masked
//   mask_tp_drop float: mean drop of the class probability on true positives when the group is masked
//   effect_z float: z-score of mask_fp_flip against masking random neuron sets of the group's size
//   effect_p float: empirical p-value of mask_fp_flip against those random sets (the score needs <= 0.05)
//   shared_classes int: number of other classes whose circuits use any of the group's concepts (concept atlas)
//   shared_fraction float: mean over the group's members of the fraction of other classes using the member's concept (the score's sharing term)
//   similar_classes list<string>: names of the classes with a SIMILAR_TO group, ascending
MATCH (g:NeuronGroup)
WHERE g.bias_score IS NOT NULL
  AND (($threshold IS NULL AND g.biased = true) OR g.bias_score >= $threshold)
MATCH (c:Class {uid: g.class})-[:OF_MODEL]->(m:Model)
WHERE ($model IS NULL OR $model IN [m.uid, m.name])
  AND ($classes IS NULL OR any(x IN $classes WHERE toString(x) IN [c.uid, c.name, toString(c.index)]))
WITH g, c
ORDER BY g.bias_score DESC, g.uid
LIMIT $limit
WITH collect({g: g, c: c}) AS rows
UNWIND range(0, size(rows) - 1) AS i
WITH i + 1 AS rank, rows[i].g AS g, rows[i].c AS c
RETURN rank,
       g.uid AS group,
       c.uid AS class,
       c.name AS class_name,
       c.index AS class_index,
       g.layer AS layer,
       g.channels AS channels,
       g.bias_score AS bias_score,
       g.bias_rank AS bias_rank,
       g.biased AS biased,
       g.fp_metric AS fp_metric,
       g.tp_metric AS tp_metric,
       g.mask_fp_flip AS mask_fp_flip,
       g.mask_tp_drop AS mask_tp_drop,
       g.effect_z AS effect_z,
       g.effect_p AS effect_p,
       g.shared_classes AS shared_classes,
       g.shared_fraction AS shared_fraction,
       COLLECT {
         MATCH (g)-[:SIMILAR_TO]-(:NeuronGroup)<-[:HAS_GROUP]-(o:Class)
         WITH DISTINCT o
         ORDER BY o.name
         RETURN o.name
       } AS similar_classes
ORDER BY rank
