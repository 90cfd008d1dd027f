// Reads a DICOM-SEG with dcmjs (the library OHIF uses) and prints what a viewer would need, one
// fact per line, for tests/integration/test_seg_dcmjs.sh to compare with what samda wrote:
//   sopclass UID / modality M / type T / frames N / refseries UID / refinstances N
//   segment NUMBER LABEL VOXELS     (VOXELS: set bits over that segment's frames)
//   frame INDEX SEGMENT SOURCE_SOP_UID
// Usage: node dcmjs_seg.js SEG.dcm   (dcmjs found through NODE_PATH)
'use strict';
const fs = require('fs');
const dcmjs = require('dcmjs');

const buf = fs.readFileSync(process.argv[2]);
const ab = buf.buffer.slice(buf.byteOffset, buf.byteOffset + buf.byteLength);
const msg = dcmjs.data.DicomMessage.readFile(ab);
const ds = dcmjs.data.DicomMetaDictionary.naturalizeDataset(msg.dict);
const list = (x) => (x === undefined ? [] : Array.isArray(x) ? x : [x]);

console.log('sopclass', ds.SOPClassUID);
console.log('modality', ds.Modality);
console.log('type', ds.SegmentationType);
const frames = Number(ds.NumberOfFrames);
console.log('frames', frames);
const refSeries = list(ds.ReferencedSeriesSequence)[0];
console.log('refseries', refSeries.SeriesInstanceUID);
console.log('refinstances', list(refSeries.ReferencedInstanceSequence).length);

// BINARY: bits are packed across frame boundaries (PS3.5 8.1.1), LSB first.
const bits = dcmjs.data.BitArray.unpack(list(ds.PixelData)[0]);
const plane = ds.Rows * ds.Columns;
const perFrame = list(ds.PerFrameFunctionalGroupsSequence);
const shared = list(ds.SharedFunctionalGroupsSequence)[0] || {};
const counts = {};
perFrame.forEach((g, f) => {
  const sid = list(g.SegmentIdentificationSequence)[0] || list(shared.SegmentIdentificationSequence)[0];
  const n = sid.ReferencedSegmentNumber;
  let set = 0;
  for (let i = f * plane; i < (f + 1) * plane; i++) set += bits[i] ? 1 : 0;
  counts[n] = (counts[n] || 0) + set;
  const src = list(list(g.DerivationImageSequence)[0].SourceImageSequence)[0];
  console.log('frame', f, n, src.ReferencedSOPInstanceUID);
});
for (const s of list(ds.SegmentSequence)) {
  console.log('segment', s.SegmentNumber, s.SegmentLabel, counts[s.SegmentNumber] || 0);
}
