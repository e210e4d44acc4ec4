// similar_classes: the classes whose circuits share the most neurons with a given class (Jaccard of their neuron sets)
//
// Answers: which classes does the model build from the same neurons as this one
// (candidates for confusion and for shared, possibly spurious, concepts)? A class's
// neuron set = every neuron of its circuit below the logit layer (depth >= 1), read as
// (layer, channel) from its neuron groups' `channels` (every circuit neuron is in one of
// its groups); the logit units are left out because no two classes share one. jaccard = shared /
// (n_neurons_query + n_neurons - shared). Classes of other models, and classes with no
// shared neuron, are not listed. compare_classes shows where the overlap lies.
// Cost: per class, but walks every other class that shares one of its neurons (grows with the classes).
//
// Classes whose subgraph is incomplete (complete = false: being reloaded, or a load that was
// interrupted) are skipped; the `classes` query lists them.
//
// Parameters:
//   $class string: the class, by name, index (3 or '3') or uid (see trace_class)
//   :param class => 'bee'
//   $model string = null: the model, by uid or name; null = every model
//   :param model => null
//   $limit int = 10: classes returned per class
//   :param limit => 10
//
// Columns:
//   class string: the given class's uid
//   rank int: 1 = the most similar class
//   other string: the similar class's uid
//   other_name string: its name
//   other_index int: its index
//   jaccard float: shared / size of the union of the two neuron sets
//   shared int: neurons in both circuits
//   n_neurons_query int: neurons of the given class's circuit (depth >= 1)
//   n_neurons int: neurons of the other class's circuit (depth >= 1)
MATCH (c:Class)-[:OF_MODEL]->(m:Model)
WHERE toString($class) IN [c.uid, c.name, toString(c.index)]
  AND c.complete = true
  AND ($model IS NULL OR $model IN [m.uid, m.name])
CALL (c) {
  MATCH (c)-[:HAS_GROUP]->(g:NeuronGroup)
  WHERE g.depth > 0
  UNWIND g.channels AS channel
  RETURN collect(DISTINCT g.layer + '/' + toString(channel)) AS mine
}
MATCH (m)<-[:OF_MODEL]-(o:Class)
WHERE o.uid <> c.uid AND o.complete = true
CALL (o) {
  MATCH (o)-[:HAS_GROUP]->(g:NeuronGroup)
  WHERE g.depth > 0
  UNWIND g.channels AS channel
  RETURN collect(DISTINCT g.layer + '/' + toString(channel)) AS theirs
}
WITH c, o, size(mine) AS n_mine, size(theirs) AS n_other, size([x IN theirs WHERE x IN mine]) AS shared
WHERE shared > 0
WITH c, o, shared, n_mine, n_other, toFloat(shared) / (n_mine + n_other - shared) AS jaccard
ORDER BY jaccard DESC, shared DESC, o.index, o.uid
WITH c, collect({o: o, shared: shared, n_mine: n_mine, n_other: n_other, jaccard: jaccard})[..$limit] AS top
UNWIND range(0, size(top) - 1) AS i
WITH c, i + 1 AS rank, top[i] AS t
RETURN c.uid AS class,
       rank,
       t.o.uid AS other,
       t.o.name AS other_name,
       t.o.index AS other_index,
       t.jaccard AS jaccard,
       t.shared AS shared,
       t.n_mine AS n_neurons_query,
       t.n_other AS n_neurons
ORDER BY class, rank
