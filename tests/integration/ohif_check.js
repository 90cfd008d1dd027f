// Drive the OHIF viewer in Debian's chromium (puppeteer-core) and report what it shows, for
// test_ohif.sh. Usage: node ohif_check.js URL SCREENSHOT.png TIMEOUT_S
// Waits until OHIF's segmentationService holds a segmentation whose labelmap images are all in the
// cornerstone cache, then prints one JSON line read from the page itself:
//   {"segmentations": n, "segments": {"1": "liver", ...}, "referenced": n (source images the
//    labelmap covers), "voxels": {"1": n, ...}, "slices": {"1": n, ...}, "displaySets": [...],
//    "errors": [failed requests, HTTP errors, page errors]}
// and writes a screenshot. Exit 0 when a report was written (the test asserts on it), 2 otherwise.
const puppeteer = require('puppeteer-core');

const [url, shot, timeoutS] = process.argv.slice(2);
const deadline = Date.now() + 1000 * Number(timeoutS || 120);
const sleep = ms => new Promise(r => setTimeout(r, ms));

function inPage() {
  const s = window.services;
  if (!s || !s.segmentationService || !window.cornerstone) return { ready: false };
  const out = { ready: false, segmentations: 0, segments: {}, referenced: 0, voxels: {}, slices: {}, missing: 0 };
  out.displaySets = s.displaySetService.getActiveDisplaySets().map(d => ({
    modality: d.Modality, series: d.SeriesInstanceUID, n: (d.images || d.instances || []).length }));
  const segs = s.segmentationService.getSegmentations() || [];
  out.segmentations = segs.length;
  if (!segs.length) return out;
  const g = segs[0];
  for (const k of Object.keys(g.segments || {}))
    if (g.segments[k]) out.segments[k] = g.segments[k].label;
  const lm = (g.representationData || {}).Labelmap;
  if (!lm || !lm.imageIds) return out;
  out.referenced = new Set(lm.referencedImageIds || []).size;
  for (const id of lm.imageIds) {
    const im = window.cornerstone.cache.getImage(id);
    if (!im) { out.missing++; continue; }
    const px = im.getPixelData();
    const here = {};
    for (let j = 0; j < px.length; j++)
      if (px[j]) { out.voxels[px[j]] = (out.voxels[px[j]] || 0) + 1; here[px[j]] = 1; }
    for (const k in here) out.slices[k] = (out.slices[k] || 0) + 1;
  }
  out.ready = out.missing === 0 && Object.keys(out.segments).length > 0;
  return out;
}

(async () => {
  const browser = await puppeteer.launch({
    executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
    headless: true,
    args: ['--no-sandbox', '--use-angle=swiftshader', '--enable-unsafe-swiftshader', '--disable-dev-shm-usage'],
    defaultViewport: { width: 1280, height: 900 },
  });
  const errors = [];
  const page = await browser.newPage();
  const safe = u => u.replace(/token=[^&]*/, 'token=...');
  page.on('pageerror', e => errors.push('pageerror: ' + String(e.message || e).slice(0, 300)));
  page.on('requestfailed', r => errors.push('requestfailed: ' + safe(r.url()) + ' ' + (r.failure() ? r.failure().errorText : '')));
  page.on('response', r => { if (r.status() >= 400) errors.push('http ' + r.status() + ': ' + safe(r.url())); });
  if (process.env.OHIF_CONSOLE)
    page.on('console', m => console.error('console:', m.type(), m.text().slice(0, 300)));
  await page.goto(url, { waitUntil: 'domcontentloaded', timeout: 60000 });
  let report = { ready: false };
  while (Date.now() < deadline) {
    report = await page.evaluate(inPage).catch(e => ({ ready: false, error: String(e) }));
    if (report.ready) break;
    await sleep(1000);
  }
  await sleep(2000);  // let the last frames draw
  // close the first-visit tour and the notice banner so that the screenshot shows the images
  await page.evaluate(() => {
    for (const b of document.querySelectorAll('button'))
      if (/^(Skip all|Confirm and hide)$/.test((b.textContent || '').trim())) b.click();
  }).catch(() => {});
  await sleep(1000);
  // the viewer opens on the first image of the stack; the middle of the series shows every organ
  const n = report.referenced || 0;
  const canvas = await page.$('.cornerstone-canvas, canvas');
  if (canvas && n > 2) {
    await canvas.hover().catch(() => {});
    await page.mouse.down().catch(() => {});
    await page.mouse.up().catch(() => {});
    for (let i = 0; i < Math.floor(n / 2); i++) await page.keyboard.press('ArrowDown').catch(() => {});
    await sleep(2000);
  }
  await page.screenshot({ path: shot });
  report.errors = errors.slice(0, 40);
  console.log(JSON.stringify(report));
  await browser.close();
})().catch(e => { console.error('ohif_check:', e); process.exit(2); });
