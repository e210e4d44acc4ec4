// media_files: the files that Patch and Image nodes point at, by uid (what a viewer may show, and nothing else)
//
// Answers: which file on disk belongs to a patch or an image of the graph? A Patch
// (`neurflow load`) has a thumbnail PNG written by `neurflow compute` and an image id
// (path relative to the data folder the class was computed from) with a box in it; an
// Image (`neurflow debug`, the targets of DROPS) has a path (relative to the data folder,
// or absolute for images given with --images). The web explorer and the report serve
// only files named here. One row per given uid that exists, in the order given.
// Cost: the given nodes only; no whole-graph scan.
//
// Parameters:
//   $uids list<string>: Patch or Image uids, as group_detail and group_exemplars return them
//   :param uids => ['resnet50@1a2b3c4d5e6f/c309/p17']
//
// Columns:
//   uid string: the Patch or Image uid
//   kind string: 'patch' or 'image'
//   class string: the patch's class uid (null for an image)
//   image string: the image id or path (a patch's source image; an image's path)
//   box list<int>: the patch's box [x0, y0, x1, y1] in its image (null for an image)
//   scale float: the patch's scale (null for an image)
//   thumbnail string: the patch's thumbnail PNG path (null for an image, or when none was written)
//   preprocess string: the patch's class's preprocessing as JSON text, from its Run ({input_size, resize, mean, std}: how the
//     image file became the model input the box refers to; null for an image or an unknown run)
UNWIND range(0, size($uids) - 1) AS i
CALL (i) {
  MATCH (p:Patch {uid: $uids[i]})
  OPTIONAL MATCH (:Class {uid: p.class})-[:BUILT_BY]->(r:Run)
  RETURN p.uid AS uid, 'patch' AS kind, p.class AS class, p.image AS image, p.box AS box,
         p.scale AS scale, p.thumbnail AS thumbnail, r.preprocess AS preprocess
  UNION
  MATCH (x:Image {uid: $uids[i]})
  RETURN x.uid AS uid, 'image' AS kind, null AS class, x.path AS image, null AS box,
         null AS scale, null AS thumbnail, null AS preprocess
}
WITH i, uid, kind, class, image, box, scale, thumbnail, preprocess
ORDER BY i
RETURN uid, kind, class, image, box, scale, thumbnail, preprocess
