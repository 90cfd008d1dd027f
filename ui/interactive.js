/* Interactive (#interactive/STUDY/SERIES[/RESULT]): one slice of a series in a session of the model
 * worker (POST /api/v1/sessions); drag a box or click points (shift-click: a point outside the
 * object) and the mask the decoder returns (POST .../predict, run-length encoded) is drawn at once.
 * Opened from a result, the mask can be accepted as a correction of one of its labels
 * (POST /api/v1/results/{id}/corrections: a DICOM-SEG of the study, training data). */
'use strict';
(function () {
  const S = window.samda;

  /* Row-major run lengths, the first run background -> Uint8Array of 0/1. */
  function decodeRle(m) {
    const out = new Uint8Array(m.rows * m.columns);
    let at = 0, on = 0;
    for (const n of m.counts) { if (on) out.fill(1, at, at + n); at += n; on ^= 1; }
    return out;
  }

  S.page('interactive', {
    title: 'Interactive segmentation',
    render: async function (page, args) {
      const [study, series, resultId] = args;
      const form = S.el('form', {id: 'interactive-pick', class: 'search'},
        S.el('label', {for: 'i-study', text: 'Study UID'}), S.el('input', {id: 'i-study', value: study || '', required: true}),
        S.el('label', {for: 'i-series', text: 'Series UID'}), S.el('input', {id: 'i-series', value: series || '', required: true}),
        S.el('button', {type: 'submit', text: 'Open'}));
      form.addEventListener('submit', (e) => {
        e.preventDefault();
        S.go('#interactive/' + encodeURIComponent(form.elements[0].value.trim()) + '/' + encodeURIComponent(form.elements[1].value.trim()));
      });
      page.append(form);
      if (!study || !series) {
        page.append(S.el('p', {text: 'Open a series (from a study\'s page, or by its UIDs). Then drag a box, or click points on the object (shift-click: outside it).'}));
        return;
      }
      const src = await S.series(study, series);
      const slider = S.el('input', {id: 'i-slice', type: 'range', min: 0, max: src.n - 1, value: Math.floor(src.n / 2)});
      const canvas = S.el('canvas', {id: 'i-canvas', width: src.cols, height: src.rows, tabindex: 0, class: 'draw',
        'aria-label': 'slice: drag a box or click points to segment'});
      const info = S.el('p', {id: 'i-info', 'aria-live': 'polite'});
      const reset = S.el('button', {type: 'button', text: 'Clear prompts'});
      page.append(S.el('div', {class: 'controls'}, S.el('label', {for: 'i-slice', text: 'Slice '}), slider, ' ', reset), info, canvas);
      let last = null; /* the last prediction's mask as the server sent it (run lengths) */
      if (resultId) {
        const res = await S.api('/api/v1/results/' + encodeURIComponent(resultId));
        const label = S.el('select', {id: 'i-label'}, (res.labels || []).map((l) => S.el('option', {value: l.label, text: l.label})));
        const accept = S.el('button', {type: 'button', id: 'i-accept', text: 'Accept as correction'});
        const done = S.el('output', {id: 'i-accepted', 'aria-live': 'polite'});
        page.append(S.el('form', {class: 'search', id: 'i-correct'},
          S.el('label', {for: 'i-label', text: 'Correction of result ' + res.id + ', label'}), label, accept, done));
        accept.addEventListener('click', async () => {
          if (!last) { S.say('Draw a box or click points first: there is no mask to accept.', true); return; }
          const sl = Number(slider.value);
          if (!S.confirm('Store this mask as the ' + label.value + ' of slice ' + (sl + 1) + ' (a DICOM-SEG of the study, used for training)?')) return;
          try {
            const c = await S.post('/api/v1/results/' + res.id + '/corrections', {slice: sl, label: label.value, mask: last});
            done.textContent = 'Stored: SEG ' + c.sop_uid + ' (' + c.pixels + ' pixels of ' + c.label + ')';
            done.dataset.sop = c.sop_uid;
          } catch (e) { S.say('Correction: ' + e.message, true); }
        });
      }
      const g = canvas.getContext('2d');
      let session = null, base = null, mask = null, points = [], box = null, drag = null;

      function paint() {
        if (!base) return;
        const img = new ImageData(new Uint8ClampedArray(base.data), base.width, base.height);
        if (mask) S.paintMask(img, (i) => (i >= 0 && i < mask.length ? mask[i] : 0), src.cols, 0.45);
        g.putImageData(img, 0, 0);
        g.lineWidth = 1;
        const b = drag || box;
        if (b) { g.strokeStyle = '#ffd400'; g.strokeRect(b[0], b[1], b[2] - b[0], b[3] - b[1]); }
        for (const [x, y, l] of points) { g.fillStyle = l ? '#00e000' : '#ff3030'; g.fillRect(x - 2, y - 2, 5, 5); }
      }
      async function open() {
        const i = Number(slider.value);
        if (session) S.api('/api/v1/sessions/' + session, {method: 'DELETE'}).catch(() => {});
        session = null; mask = null; points = []; box = null; last = null;
        base = S.windowed(await src.load(i), src.rows, src.cols, src.modality === 'CT' ? S.windows['soft tissue'] : null);
        paint();
        info.textContent = 'slice ' + (i + 1) + ' of ' + src.n + ': encoding...';
        const s = await S.post('/api/v1/sessions', {series, slice: i});
        session = s.id;
        info.textContent = 'slice ' + (i + 1) + ' of ' + src.n + ': ready; drag a box or click points';
      }
      async function predict() {
        if (!session || (!box && !points.length)) return;
        const body = {multimask: !box && points.length === 1};
        if (box) body.box = box;
        if (points.length) body.points = points;
        const t0 = performance.now();
        const r = await S.post('/api/v1/sessions/' + session + '/predict', body);
        mask = decodeRle(r.mask);
        last = r.mask;
        canvas.dataset.area = r.area;
        info.textContent = 'mask of ' + r.area + ' pixels (IoU ' + r.iou[r.best].toFixed(2) + ', ' + Math.round(performance.now() - t0) + ' ms)';
        paint();
      }
      const at = (e) => {
        const r = canvas.getBoundingClientRect();
        return [Math.round(((e.clientX - r.left) * canvas.width) / r.width), Math.round(((e.clientY - r.top) * canvas.height) / r.height)];
      };
      const fail = (e) => S.say(e.message, true);
      canvas.addEventListener('mousedown', (e) => { const p = at(e); drag = [p[0], p[1], p[0], p[1]]; });
      canvas.addEventListener('mousemove', (e) => { if (drag) { const p = at(e); drag[2] = p[0]; drag[3] = p[1]; paint(); } });
      canvas.addEventListener('mouseup', (e) => {
        const d = drag; drag = null;
        if (!d) return;
        if (Math.abs(d[2] - d[0]) > 3 && Math.abs(d[3] - d[1]) > 3) {
          box = [Math.min(d[0], d[2]), Math.min(d[1], d[3]), Math.max(d[0], d[2]), Math.max(d[1], d[3])];
        } else {
          const p = at(e);
          points.push([p[0], p[1], e.shiftKey ? 0 : 1]);
        }
        paint();
        predict().catch(fail);
      });
      reset.addEventListener('click', () => { points = []; box = null; mask = null; last = null; paint(); });
      slider.addEventListener('change', () => open().catch(fail));
      S.onleave = () => { if (session) S.api('/api/v1/sessions/' + session, {method: 'DELETE'}).catch(() => {}); };
      await open();
    },
  });
})();
