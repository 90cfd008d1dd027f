// Drive samda's console (/ui/) in Debian's chromium (puppeteer-core), for test_console.sh.
// Environment: SAMDA_URL (http://127.0.0.1:PORT), USER_TOKEN, ADMIN_TOKEN, SEND_CMD (run once the
// Jobs page is open: sends a study), FIX_CMD (run once the failed export is shown: repairs the
// destination), SITE (whose adapters are activated and rolled back: versions 1 and 2 exist, 1
// active), SHOTS (folder for the screenshots), TIMEOUT_S.
// Everything is done the way a person would: keyboard sign-in, clicks, confirmation dialogs.
// Prints one JSON report of what the page showed (the test asserts on it); exit 0 when every step
// ran, 2 after the first step that failed (the report then names it and its error).
const puppeteer = require('puppeteer-core');
const { execSync } = require('child_process');

const E = process.env;
const deadline = Date.now() + 1000 * Number(E.TIMEOUT_S || 400);
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
const report = { steps: [], errors: [], csp_violations: [], dialogs: [] };

async function waitFor(page, fn, arg, secs, what) {
  const until = Math.min(deadline, Date.now() + 1000 * secs);
  for (;;) {
    const v = await page.evaluate(fn, arg).catch((e) => { if (/context was destroyed/.test(e.message)) return undefined; throw e; });
    if (v) return v;
    if (Date.now() > until) throw new Error('timed out after ' + secs + ' s waiting for ' + what);
    await sleep(250);
  }
}
const shot = (page, name) => page.screenshot({ path: E.SHOTS + '/console-' + name + '.png' });
async function go(page, hash) { await page.evaluate((h) => { location.hash = h; }, hash); }

// Every form control has an accessible name (a <label for>, or aria-label).
function unlabelled() {
  return [...document.querySelectorAll('input, select, textarea')]
    .filter((e) => !e.closest('[hidden]') && e.type !== 'hidden' && !(e.labels && e.labels.length) && !e.getAttribute('aria-label'))
    .map((e) => e.id || e.outerHTML.slice(0, 80));
}

async function signIn(page, token) {
  await waitFor(page, () => !document.getElementById('signin').hidden, null, 20, 'the sign-in form');
  // keyboard only: Tab from the top of the page to the token field, type, Enter
  await page.evaluate(() => document.activeElement && document.activeElement.blur());
  let reached = false;
  for (let i = 0; i < 10 && !reached; i++) {
    await page.keyboard.press('Tab');
    reached = await page.evaluate(() => document.activeElement && document.activeElement.id === 'token');
  }
  if (!reached) throw new Error('Tab never reached the token field');
  await page.keyboard.type(token);
  await page.keyboard.press('Enter');
  await waitFor(page, () => document.body.dataset.role && !document.getElementById('nav').hidden, null, 20, 'sign-in');
  return page.evaluate(() => document.body.dataset.role);
}

(async () => {
  const browser = await puppeteer.launch({
    executablePath: E.CHROMIUM || '/usr/bin/chromium',
    headless: true,
    args: ['--no-sandbox', '--use-angle=swiftshader', '--enable-unsafe-swiftshader', '--disable-dev-shm-usage'],
    defaultViewport: { width: 1400, height: 1000 },
  });
  const page = await browser.newPage();
  let step = 'start';
  const begin = (name) => { step = name; report.steps.push(name); console.error('step: ' + name); };
  page.on('pageerror', (e) => report.errors.push('pageerror: ' + String(e.message || e).slice(0, 300)));
  page.on('requestfailed', (r) => { if (!/favicon/.test(r.url())) report.errors.push('requestfailed (' + step + '): ' + r.method() + ' ' + r.url() + ' ' + (r.failure() || {}).errorText); });
  page.on('response', (r) => { if (r.status() >= 400 && !/favicon/.test(r.url())) (report.http_errors = report.http_errors || []).push(r.status() + ' ' + r.url()); });
  page.on('console', (m) => { if (m.type() === 'error') (report.console_errors = report.console_errors || []).push(m.text().slice(0, 300)); });
  page.on('dialog', async (d) => { report.dialogs.push(d.message()); await d.accept(); });
  await page.evaluateOnNewDocument(() => {
    window.__csp = [];
    document.addEventListener('securitypolicyviolation', (e) => window.__csp.push(e.violatedDirective + ' ' + (e.blockedURI || 'inline')));
  });
  try {
    begin('open /ui/');
    const resp = await page.goto(E.SAMDA_URL + '/ui/', { waitUntil: 'domcontentloaded', timeout: 30000 });
    report.csp_header = resp.headers()['content-security-policy'];
    report.content_type = resp.headers()['content-type'];
    report.inline_scripts = await page.evaluate(() => document.querySelectorAll('script:not([src])').length);
    report.unlabelled_signin = await page.evaluate(unlabelled);

    begin('sign in as user');
    report.user_role = await signIn(page, E.USER_TOKEN);
    report.user_nav = await page.evaluate(() => [...document.querySelectorAll('#nav li')].filter((l) => !l.hidden).map((l) => l.textContent.trim()));
    report.token_in_session_storage = await page.evaluate(() => sessionStorage.getItem('samda.token') !== null && localStorage.length === 0);
    await go(page, '#exports'); // an admin page: the user lands on the overview instead
    await sleep(500);
    report.user_exports_page = await page.evaluate(() => document.querySelector('#page h2').textContent);
    report.user_exports_api = await page.evaluate(async () => (await fetch('/api/v1/exports', { headers: { Authorization: 'Bearer ' + sessionStorage.getItem('samda.token') } })).status);
    await page.click('#signout');
    report.signed_out = await page.evaluate(() => sessionStorage.getItem('samda.token') === null && !document.getElementById('signin').hidden);

    begin('sign in as admin');
    report.admin_role = await signIn(page, E.ADMIN_TOKEN);
    report.admin_nav = await page.evaluate(() => [...document.querySelectorAll('#nav li')].filter((l) => !l.hidden).map((l) => l.textContent.trim()));

    begin('overview');
    await go(page, '#overview');
    report.health = await waitFor(page, () => { const t = document.querySelector('#health caption'); return t && t.textContent; }, null, 20, 'the health table');
    report.unlabelled = await page.evaluate(unlabelled);

    begin('jobs: a study is sent and its job runs to done');
    await go(page, '#jobs');
    await waitFor(page, () => document.querySelector('#jobs'), null, 20, 'the jobs table');
    report.jobs_before = await page.evaluate(() => document.querySelectorAll('#jobs .job-state').length);
    await page.evaluate(() => { window.__sameDocument = true; }); // gone if the page reloads
    execSync(E.SEND_CMD, { stdio: 'inherit' });
    const seen = new Set();
    const job = await waitFor(page, () => {
      const s = [...document.querySelectorAll('#jobs .job-state')].map((e) => [e.dataset.job, e.textContent]);
      window.__states = (window.__states || []).concat(s.map((x) => x[1]));
      const done = s.find((x) => x[1] === 'done');
      return done ? { id: done[0], seen: [...new Set(window.__states)] } : null;
    }, null, 300, 'a job in state done');
    job.seen.forEach((x) => seen.add(x));
    report.job = job.id;
    report.job_seen_without_reload = await page.evaluate(() => window.__sameDocument === true);
    report.job_states_seen = [...seen];
    await shot(page, 'jobs');

    begin('job page, study page, result viewer');
    await page.click('#jobs a[href="#jobs/' + job.id + '"]');
    await waitFor(page, (id) => { const d = document.querySelector('dl[data-job="' + id + '"]'); return d && d.dataset.state === 'done'; }, job.id, 20, 'the job page');
    await page.click('dl.facts a[href^="#studies/"]');
    await waitFor(page, () => document.querySelector('a.view-result'), null, 30, 'a result on the study page');
    report.unlabelled_study = await page.evaluate(unlabelled);
    const interactive = await page.evaluate(() => document.querySelector('a.correct-result').getAttribute('href'));
    report.study = decodeURIComponent(interactive.split('/')[1]);
    await page.click('a.view-result');
    await waitFor(page, () => { const c = document.getElementById('viewer-canvas'); return c && c.dataset.slice !== undefined; }, null, 60, 'the viewer to draw');
    report.labels_rows = await page.evaluate(() => document.querySelectorAll('#labels tbody tr').length);
    // scroll with the keyboard until a slice shows mask pixels
    await page.focus('#viewer-canvas');
    const n = await page.evaluate(() => Number(document.getElementById('slice').max) + 1);
    let drawn = 0;
    for (let k = 0; k < 2 * n && !drawn; k++) {
      drawn = Number(await page.evaluate(() => document.getElementById('viewer-canvas').dataset.maskPixels));
      if (drawn) break;
      const before = await page.evaluate(() => document.getElementById('viewer-canvas').dataset.slice);
      await page.keyboard.press(k < n ? 'ArrowDown' : 'ArrowUp');
      await waitFor(page, (b) => document.getElementById('viewer-canvas').dataset.slice !== b || Number(document.getElementById('slice').value) === Number(b), before, 20, 'the next slice');
      await sleep(100);
    }
    // the canvas itself: pixels in a label colour (not grey) where the mask is
    report.viewer = await page.evaluate(() => {
      const c = document.getElementById('viewer-canvas');
      const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
      let coloured = 0;
      for (let i = 0; i < d.length; i += 4) if (d[i] !== d[i + 1] || d[i + 1] !== d[i + 2]) coloured++;
      return { slice: Number(c.dataset.slice), mask_pixels: Number(c.dataset.maskPixels), coloured, width: c.width, height: c.height,
        preview: document.getElementById('server-overlay').naturalWidth };
    });
    await shot(page, 'viewer');
    // a window preset redraws the slice from the same pixels with another grey mapping
    const grey = () => page.evaluate(() => {
      const c = document.getElementById('viewer-canvas');
      const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
      let sum = 0;
      for (let i = 0; i < d.length; i += 4) if (d[i] === d[i + 1] && d[i + 1] === d[i + 2]) sum += d[i];
      return sum;
    });
    const before = await grey();
    await page.select('#window', 'lung');
    await waitFor(page, () => document.getElementById('viewer-canvas').dataset.window === 'lung', null, 20, 'the lung window');
    report.window_change = { soft_tissue: before, lung: await grey() };

    begin('interactive: a box drawn on a slice gives a mask at once');
    await go(page, interactive);
    await waitFor(page, () => /ready/.test((document.getElementById('i-info') || {}).textContent || ''), null, 60, 'the session');
    report.unlabelled_interactive = await page.evaluate(unlabelled);
    const rect = await page.evaluate(() => { const r = document.getElementById('i-canvas').getBoundingClientRect(); return { x: r.left, y: r.top, w: r.width, h: r.height }; });
    // around the liver of the phantom's middle slice (the viewer above shows it there)
    await page.mouse.move(rect.x + 0.17 * rect.w, rect.y + 0.27 * rect.h);
    await page.mouse.down();
    await page.mouse.move(rect.x + 0.35 * rect.w, rect.y + 0.45 * rect.h, { steps: 5 });
    await page.mouse.move(rect.x + 0.50 * rect.w, rect.y + 0.62 * rect.h, { steps: 5 });
    await page.mouse.up();
    report.interactive = await waitFor(page, () => {
      const c = document.getElementById('i-canvas');
      if (!c.dataset.area) return null;
      const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
      let coloured = 0;
      for (let i = 0; i < d.length; i += 4) if (d[i] !== d[i + 1] || d[i + 1] !== d[i + 2]) coloured++;
      return { area: Number(c.dataset.area), coloured, info: document.getElementById('i-info').textContent };
    }, null, 60, 'the predicted mask');
    await shot(page, 'interactive');
    await page.click('#i-accept');
    report.correction = await waitFor(page, () => { const o = document.getElementById('i-accepted'); return o && o.dataset.sop && { sop: o.dataset.sop, text: o.textContent }; }, null, 60, 'the correction to be stored');

    begin('exports: the failed item is retried');
    await go(page, '#exports');
    const failed = await waitFor(page, () => {
      const b = document.querySelector('button.retry-export');
      const s = b && document.querySelector('.export-state[data-export="' + b.dataset.export + '"]');
      return s && /failed/.test(s.textContent) ? { id: b.dataset.export, state: s.textContent,
        cause: s.closest('tr').querySelector('td:nth-child(6)').textContent } : null;
    }, null, 60, 'a failed export with a retry button');
    report.failed_export = failed;
    await shot(page, 'exports-failed');
    execSync(E.FIX_CMD, { stdio: 'inherit' });
    await page.click('button[aria-label="C-ECHO ' + E.DESTINATION + '"]');
    report.echo = await waitFor(page, (d) => { const o = document.getElementById('echo-' + d); return o && /ok|failed|:/.test(o.textContent) && !/\.\.\.$/.test(o.textContent) && o.textContent; }, E.DESTINATION, 20, 'the C-ECHO answer');
    await page.click('button.retry-export[data-export="' + failed.id + '"]');
    report.export_after_retry = await waitFor(page, (id) => { const s = document.querySelector('.export-state[data-export="' + id + '"]'); return s && s.textContent === 'done' && s.textContent; }, failed.id, 60, 'the export to be done');
    await shot(page, 'exports-done');

    begin('adapters: activate and roll back');
    await go(page, '#adapters');
    await waitFor(page, () => document.querySelector('#sites'), null, 20, 'the sites table');
    await go(page, '#adapters/' + E.SITE);
    await waitFor(page, () => document.querySelector('button.activate[data-version="2"]'), null, 20, 'version 2 with an Activate button');
    report.unlabelled_adapters = await page.evaluate(unlabelled);
    await page.click('button.activate[data-version="2"]');
    report.active_after_activate = await waitFor(page, () => { const a = document.querySelector('.adapter-active'); return a && a.dataset.version === '2' && a.dataset.version; }, null, 20, 'version 2 active');
    await shot(page, 'adapters');
    await page.click('#rollback');
    report.active_after_rollback = await waitFor(page, () => { const a = document.querySelector('.adapter-active'); return a && a.dataset.version === '1' && a.dataset.version; }, null, 20, 'version 1 active again');

    begin('adapters: train a version from the corrected study');
    await page.type('#train-studies', report.study);
    await page.evaluate(() => { document.getElementById('train-epochs').value = '1'; });
    await page.click('#adapter-train button[type="submit"]');
    report.train = await waitFor(page, () => {
      const d = document.querySelector('dl[data-job]');
      if (!d || !/^(done|failed|cancelled)$/.test(d.dataset.state)) return null;
      const pre = [...document.querySelectorAll('pre')].map((p) => p.textContent);
      return { job: d.dataset.job, state: d.dataset.state, error: d.querySelector('dd.error').textContent, result: pre[1] };
    }, null, 240, 'the training job to finish');
    await shot(page, 'train');

    begin('audit log');
    await go(page, '#audit');
    report.audit = await waitFor(page, () => {
      const rows = [...document.querySelectorAll('#audit tbody tr')].map((r) => r.children[3] && r.children[3].textContent);
      return rows.length && rows;
    }, null, 20, 'audit entries');
    await page.type('#a-action', 'rollback');
    await page.click('#audit-filter button[type="submit"]');
    await sleep(1000);
    report.audit_filtered = await page.evaluate(() => [...document.querySelectorAll('#audit tbody tr')].map((r) => r.children[3] && r.children[3].textContent));

    begin('routing rules: the rules in force and the tester on the series of the job');
    await go(page, '#rules');
    report.rules = await waitFor(page, () => {
      const names = [...document.querySelectorAll('#rules tbody tr')].map((r) => r.children[0] && r.children[0].textContent);
      return names.length && names;
    }, null, 20, 'the rules table');
    const series = await page.evaluate(async (id) => (await window.samda.api('/api/v1/jobs/' + id)).series_uid, report.job);
    await page.type('#rt-series', series);
    await page.click('#rules-test button[type="submit"]');
    report.rules_test = await waitFor(page, () => {
      const cells = (sel) => [...document.querySelectorAll(sel + ' tbody tr')].map((r) => [...r.children].map((c) => c.textContent));
      const tests = cells('#rules-tests'), jobs = cells('#rules-jobs');
      return tests.length && jobs.length && { tests, jobs };
    }, null, 20, 'the rule test');
    await shot(page, 'rules');

    begin('overview again, and the policy');
    await go(page, '#overview');
    await waitFor(page, () => document.querySelector('#jobs-by-state'), null, 20, 'the overview');
    await shot(page, 'overview');
    // an inline script added now must be blocked by the policy (and reported)
    report.injected_inline_ran = await page.evaluate(async () => {
      const s = document.createElement('script');
      s.textContent = 'window.__inlineRan = true;';
      document.body.append(s);
      await new Promise((r) => setTimeout(r, 300));
      return window.__inlineRan === true;
    });
    report.csp_violations = await page.evaluate(() => window.__csp);
    report.inline_scripts_end = await page.evaluate(() => document.querySelectorAll('script:not([src])').length - 1);
    report.ok = true;
  } catch (e) {
    report.failed_step = step;
    report.error = String(e && e.stack ? e.stack : e).slice(0, 1500);
    await shot(page, 'failure').catch(() => {});
  }
  console.log(JSON.stringify(report));
  await browser.close();
  process.exit(report.ok ? 0 : 2);
})();
