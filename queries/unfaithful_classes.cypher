// unfaithful_classes: classes whose circuit `neurflow evaluate` found not faithful, worst first
//
// Answers: for which classes should the circuit not be trusted (paper Section 4)?
// `neurflow evaluate` writes on the Class node: eval_faithful (true when both claims
// hold: optimality, i.e. random neuron sets change the target concepts significantly
// more than the core sets, and fidelity, i.e. masking the core neurons lowers the class
// accuracy more than masking as many random neurons), eval_optimality_diff (pooled mean
// L(random) - L(core)) and eval_optimality_ci_low (the lower end of its 99% interval),
// eval_fidelity_mask_core / eval_fidelity_mask_random / eval_fidelity_retain_core /
// eval_fidelity_retain_random (mean normalised class accuracy), eval_correlation_spearman
// / eval_correlation_pearson (weight fidelity) and evaluated_at. fidelity_gap =
// eval_fidelity_mask_random - eval_fidelity_mask_core: how much more masking the core
// neurons hurts than masking random ones (<= 0 fails the fidelity claim). Rows: the
// smallest fidelity_gap first (unknown last), then by optimality_diff.
// Cost: whole-graph scan over the Class nodes.
//
// Classes whose subgraph is incomplete (complete = false: being reloaded, or a load that was
// interrupted) are skipped; the `classes` query lists them.
//
// Parameters:
//   $model string = null: the model, by uid or name; null = every model
//   :param model => null
//   $include_unevaluated bool = false: also list the classes never evaluated (eval_faithful is null)
//   :param include_unevaluated => false
//
// Columns:
//   class string: the class uid
//   class_name string: its name
//   class_index int: its index
//   model string: its model uid
//   faithful bool: eval_faithful (false; null when never evaluated)
//   optimality_diff float: eval_optimality_diff, mean L(random) - L(core) (> 0 is good)
//   optimality_ci_low float: eval_optimality_ci_low (> 0 is significant)
//   fidelity_mask_core float: eval_fidelity_mask_core
//   fidelity_mask_random float: eval_fidelity_mask_random
//   fidelity_gap float: fidelity_mask_random - fidelity_mask_core (> 0 is good)
//   fidelity_retain_core float: eval_fidelity_retain_core
//   fidelity_retain_random float: eval_fidelity_retain_random
//   correlation_spearman float: eval_correlation_spearman
//   evaluated_at string: when it was evaluated
MATCH (c:Class)-[:OF_MODEL]->(m:Model)
WHERE ($model IS NULL OR $model IN [m.uid, m.name])
  AND c.complete = true
  AND (c.eval_faithful = false OR ($include_unevaluated AND c.eval_faithful IS NULL))
RETURN c.uid AS class,
       c.name AS class_name,
       c.index AS class_index,
       m.uid AS model,
       c.eval_faithful AS faithful,
       c.eval_optimality_diff AS optimality_diff,
       c.eval_optimality_ci_low AS optimality_ci_low,
       c.eval_fidelity_mask_core AS fidelity_mask_core,
       c.eval_fidelity_mask_random AS fidelity_mask_random,
       c.eval_fidelity_mask_random - c.eval_fidelity_mask_core AS fidelity_gap,
       c.eval_fidelity_retain_core AS fidelity_retain_core,
       c.eval_fidelity_retain_random AS fidelity_retain_random,
       c.eval_correlation_spearman AS correlation_spearman,
       c.evaluated_at AS evaluated_at
ORDER BY fidelity_gap, optimality_diff, model, class_index
