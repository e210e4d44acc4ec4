// neuron_profile: one neuron across classes: in which classes' circuits it is a core neuron, of which parent neurons, into which of their semantic groups, with what weights and rank
//
// Answers: is this neuron specific to one class or shared by many, and what does it do
// in each (paper Section 3.4)? One row per (class, parent neuron) whose core concept
// neurons include it: its rank among the parent's core neurons (0 = most important) and
// its hypertree branches (CONTRIBUTES) into the parent's semantic groups, each with the
// Eq. 4 weight (signed; the |weights| into one semantic group sum to 1) and the Eq. 2
// importance. A neuron that is a class's logit unit gets one row with role 'logit' for
// that class. groups: the class's neuron groups that hold one of the neuron's own
// semantic groups (a neuron can be in several).
// Cost: scans every Neuron node (the OR on uid / layer:channel defeats the uid index), then one neuron across every class that uses it.
//
// Parameters:
//   $neuron string: the neuron, by uid ('{model uid}/{layer}/{channel}') or by 'layer:channel' ('layer4.1:1023')
//   :param neuron => 'layer4.1:1023'
//   $model string = null: the model, by uid or name, when 'layer:channel' is ambiguous; null = every model
//   :param model => null
//
// Columns:
//   neuron string: the neuron uid
//   class string: the class uid
//   class_name string: the class name
//   class_index int: the class index
//   role string: 'core' (a core neuron of the parent) or 'logit' (the class's logit unit)
//   parent string: the parent neuron uid, one layer up (null for 'logit')
//   rank int: rank among the parent's core neurons, 0 = most important (null for 'logit')
//   branches list<map>: {semantic_group, weight, abs_weight, importance} per CONTRIBUTES into a semantic group of the parent, by semantic group index ([] for 'logit')
//   max_abs_weight float: the largest |weight| of those branches (null for 'logit')
//   groups list<string>: the class's neuron groups holding one of this neuron's semantic groups, by index
MATCH (n:Neuron)
WHERE n.uid = $neuron OR n.layer + ':' + toString(n.channel) = $neuron
MATCH (m:Model {uid: n.model})
WHERE $model IS NULL OR $model IN [m.uid, m.name]
CALL (n) {
  MATCH (n)-[e:CONTRIBUTES]->(s:SemanticGroup)<-[:HAS_SEMANTIC_GROUP]-(parent:Neuron)
  WITH s.class AS class_uid, parent, e, s
  ORDER BY s.index
  RETURN class_uid, 'core' AS role, parent.uid AS parent, min(e.rank) AS rank,
         collect({semantic_group: s.uid, weight: e.weight, abs_weight: e.abs_weight, importance: e.importance}) AS branches,
         max(e.abs_weight) AS max_abs_weight
  UNION ALL
  MATCH (n)<-[:LOGIT]-(c:Class)
  RETURN c.uid AS class_uid, 'logit' AS role, null AS parent, null AS rank, [] AS branches, null AS max_abs_weight
}
MATCH (c:Class {uid: class_uid})
RETURN n.uid AS neuron,
       c.uid AS class,
       c.name AS class_name,
       c.index AS class_index,
       role,
       parent,
       rank,
       branches,
       max_abs_weight,
       COLLECT {
         MATCH (c)-[:HAS_GROUP]->(g:NeuronGroup)
         WHERE g.layer = n.layer AND n.channel IN g.channels
         WITH g
         ORDER BY g.index
         RETURN g.uid
       } AS groups
ORDER BY neuron, class_index, class, role DESC, rank, parent
