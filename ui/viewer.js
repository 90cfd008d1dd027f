/* A result's viewer (#result/RESULT/STUDY): the source slices (WADO-RS pixels, window presets) with
 * the result's mask on top (mask.png per slice: each segment filled in its colour, outlined), a
 * slider, the mouse wheel and the arrow keys to scroll; per-label volumes; download of the SEG;
 * the server's own preview (overlay.png) beside it. */
'use strict';
(function () {
  const S = window.samda;

  /* Decode a PNG blob into its pixels (ImageData). */
  async function pngPixels(blob) {
    /* the grey levels exactly as sent: no colour management, no premultiplication */
    const bmp = await createImageBitmap(blob, {colorSpaceConversion: 'none', premultiplyAlpha: 'none'});
    const c = document.createElement('canvas');
    c.width = bmp.width; c.height = bmp.height;
    const g = c.getContext('2d', {willReadFrequently: true});
    g.drawImage(bmp, 0, 0);
    return g.getImageData(0, 0, bmp.width, bmp.height);
  }
  /* Paint segment numbers (grey levels of mask.png) over img: fill at alpha, full colour on edges. */
  S.paintMask = function (img, labelsAt, cols, alpha) {
    let painted = 0;
    const at = (i) => labelsAt(i);
    for (let i = 0; i < img.data.length / 4; i++) {
      const k = at(i);
      if (!k) continue;
      const x = i % cols;
      const edge = x === 0 || x === cols - 1 || at(i - 1) !== k || at(i + 1) !== k || at(i - cols) !== k || at(i + cols) !== k;
      const c = S.palette[(k - 1) % S.palette.length];
      const a = edge ? 1 : alpha;
      for (let ch = 0; ch < 3; ch++) img.data[4 * i + ch] = Math.round(img.data[4 * i + ch] * (1 - a) + c[ch] * a);
      painted++;
    }
    return painted;
  };
  S.download = async function (url, name) {
    const r = await S.api(url, {raw: true, headers: {Accept: '*/*'}});
    const href = URL.createObjectURL(await r.blob());
    const a = S.el('a', {href, download: name});
    document.body.append(a);
    a.click();
    a.remove();
    setTimeout(() => URL.revokeObjectURL(href), 10000);
  };

  S.page('result', {
    title: 'Result viewer',
    render: async function (page, args) {
      const [rid, study] = args;
      const res = await S.api('/api/v1/results/' + encodeURIComponent(rid));
      const src = await S.series(study, res.series_uid);
      const labels = Array.isArray(res.labels) ? res.labels : [];
      page.append(S.el('p', {}, S.el('a', {href: '#studies/' + encodeURIComponent(study), text: 'Back to the study'})));
      const canvas = S.el('canvas', {id: 'viewer-canvas', width: src.cols, height: src.rows, tabindex: 0,
        'aria-label': 'slice with the mask; arrow keys or the wheel change the slice'});
      const slider = S.el('input', {id: 'slice', type: 'range', min: 0, max: src.n - 1, value: Math.floor(src.n / 2)});
      const presets = S.el('select', {id: 'window'}, Object.keys(S.windows).map((w) => S.el('option', {value: w, text: w})));
      if (src.modality !== 'CT') presets.value = 'auto';
      const fill = S.el('input', {id: 'fill', type: 'checkbox', checked: true});
      const info = S.el('p', {id: 'slice-info', 'aria-live': 'polite'});
      const preview = S.el('img', {id: 'server-overlay', alt: 'the server\'s preview of this slice (overlay.png)'});
      page.append(
        S.el('h3', {text: 'Result ' + res.id + ': series ' + res.series_uid}),
        S.el('div', {class: 'controls'},
          S.el('label', {for: 'slice', text: 'Slice '}), slider, ' ',
          S.el('label', {for: 'window', text: 'Window '}), presets, ' ',
          fill, S.el('label', {for: 'fill', text: ' fill segments'}), ' ',
          S.el('button', {type: 'button', id: 'download-seg', text: 'Download SEG',
            onclick: () => S.download('/api/v1/results/' + res.id + '/seg', 'result-' + res.id + '.dcm').catch((e) => S.say(e.message, true))})),
        info,
        S.el('div', {class: 'viewer'}, canvas, S.el('figure', {}, preview, S.el('figcaption', {text: 'server preview (overlay.png)'}))),
        S.table('Labels', [
          ['Colour', (l) => S.el('span', {class: 'swatch swatch-' + ((l.k - 1) % S.palette.length)})],
          ['Label', (l) => l.label], ['Voxels', (l) => l.voxels], ['Volume (ml)', (l) => (l.volume_ml == null ? 'unknown spacing' : l.volume_ml.toFixed(2))],
          ['Components', (l) => l.components],
        ], labels.map((l, i) => Object.assign({k: i + 1}, l)), {id: 'labels'}),
        S.el('p', {text: 'Model ' + res.model_version + ', adapter ' + (res.adapter_version || 'none') + ', written ' + S.time(res.created_ms)}));

      const g = canvas.getContext('2d');
      let seq = 0;
      let previewUrl = null;
      async function draw() {
        const i = Number(slider.value), my = ++seq;
        const [px, mask, ov] = await Promise.all([
          src.load(i),
          S.api('/api/v1/results/' + res.id + '/slices/' + i + '/mask.png', {raw: true, headers: {Accept: 'image/png'}}).then((r) => r.blob()).then(pngPixels),
          S.api('/api/v1/results/' + res.id + '/slices/' + i + '/overlay.png', {raw: true, headers: {Accept: 'image/png'}}).then((r) => r.blob()),
        ]);
        if (my !== seq) return; /* a later slice was asked for meanwhile */
        const img = S.windowed(px, src.rows, src.cols, S.windows[presets.value]);
        const painted = S.paintMask(img, (k) => (k >= 0 && k < mask.width * mask.height ? mask.data[4 * k] : 0), src.cols,
          fill.checked ? 0.4 : 0);
        g.putImageData(img, 0, 0);
        canvas.dataset.slice = i;
        canvas.dataset.window = presets.value;
        canvas.dataset.maskPixels = painted;
        info.textContent = 'slice ' + (i + 1) + ' of ' + src.n + ': ' + painted + ' mask pixels';
        if (previewUrl) URL.revokeObjectURL(previewUrl);
        previewUrl = URL.createObjectURL(ov);
        preview.src = previewUrl;
      }
      const redraw = () => draw().catch((e) => S.say(e.message, true));
      const step = (d) => { slider.value = Math.max(0, Math.min(src.n - 1, Number(slider.value) + d)); redraw(); };
      slider.addEventListener('input', redraw);
      presets.addEventListener('change', redraw);
      fill.addEventListener('change', redraw);
      canvas.addEventListener('wheel', (e) => { e.preventDefault(); step(e.deltaY > 0 ? 1 : -1); }, {passive: false});
      canvas.addEventListener('keydown', (e) => {
        const d = {ArrowUp: -1, ArrowDown: 1, ArrowLeft: -1, ArrowRight: 1, PageUp: -10, PageDown: 10}[e.key];
        if (d) { e.preventDefault(); step(d); }
      });
      /* the middle slice first */
      await draw();
      S.onleave = () => { if (previewUrl) URL.revokeObjectURL(previewUrl); };
    },
  });
})();
