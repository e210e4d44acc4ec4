// classes: the classes in the graph with their load, debug and evaluation status
//
// Answers: which classes are ingested (and under which name and index to pass as $class
// to the other queries), are their subgraphs complete (a class being reloaded, or whose
// load was interrupted, has complete = false), and were they debugged and evaluated?
// Cost: whole-graph scan over the Class nodes (and their groups) of the model(s).
//
// Parameters:
//   $model string = null: the model, by uid or name; null = every model
//   :param model => null
//
// Columns:
//   class string: the class uid
//   class_index int: its index (the logit unit)
//   class_name string: its name
//   model string: its model uid
//   complete bool: its subgraph is fully loaded
//   layers list<string>: the circuit's layers, logit layer first
//   n_groups int: its neuron groups
//   n_semantic_groups int: its semantic groups
//   loaded_at string: when it was last loaded
//   debugged_at string: when `neurflow debug` last wrote its evidence (null = never)
//   biased_groups int: its neuron groups marked biased
//   evaluated_at string: when `neurflow evaluate` last ran on it (null = never)
//   faithful bool: eval_faithful (null = not evaluated)
//   artifact string: the artifact folder it was loaded from (commands on loaded classes default to it)
MATCH (c:Class)-[:OF_MODEL]->(m:Model)
WHERE $model IS NULL OR $model IN [m.uid, m.name]
RETURN c.uid AS class,
       c.index AS class_index,
       c.name AS class_name,
       m.uid AS model,
       c.complete AS complete,
       c.layers AS layers,
       COUNT { (c)-[:HAS_GROUP]->(:NeuronGroup) } AS n_groups,
       COUNT { (c)-[:HAS_GROUP]->(:NeuronGroup)<-[:MEMBER_OF]-(:SemanticGroup) } AS n_semantic_groups,
       c.loaded_at AS loaded_at,
       c.debugged_at AS debugged_at,
       COUNT { (c)-[:HAS_GROUP]->(g:NeuronGroup) WHERE g.biased = true } AS biased_groups,
       c.evaluated_at AS evaluated_at,
       c.eval_faithful AS faithful,
       c.artifact AS artifact
ORDER BY model, class_index
