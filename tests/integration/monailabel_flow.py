"""test_monailabel.sh's client side: a Slicer session and an OHIF session against samdad's
/monailabel/ API. Usage: monailabel_flow.py URL USER_TOKEN ADMIN_TOKEN SERIES_DIR_1 GT_SEG_1 SERIES_DIR_2 TMPDIR PACS_DIR
Prints "ok - ..." per step; writes TMPDIR/saved.json (what was saved, for the shell's PACS check)."""
import json
import os
import sys
import time

import numpy as np
import pydicom
import requests

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from monailabel_client import Ohif, Slicer  # noqa: E402

url, user, admin, dir1, gt1, dir2, tmp, pacs = sys.argv[1:9]
MODEL, CLICK = "segmentation_default", "sam_2d"


def ok(msg):
    print("ok - " + msg, flush=True)


def series(d):
    """UID, sorted slices' geometry (origin, directions as rows i, j, k), sizes, and the k of each position."""
    ds = [pydicom.dcmread(os.path.join(d, f), stop_before_pixels=True) for f in sorted(os.listdir(d))]
    o = np.array(ds[0].ImageOrientationPatient, float)
    n = np.cross(o[:3], o[3:])
    ds.sort(key=lambda x: float(np.dot(n, np.array(x.ImagePositionPatient, float))))
    p = [np.array(x.ImagePositionPatient, float) for x in ds]
    sp = [float(v) for v in ds[0].PixelSpacing]
    dirs = np.array([o[:3] * sp[1], o[3:] * sp[0], (p[-1] - p[0]) / (len(p) - 1)])
    return {"uid": ds[0].SeriesInstanceUID, "study": ds[0].StudyInstanceUID, "origin": p[0], "dirs": dirs,
            "sizes": (int(ds[0].Columns), int(ds[0].Rows), len(ds)), "normal": n, "pos": [float(np.dot(n, q)) for q in p]}


def read_nrrd(path, dtype=np.uint8, type_name="uint8"):
    b = open(path, "rb").read()
    head, data = b.split(b"\n\n", 1)
    f = {}
    for line in head.decode().splitlines()[1:]:
        if ": " in line and not line.startswith("#"):
            k, v = line.split(": ", 1)
            f[k] = v
    vec = lambda s: np.array([float(x) for x in s.strip("()").split(",")])
    sizes = tuple(int(x) for x in f["sizes"].split())
    assert f["type"] == type_name and f["encoding"] == "raw" and f["space"] == "left-posterior-superior", f
    vox = np.frombuffer(data, dtype, count=sizes[0] * sizes[1] * sizes[2]).reshape(sizes[::-1])  # [k][j][i]
    return {"sizes": sizes, "origin": vec(f["space origin"]), "dirs": np.array([vec(v) for v in f["space directions"].split()]),
            "vox": vox, "raw": data}


def check_geometry(nr, s, what):
    assert nr["sizes"] == s["sizes"], (what, nr["sizes"], s["sizes"])
    assert np.allclose(nr["origin"], s["origin"], atol=1e-3), (what, nr["origin"], s["origin"])
    assert np.allclose(nr["dirs"], s["dirs"], atol=1e-4), (what, nr["dirs"], s["dirs"])


def gt_volume(seg_path, s):
    """The phantom's ground-truth SEG painted on the series' grid: {label: mask[k][j][i]}."""
    seg = pydicom.dcmread(seg_path)
    names = {int(x.SegmentNumber): x.SegmentLabel for x in seg.SegmentSequence}
    px = seg.pixel_array.reshape(-1, seg.Rows, seg.Columns)
    out = {n: np.zeros(s["sizes"][::-1], bool) for n in names.values()}
    for i, fr in enumerate(seg.PerFrameFunctionalGroupsSequence):
        num = int(fr.SegmentIdentificationSequence[0].ReferencedSegmentNumber)
        z = float(np.dot(s["normal"], np.array(fr.PlanePositionSequence[0].ImagePositionPatient, float)))
        k = int(np.argmin([abs(z - q) for q in s["pos"]]))
        out[names[num]][k] |= px[i].astype(bool)
    return out


def write_ras_flipped(path, mask, s):
    """mask[k][j][i] as Slicer may write it: int16, gzip, right-anterior-superior, slices reversed."""
    import gzip
    n = mask.shape[0]
    origin = s["origin"] + (n - 1) * s["dirs"][2]
    dirs = [s["dirs"][0], s["dirs"][1], -s["dirs"][2]]
    ras = lambda v: "(%r,%r,%r)" % (-float(v[0]), -float(v[1]), float(v[2]))
    head = ("NRRD0004\ntype: short\ndimension: 3\nspace: right-anterior-superior\nsizes: %d %d %d\n"
            "space directions: %s\nkinds: domain domain domain\nendian: little\nencoding: gzip\nspace origin: %s\n\n"
            % (s["sizes"][0], s["sizes"][1], n, " ".join(ras(d) for d in dirs), ras(origin)))
    open(path, "wb").write(head.encode() + gzip.compress(mask[::-1].astype("<i2").tobytes()))


def seg_at_pacs(sop, secs=60):
    for _ in range(secs * 4):
        for f in os.listdir(pacs):
            try:
                ds = pydicom.dcmread(os.path.join(pacs, f), stop_before_pixels=True)
            except Exception:
                continue  # still being written
            if ds.SOPInstanceUID == sop:
                return os.path.join(pacs, f)
        time.sleep(0.25)
    raise AssertionError("SEG %s did not reach the PACS" % sop)


def dice(a, b):
    return 2.0 * np.logical_and(a, b).sum() / max(1, a.sum() + b.sum())


s1, s2 = series(dir1), series(dir2)
gt = gt_volume(gt1, s1)
sl = Slicer(url, tmp)

# --- auth: the password is a samda token, answered as a bearer token
assert sl.auth_enabled(), "GET /auth/ should say enabled"
st, body = sl.auth_token("anyone", "not-a-token")
assert st == 401, (st, body)
r = requests.post(url + "auth/token", data={"username": "x", "password": "a" * 100000})
assert r.status_code == 413, "a 100 KB login form must be refused unread: %s" % r.status_code
st, tok = sl.auth_token("radiologist", user)
assert st == 200 and tok["token_type"].lower() == "bearer" and tok["access_token"] == user, (st, tok)
st, _ = sl.get_json("/info/")
assert st == 401, "info without the token: %s" % st
sl.update_auth(tok)
st, _ = sl.get_json("/auth/token/valid")
assert st == 200, st
ok("auth: /auth/ enabled, a 100 KB login form 413, a wrong password 401, the samda token is the bearer token, /auth/token/valid 200, no token 401")

# --- info
st, info = sl.get_json("/info/")
assert st == 200, (st, info)
assert isinstance(info["labels"], list) and "liver" in info["labels"], info["labels"]
assert not info.get("config"), "top-level config must not be truthy"
for name, m in info["models"].items():
    assert m.get("description") and m.get("labels") is not None, (name, m)
assert info["models"][MODEL]["type"] == "segmentation" and "liver" in info["models"][MODEL]["labels"], info["models"]
assert info["models"][CLICK]["type"] == "deepgrow" and info["models"][CLICK]["dimension"] == 2, info["models"]
ok("info: %s (segmentation, labels %s) and %s (deepgrow, 2-D)" % (MODEL, sorted(info["models"][MODEL]["labels"]), CLICK))

# --- automatic inference (the series' newest result), Slicer's multipart answer
path, params = sl.infer(MODEL, s1["uid"], {})
auto = read_nrrd(path)
check_geometry(auto, s1, "automatic")
names = params["label_names"]
d = dice(auto["vox"] == names["liver"], gt["liver"])
assert d >= 0.6, "liver Dice of the automatic mask against the phantom's truth: %.3f" % d
ok("automatic infer: NRRD %s with the series' LPS geometry; liver Dice %.3f against the phantom's truth" % (auto["sizes"], d))
# the published client then asks again with its stale Content-Length (a body it never sends)
st, info2 = sl.get_json("/info/")
assert st == 200 and info2["models"].keys() == info["models"].keys(), st
ok("GET after an upload with the client's leftover Content-Length still answers 200")

# --- output=image (OHIF) and output=dicom_seg
oh = Ohif(url, user)
r = oh.infer_image(MODEL, s1["uid"], {})
assert r.status_code == 200 and r.content.startswith(b"NRRD0004"), (r.status_code, r.content[:80])
assert r.headers.get("content-length") and "chunked" not in r.headers.get("transfer-encoding", ""), r.headers
r = requests.post(url + "infer/" + MODEL, params={"image": s1["uid"], "output": "dicom_seg"},
                  headers={"Authorization": "Bearer " + user}, files={"params": (None, "{}")})
assert r.status_code == 200 and r.headers["content-type"].startswith("application/dicom"), (r.status_code, r.text[:200])
open(os.path.join(tmp, "auto_seg.dcm"), "wb").write(r.content)
assert pydicom.dcmread(os.path.join(tmp, "auto_seg.dcm")).SOPClassUID == "1.2.840.10008.5.1.4.1.1.66.4"
ok("output=image: the NRRD alone, with Content-Length; output=dicom_seg: a DICOM-SEG")

# --- clicks: one foreground point inside the liver on its largest slice
liver = gt["liver"]
k = int(np.argmax(liver.sum(axis=(1, 2))))
core = liver[k].copy()
for _ in range(4):  # shrink so the click is well inside
    core = core & np.roll(core, 1, 0) & np.roll(core, -1, 0) & np.roll(core, 1, 1) & np.roll(core, -1, 1)
js, is_ = np.nonzero(core if core.any() else liver[k])
c = int(np.argmin((js - js.mean()) ** 2 + (is_ - is_.mean()) ** 2))
i, j = int(is_[c]), int(js[c])
path, params = sl.infer(CLICK, s1["uid"], {"label": "liver", "foreground": [[i, j, k]], "background": [], "slice": k})
click = read_nrrd(path)
check_geometry(click, s1, "click")
m = click["vox"] > 0
assert m[k, j, i], "the clicked voxel (%d, %d, %d) is outside the mask" % (i, j, k)
assert m.sum() == m[k].sum(), "voxels outside slice %d" % k
assert params["label_names"] == {"liver": 1}, params
d1 = dice(m[k], liver[k])
# with Slicer's roi ([i0, i1, j0, j1, k0, k1], here as Slicer sends it: max before min on the flipped axes)
js, is_ = np.nonzero(liver[k])
roi = [int(is_.max()) + 2, int(is_.min()) - 2, int(js.min()) - 2, int(js.max()) + 2, k, k]
path, params = sl.infer(CLICK, s1["uid"], {"label": "liver", "foreground": [[i, j, k]], "background": [], "roi": roi})
boxed = read_nrrd(path)
check_geometry(boxed, s1, "click + roi")
d = dice(boxed["vox"][k] > 0, liver[k])
assert d >= 0.6 and (boxed["vox"] > 0).sum() == (boxed["vox"][k] > 0).sum(), "click + roi Dice on slice %d: %.3f" % (k, d)
ok("click infer: mask on slice %d only, contains the click (Dice %.3f with one point); with a roi Dice %.3f" % (k, d1, d))

# --- sessions: Slicer uploads a volume it did not get from Next Sample (PUT /session/), then names
# the session in infer; the volume is written from the phantom's DICOM here, not by samda
def hu_volume(d, s):
    ds = [pydicom.dcmread(os.path.join(d, f)) for f in sorted(os.listdir(d))]
    ds.sort(key=lambda x: float(np.dot(s["normal"], np.array(x.ImagePositionPatient, float))))
    return np.stack([x.pixel_array * float(getattr(x, "RescaleSlope", 1)) + float(getattr(x, "RescaleIntercept", 0)) for x in ds])


def write_image_nrrd(path, vox, origin, dirs, ras=False, gz=False, dtype="<i2", type_name="short"):
    """vox[k][j][i] as an NRRD image (int16 unless told) with its geometry (LPS, or RAS), raw or gzip."""
    import gzip
    f = (lambda v: (-float(v[0]), -float(v[1]), float(v[2]))) if ras else (lambda v: tuple(float(x) for x in v))
    vec = lambda v: "(%r,%r,%r)" % f(v)
    head = ("NRRD0004\ntype: %s\ndimension: 3\nspace: %s\nsizes: %d %d %d\nspace directions: %s\n"
            "kinds: domain domain domain\nendian: little\nencoding: %s\nspace origin: %s\n\n"
            % (type_name, "right-anterior-superior" if ras else "left-posterior-superior", vox.shape[2], vox.shape[1], vox.shape[0],
               " ".join(vec(d) for d in dirs), "gzip" if gz else "raw", vec(origin)))
    data = vox.astype(dtype).tobytes()
    open(path, "wb").write(head.encode() + (gzip.compress(data) if gz else data))


hu = hu_volume(dir1, s1)
write_image_nrrd(os.path.join(tmp, "upload.nrrd"), hu, s1["origin"], s1["dirs"])
st, sess = sl.create_session(os.path.join(tmp, "upload.nrrd"), expiry=600)
assert st == 200 and sess["session_id"] and sess["session_info"]["expiry"] == 600, (st, sess)
sid = sess["session_id"]
assert sid != s1["uid"] and sess["session_info"]["meta"]["modality"] == "CT", sess
st, ds = sl.get_json("/datastore/")
assert st == 200 and sid not in ds["objects"] and ds["total"] == 2, "a session is not a datastore object: %s" % sorted(ds["objects"])
path, params = sl.infer(MODEL, "MRHead", {}, session_id=sid)  # Slicer's image: its volume's name
ses = read_nrrd(path)
assert ses["sizes"] == s1["sizes"] and np.array_equal(ses["origin"], s1["origin"]) and np.array_equal(ses["dirs"], s1["dirs"]), \
    ("the session answer's geometry is not the upload's", ses["sizes"], ses["origin"], ses["dirs"])
d = dice(ses["vox"] == params["label_names"]["liver"], gt["liver"])
assert d >= 0.6, "liver Dice of the session's automatic mask against the phantom's truth: %.3f" % d
assert params.get("session_id") == sid, params
ok("session: PUT /session/ stored the upload as CT series %s; automatic infer answers the upload's exact geometry, liver Dice %.3f" % (sid, d))

# the same volume as Slicer may also write it: RAS, gzip, slices against the normal (k reversed)
n = hu.shape[0]
flip_origin, flip_dirs = s1["origin"] + (n - 1) * s1["dirs"][2], np.array([s1["dirs"][0], s1["dirs"][1], -s1["dirs"][2]])
write_image_nrrd(os.path.join(tmp, "upload_ras.nrrd"), hu[::-1], flip_origin, flip_dirs, ras=True, gz=True)
st, sess2 = sl.create_session(os.path.join(tmp, "upload_ras.nrrd"))
assert st == 200 and sess2["session_info"]["expiry"] == 3600, (st, sess2)
sid2 = sess2["session_id"]
kf = n - 1 - k  # the liver's largest slice in the upload's own order
roi_f = roi[:4] + [kf, kf]
path, params = sl.infer(CLICK, "volume", {"label": "liver", "foreground": [[i, j, kf]], "background": [], "roi": roi_f}, session_id=sid2)
sc = read_nrrd(path)
assert sc["sizes"] == s1["sizes"] and np.allclose(sc["origin"], flip_origin, atol=1e-9) and np.allclose(sc["dirs"], flip_dirs, atol=1e-9), \
    ("the reversed session's answer geometry", sc["origin"], sc["dirs"])
m = sc["vox"] > 0
assert m[kf, j, i] and m.sum() == m[kf].sum() and params["slice"] == kf, ("click on the reversed session", params)
d = dice(m[kf], liver[k])
same = dice(m[kf], boxed["vox"][k] > 0)
assert d >= 0.6 and same >= 0.95, "click + roi on the reversed session's slice %d: Dice %.3f with the truth, %.3f with the series' answer" % (kf, d, same)
ok("session in RAS with reversed slices (gzip): a click + roi on its slice %d is answered on that slice in its geometry, Dice %.3f (%.3f with the same click on the series)" % (kf, d, same))

st, info = sl.get_json("/session/" + sid)
assert st == 200 and info["name"] == sid and info["meta"]["series_uid"] == sid and info["expiry"] == 600, (st, info)
st, body, _, _ = sl.method("DELETE", "/session/" + sid)
assert st == 200 and json.loads(body)["name"] == sid, (st, body)
st, info = sl.get_json("/session/" + sid)
assert st == 404, (st, info)
r = requests.post(url + "infer/" + MODEL, params={"image": "x", "session_id": sid}, headers={"Authorization": "Bearer " + user},
                  files={"params": (None, "{}")})
assert r.status_code == 404 and "session" in r.text, (r.status_code, r.text)
r = requests.get(url + "datastore/image", params={"image": sid}, headers={"Authorization": "Bearer " + user})
assert r.status_code == 404, "the deleted session's series is still stored: %s" % r.status_code
st, body, _, _ = sl.method("DELETE", "/session/" + sid2)
assert st == 200, (st, body)
open(os.path.join(tmp, "bad.nrrd"), "wb").write(b"NRRD0004\ntype: short\ndimension: 3\nsizes: 1 1 1\nencoding: raw\n\n\0\0")
st, body = sl.create_session(os.path.join(tmp, "bad.nrrd"))
assert st == 400 and "space directions" in json.dumps(body), (st, body)
ok("session: GET answers its info, DELETE removes it and its series (then GET and infer 404), an NRRD without geometry 400")
# values that are not Hounsfield units (positive floats): an MR series, the values scaled into 16 bits
mrv = ((hu - hu.min()) * 0.37 + 0.25).astype(np.float32)
write_image_nrrd(os.path.join(tmp, "upload_mr.nrrd"), mrv, s1["origin"], s1["dirs"], dtype="<f4", type_name="float")
st, sess3 = sl.create_session(os.path.join(tmp, "upload_mr.nrrd"))
assert st == 200 and sess3["session_info"]["meta"]["modality"] == "MR", (st, sess3)
sid3 = sess3["session_id"]
r = requests.get(url + "datastore/image", params={"image": sid3}, headers={"Authorization": "Bearer " + user})
assert r.status_code == 200, (r.status_code, r.text[:200])
open(os.path.join(tmp, "mr_back.nrrd"), "wb").write(r.content)
back = read_nrrd(os.path.join(tmp, "mr_back.nrrd"), np.dtype("<f4"), "float")
check_geometry(back, s1, "the MR session's series")
err = float(np.abs(back["vox"] - mrv).max())
assert err <= float(mrv.max()) / 32767 * 0.51 + 1e-3, "the MR session's values differ by %g" % err
st, body, _, _ = sl.method("DELETE", "/session/" + sid3)
assert st == 200, (st, body)
ok("a float volume becomes an MR series whose values come back within half a step of 16 bits (%.4f)" % err)
# expiry: a session unused for longer than its expiry is gone, with its series
st, sess4 = sl.create_session(os.path.join(tmp, "upload.nrrd"), expiry=1)
assert st == 200 and sess4["session_info"]["expiry"] == 1, (st, sess4)
time.sleep(2.5)
st, info = sl.get_json("/session/" + sess4["session_id"])
assert st == 404, (st, info)
r = requests.get(url + "datastore/image", params={"image": sess4["session_id"]}, headers={"Authorization": "Bearer " + user})
assert r.status_code == 404, "the expired session's series is still stored: %s" % r.status_code
ok("a session with expiry=1 is unknown 2.5 s later and its series is deleted")
json.dump({"sessions": [sid, sid2, sid3]}, open(os.path.join(tmp, "sessions.json"), "w"))

# --- refusals name the problem
H = {"Authorization": "Bearer " + user}
r = requests.post(url + "infer/segmentation_nosuchsite", params={"image": s1["uid"]}, headers=H, files={"params": (None, "{}")})
assert r.status_code == 404 and "info" in r.text, (r.status_code, r.text)
r = requests.post(url + "infer/" + MODEL, params={"image": "1.2.3.999"}, headers=H, files={"params": (None, "{}")})
assert r.status_code == 404 and "1.2.3.999" in r.text, (r.status_code, r.text)
r = requests.post(url + "infer/" + MODEL, params={"image": "../etc"}, headers=H, files={"params": (None, "{}")})
assert r.status_code == 400, (r.status_code, r.text)
r = requests.post(url + "infer/" + CLICK, params={"image": s1["uid"]}, headers=H, files={"params": (None, '{"foreground": [[1, 2]]}')})
assert r.status_code == 400 and "foreground" in r.text, (r.status_code, r.text)
open(os.path.join(tmp, "x.nii.gz"), "wb").write(b"\x1f\x8b not nrrd")
st, body = sl.save_label(s1["uid"], os.path.join(tmp, "x.nii.gz"), {})
assert st == 400 and ".nrrd" in json.dumps(body), (st, body)
ok("refusals: unknown model 404, unknown series 404, bad image 400, bad click 400, a NIfTI label 400 naming NRRD")

# --- datastore and active learning before any label
st, ds = sl.get_json("/datastore/?output=all")
assert st == 200 and s1["uid"] in ds["objects"] and s2["uid"] in ds["objects"] and ds["completed"] == 0, ds
st, nxt = sl.next_sample("random")
assert st == 200 and nxt["id"] in (s1["uid"], s2["uid"]), nxt
ok("datastore lists both series, none labelled; next sample is one of them")

# --- save the automatic mask as the final label (Slicer: .nrrd with label_info)
label_info = [{"name": n, "idx": v} for n, v in sorted(names.items(), key=lambda x: x[1])]
path, _ = sl.infer(MODEL, s1["uid"], {})  # the click's answer had the same file name
lp = os.path.join(tmp, "final_label.nrrd")
os.replace(path, lp)
st, saved = sl.save_label(s1["uid"], lp, {"label_info": label_info, "model": MODEL})
assert st == 200 and saved["destinations"] == ["pacs"], (st, saved)
st, body, _, _ = sl.multipart("PUT", "/datastore/label?image=%s&tag=original" % s1["uid"], {"params": "{}"}, {"label": lp})
assert st == 400 and "final" in body.decode(), (st, body)
want = {n: int((auto["vox"] == v).sum()) for n, v in names.items() if (auto["vox"] == v).any()}
json.dump({"seg_sop_uid": saved["seg_sop_uid"], "study": s1["study"], "series": s1["uid"], "voxels": want},
          open(os.path.join(tmp, "saved.json"), "w"))
ok("final label saved: SEG %s queued for %s; tag original refused" % (saved["seg_sop_uid"], saved["destinations"]))

# --- a label written another way (RAS, slices reversed, int16, gzip) lands on the same voxels
liver_auto = auto["vox"] == names["liver"]
write_ras_flipped(os.path.join(tmp, "ras_label.nrrd"), liver_auto, s1)
st, saved2 = sl.save_label(s1["uid"], os.path.join(tmp, "ras_label.nrrd"), {"label_info": [{"name": "liver", "idx": 1}]})
assert st == 200 and saved2["label_names"] == {"liver": 1}, (st, saved2)
back = gt_volume(seg_at_pacs(saved2["seg_sop_uid"]), s1)["liver"]
assert (back == liver_auto).all(), "the RAS label's SEG differs from the mask in %d voxels" % int((back != liver_auto).sum())
ok("a label in RAS with its slices reversed (int16, gzip) becomes a SEG on exactly the same voxels")

# --- the image as Slicer downloads it: int16 NRRD, the series' geometry, the DICOM's values in order
r = requests.get(url + "datastore/image", params={"image": s1["uid"]}, headers={"Authorization": "Bearer " + user})
assert r.status_code == 200, (r.status_code, r.text[:200])
open(os.path.join(tmp, "image.nrrd"), "wb").write(r.content)
img = read_nrrd(os.path.join(tmp, "image.nrrd"), np.dtype("<i2"), "int16")
check_geometry(img, s1, "image")
for kk in (0, img["sizes"][2] - 1):
    f = [x for x in os.listdir(dir1) if abs(float(np.dot(s1["normal"], np.array(pydicom.dcmread(os.path.join(dir1, x), stop_before_pixels=True).ImagePositionPatient, float))) - s1["pos"][kk]) < 1e-3][0]
    ds = pydicom.dcmread(os.path.join(dir1, f))
    hu = ds.pixel_array * float(getattr(ds, "RescaleSlope", 1)) + float(getattr(ds, "RescaleIntercept", 0))
    assert (img["vox"][kk] == hu).all(), "slice %d of the image NRRD differs from the DICOM" % kk
ok("datastore/image: int16 NRRD with the series' geometry; its first and last slices equal the DICOM's values")

# --- active learning skips the labelled series; OHIF saves the other one as label.bin
st, nxt = sl.next_sample("first")
assert st == 200 and nxt["id"] == s2["uid"], nxt
r = oh.infer_image(MODEL, s2["uid"], {})
assert r.status_code == 200, r.text[:200]
raw = r.content.split(b"\n\n", 1)[1]
r = oh.save_label_bin(s2["uid"], raw, {})
assert r.status_code == 200, r.text[:300]
st, nxt = sl.next_sample("random")
assert st == 200 and nxt == {}, nxt
st, ds = sl.get_json("/datastore/")
assert ds["completed"] == 2, ds
ok("next sample skips the labelled series; after OHIF's label.bin save none is left; datastore completed 2")

# --- training: status, start (admin), running
assert not sl.train_running(), "no training should be running yet"
st, ts = sl.get_json("/train/")
assert st == 200 and ts["status"] in ("NOT_RUNNING", "DONE", "ERROR", "STOPPED"), ts
adm = Slicer(url, tmp)
adm.update_auth({"token_type": "Bearer", "access_token": admin})
st, body, _, _ = sl.method("POST", "/train/" + MODEL, {"max_seconds": 5, "epochs": 1})
assert st == 403, "a user token must not start training: %s" % st
st, body, _, _ = adm.method("POST", "/train/" + MODEL, {"max_seconds": 5, "epochs": 1, "holdout": 0})
assert st == 200, (st, body)
assert sl.train_running(), "training was queued: check_if_running should answer 200"
ok("train: not running (404 to check_if_running), a user may not start it (403), the admin's start queues it, then running")

# --- the saved labels are training data: the job trains on them and finishes
for _ in range(600):
    st, ts = sl.get_json("/train/")
    if ts["status"] != "RUNNING":
        break
    time.sleep(0.5)
assert ts["status"] == "DONE", "training on the saved labels: %s" % ts
job = requests.get(url.replace("/monailabel/", "/api/v1/jobs/%d" % ts["job_id"]), headers={"Authorization": "Bearer " + user}).json()
data = job["result"]["data"]
assert data["studies"] == 2, job["result"]
ok("training on the saved labels finished: job %d, data %s" % (ts["job_id"], data))
