/* Routing rules (admin): the [routing] settings and [rule] sections in force (GET /api/v1/rules), and
 * the rule tester (POST /api/v1/rules/test): for a stored series, each rule's tests with the value
 * the series has, its requirements, and the jobs the series would get. Nothing is queued. */
'use strict';
(function () {
  const S = window.samda;
  const list = (a) => (a && a.length ? a.join(', ') : 'the site\'s');
  const yes = (b) => S.el('span', {class: b ? 'state-done' : 'state-failed', text: b ? 'yes' : 'no'});

  function explain(box, d) {
    S.clear(box);
    const attrs = Object.entries(d.attributes || {});
    box.append(S.table('Attributes the rules read (series ' + d.series_uid + ', site ' + d.site + ')',
      [['Attribute', (a) => a[0]], ['Value', (a) => String(a[1])]], attrs, {id: 'rules-attributes'}));
    const tests = [];
    for (const r of d.rules || []) {
      if (r.evaluated === false) { tests.push({rule: r.name, test: '(not evaluated: mode first, an earlier rule matched)', value: '', result: null}); continue; }
      for (const t of r.tests || []) tests.push({rule: r.name, test: t.test, value: t.value, result: t.result});
      for (const q of r.requires || []) tests.push({rule: r.name, test: 'requires: ' + q.expression, value: q.series_uid || '(no series of the study)', result: q.met});
    }
    box.append(S.table('Tests, as far as evaluation went', [['Rule', (t) => t.rule], ['Test', (t) => t.test],
      ['Value', (t) => t.value], ['Result', (t) => (t.result === null ? '' : yes(t.result))]], tests, {id: 'rules-tests'}));
    box.append(S.table('Jobs the series would get: ' + (d.reason || ''), [['Rule', (j) => j.rule || '(the site\'s selection)'],
      ['Site', (j) => j.site], ['Priority', (j) => j.priority], ['Outputs', (j) => list(j.outputs)],
      ['Destinations', (j) => list(j.destinations)], ['Labels', (j) => (j.labels ? j.labels.join(', ') : 'all')],
      ['Waits for', (j) => (j.waiting ? j.missing : '')]], d.jobs || [], {id: 'rules-jobs'}));
  }

  S.page('rules', {
    title: 'Routing rules',
    admin: true,
    render: async function (page) {
      const cfg = await S.api('/api/v1/rules');
      page.append(S.el('p', {id: 'rules-mode', text: 'Mode ' + cfg.mode + ' (' + (cfg.mode === 'all' ? 'every matching rule acts' :
        'the first matching rule acts') + '); a series no rule matches: ' + (cfg.unmatched === 'skip' ? 'skipped' :
        'its site decides') + '; off-peak window ' + cfg.off_peak + ' (' + (cfg.off_peak_open ? 'open now' : 'shut now') + ').'}));
      page.append(S.table(cfg.rules.length + (cfg.rules.length === 1 ? ' rule' : ' rules') + ', in the order they are evaluated (the configuration file; SIGHUP reloads)', [
        ['Name', (r) => r.name], ['Match', (r) => S.el('code', {text: r.match})], ['Site', (r) => r.site || 'the series\''],
        ['Labels', (r) => (r.labels.length ? r.labels.join(', ') : 'all')], ['Outputs', (r) => list(r.outputs)],
        ['Destinations', (r) => list(r.destinations)], ['Priority', (r) => r.priority],
        ['Requires', (r) => (r.requires ? S.el('code', {text: r.requires}) : '')],
      ], cfg.rules, {id: 'rules'}));
      const form = S.el('form', {id: 'rules-test', class: 'search'},
        S.el('label', {for: 'rt-series', text: 'Series Instance UID of a stored series'}),
        S.el('input', {id: 'rt-series', name: 'series', type: 'text', required: true, pattern: '[0-9.]{1,64}', autocomplete: 'off'}),
        S.el('button', {type: 'submit', text: 'Test the rules'}));
      const box = S.el('div', {id: 'rules-result', 'aria-live': 'polite'});
      page.append(S.el('h3', {text: 'Test a series'}), form, box);
      form.addEventListener('submit', (e) => {
        e.preventDefault();
        S.post('/api/v1/rules/test', {series_uid: form.elements.series.value.trim()})
          .then((d) => explain(box, d)).catch((err) => { S.clear(box); S.say('Rule test: ' + err.message, true); });
      });
    },
  });
})();
