/* Source images for the viewer and the interactive page, straight from samda's DICOMweb: a
 * series' metadata (WADO-RS), its slices sorted along the slice normal exactly as samda sorts them
 * for results and sessions (projection of ImagePositionPatient on row x column cosines,
 * ascending), and one slice's pixels (WADO-RS frames, native little-endian) as physical values
 * (RescaleSlope/Intercept), windowed into a canvas. */
'use strict';
(function () {
  const S = window.samda;
  const v = (o, tag, i) => (o[tag] && o[tag].Value ? o[tag].Value[i || 0] : undefined);

  /* {n, rows, cols, modality, load(i) -> Promise<Float32Array>} for one series. */
  S.series = async function (study, series) {
    const base = '/dicomweb/studies/' + study + '/series/' + series;
    const md = await S.api(base + '/metadata', {headers: {Accept: 'application/dicom+json'}});
    const frames = md.filter((o) => v(o, '00280010')).map((o) => {
      const ipp = (o['00200032'] && o['00200032'].Value) || [0, 0, 0];
      const iop = (o['00200037'] && o['00200037'].Value) || [1, 0, 0, 0, 1, 0];
      const n = [iop[1] * iop[5] - iop[2] * iop[4], iop[2] * iop[3] - iop[0] * iop[5], iop[0] * iop[4] - iop[1] * iop[3]];
      return {
        sop: v(o, '00080018'), at: ipp[0] * n[0] + ipp[1] * n[1] + ipp[2] * n[2],
        rows: v(o, '00280010'), cols: v(o, '00280011'), bits: v(o, '00280100') || 16,
        signed: v(o, '00280103') === 1, slope: Number(v(o, '00281053') || 1), intercept: Number(v(o, '00281052') || 0),
        modality: v(o, '00080060'),
      };
    });
    frames.sort((a, b) => a.at - b.at);
    if (!frames.length) throw new Error('series ' + series + ' has no image instances');
    const cache = new Map();
    return {
      n: frames.length, rows: frames[0].rows, cols: frames[0].cols, modality: frames[0].modality,
      load: function (i) {
        if (!cache.has(i)) cache.set(i, loadFrame(base + '/instances/' + frames[i].sop + '/frames/1', frames[i]));
        return cache.get(i);
      },
    };
  };

  function find(hay, needle, from) {
    outer: for (let i = from; i <= hay.length - needle.length; i++) {
      for (let k = 0; k < needle.length; k++) if (hay[i + k] !== needle[k]) continue outer;
      return i;
    }
    return -1;
  }
  async function loadFrame(url, f) {
    const r = await S.api(url, {raw: true, headers: {Accept: 'multipart/related; type="application/octet-stream"'}});
    const ct = r.headers.get('Content-Type') || '';
    const m = /boundary="?([^";]+)"?/.exec(ct);
    const buf = new Uint8Array(await r.arrayBuffer());
    let start = 0, end = buf.length;
    if (m) {
      const enc = new TextEncoder();
      start = find(buf, enc.encode('\r\n\r\n'), find(buf, enc.encode('--' + m[1]), 0)) + 4;
      end = find(buf, enc.encode('\r\n--' + m[1]), start);
      if (start < 4 || end < 0) throw new Error('frame answer is not the multipart document expected');
    }
    const bytes = buf.slice(start, end);
    const n = f.rows * f.cols;
    const out = new Float32Array(n);
    const dv = new DataView(bytes.buffer);
    if (bytes.length < n * (f.bits / 8)) throw new Error('frame has ' + bytes.length + ' bytes, expected ' + n * (f.bits / 8));
    for (let i = 0; i < n; i++) {
      const raw = f.bits === 8 ? bytes[i] : f.signed ? dv.getInt16(2 * i, true) : dv.getUint16(2 * i, true);
      out[i] = raw * f.slope + f.intercept;
    }
    return out;
  }

  /* Window presets [level, width]; 'auto' uses the slice's 1st..99th percentile. */
  S.windows = {'soft tissue': [40, 400], lung: [-600, 1500], bone: [400, 1800], brain: [40, 80], auto: null};
  /* Physical values -> grey ImageData with the window. */
  S.windowed = function (px, rows, cols, win) {
    let lo, hi;
    if (win) { lo = win[0] - win[1] / 2; hi = win[0] + win[1] / 2; } else {
      const s = Float32Array.from(px).sort();
      lo = s[Math.floor(s.length * 0.01)]; hi = s[Math.floor(s.length * 0.99)];
      if (hi <= lo) hi = lo + 1;
    }
    const img = new ImageData(cols, rows);
    for (let i = 0; i < px.length; i++) {
      const g = Math.max(0, Math.min(255, Math.round(((px[i] - lo) / (hi - lo)) * 255)));
      img.data[4 * i] = img.data[4 * i + 1] = img.data[4 * i + 2] = g;
      img.data[4 * i + 3] = 255;
    }
    return img;
  };
  /* Label colours (segment number k -> palette[(k - 1) % n]). */
  S.palette = [[230, 25, 75], [60, 180, 75], [255, 225, 25], [0, 130, 200], [245, 130, 48], [145, 30, 180],
    [70, 240, 240], [240, 50, 230], [210, 245, 60], [250, 190, 212]];
  S.colour = (k) => 'rgb(' + S.palette[(k - 1) % S.palette.length].join(',') + ')';
})();
