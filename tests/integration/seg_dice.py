# Dice per segment label between two DICOM-SEGs of the same source series (frames matched by
# their referenced source SOP instance); prints JSON {"label": dice, ..., "mean": m}.
import sys, pydicom, numpy as np
def load(p):
    d = pydicom.dcmread(p)
    px = d.pixel_array
    if px.ndim == 2: px = px[None]
    names = {s.SegmentNumber: s.SegmentLabel.lower() for s in d.SegmentSequence}
    out = {}
    for i, f in enumerate(d.PerFrameFunctionalGroupsSequence):
        seg = f.SegmentIdentificationSequence[0].ReferencedSegmentNumber
        ref = f.DerivationImageSequence[0].SourceImageSequence[0].ReferencedSOPInstanceUID
        out.setdefault(names[seg], {})[ref] = px[i] > 0
    return out
a, b = load(sys.argv[1]), load(sys.argv[2])
res = {}
for lab in a:
    if lab not in b: continue
    refs = set(a[lab]) | set(b[lab])
    inter = tot = 0
    for r in refs:
        x = a[lab].get(r); y = b[lab].get(r)
        xs = x.sum() if x is not None else 0; ys = y.sum() if y is not None else 0
        if x is not None and y is not None: inter += (x & y).sum()
        tot += xs + ys
    res[lab] = float(2 * inter / tot) if tot else 1.0
import json
res["mean"] = float(np.mean(list(res.values()))) if res else 0.0
print(json.dumps(res))
