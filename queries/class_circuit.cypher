// class_circuit: every neuron group of a class's concept circuit with its FLOWS_TO edges to the layer above (the whole DAG, for drawing it)
//
// Answers: what does the whole concept circuit of a class look like (paper Section 3.5,
// Figure 1)? trace_class lists the strongest paths only; this query returns every
// neuron group of the class, one row each, with its outgoing FLOWS_TO edges (child
// group -> parent group one layer up; share = |W| / sum of |W| into the same parent),
// so that a picture of the layered DAG can be drawn, logit layer on top. `props` holds
// every property of the NeuronGroup node (bias evidence after `neurflow debug`, and any
// property later writers add, such as a label) and `class_props` every property of the
// Class node (debug verdicts, evaluation results), so readers need no change when the
// schema grows. Rows: by depth (0 = the root group of the logit layer), then index.
// Cost: per class (its groups and FLOWS_TO); no whole-graph scan.
//
// Classes whose subgraph is incomplete (complete = false: being reloaded, or a load that was
// interrupted) are skipped; the `classes` query lists them.
//
// Parameters:
//   $class string: the class, by name ('bee'), index (309 or '309') or uid (see trace_class)
//   :param class => 'bee'
//   $model string = null: the model, by uid or name; null = every model (a class name may exist in several)
//   :param model => null
//
// Columns:
//   class string: the class uid
//   class_name string: the class name
//   class_index int: the class index
//   model string: the model uid
//   layers list<string>: the circuit's layers, logit layer first
//   artifact string: the class's artifact folder (as loaded; null when unknown)
//   group string: the neuron group uid
//   layer string: its layer
//   depth int: layers below the logit layer (0 = the root group)
//   index int: its index within the layer
//   root bool: whether it is the class's root group
//   n_neurons int: its neurons
//   n_patches int: its patches
//   channels list<int>: its neurons' channels, ascending
//   outgoing list<map>: {group, weight, abs_weight, share} per FLOWS_TO to a parent group, largest share first
//   props map: every property of the NeuronGroup node
//   class_props map: every property of the Class node (debug and evaluation status, as their writers add them)
MATCH (c:Class)-[:OF_MODEL]->(m:Model)
WHERE toString($class) IN [c.uid, c.name, toString(c.index)]
  AND c.complete = true
  AND ($model IS NULL OR $model IN [m.uid, m.name])
MATCH (c)-[:HAS_GROUP]->(g:NeuronGroup)
RETURN c.uid AS class,
       c.name AS class_name,
       c.index AS class_index,
       m.uid AS model,
       c.layers AS layers,
       c.artifact AS artifact,
       g.uid AS group,
       g.layer AS layer,
       g.depth AS depth,
       g.index AS index,
       g.root AS root,
       g.n_neurons AS n_neurons,
       g.n_patches AS n_patches,
       g.channels AS channels,
       COLLECT {
         MATCH (g)-[r:FLOWS_TO]->(parent:NeuronGroup)
         WITH parent, r
         ORDER BY r.share DESC, parent.uid
         RETURN {group: parent.uid, weight: r.weight, abs_weight: r.abs_weight, share: r.share}
       } AS outgoing,
       properties(g) AS props,
       properties(c) AS class_props
ORDER BY class, depth, index
