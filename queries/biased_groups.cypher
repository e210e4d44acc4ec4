// biased_groups: neuron groups that `neurflow debug` found spurious for their class, across classes, most specific first
//
// Answers: which neuron groups make a class predicted for the wrong reasons (paper
// Section 5, image debugging: e.g. a "flowers" group in the circuit of "bee")? A group is
// listed when `neurflow debug` gave it the verdict "spurious": masking it removes more of
// the class's false positives than masking random neuron sets of its size from its layer
// (permutation test, Benjamini-Hochberg q-value <= the class's debug_alpha), AND its
// concept label says it is not part of the class (`neurflow label`). Groups that cause
// false positives but are the class's own concept, or whose spuriousness is unknown (no
// label), are in fp_causes, not here. Classes with fewer false positives than the evidence
// floor have the verdict "insufficient evidence" (Class.debug_verdict) and no group here.
// bias_score in [0, 1] ranks: the share of the false positives that random sets leave that
// masking removes, times one minus the same share of destroyed true positives.
// Cost: whole-graph scan over the NeuronGroup nodes (every class's groups).
//
// Parameters:
//   $threshold float = null: the smallest bias_score listed; null = every spurious group
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
//   label string: the group's concept label (null before `neurflow label`)
//   class string: the uid of the class it biases (whose circuit holds it)
//   class_name string: that class's name
//   class_index int: that class's index
//   layer string: the group's layer
//   channels list<int>: its neurons' channels
//   verdict string: "spurious"
//   bias_score float: in [0, 1], higher = removes more false positives while keeping the true positives
//   bias_rank int: rank within its class (1 = first)
//   biased bool: true (the verdict is "spurious")
//   p_value float: permutation p-value of the false positives flipped by masking
//   q_value float: its Benjamini-Hochberg adjusted value (the test: q <= debug_alpha)
//   mask_fp_flip float: fraction of false positives no longer predicted as the class when the group is masked
//   random_fp_flip float: the same for random neuron sets of the group's size (mean)
//   mask_tp_flip float: fraction of true positives no longer predicted as the class when masked
//   collateral_tp float: share of the true positives random sets keep that masking destroys (lowers the score)
//   confusers list<string>: "class flipped/false positives" per class whose false positives masking removes
//   fp_metric float: mean group-concept metric M (paper Section 5) over the class's false positives
//   tp_metric float: the same over its true positives
//   mask_tp_drop float: mean drop of the class probability on true positives when the group is masked
//   effect_z float: z-score of mask_fp_flip against the random sets (descriptive)
//   effect_p float: the same as p_value (kept for earlier clients)
//   shared_classes int: number of other classes whose circuits use any of the group's concepts (concept atlas)
//   shared_fraction float: mean over the group's members of the fraction of other classes using the member's concept
//   similar_classes list<string>: names of the classes with a SIMILAR_TO group, ascending
MATCH (g:NeuronGroup)
WHERE g.biased = true
  AND ($threshold IS NULL OR g.bias_score >= $threshold)
MATCH (c:Class {uid: g.class})-[:OF_MODEL]->(m:Model)
WHERE c.complete = true
  AND ($model IS NULL OR $model IN [m.uid, m.name])
  AND ($classes IS NULL OR any(x IN $classes WHERE toString(x) IN [c.uid, c.name, toString(c.index)]))
WITH g, c
ORDER BY g.bias_score DESC, g.uid
LIMIT $limit
WITH collect({g: g, c: c}) AS rows
UNWIND range(0, size(rows) - 1) AS i
WITH i + 1 AS rank, rows[i].g AS g, rows[i].c AS c
RETURN rank,
       g.uid AS group,
       g.label AS label,
       c.uid AS class,
       c.name AS class_name,
       c.index AS class_index,
       g.layer AS layer,
       g.channels AS channels,
       g.verdict AS verdict,
       g.bias_score AS bias_score,
       g.bias_rank AS bias_rank,
       g.biased AS biased,
       g.effect_p AS p_value,
       g.q_value AS q_value,
       g.mask_fp_flip AS mask_fp_flip,
       g.random_fp_flip AS random_fp_flip,
       g.mask_tp_flip AS mask_tp_flip,
       g.collateral_tp AS collateral_tp,
       g.confusers AS confusers,
       g.fp_metric AS fp_metric,
       g.tp_metric AS tp_metric,
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
