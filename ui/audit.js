/* Audit log (admin): GET /api/v1/audit, newest first, filtered by actor, action and time. */
'use strict';
(function () {
  const S = window.samda;
  const FIELDS = [['actor', 'Actor (e.g. token:3, cli, system)', 'text'], ['action', 'Action contains', 'text'],
    ['since', 'From', 'datetime-local'], ['until', 'Until', 'datetime-local']];

  S.page('audit', {
    title: 'Audit log',
    admin: true,
    render: async function (page) {
      const form = S.el('form', {id: 'audit-filter', class: 'search'});
      for (const [k, label, type] of FIELDS) form.append(S.el('label', {for: 'a-' + k, text: label}), S.el('input', {id: 'a-' + k, name: k, type}));
      form.append(S.el('button', {type: 'submit', text: 'Filter'}));
      const box = S.el('div');
      page.append(form, box);
      const run = async () => {
        const q = new URLSearchParams({limit: '200'});
        const f = form.elements;
        if (f.actor.value.trim()) q.set('actor', f.actor.value.trim());
        if (f.action.value.trim()) q.set('action', f.action.value.trim());
        if (f.since.value) q.set('since_ms', String(new Date(f.since.value).getTime()));
        if (f.until.value) q.set('until_ms', String(new Date(f.until.value).getTime()));
        const entries = await S.api('/api/v1/audit?' + q);
        S.clear(box).append(S.table(entries.length + ' entries, newest first', [
          ['Id', (e) => String(e.id)], ['Time', (e) => S.time(e.time_ms)], ['Actor', (e) => e.actor], ['Action', (e) => e.action],
          ['Resource', (e) => e.resource || ''], ['Outcome', (e) => S.el('span', {class: 'state-' + e.outcome, text: e.outcome})],
          ['Details', (e) => (e.details ? JSON.stringify(e.details) : '')],
        ], entries, {id: 'audit'}));
      };
      form.addEventListener('submit', (e) => { e.preventDefault(); run().catch((err) => S.say(err.message, true)); });
      await run();
    },
  });
})();
