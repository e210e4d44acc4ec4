// concept_classes: which classes' circuits use a concept of the atlas, through which semantic and neuron groups, and how much it weighs towards each class
//
// Answers: a Concept (`neurflow link`: a cluster of semantic groups of many classes at
// one layer) is expressed by semantic groups (EXPRESSES); each belongs to one neuron
// group of one class. One row per (class, neuron group): its semantic groups that
// express the concept and how much of the class's attribution flows through the group:
// root_share = the sum over the group's paths to its class root of the product of
// FLOWS_TO.share (see trace_class), best_path = the largest such product; in_weight and
// out_weight = the sums of |W| of its incoming and outgoing FLOWS_TO. root_share and
// best_path are precomputed at load by dynamic programs over the layered DAG
// (NeuronGroup.root_share, NeuronGroup.best_path; ingest/path_figures.py).
// Cost: the concept's semantic groups and their neuron groups, across every class that
// uses the concept (grows with the classes sharing it, not with the whole graph).
//
// Classes whose subgraph is incomplete (complete = false: being reloaded, or a load that was
// interrupted) are skipped; the `classes` query lists them.
//
// Parameters:
//   $concept string: the concept uid ('{model uid}/{layer}/k{index}'), as returned by the concepts query
//   :param concept => 'resnet50@1a2b3c4d5e6f/layer4.1/k3'
//   $limit int = 100: rows returned
//   :param limit => 100
//
// Columns:
//   concept string: the concept uid
//   concept_label string: its label (`neurflow label`; null when unlabelled)
//   layer string: its layer
//   class string: the class uid
//   class_name string: the class name
//   class_index int: the class index
//   group string: the neuron group uid
//   group_label string: the group's label (null when unlabelled)
//   semantic_groups list<map>: {uid, neuron, distance} per semantic group of the group that expresses the concept, closest first
//   root_share float: sum over the group's paths to the class root of the product of FLOWS_TO.share
//   best_path float: the largest product of FLOWS_TO.share over the group's paths to the root
//   in_weight float: sum of |W| of the group's incoming FLOWS_TO
//   out_weight float: sum of |W| of the group's outgoing FLOWS_TO
MATCH (k:Concept {uid: $concept})<-[:EXPRESSES]-(:SemanticGroup)-[:MEMBER_OF]->(g:NeuronGroup)
WITH DISTINCT k, g
MATCH (c:Class {uid: g.class})-[:ROOT]->(:NeuronGroup)
WHERE c.complete = true
WITH k, c, g, g.root_share AS root_share, g.best_path AS best_path
ORDER BY root_share DESC, c.index, g.uid
LIMIT $limit
RETURN k.uid AS concept,
       k.label AS concept_label,
       k.layer AS layer,
       c.uid AS class,
       c.name AS class_name,
       c.index AS class_index,
       g.uid AS group,
       g.label AS group_label,
       COLLECT {
         MATCH (g)<-[:MEMBER_OF]-(s:SemanticGroup)-[e:EXPRESSES]->(k)
         MATCH (s)<-[:HAS_SEMANTIC_GROUP]-(n:Neuron)
         WITH s, e, n
         ORDER BY e.distance, s.uid
         RETURN {uid: s.uid, neuron: n.uid, distance: e.distance}
       } AS semantic_groups,
       root_share,
       best_path,
       COLLECT { MATCH (g)<-[r:FLOWS_TO]-(:NeuronGroup) RETURN sum(r.abs_weight) }[0] AS in_weight,
       COLLECT { MATCH (g)-[r:FLOWS_TO]->(:NeuronGroup) RETURN sum(r.abs_weight) }[0] AS out_weight
ORDER BY root_share DESC, class_index, group
