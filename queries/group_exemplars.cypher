// group_exemplars: the exemplar patches of several neuron groups at once (what each group looks like)
//
// Answers: which image patches show what a neuron group detects (paper Section 3.5: the
// patches closest to the group's centre)? One row per given group uid that exists,
// in the order given, with its first $limit exemplar patches by rank (0 = closest to
// the centre): the Patch uid, its image id (path relative to the data folder), its box
// [x0, y0, x1, y1] in that image's preprocessed pixels, its scale and the thumbnail PNG
// path written by `neurflow compute` (null when none was written). `props` holds every
// property of the NeuronGroup node (a label, when a writer adds one).
// Cost: the given groups only; no whole-graph scan.
//
// Parameters:
//   $groups list<string>: neuron group uids, as other queries return them
//   :param groups => ['resnet50@1a2b3c4d5e6f/c309/layer4.1/g2']
//   $limit int = 9: exemplar patches per group
//   :param limit => 9
//
// Columns:
//   group string: the neuron group uid
//   class string: its class uid
//   layer string: its layer
//   index int: its index within the layer
//   exemplars list<map>: {rank, patch, patch_id, image, box, scale, thumbnail} per exemplar patch, by rank
//   props map: every property of the NeuronGroup node
UNWIND range(0, size($groups) - 1) AS i
MATCH (g:NeuronGroup {uid: $groups[i]})
WITH i, g
ORDER BY i
RETURN g.uid AS group,
       g.class AS class,
       g.layer AS layer,
       g.index AS index,
       COLLECT {
         MATCH (g)-[e:EXEMPLAR]->(p:Patch)
         WITH e, p
         ORDER BY e.rank
         RETURN {rank: e.rank, patch: p.uid, patch_id: p.patch_id, image: p.image, box: p.box,
                 scale: p.scale, thumbnail: p.thumbnail}
       }[..$limit] AS exemplars,
       properties(g) AS props
