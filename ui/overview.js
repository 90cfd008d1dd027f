/* Overview: health per dependency (/health), instances and studies received in the last hour (the
 * change feed), queue depths (/metrics: jobs and exports by state; exports by destination for
 * admins), model and device, disk free against the watermark, and recent errors (failed jobs). */
'use strict';
(function () {
  const S = window.samda;
  let feed = {since: 0, events: []}; /* change feed read so far: [time_ms, kind, type] of the last hour */
  let perDest = null; /* exports by destination: {at, rows} */

  /* Prometheus text: {name: [[labels, value]]}. */
  function metrics(text) {
    const m = {};
    for (const line of text.split('\n')) {
      const r = /^([a-z_]+)(\{[^}]*\})? ([0-9.e+-]+)$/.exec(line);
      if (!r) continue;
      const labels = {};
      for (const p of (r[2] || '').slice(1, -1).split(',')) {
        const kv = /^([a-z_]+)="(.*)"$/.exec(p);
        if (kv) labels[kv[1]] = kv[2];
      }
      (m[r[1]] = m[r[1]] || []).push([labels, Number(r[3])]);
    }
    return m;
  }
  async function readFeed() {
    for (let i = 0; i < 50; i++) {
      const c = await S.api('/api/v1/changes?limit=1000&since=' + feed.since);
      for (const x of c.changes) feed.events.push([x.time_ms, x.kind, x.type]);
      feed.since = c.last;
      if (c.done || !c.changes.length) break;
    }
    const hourAgo = Date.now() - 3600e3;
    feed.events = feed.events.filter((e) => e[0] >= hourAgo);
    const count = (kind) => feed.events.filter((e) => e[1] === kind && e[2] === 'new').length;
    return {instances: count('instance'), studies: count('study'), results: count('result')};
  }

  S.page('overview', {
    title: 'Overview',
    render: async function (page) {
      const box = S.el('div', {class: 'cards'});
      page.append(box);
      await S.every(5000, async () => {
        /* public, and 503 with the same document when a check fails */
        const h = await fetch('/health', {cache: 'no-store'}).then((r) => r.json());
        const [text, hour, failed] = await Promise.all([
          S.api('/metrics'), readFeed(), S.api('/api/v1/jobs?state=failed&limit=5')]);
        const m = metrics(text);
        const byState = (name) => (m[name] || []).map(([l, v]) => ({state: l.state, n: v}));
        const disk = (m.samda_disk_free_bytes || [[{}, NaN]])[0][1];
        const cards = [];
        cards.push(S.table('Health: ' + h.status, [['Check', (c) => c.name],
          ['Status', (c) => S.el('span', {class: 'state-' + c.status, text: c.status})], ['Detail', (c) => c.detail || '']],
          Object.entries(h.checks).map(([name, c]) => Object.assign({name}, c)), {id: 'health'}));
        cards.push(S.table('Received in the last hour', [['What', (r) => r.what], ['Count', (r) => r.n]],
          [{what: 'instances', n: hour.instances}, {what: 'studies', n: hour.studies}, {what: 'results', n: hour.results}]));
        cards.push(S.table('Jobs by state', [['State', (r) => r.state], ['Jobs', (r) => r.n]], byState('samda_jobs'), {id: 'jobs-by-state'}));
        cards.push(S.table('Exports by state', [['State', (r) => r.state], ['Items', (r) => r.n]], byState('samda_exports')));
        if (S.role === 'admin') {
          /* an audited admin route: read once a minute, not at every refresh */
          if (!perDest || Date.now() - perDest.at > 60e3) {
            const items = await S.api('/api/v1/exports?limit=1000');
            const per = {};
            for (const x of items) { const k = x.destination + ' ' + x.state; per[k] = (per[k] || 0) + 1; }
            perDest = {at: Date.now(), rows: Object.entries(per)};
          }
          cards.push(S.table('Exports by destination (last 1000, read ' + S.time(perDest.at) + ')',
            [['Destination and state', (r) => r[0]], ['Items', (r) => r[1]]], perDest.rows));
        }
        const model = h.checks.model || {};
        const dk = h.checks.disk || {};
        cards.push(S.table('Model and disk', [['', (r) => r[0]], ['', (r) => r[1]]], [
          ['model', (model.status || '?') + ': ' + (model.detail || '')],
          ['disk free', isNaN(disk) ? '?' : S.bytes(disk)],
          ['watermark', dk.detail || ''],
        ]));
        cards.push(S.table('Recent errors (failed jobs)', [['Job', (j) => S.el('a', {href: '#jobs/' + j.id, text: String(j.id)})],
          ['Kind', (j) => j.kind], ['When', (j) => S.time(j.finished_ms || j.updated_ms)], ['Error', (j) => j.error || '']], failed));
        S.clear(box).append(...cards.map((c) => S.el('div', {class: 'card'}, c)));
      });
    },
  });
})();
