// fp_causes: neuron groups that cause a class's false positives, across classes, with the classes they confuse and whether they are spurious
//
// Answers: which groups make other classes' images be predicted as a class (e.g. "hoverfly
// -> bee" through the body features both share), and which of them are spurious? A group
// is listed when `neurflow debug` found that masking it removes more of the class's false
// positives than masking random neuron sets of its size from its layer (permutation test,
// Benjamini-Hochberg q-value <= the class's debug_alpha). Its verdict then says whether it
// is also spurious: "spurious" (its concept label says it is not part of the class),
// "causes false positives; part of the class" (its label says it is the class's own
// concept: a look-alike, not a bias), or "causes false positives; spuriousness unknown"
// (no label). biased_groups lists the spurious ones alone.
// Cost: whole-graph scan over the NeuronGroup nodes (every class's groups).
//
// Parameters:
//   $class string = null: only this class, by name, index or uid; null = every class
//   :param class => null
//   $model string = null: the model, by uid or name; null = every model
//   :param model => null
//   $spurious bool = null: true = spurious only, false = not spurious only (part of the class or unknown); null = all
//   :param spurious => null
//   $limit int = 50: groups returned
//   :param limit => 50
//
// Columns:
//   rank int: 1 = the highest bias_score among the listed groups
//   group string: the neuron group uid
//   label string: the group's concept label (null before `neurflow label`)
//   class string: the uid of the class whose false positives it causes
//   class_name string: that class's name
//   layer string: the group's layer
//   channels list<int>: its neurons' channels
//   verdict string: "spurious", "causes false positives; part of the class" or "causes false positives; spuriousness unknown"
//   spurious bool: true, false, or null (unknown)
//   confusers list<string>: "class flipped/false positives" per class whose false positives masking the group removes
//   bias_score float: in [0, 1], see biased_groups
//   p_value float: permutation p-value of the false positives flipped by masking
//   q_value float: its Benjamini-Hochberg adjusted value
//   mask_fp_flip float: fraction of false positives no longer predicted as the class when masked
//   random_fp_flip float: the same for random neuron sets of the group's size (mean)
//   mask_tp_flip float: fraction of true positives no longer predicted as the class when masked
//   collateral_tp float: share of the true positives random sets keep that masking destroys
//   class_n_fp int: false positives of the class that were tested
MATCH (g:NeuronGroup)
WHERE g.causes_fp = true
  AND ($spurious IS NULL OR coalesce(g.spurious, false) = $spurious)
MATCH (c:Class {uid: g.class})-[:OF_MODEL]->(m:Model)
WHERE c.complete = true
  AND ($model IS NULL OR $model IN [m.uid, m.name])
  AND ($class IS NULL OR toString($class) IN [c.uid, c.name, toString(c.index)])
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
       g.layer AS layer,
       g.channels AS channels,
       g.verdict AS verdict,
       g.spurious AS spurious,
       g.confusers AS confusers,
       g.bias_score AS bias_score,
       g.effect_p AS p_value,
       g.q_value AS q_value,
       g.mask_fp_flip AS mask_fp_flip,
       g.random_fp_flip AS random_fp_flip,
       g.mask_tp_flip AS mask_tp_flip,
       g.collateral_tp AS collateral_tp,
       c.debug_n_fp AS class_n_fp
ORDER BY rank
