// compare_classes: two classes side by side, layer by layer: shared core neurons, Jaccard of their neuron sets, overlapping neuron groups
//
// Answers: where in the network do two classes' circuits share neurons (paper Section 5:
// shared concepts between classes) and which of their neuron groups overlap? One row
// per layer, logit layer first. A class's neuron set at a layer = the neurons of its
// circuit there (every neuron of the hypertree has semantic groups in the class). At the
// logit layer the sets are the two logit units, so jaccard is 0 there unless both
// parameters name the same class. Swapping $class_a and $class_b swaps n_a/n_b and
// the two sides of similar_groups; everything else stays the same.
// Cost: the two classes only; no whole-graph scan.
//
// Classes whose subgraph is incomplete (complete = false: being reloaded, or a load that was
// interrupted) are skipped; the `classes` query lists them.
//
// Parameters:
//   $class_a string: the first class, by name, index (3 or '3') or uid (see trace_class)
//   :param class_a => 'bee'
//   $class_b string: the second class, same convention
//   :param class_b => 'fly'
//   $model string = null: the model of both classes, by uid or name; null = every model with both classes
//   :param model => null
//
// Columns:
//   class_a string: the first class uid
//   class_b string: the second class uid
//   layer string: the layer
//   depth int: layers below the logit layer
//   n_a int: neurons of class_a's circuit at this layer
//   n_b int: neurons of class_b's circuit at this layer
//   shared int: neurons in both
//   jaccard float: shared / (n_a + n_b - shared), 0 when both are empty
//   shared_channels list<int>: the channels of the shared neurons, ascending
//   similar_groups list<map>: {group_a, group_b, label_a, label_b, jaccard, shared} per SIMILAR_TO pair of their neuron groups at this layer, highest jaccard first
MATCH (a:Class)-[:OF_MODEL]->(m:Model)
WHERE toString($class_a) IN [a.uid, a.name, toString(a.index)]
  AND a.complete = true
  AND ($model IS NULL OR $model IN [m.uid, m.name])
MATCH (b:Class)-[:OF_MODEL]->(m)
WHERE toString($class_b) IN [b.uid, b.name, toString(b.index)]
  AND b.complete = true
CALL (a, b) {
  MATCH (a)-[:HAS_GROUP]->(:NeuronGroup)<-[:MEMBER_OF]-(s:SemanticGroup)
  RETURN a.uid AS owner, s.layer AS layer, s.depth AS depth, s.channel AS channel
  UNION
  MATCH (b)-[:HAS_GROUP]->(:NeuronGroup)<-[:MEMBER_OF]-(s:SemanticGroup)
  RETURN b.uid AS owner, s.layer AS layer, s.depth AS depth, s.channel AS channel
}
WITH a, b, layer, depth, channel, collect(owner) AS owners
WITH a, b, layer, depth, channel, a.uid IN owners AS in_a, b.uid IN owners AS in_b
ORDER BY channel
WITH a, b, layer, depth,
     sum(CASE WHEN in_a THEN 1 ELSE 0 END) AS n_a,
     sum(CASE WHEN in_b THEN 1 ELSE 0 END) AS n_b,
     collect(CASE WHEN in_a AND in_b THEN channel END) AS shared_channels
WITH a, b, layer, depth, n_a, n_b, shared_channels, size(shared_channels) AS shared
RETURN a.uid AS class_a,
       b.uid AS class_b,
       layer,
       depth,
       n_a,
       n_b,
       shared,
       CASE WHEN n_a + n_b - shared = 0 THEN 0.0 ELSE toFloat(shared) / (n_a + n_b - shared) END AS jaccard,
       shared_channels,
       COLLECT {
         MATCH (a)-[:HAS_GROUP]->(ga:NeuronGroup)-[r:SIMILAR_TO]-(gb:NeuronGroup)<-[:HAS_GROUP]-(b)
         WHERE ga.layer = layer
         WITH ga, gb, r
         ORDER BY r.jaccard DESC, ga.index, gb.index
         RETURN {group_a: ga.uid, group_b: gb.uid, label_a: ga.label, label_b: gb.label, jaccard: r.jaccard, shared: r.shared}
       } AS similar_groups
ORDER BY class_a, class_b, depth
