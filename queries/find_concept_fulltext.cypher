// find_concept_fulltext: neuron groups and atlas concepts by label text, ranked by Neo4j 5's full-text index (Neo4j only)
//
// Answers the same question as find_concept, through the full-text (Lucene) index
// `label_text` on NeuronGroup and Concept (label, description) that `neurflow label`
// creates on Neo4j 5: Lucene query syntax ('flow*', '"yellow stripes"', 'wing~',
// 'flowers AND NOT grass') and Lucene's relevance score. The embedded database has no
// full-text indexes (the index is not created there and this query fails): use
// find_concept, the portable fallback, there (docs/cypher-portability.md).
// Cost: one full-text index lookup (Neo4j 5 only); no scan.
//
// Parameters:
//   $text string: a Lucene query over label and description ('flowers', 'yellow stripes')
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
//   score float: Lucene's relevance score
//   model string: the model uid
//   layer string: its layer
//   class string: the class uid of a group (null for a concept)
//   class_name string: the class name of a group (null for a concept)
//   classes list<string>: the class names: the group's class, or the classes using the concept
//   part_of_class bool: whether a group's concept is part of its class's object (null when undecided or for a concept)
//   label_score float: the labeller's score
CALL db.index.fulltext.queryNodes('label_text', $text) YIELD node, score
WITH node AS n, score
WHERE n.label IS NOT NULL
MATCH (m:Model {uid: n.model})
WHERE $model IS NULL OR $model IN [m.uid, m.name]
OPTIONAL MATCH (c:Class {uid: n.class})
WITH n, score, m, c
ORDER BY score DESC, n.uid
LIMIT $limit
RETURN CASE WHEN n:Concept THEN 'concept' ELSE 'group' END AS kind,
       n.uid AS uid,
       n.label AS label,
       n.description AS description,
       score,
       m.uid AS model,
       n.layer AS layer,
       c.uid AS class,
       c.name AS class_name,
       CASE WHEN c IS NULL
            THEN COLLECT { MATCH (m)<-[:OF_MODEL]-(x:Class) WHERE x.index IN n.classes WITH x ORDER BY x.index RETURN x.name }
            ELSE [c.name] END AS classes,
       n.part_of_class AS part_of_class,
       n.label_score AS label_score
ORDER BY score DESC, uid
