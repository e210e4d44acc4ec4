// concepts: the concepts of the atlas, those shared by the most classes first
//
// Answers: which visual concepts does the model reuse across classes? `neurflow link`
// clusters the semantic groups of all classes of a model at each layer into Concepts
// (the concept atlas); a concept's classes are those with a semantic group in it. Pass a
// concept's uid to concept_classes to see how each class uses it.
// Cost: whole-graph scan over the Concept nodes of the model(s).
//
// Parameters:
//   $model string = null: the model, by uid or name; null = every model
//   :param model => null
//   $layer string = null: only concepts of this layer; null = every layer
//   :param layer => null
//   $limit int = 25: concepts returned
//   :param limit => 25
//
// Columns:
//   concept string: the concept uid ('{model uid}/{layer}/k{index}')
//   model string: its model uid
//   layer string: its layer
//   index int: its index within the layer
//   size int: semantic groups in it
//   n_classes int: classes with a semantic group in it
//   class_names list<string>: those classes' names, by class index
MATCH (m:Model)-[:HAS_CONCEPT]->(k:Concept)
WHERE ($model IS NULL OR $model IN [m.uid, m.name])
  AND ($layer IS NULL OR k.layer = $layer)
WITH m, k
ORDER BY k.n_classes DESC, k.size DESC, k.uid
LIMIT $limit
RETURN k.uid AS concept,
       m.uid AS model,
       k.layer AS layer,
       k.index AS index,
       k.size AS size,
       k.n_classes AS n_classes,
       COLLECT {
         MATCH (m)<-[:OF_MODEL]-(c:Class)
         WHERE c.index IN k.classes
         WITH c
         ORDER BY c.index
         RETURN c.name
       } AS class_names
ORDER BY n_classes DESC, size DESC, concept
