/* samda console: sign-in, the API client, small DOM helpers and the page router.
 * Every page is a file that registers itself with samda.page(name, {title, admin, render}).
 * The token lives in sessionStorage (this tab only) and goes out as Authorization: Bearer, never in
 * a URL. What a page shows is what the API answers for the token's role: admin pages are hidden for
 * other roles, and the server refuses them anyway. */
'use strict';
(function () {
  const KEY = 'samda.token';
  const S = (window.samda = { pages: {}, role: null, timers: [] });

  /* ---- DOM helpers: elements and text only (no HTML strings) ---- */
  S.el = function (tag, attrs, ...kids) {
    const e = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) {
      if (v === null || v === undefined || v === false) continue;
      if (k.startsWith('on')) e.addEventListener(k.slice(2), v);
      else if (k === 'text') e.textContent = v;
      else if (k === 'value') e.value = v;
      else e.setAttribute(k, v === true ? '' : String(v));
    }
    for (const kid of kids.flat()) if (kid !== null && kid !== undefined && kid !== false)
      e.append(kid instanceof Node ? kid : document.createTextNode(String(kid)));
    return e;
  };
  S.clear = (e) => { while (e.firstChild) e.removeChild(e.firstChild); return e; };
  /* A table: cols = [[heading, row => cell content]], rows = objects. */
  S.table = function (caption, cols, rows, attrs) {
    const t = S.el('table', attrs || {}, S.el('caption', {text: caption}),
      S.el('thead', {}, S.el('tr', {}, cols.map(([h]) => S.el('th', {scope: 'col', text: h})))));
    const body = S.el('tbody');
    for (const r of rows) body.append(S.el('tr', {}, cols.map(([, f]) => S.el('td', {}, f(r)))));
    if (!rows.length) body.append(S.el('tr', {}, S.el('td', {colspan: cols.length, class: 'empty', text: 'none'})));
    t.append(body);
    return t;
  };
  S.time = (ms) => (ms ? new Date(ms).toISOString().replace('T', ' ').slice(0, 19) + 'Z' : '');
  S.bytes = function (n) {
    const u = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];
    let i = 0;
    for (n = Number(n); n >= 1024 && i < u.length - 1; i++) n /= 1024;
    return n.toFixed(i ? 1 : 0) + ' ' + u[i];
  };
  S.say = function (msg, isError) {
    const s = document.getElementById('status');
    s.textContent = msg || '';
    s.className = isError ? 'error' : '';
  };
  S.confirm = (what) => window.confirm(what);
  /* Repeat fn every ms while the page is shown (the router stops it on navigation). */
  S.every = function (ms, fn) {
    S.timers.push(setInterval(() => fn().catch((e) => S.say(e.message, true)), ms));
    return fn().catch((e) => S.say(e.message, true));
  };

  /* ---- the API ---- */
  S.token = () => sessionStorage.getItem(KEY);
  /* fetch with the token; JSON back (or the Response itself with opts.raw); a problem+json answer
   * becomes an Error whose message is its title and whose status is the HTTP status. */
  S.api = async function (path, opts) {
    opts = opts || {};
    const headers = Object.assign({Accept: 'application/json'}, opts.headers || {});
    const tok = S.token();
    if (tok) headers.Authorization = 'Bearer ' + tok;
    let body = opts.body;
    if (body !== undefined && !(body instanceof Blob) && !(body instanceof ArrayBuffer)) {
      headers['Content-Type'] = 'application/json';
      body = JSON.stringify(body);
    }
    const r = await fetch(path, {method: opts.method || 'GET', headers, body, cache: 'no-store', credentials: 'omit'});
    if (!r.ok) {
      let title = r.status + ' ' + r.statusText;
      try { const p = await r.json(); if (p.title) title = p.title; } catch (e) { /* not JSON */ }
      const err = new Error(title);
      err.status = r.status;
      if (r.status === 401 && !opts.probe) S.signout('Your token was refused (' + title + '): sign in again.');
      throw err;
    }
    if (opts.raw) return r;
    if (r.status === 204) { await r.arrayBuffer(); return null; } /* read to its end, or chromium calls it aborted */
    const ct = r.headers.get('Content-Type') || '';
    return ct.includes('json') ? r.json() : r.text();
  };
  S.post = (path, body) => S.api(path, {method: 'POST', body});

  /* ---- sign-in: which role has this token? GET /api/v1/me says. ---- */
  async function roleOf() {
    const me = await S.api('/api/v1/me', {probe: true});
    if (me.role === 'ingest') throw new Error('this token has role ingest: it may only store images, not use the console');
    if (me.role !== 'user' && me.role !== 'admin') throw new Error('unexpected role ' + me.role);
    return me.role;
  }
  async function signin(ev) {
    ev.preventDefault();
    const input = document.getElementById('token');
    const tok = input.value.trim();
    sessionStorage.setItem(KEY, tok);
    document.getElementById('signin-error').textContent = '';
    try {
      S.role = await roleOf();
    } catch (e) {
      sessionStorage.removeItem(KEY);
      document.getElementById('signin-error').textContent = 'Sign-in failed: ' + e.message;
      input.focus();
      return;
    }
    input.value = '';
    start();
  }
  S.signout = function (why) {
    sessionStorage.removeItem(KEY);
    S.role = null;
    stopTimers();
    document.getElementById('nav').hidden = true;
    document.getElementById('who').hidden = true;
    document.getElementById('page').hidden = true;
    document.getElementById('signin').hidden = false;
    document.getElementById('signin-error').textContent = why || '';
    document.getElementById('token').focus();
  };

  /* ---- pages ---- */
  S.page = (name, def) => { S.pages[name] = def; };
  function stopTimers() { S.timers.forEach(clearInterval); S.timers = []; if (S.onleave) S.onleave(); S.onleave = null; }
  /* #name/arg1/arg2: arguments are URI-encoded (UIDs, ids). */
  function route(ev) {
    if (!S.role) return;
    const parts = location.hash.slice(1).split('/').map(decodeURIComponent);
    let name = parts[0] || 'overview';
    let def = S.pages[name];
    if (!def || (def.admin && S.role !== 'admin')) { name = 'overview'; def = S.pages.overview; }
    stopTimers();
    S.say('');
    for (const a of document.querySelectorAll('#nav a')) {
      if (a.dataset.page === name) a.setAttribute('aria-current', 'page'); else a.removeAttribute('aria-current');
    }
    const page = S.clear(document.getElementById('page'));
    page.hidden = false;
    page.append(S.el('h2', {text: def.title}));
    document.title = def.title + ' - samda console';
    Promise.resolve(def.render(page, parts.slice(1))).catch((e) => S.say(def.title + ': ' + e.message, true));
    if (ev) page.focus({preventScroll: true}); /* a link was followed: keyboard users start at the new page */
  }
  S.go = (hash) => { if (location.hash === hash) route(true); else location.hash = hash; };
  function start() {
    document.getElementById('signin').hidden = true;
    document.getElementById('nav').hidden = false;
    document.getElementById('who').hidden = false;
    document.getElementById('role').textContent = 'role: ' + S.role;
    document.body.dataset.role = S.role;
    for (const a of document.querySelectorAll('#nav a[data-admin]')) a.parentElement.hidden = S.role !== 'admin';
    route();
    document.getElementById('page').focus();
  }

  document.addEventListener('DOMContentLoaded', async () => {
    document.getElementById('signin-form').addEventListener('submit', signin);
    document.getElementById('signout').addEventListener('click', () => S.signout('Signed out.'));
    window.addEventListener('hashchange', route);
    if (S.token()) {
      try { S.role = await roleOf(); start(); return; } catch (e) { S.signout('Sign in again: ' + e.message); return; }
    }
    S.signout('');
  });
})();
