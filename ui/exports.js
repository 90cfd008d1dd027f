/* Exports (admin): each destination with a C-ECHO button, and its export items (DICOM-SEGs) by
 * state; failed items with their cause and a retry button (with confirmation). Refreshed every 5 s
 * (each read is an audited admin call). */
'use strict';
(function () {
  const S = window.samda;

  async function echo(d, out) {
    out.textContent = 'C-ECHO to ' + d.name + '...';
    try {
      const r = await S.post('/api/v1/destinations/' + encodeURIComponent(d.name) + '/echo');
      out.textContent = r.ok ? 'C-ECHO ok (' + r.ms.toFixed(0) + ' ms)' : 'C-ECHO failed: ' + (r.error || r.status);
      out.className = r.ok ? 'state-ok' : 'error';
    } catch (e) { out.textContent = 'C-ECHO: ' + e.message; out.className = 'error'; }
  }
  async function retry(x, refresh) {
    if (!S.confirm('Send export ' + x.id + ' to ' + x.destination + ' again?')) return;
    try { const r = await S.post('/api/v1/exports/' + x.id + '/retry'); S.say('Export ' + x.id + ' is ' + r.state + ' again.'); }
    catch (e) { S.say('Export ' + x.id + ': ' + e.message, true); }
    refresh(true);
  }

  S.page('exports', {
    title: 'Exports',
    admin: true,
    render: async function (page) {
      const dests = await S.api('/api/v1/destinations');
      const echoes = {};
      const dl = S.el('div', {class: 'cards'});
      for (const d of dests) {
        echoes[d.name] = S.el('output', {id: 'echo-' + d.name, 'aria-live': 'polite'});
        dl.append(S.el('div', {class: 'card destination', 'data-destination': d.name},
          S.el('h3', {text: d.name}),
          S.el('p', {text: d.ae_title + '@' + d.host + ':' + d.port + (d.tls ? ' (TLS)' : '') + ', ' + d.source}),
          S.el('button', {type: 'button', 'aria-label': 'C-ECHO ' + d.name, text: 'C-ECHO', onclick: () => echo(d, echoes[d.name])}),
          ' ', echoes[d.name]));
      }
      if (!dests.length) dl.append(S.el('p', {text: 'No destinations: add a [destination] section or POST /api/v1/destinations.'}));
      const sel = S.el('select', {id: 'export-state'}, ['', 'failed', 'pending', 'sending', 'done'].map((s) => S.el('option', {value: s, text: s || 'any'})));
      const box = S.el('div');
      page.append(S.el('h3', {text: 'Destinations'}), dl, S.el('h3', {text: 'Items'}),
        S.el('p', {}, S.el('label', {for: 'export-state', text: 'State '}), sel), box);
      let shown = '';
      const load = async (force) => {
        const items = await S.api('/api/v1/exports?limit=200' + (sel.value ? '&state=' + sel.value : ''));
        const key = sel.value + JSON.stringify(items);
        if (key === shown && force !== true) return;
        shown = key;
        const parts = [];
        for (const d of dests) {
          const mine = items.filter((x) => x.destination === d.name);
          parts.push(S.table(d.name + ': ' + mine.length + ' items', [
            ['Item', (x) => String(x.id)], ['Result', (x) => (x.result ? String(x.result) : '')],
            ['State', (x) => S.el('span', {class: 'export-state state-' + x.state, 'data-export': x.id, text: x.state + (x.permanent ? ' (refused)' : '')})],
            ['Attempts', (x) => x.attempts], ['Updated', (x) => S.time(x.updated_ms)],
            ['Cause', (x) => S.el('span', {class: 'error', text: x.error || ''})],
            ['', (x) => (x.state === 'failed' || x.state === 'pending') &&
              S.el('button', {type: 'button', class: 'retry-export', 'data-export': x.id, 'aria-label': 'Retry export ' + x.id,
                text: 'Retry', onclick: () => retry(x, load)})],
          ], mine, {class: 'exports', 'data-destination': d.name}));
        }
        S.clear(box).append(...parts);
      };
      sel.addEventListener('change', () => load(true).catch((e) => S.say(e.message, true)));
      await S.every(5000, load);
    },
  });
})();
