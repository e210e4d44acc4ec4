// overview: what the graph holds: nodes per label, relationships per type, classes ingested per model, computation runs
//
// Answers: is anything loaded, how much, and how complete? Rows of four sections, in
// this order: 'node' (one row per label of the schema, count = its nodes),
// 'relationship' (one row per relationship type, count = its relationships), 'model'
// (one row per model, count = its classes; detail = how many are complete, debugged,
// evaluated and unfaithful, its concepts, when a class was last loaded) and 'runs' (one
// row per model, count = the `neurflow compute` runs that built its classes; detail =
// first start, last finish, total seconds). Labels and types with no data show count 0.
// Cost: whole-graph scan (counts every label and relationship type; ArcadeDB counts relationships by scanning them).
//
// Parameters: none
//
// Columns:
//   section string: 'node', 'relationship', 'model' or 'runs'
//   name string: the label, the relationship type, or the model uid
//   count int: nodes, relationships, classes or runs
//   detail map: for 'model' and 'runs' rows (null for the others)
CALL () {
  UNWIND [
    {section: 'node', name: 'Model', count: COUNT { (:Model) }},
    {section: 'node', name: 'Layer', count: COUNT { (:Layer) }},
    {section: 'node', name: 'Neuron', count: COUNT { (:Neuron) }},
    {section: 'node', name: 'Class', count: COUNT { (:Class) }},
    {section: 'node', name: 'SemanticGroup', count: COUNT { (:SemanticGroup) }},
    {section: 'node', name: 'NeuronGroup', count: COUNT { (:NeuronGroup) }},
    {section: 'node', name: 'Patch', count: COUNT { (:Patch) }},
    {section: 'node', name: 'Run', count: COUNT { (:Run) }},
    {section: 'node', name: 'Concept', count: COUNT { (:Concept) }},
    {section: 'node', name: 'Image', count: COUNT { (:Image) }},
    {section: 'relationship', name: 'HAS_LAYER', count: COUNT { ()-[:HAS_LAYER]->() }},
    {section: 'relationship', name: 'FEEDS', count: COUNT { ()-[:FEEDS]->() }},
    {section: 'relationship', name: 'IN_LAYER', count: COUNT { ()-[:IN_LAYER]->() }},
    {section: 'relationship', name: 'OF_MODEL', count: COUNT { ()-[:OF_MODEL]->() }},
    {section: 'relationship', name: 'LOGIT', count: COUNT { ()-[:LOGIT]->() }},
    {section: 'relationship', name: 'ROOT', count: COUNT { ()-[:ROOT]->() }},
    {section: 'relationship', name: 'HAS_GROUP', count: COUNT { ()-[:HAS_GROUP]->() }},
    {section: 'relationship', name: 'HAS_SEMANTIC_GROUP', count: COUNT { ()-[:HAS_SEMANTIC_GROUP]->() }},
    {section: 'relationship', name: 'CONTRIBUTES', count: COUNT { ()-[:CONTRIBUTES]->() }},
    {section: 'relationship', name: 'MEMBER_OF', count: COUNT { ()-[:MEMBER_OF]->() }},
    {section: 'relationship', name: 'FLOWS_TO', count: COUNT { ()-[:FLOWS_TO]->() }},
    {section: 'relationship', name: 'EXEMPLAR', count: COUNT { ()-[:EXEMPLAR]->() }},
    {section: 'relationship', name: 'BUILT_BY', count: COUNT { ()-[:BUILT_BY]->() }},
    {section: 'relationship', name: 'HAS_CONCEPT', count: COUNT { ()-[:HAS_CONCEPT]->() }},
    {section: 'relationship', name: 'EXPRESSES', count: COUNT { ()-[:EXPRESSES]->() }},
    {section: 'relationship', name: 'SIMILAR_TO', count: COUNT { ()-[:SIMILAR_TO]->() }},
    {section: 'relationship', name: 'DROPS', count: COUNT { ()-[:DROPS]->() }}
  ] AS row
  RETURN row.section AS section, row.name AS name, row.count AS count, null AS detail
  UNION ALL
  MATCH (m:Model)
  OPTIONAL MATCH (m)<-[:OF_MODEL]-(c:Class)
  WITH m,
       count(c) AS classes,
       sum(CASE WHEN c.complete = true THEN 1 ELSE 0 END) AS complete,
       count(c.debugged_at) AS debugged,
       count(c.evaluated_at) AS evaluated,
       sum(CASE WHEN c.eval_faithful = false THEN 1 ELSE 0 END) AS unfaithful,
       max(c.loaded_at) AS last_loaded
  RETURN 'model' AS section, m.uid AS name, classes AS count,
         {model_name: m.name, complete: complete, incomplete: classes - complete, debugged: debugged,
          evaluated: evaluated, unfaithful: unfaithful, concepts: COUNT { (m)-[:HAS_CONCEPT]->(:Concept) },
          last_loaded: last_loaded} AS detail
  UNION ALL
  MATCH (m:Model)<-[:OF_MODEL]-(:Class)-[:BUILT_BY]->(run:Run)
  WITH m, count(DISTINCT run) AS runs, min(run.started) AS first_started, max(run.finished) AS last_finished,
       sum(run.seconds) AS seconds
  RETURN 'runs' AS section, m.uid AS name, runs AS count,
         {first_started: first_started, last_finished: last_finished, seconds: seconds} AS detail
}
RETURN section, name, count, detail
ORDER BY CASE section WHEN 'node' THEN 0 WHEN 'relationship' THEN 1 WHEN 'model' THEN 2 ELSE 3 END, name
