/* Sites and adapters (admin): each site's adapter versions with lineage (parent), metrics, labels
 * with their colours, and who made them; upload a .safetensors, train from studies, evaluate,
 * activate, roll back, each with confirmation. #adapters/SITE opens one site. */
'use strict';
(function () {
  const S = window.samda;
  const studiesOf = (text) => text.split(/[\s,]+/).filter(Boolean);

  function labels(a) {
    const list = a.label_codes ? a.label_codes.map((l) => [l.value, l.name]) : (a.labels || []).map((n, i) => [i + 1, n]);
    return S.el('ul', {class: 'labels'}, list.map(([k, n]) =>
      S.el('li', {}, S.el('span', {class: 'swatch swatch-' + ((k - 1) % S.palette.length), title: S.colour(k)}), ' ' + k + ' ' + n)));
  }
  function madeBy(a) {
    const p = a.provenance || {};
    if (p.uploaded_by !== undefined) return 'uploaded by token #' + p.uploaded_by;
    if (p.job !== undefined) return (p.origin || 'job') + ' job #' + p.job;
    return '';
  }
  function metrics(a) {
    if (!a.metrics) return '';
    return Object.entries(a.metrics).filter(([, x]) => typeof x !== 'object').map(([k, x]) =>
      k + ' ' + (typeof x === 'number' ? Number(x.toFixed(4)) : x)).join(', ');
  }
  async function act(what, path, body, after) {
    if (!S.confirm(what + '?')) return;
    try { const r = await S.post(path, body); S.say(what + ': done.'); if (after) after(r); }
    catch (e) { S.say(what + ': ' + e.message, true); }
  }

  async function site(page, name) {
    const base = '/api/v1/sites/' + encodeURIComponent(name) + '/adapters';
    const box = S.el('div');
    const file = S.el('input', {id: 'adapter-file', type: 'file', accept: '.safetensors'});
    const parent = S.el('input', {id: 'adapter-parent', inputmode: 'numeric', placeholder: 'none'});
    const upload = S.el('form', {id: 'adapter-upload', class: 'search'},
      S.el('label', {for: 'adapter-file', text: 'Upload .safetensors'}), file,
      S.el('label', {for: 'adapter-parent', text: 'Parent version'}), parent, S.el('button', {type: 'submit', text: 'Upload'}));
    const trainStudies = S.el('textarea', {id: 'train-studies', rows: 2, cols: 60});
    const epochs = S.el('input', {id: 'train-epochs', type: 'number', min: 1, max: 1000, value: 20});
    const activate = S.el('select', {id: 'train-activate'}, [['false', 'no'], ['if_better', 'if better'], ['true', 'yes']].map(([v, t]) => S.el('option', {value: v, text: t})));
    const train = S.el('form', {id: 'adapter-train', class: 'search'},
      S.el('label', {for: 'train-studies', text: 'Train from studies (Study UIDs with a ground-truth SEG)'}), trainStudies,
      S.el('label', {for: 'train-epochs', text: 'Epochs'}), epochs, S.el('label', {for: 'train-activate', text: 'Activate'}), activate,
      S.el('button', {type: 'submit', text: 'Train'}));
    const rollback = S.el('button', {type: 'button', id: 'rollback', text: 'Roll back',
      onclick: () => act('Roll back site ' + name + ' to the active version\'s parent', base + '/rollback', undefined, () => load())});
    page.append(S.el('p', {}, S.el('a', {href: '#adapters', text: 'All sites'})), S.el('h3', {text: 'Site ' + name}),
      S.el('p', {}, rollback), box, S.el('h3', {text: 'New versions'}), upload, train);

    upload.addEventListener('submit', async (e) => {
      e.preventDefault();
      if (!file.files.length) { S.say('Choose a .safetensors file first.', true); return; }
      if (!S.confirm('Upload ' + file.files[0].name + ' as a new version of site ' + name + '?')) return;
      try {
        const q = parent.value.trim() ? '?parent=' + encodeURIComponent(parent.value.trim()) : '';
        const a = await S.api(base + q, {method: 'POST', body: file.files[0], headers: {'Content-Type': 'application/octet-stream'}});
        S.say('Recorded as version ' + a.version + ' (inactive).');
        load();
      } catch (err) { S.say('Upload: ' + err.message, true); }
    });
    train.addEventListener('submit', (e) => {
      e.preventDefault();
      const a = activate.value === 'if_better' ? 'if_better' : activate.value === 'true';
      act('Train a new version of site ' + name, base + '/train', {studies: studiesOf(trainStudies.value), epochs: Number(epochs.value), activate: a},
        (j) => S.go('#jobs/' + j.id));
    });

    async function load() {
      const versions = await S.api(base);
      S.clear(box).append(S.table('Versions of site ' + name + ', newest first', [
        ['Version', (a) => String(a.version)], ['Parent', (a) => (a.parent_version ? String(a.parent_version) : '')],
        ['Active', (a) => S.el('span', {class: a.active ? 'state-ok adapter-active' : '', 'data-version': a.version, text: a.active ? 'active' : ''})],
        ['Labels', labels], ['Metrics', metrics], ['Made by', madeBy], ['Created', (a) => S.time(a.created_ms)],
        ['Activated', (a) => S.time(a.activated_ms)],
        ['', (a) => [
          !a.active && S.el('button', {type: 'button', class: 'activate', 'data-version': a.version, 'aria-label': 'Activate version ' + a.version,
            text: 'Activate', onclick: () => act('Activate version ' + a.version + ' of site ' + name, base + '/' + a.version + '/activate', undefined, () => load())}),
          S.el('button', {type: 'button', 'aria-label': 'Evaluate version ' + a.version, text: 'Evaluate', onclick: () => {
            const st = studiesOf(trainStudies.value);
            if (!st.length) { S.say('Evaluate: list the studies (with ground-truth SEGs) in the training field first.', true); trainStudies.focus(); return; }
            act('Evaluate version ' + a.version + ' on ' + st.length + ' studies', base + '/' + a.version + '/evaluate', {studies: st}, (j) => S.go('#jobs/' + j.id));
          }})]],
      ], versions, {id: 'adapters'}));
    }
    await load();
  }

  S.page('adapters', {
    title: 'Sites and adapters',
    admin: true,
    render: async function (page, args) {
      if (args[0]) return site(page, args[0]);
      const sites = await S.api('/api/v1/sites');
      page.append(S.table('Sites', [
        ['Site', (s) => S.el('a', {href: '#adapters/' + encodeURIComponent(s.name), text: s.name})], ['Defined in', (s) => s.source],
        ['Active adapter', (s) => (s.active_adapter ? String(s.active_adapter) : 'none')],
        ['Called AE', (s) => ((s.ae || {}).called_ae || []).join(', ')], ['Calling AE', (s) => ((s.ae || {}).calling_ae || []).join(', ')],
        ['Modalities', (s) => ((s.settings || {}).modalities || []).join(', ')],
        ['Destinations', (s) => ((s.settings || {}).destinations || []).join(', ')],
      ], sites, {id: 'sites'}));
    },
  });
})();
