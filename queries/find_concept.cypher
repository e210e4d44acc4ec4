// find_concept: neuron groups and atlas concepts whose label or description matches some words, across classes
//
// Answers: where does the model use "flowers" (or "stripes", "wings", ...)? After
// `neurflow label`, every labelled NeuronGroup and Concept has a `label` and a
// `description`; this finds those containing the words of $text (case-insensitive
// substrings), in every class of every model (or of $model).
// score = the mean over the words of 1 when the word is in the label, 0.5 when it is only
// in the description, 0 otherwise; rows with score 0 are left out. Best score first, groups
// before concepts, then the labeller's own score (the purest match first).
// Portable: it runs on Neo4j 5 and on the embedded database, scanning the labelled nodes.
// On Neo4j 5, find_concept_fulltext asks the full-text index `label_text` instead
// (Lucene syntax and relevance; see docs/cypher-portability.md).
// Cost: whole-graph scan over the labelled NeuronGroup and Concept nodes (no index serves CONTAINS).
//
// Parameters:
//   $text string: the words to look for ('flowers', 'yellow stripes')
//   :param text => 'flowers'
//   $model string = null: the model, by uid or name; null = every model
//   :param model => null
//   $limit int = 25: rows returned
//   :param limit => 25
//
// Columns:
//   kind string: 'group' (a NeuronGroup) or 'concept' (an atlas Concept)
//   uid string: its uid
//   label string: its label
//   description string: its description
//   score float: fraction of the words found (label 1, description only 0.5)
//   model string: the model uid
//   layer string: its layer
//   class string: the class uid of a group (null for a concept)
//   class_name string: the class name of a group (null for a concept)
//   classes list<string>: the class names: the group's class, or the classes using the concept
//   part_of_class bool: whether a group's concept is part of its class's object (null when undecided or for a concept)
//   label_score float: the labeller's score
WITH [w IN split(toLower(trim($text)), ' ') WHERE w <> ''] AS words
CALL (words) {
  MATCH (g:NeuronGroup)
  WHERE g.label IS NOT NULL
  MATCH (c:Class {uid: g.class})-[:OF_MODEL]->(m:Model)
  WHERE $model IS NULL OR $model IN [m.uid, m.name]
  RETURN 'group' AS kind, g AS n, m.uid AS model, c.uid AS class, c.name AS class_name, [c.name] AS classes
  UNION
  MATCH (m:Model)-[:HAS_CONCEPT]->(k:Concept)
  WHERE k.label IS NOT NULL AND ($model IS NULL OR $model IN [m.uid, m.name])
  RETURN 'concept' AS kind, k AS n, m.uid AS model, null AS class, null AS class_name,
         COLLECT { MATCH (m)<-[:OF_MODEL]-(c:Class) WHERE c.index IN k.classes WITH c ORDER BY c.index RETURN c.name } AS classes
}
WITH words, kind, n, model, class, class_name, classes,
     toLower(n.label) AS in_label, toLower(coalesce(n.description, '')) AS in_description
WITH kind, n, model, class, class_name, classes,
     CASE WHEN size(words) = 0 THEN 0.0
          ELSE reduce(s = 0.0, w IN words | s + CASE WHEN in_label CONTAINS w THEN 1.0 WHEN in_description CONTAINS w THEN 0.5 ELSE 0.0 END) / size(words)
     END AS score
WHERE score > 0
RETURN kind,
       n.uid AS uid,
       n.label AS label,
       n.description AS description,
       score,
       model,
       n.layer AS layer,
       class,
       class_name,
       classes,
       n.part_of_class AS part_of_class,
       n.label_score AS label_score
ORDER BY score DESC, kind DESC, coalesce(label_score, 0.0) DESC, uid
LIMIT $limit
