/* Jobs: the queue, newest first, refreshed every second (progress of running jobs), filtered by state;
 * cancel and retry (with confirmation); a job's page with its error, parameters and result. */
'use strict';
(function () {
  const S = window.samda;
  const STATES = ['', 'pending', 'running', 'done', 'failed', 'cancelled'];

  function actions(j, refresh) {
    const act = (verb) => async () => {
      if (!S.confirm(verb + ' job ' + j.id + '?')) return;
      try { await S.post('/api/v1/jobs/' + j.id + '/' + verb.toLowerCase()); S.say('Job ' + j.id + ': ' + verb.toLowerCase() + ' requested.'); }
      catch (e) { S.say('Job ' + j.id + ': ' + e.message, true); }
      refresh();
    };
    return [
      (j.state === 'pending' || j.state === 'running') &&
        S.el('button', {type: 'button', onclick: act('Cancel'), 'aria-label': 'Cancel job ' + j.id, text: 'Cancel'}),
      (j.state === 'failed' || j.state === 'cancelled') &&
        S.el('button', {type: 'button', onclick: act('Retry'), 'aria-label': 'Retry job ' + j.id, text: 'Retry'}),
    ];
  }
  function progress(j) {
    const p = Math.round((j.progress || 0) * 100);
    return S.el('span', {}, S.el('progress', {max: 100, value: p, 'aria-label': 'job ' + j.id + ' progress'}), ' ' + p + '% ',
      j.progress_message || '');
  }
  function study(j) {
    return j.study_uid ? S.el('a', {href: '#studies/' + encodeURIComponent(j.study_uid), text: j.study_uid}) : '';
  }

  async function one(page, id) {
    const box = S.el('div');
    page.append(S.el('p', {}, S.el('a', {href: '#jobs', text: 'All jobs'})), box);
    await S.every(2000, async () => {
      const j = await S.api('/api/v1/jobs/' + encodeURIComponent(id));
      S.clear(box).append(
        S.el('h3', {text: 'Job ' + j.id + ' (' + j.kind + ')'}),
        S.el('dl', {class: 'facts', 'data-job': j.id, 'data-state': j.state},
          S.el('dt', {text: 'State'}), S.el('dd', {class: 'job-state state-' + j.state, text: j.state}),
          S.el('dt', {text: 'Progress'}), S.el('dd', {}, progress(j)),
          S.el('dt', {text: 'Site'}), S.el('dd', {text: j.site || ''}),
          S.el('dt', {text: 'Study'}), S.el('dd', {}, study(j)),
          S.el('dt', {text: 'Series'}), S.el('dd', {text: j.series_uid || ''}),
          S.el('dt', {text: 'Attempts'}), S.el('dd', {text: j.attempts + ' of ' + j.max_attempts}),
          S.el('dt', {text: 'Created'}), S.el('dd', {text: S.time(j.created_ms)}),
          S.el('dt', {text: 'Finished'}), S.el('dd', {text: S.time(j.finished_ms)}),
          S.el('dt', {text: 'Error'}), S.el('dd', {class: 'error', text: j.error || ''})),
        S.el('div', {}, actions(j, () => {})),
        S.el('h4', {text: 'Parameters'}), S.el('pre', {text: JSON.stringify(j.params || {}, null, 2)}),
        S.el('h4', {text: 'Result'}), S.el('pre', {text: JSON.stringify(j.result || null, null, 2)}));
    });
  }

  S.page('jobs', {
    title: 'Jobs',
    render: async function (page, args) {
      if (args[0]) return one(page, args[0]);
      const sel = S.el('select', {id: 'job-state'}, STATES.map((s) => S.el('option', {value: s, text: s || 'any'})));
      const box = S.el('div');
      page.append(S.el('p', {}, S.el('label', {for: 'job-state', text: 'State '}), sel,
        ' (refreshed every second)'), box);
      let shown = '';
      const load = async (force) => {
        const q = sel.value ? '&state=' + sel.value : '';
        const jobs = await S.api('/api/v1/jobs?limit=100' + q);
        const key = q + JSON.stringify(jobs);
        if (key === shown && force !== true) return; /* unchanged: keep the focus where it is */
        shown = key;
        S.clear(box).append(S.table('Jobs, newest first', [
          ['Job', (j) => S.el('a', {href: '#jobs/' + j.id, text: String(j.id)})],
          ['Kind', (j) => j.kind], ['Site', (j) => j.site],
          ['State', (j) => S.el('span', {class: 'job-state state-' + j.state, 'data-job': j.id, text: j.state})],
          ['Progress', progress], ['Study', study], ['Updated', (j) => S.time(j.updated_ms)],
          ['Error', (j) => S.el('span', {class: 'error', text: j.error || ''})], ['', (j) => actions(j, () => load(true))],
        ], jobs, {id: 'jobs'}));
      };
      sel.addEventListener('change', () => load().catch((e) => S.say(e.message, true)));
      await S.every(1000, load);
    },
  });
})();
