"""The requests 3D Slicer's MONAILabel module and OHIF's MONAI Label extension send, byte for byte
where it matters, written for samda's tests (the published clients are not copied here):

- Slicer's client: http.client, one connection per request, multipart bodies with the boundary
  "----------lImIt_of_THE_fIle_eW_$", file parts named by the file's path, answers read with
  cgi.FieldStorage; once logged in it keeps one headers dict and adds each request's Content-Type
  and Content-Length to it, so a GET after an upload declares a body it never sends.
- OHIF's extension: browser FormData (requests here), output=image, labels saved as label.bin.
"""
import cgi
import http.client
import json
import os
from urllib.parse import quote_plus, urlencode, urlparse

import requests

BOUNDARY = "----------lImIt_of_THE_fIle_eW_$"


def form_body(fields, files):
    """multipart/form-data as Slicer's client writes it: fields first, then files."""
    lines = []
    for key, value in fields.items():
        lines += ["--" + BOUNDARY, 'Content-Disposition: form-data; name="%s"' % key, "", value]
    for key, path in files.items():
        with open(path, "rb") as f:
            data = f.read()
        lines += ["--" + BOUNDARY, 'Content-Disposition: form-data; name="%s"; filename="%s"' % (key, path),
                  "Content-Type: application/octet-stream", "", data]
    lines += ["--" + BOUNDARY + "--", ""]
    body = bytearray()
    for line in lines:
        body += line if isinstance(line, bytes) else line.encode()
        body += b"\r\n"
    return "multipart/form-data; boundary=%s" % BOUNDARY, bytes(body)


class Slicer:
    """What the MONAILabel module of 3D Slicer does, request by request."""

    def __init__(self, url, tmpdir):
        self.url = url.rstrip("/")
        self.tmpdir = tmpdir
        self.headers = {}  # shared by every request, as in the published client

    def _conn(self):
        p = urlparse(self.url)
        return http.client.HTTPConnection(p.hostname, p.port), p.path.rstrip("/")

    def _answer(self, conn):
        r = conn.getresponse()
        ct = r.getheader("content-type", "")
        if "multipart" in ct and r.status == 200:
            fs = cgi.FieldStorage(fp=r.fp, environ={"REQUEST_METHOD": "POST"}, headers=r.msg, keep_blank_values=True)
            form, files = {}, {}
            for f in fs.list:
                if f.filename:
                    files[f.filename] = f.value
                else:
                    form[f.name] = f.value
            return r.status, form, files, r
        return r.status, r.read(), None, r

    def method(self, method, selector, body=None, content_type=None, headers=None):
        conn, path = self._conn()
        headers = headers if headers is not None else (self.headers if self.headers else {})
        if body:
            if not content_type:
                body, content_type = json.dumps(body), "application/json"
            headers.update({"content-type": content_type, "content-length": str(len(body))})
        conn.request(method, path + "/" + selector.lstrip("/"), body=body, headers=headers)
        return self._answer(conn)

    def multipart(self, method, selector, fields, files):
        content_type, body = form_body(fields, files)
        headers = self.headers if self.headers else {}
        headers.update({"content-type": content_type, "content-length": str(len(body))})
        conn, path = self._conn()
        conn.request(method, path + "/" + selector.lstrip("/"), body, headers)
        return self._answer(conn)

    def auth_enabled(self):
        st, body, _, _ = self.method("GET", "/auth/", headers={})
        return st == 200 and bool(json.loads(body).get("enabled"))

    def auth_token(self, user, password):
        data = urlencode({"username": user, "password": password, "grant_type": "password"})
        st, body, _, _ = self.method("POST", "/auth/token", data, "application/x-www-form-urlencoded", headers={})
        return st, json.loads(body)

    def update_auth(self, token):
        self.headers["Authorization"] = "%s %s" % (token["token_type"], token["access_token"])

    def get_json(self, selector):
        st, body, _, _ = self.method("GET", selector)
        return st, json.loads(body) if body else None

    def infer(self, model, image, params, session_id=None):
        params = dict(params, client_id="slicer")
        selector = "/infer/%s?image=%s" % (quote_plus(model), quote_plus(image))
        if session_id:
            selector += "&session_id=%s" % quote_plus(session_id)
        st, form, files, r = self.multipart("POST", selector, {"params": json.dumps(params)}, {})
        if st != 200:
            raise RuntimeError("infer %s: %s %s" % (model, st, form))
        assert files, "infer answered without a file part"
        name, data = next(iter(files.items()))
        out = os.path.join(self.tmpdir, name)
        with open(out, "wb") as f:
            f.write(data)
        return out, json.loads(form["params"])

    def create_session(self, image_path, expiry=None):
        """PUT /session/: requests with the file in a part named "files" and the client's fields as
        form fields, as the published client's create_session does."""
        selector = "/session/" + ("?expiry=%d" % expiry if expiry is not None else "")
        with open(image_path, "rb") as f:
            r = requests.put(self.url + selector, files=[("files", (os.path.basename(image_path), f))],
                             data={"client_id": "slicer"}, headers={"Authorization": self.headers.get("Authorization", "")})
        return r.status_code, r.json()

    def save_label(self, image, label_path, params):
        params = dict(params, client_id="slicer")
        st, body, _, _ = self.multipart("PUT", "/datastore/label?image=%s" % quote_plus(image),
                                        {"params": json.dumps(params)}, {"label": label_path})
        return st, json.loads(body)

    def next_sample(self, strategy):
        st, body, _, _ = self.method("POST", "/activelearning/%s" % strategy, {"client_id": "slicer"})
        return st, json.loads(body)

    def train_running(self):
        st, _, _, _ = self.method("GET", "/train/?check_if_running=true")
        return st == 200


class Ohif:
    """What OHIF's MONAI Label extension sends (axios with FormData)."""

    def __init__(self, url, token):
        self.url = url if url.endswith("/") else url + "/"
        self.h = {"Authorization": "Bearer " + token, "accept": "application/json, multipart/form-data"}

    def infer_image(self, model, image, params):
        params = dict(params, result_extension=".nrrd", result_dtype="uint8", result_compress=False,
                      restore_label_idx=False)
        r = requests.post(self.url + "infer/" + quote_plus(model), params={"image": image, "output": "image"},
                          files={"params": (None, json.dumps(params))}, headers=self.h)
        return r

    def save_label_bin(self, image, data, params):
        return requests.put(self.url + "datastore/label", params={"image": image}, headers=self.h,
                            files={"params": (None, json.dumps(params)),
                                   "label": ("label.bin", data, "application/octet-stream")})
