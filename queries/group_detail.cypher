// group_detail: one neuron group in full: neurons, semantic groups, exemplar patches, FLOWS_TO in and out, similar groups, bias evidence
//
// Answers: what is this neuron group (paper Section 3.5: a cluster of semantic groups of
// one layer's core neurons), what does it look like (exemplar patches, closest to the
// group's centre first, with thumbnail files), where does its attribution come from
// (incoming FLOWS_TO from the layer below) and go to (outgoing FLOWS_TO to the layer
// above), which groups of other classes share its neurons (SIMILAR_TO), and, after
// `neurflow debug`, how biased it is and which images it drives. One row.
// root_share: the fraction of the root's attribution that flows through the group, the
// sum over its paths to the root of the product of FLOWS_TO.share (see trace_class),
// precomputed at load by a dynamic program over the layered DAG (NeuronGroup.root_share).
// Cost: one group and its neighbourhood; no whole-graph scan.
//
// Classes whose subgraph is incomplete (complete = false: being reloaded, or a load that was
// interrupted) are skipped; the `classes` query lists them.
//
// Parameters:
//   $group string: the neuron group uid ('{class uid}/{layer}/g{index}'), as returned by trace_class
//   :param group => 'resnet50@1a2b3c4d5e6f/c309/layer4.1/g2'
//
// Columns:
//   group string: the neuron group uid
//   class string: its class uid
//   class_name string: its class name
//   layer string: its layer
//   index int: its index within the layer
//   depth int: layers below the logit layer (0 = the root group)
//   root bool: whether it is the class's root group
//   label string: its label (`neurflow label`; null when unlabelled)
//   description string: what its exemplar patches share, in words
//   label_score float: the labeller's score (annotations: pixel share of the best concept; openai: the model's confidence)
//   part_of_class bool: whether the concept is part of the class's object (true), context such as a background (false), or undecided (null)
//   label_source string: who labelled it ('annotations', 'openai:<model>:<prompt version>')
//   labelled_at string: when
//   channels list<int>: its neurons' channels, ascending
//   neurons list<string>: its neurons' uids, by channel
//   semantic_groups list<map>: {uid, neuron, channel, index, size, mean_activation, concept, concept_label, distance} per member semantic group, by channel then index
//   exemplars list<map>: {rank, patch, patch_id, image, box, scale, thumbnail} per exemplar patch, by rank (0 = closest to the centre)
//   incoming list<map>: {group, layer, label, weight, abs_weight, share, n_edges, relation} per FLOWS_TO from a child group, largest share first
//   outgoing list<map>: {group, layer, label, weight, abs_weight, share, n_edges, relation} per FLOWS_TO to a parent group, largest share first
//   root_share float: sum over the group's paths to the root of the product of FLOWS_TO.share
//   similar list<map>: {group, class, label, jaccard, shared} per SIMILAR_TO group of another class, highest jaccard first
//   drops list<map>: {source, rank, logit_drop, target, path} per DROPS link written by `neurflow debug` (the images, source 'tp'/'fp'/'user', and patches, source 'patch', whose class logit drops most when the group is masked), by source then rank
//   bias map: the `neurflow debug` evidence {bias_score, bias_rank, biased, verdict, causes_fp, spurious, q_value, draws, confusers, collateral_tp, fp_metric, tp_metric, user_metric, mask_fp_flip, mask_tp_flip, random_fp_flip, random_tp_flip, effect_fp_flip, effect_z, effect_p (the permutation p-value), mask_tp_drop, mask_tp_logit_drop, random_tp_drop, z_tp_drop, shared_classes, shared_fraction} (see biased_groups and fp_causes; all null before debug)
MATCH (g:NeuronGroup {uid: $group})
MATCH (c:Class {uid: g.class})-[:ROOT]->(:NeuronGroup)
WHERE c.complete = true
RETURN g.uid AS group,
       c.uid AS class,
       c.name AS class_name,
       g.layer AS layer,
       g.index AS index,
       g.depth AS depth,
       g.root AS root,
       g.label AS label,
       g.description AS description,
       g.label_score AS label_score,
       g.part_of_class AS part_of_class,
       g.label_source AS label_source,
       g.labelled_at AS labelled_at,
       g.channels AS channels,
       COLLECT {
         MATCH (g)<-[:MEMBER_OF]-(:SemanticGroup)<-[:HAS_SEMANTIC_GROUP]-(n:Neuron)
         WITH DISTINCT n
         ORDER BY n.channel
         RETURN n.uid
       } AS neurons,
       COLLECT {
         MATCH (g)<-[:MEMBER_OF]-(s:SemanticGroup)<-[:HAS_SEMANTIC_GROUP]-(n:Neuron)
         OPTIONAL MATCH (s)-[e:EXPRESSES]->(k:Concept)
         WITH n, s, e, k
         ORDER BY s.channel, s.index
         RETURN {uid: s.uid, neuron: n.uid, channel: s.channel, index: s.index, size: s.size,
                 mean_activation: s.mean_activation, concept: k.uid, concept_label: k.label, distance: e.distance}
       } AS semantic_groups,
       COLLECT {
         MATCH (g)-[e:EXEMPLAR]->(p:Patch)
         WITH e, p
         ORDER BY e.rank
         RETURN {rank: e.rank, patch: p.uid, patch_id: p.patch_id, image: p.image, box: p.box,
                 scale: p.scale, thumbnail: p.thumbnail}
       } AS exemplars,
       COLLECT {
         MATCH (g)<-[r:FLOWS_TO]-(child:NeuronGroup)
         WITH child, r
         ORDER BY r.share DESC, child.uid
         RETURN {group: child.uid, layer: child.layer, label: child.label, weight: r.weight, abs_weight: r.abs_weight,
                 share: r.share, n_edges: r.n_edges, relation: r.relation}
       } AS incoming,
       COLLECT {
         MATCH (g)-[r:FLOWS_TO]->(parent:NeuronGroup)
         WITH parent, r
         ORDER BY r.share DESC, parent.uid
         RETURN {group: parent.uid, layer: parent.layer, label: parent.label, weight: r.weight, abs_weight: r.abs_weight,
                 share: r.share, n_edges: r.n_edges, relation: r.relation}
       } AS outgoing,
       g.root_share AS root_share,
       COLLECT {
         MATCH (g)-[r:SIMILAR_TO]-(other:NeuronGroup)
         WITH other, r
         ORDER BY r.jaccard DESC, other.uid
         RETURN {group: other.uid, class: other.class, label: other.label, jaccard: r.jaccard, shared: r.shared}
       } AS similar,
       COLLECT {
         MATCH (g)-[d:DROPS]->(x)
         WITH d, x
         ORDER BY d.source, d.rank
         RETURN {source: d.source, rank: d.rank, logit_drop: d.logit_drop, target: x.uid, path: coalesce(x.path, x.image)}
       } AS drops,
       g {.bias_score, .bias_rank, .biased, .verdict, .causes_fp, .spurious, .q_value, .draws, .confusers, .collateral_tp,
          .fp_metric, .tp_metric, .user_metric, .mask_fp_flip, .mask_tp_flip, .random_fp_flip, .random_tp_flip,
          .effect_fp_flip, .effect_z, .effect_p, .mask_tp_drop, .mask_tp_logit_drop,
          .random_tp_drop, .z_tp_drop, .shared_classes, .shared_fraction} AS bias
