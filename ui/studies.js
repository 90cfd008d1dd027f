/* Studies and series: search (QIDO-RS: patient ID, accession number, date, modality); a study's
 * series with their state and timers, their results (per-label volumes, viewer, SEG download) and
 * the study's jobs; segment again with another adapter version. */
'use strict';
(function () {
  const S = window.samda;
  const v = (o, tag) => (o[tag] && o[tag].Value ? o[tag].Value[0] : '');
  const FIELDS = [['PatientID', 'Patient ID', 'text'], ['AccessionNumber', 'Accession', 'text'],
    ['StudyDate', 'Date (YYYYMMDD or range)', 'text'], ['ModalitiesInStudy', 'Modality', 'text']];
  let last = {}; /* the last search, kept while the console is open */

  async function search(page) {
    const form = S.el('form', {id: 'study-search', class: 'search'});
    for (const [k, label] of FIELDS) {
      form.append(S.el('label', {for: 'q-' + k, text: label}), S.el('input', {id: 'q-' + k, name: k, value: last[k] || ''}));
    }
    form.append(S.el('button', {type: 'submit', text: 'Search'}));
    const box = S.el('div');
    page.append(form, box);
    const run = async () => {
      const q = new URLSearchParams({limit: '100', includefield: '00081030'});
      for (const [k] of FIELDS) { last[k] = form.elements[k].value.trim(); if (last[k]) q.set(k, last[k]); }
      const studies = await S.api('/dicomweb/studies?' + q, {headers: {Accept: 'application/dicom+json'}});
      S.clear(box).append(S.table(studies.length + ' studies', [
        ['Study', (s) => S.el('a', {href: '#studies/' + encodeURIComponent(v(s, '0020000D')), text: v(s, '00081030') || v(s, '0020000D')})],
        ['Patient ID', (s) => v(s, '00100020')], ['Accession', (s) => v(s, '00080050')], ['Date', (s) => v(s, '00080020')],
        ['Modalities', (s) => ((s['00080061'] || {}).Value || []).join(', ')], ['Series', (s) => v(s, '00201206')],
        ['Instances', (s) => v(s, '00201208')],
      ], studies, {id: 'studies'}));
    };
    form.addEventListener('submit', (e) => { e.preventDefault(); run().catch((err) => S.say(err.message, true)); });
    await run();
  }

  async function study(page, uid) {
    page.append(S.el('p', {}, S.el('a', {href: '#studies', text: 'All studies'})), S.el('h3', {text: 'Study ' + uid}));
    const box = S.el('div');
    const again = S.el('form', {id: 'segment-again', class: 'search'},
      S.el('label', {for: 'adapter-version', text: 'Segment again with adapter version'}),
      S.el('input', {id: 'adapter-version', inputmode: 'numeric', pattern: '[1-9][0-9]*', placeholder: 'active'}),
      S.el('button', {type: 'submit', text: 'Segment again'}));
    again.addEventListener('submit', async (e) => {
      e.preventDefault();
      const ver = again.elements[0].value.trim();
      if (!S.confirm('Segment study ' + uid + ' again' + (ver ? ' with adapter version ' + ver : '') + '?')) return;
      try {
        const j = await S.post('/api/v1/studies/' + uid + '/segment', ver ? {adapter_version: ver} : {});
        S.say('Queued as job ' + j.id + '.');
        S.go('#jobs/' + j.id);
      } catch (err) { S.say('Segment: ' + err.message, true); }
    });
    page.append(again, box);
    await S.every(10000, async () => {
      const [r, jobs] = await Promise.all([S.api('/api/v1/studies/' + uid + '/results'), S.api('/api/v1/jobs?limit=1000')]);
      const parts = [];
      for (const s of r.series) {
        parts.push(S.el('h4', {text: 'Series ' + (s.series_number || '') + ' ' + (s.series_description || '') + ' (' + s.modality + ')'}),
          S.el('dl', {class: 'facts'},
            S.el('dt', {text: 'UID'}), S.el('dd', {text: s.series_uid}),
            S.el('dt', {text: 'State'}), S.el('dd', {class: 'state-' + s.state, text: s.state + (s.reason ? ': ' + s.reason : '')}),
            S.el('dt', {text: 'Site'}), S.el('dd', {text: s.site}),
            S.el('dt', {text: 'Instances'}), S.el('dd', {text: String(s.instances)}),
            S.el('dt', {text: 'First received'}), S.el('dd', {text: S.time(s.first_received_ms)}),
            S.el('dt', {text: 'Last received'}), S.el('dd', {text: S.time(s.last_received_ms)}),
            S.el('dt', {text: 'Interactive'}), S.el('dd', {}, S.el('a', {href: '#interactive/' + encodeURIComponent(uid) + '/' +
              encodeURIComponent(s.series_uid), text: 'segment a slice by hand'}))),
          S.table('Results of this series', [
            ['Result', (x) => S.el('a', {href: '#result/' + x.id + '/' + encodeURIComponent(uid), class: 'view-result', text: 'View result ' + x.id})],
            ['Written', (x) => S.time(x.created_ms)], ['Adapter', (x) => x.adapter_version || 'none'],
            ['Labels', (x) => (x.labels || []).map((l) => l.label + ' ' + (l.volume_ml == null ? l.voxels + ' voxels' : l.volume_ml.toFixed(1) + ' ml')).join('; ')],
            ['Timings (s)', (x) => Object.entries(x.timings || {}).map(([k, t]) => k + ' ' + Number(t).toFixed(2)).join(', ')],
            ['Correct', (x) => S.el('a', {href: '#interactive/' + encodeURIComponent(uid) + '/' + encodeURIComponent(s.series_uid) + '/' + x.id,
              class: 'correct-result', text: 'Correct a slice'})],
            ['SEG', (x) => S.el('button', {type: 'button', text: 'Download SEG',
              onclick: () => S.download('/api/v1/results/' + x.id + '/seg', 'result-' + x.id + '.dcm').catch((e) => S.say(e.message, true))})],
          ], s.results));
      }
      const mine = jobs.filter((j) => j.study_uid === uid);
      parts.push(S.table('Jobs of this study', [
        ['Job', (j) => S.el('a', {href: '#jobs/' + j.id, text: String(j.id)})], ['Kind', (j) => j.kind],
        ['State', (j) => S.el('span', {class: 'job-state state-' + j.state, text: j.state})],
        ['Progress', (j) => Math.round((j.progress || 0) * 100) + '%'], ['Error', (j) => j.error || ''],
      ], mine));
      S.clear(box).append(...parts);
    });
  }

  S.page('studies', {
    title: 'Studies and series',
    render: (page, args) => (args[0] ? study(page, args[0]) : search(page)),
  });
})();
