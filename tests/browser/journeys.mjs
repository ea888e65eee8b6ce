// Real-browser end-to-end journeys for the patient portal, with an axe-core
// accessibility scan (WCAG 2.0/2.1 A and AA) of every page visited.
//
// Usage: PORTAL_URL=http://127.0.0.1:8080 PORTAL_LOG=/path/to/server-stdout node journeys.mjs
//
// PORTAL_LOG is the server's stdout, where a demo server prints lines like
//   demo login: <role> <username> <password> totp=<base32 secret>
// E2E_OUT (optional) overrides the screenshot folder (default: <repo>/target/e2e).
// CHROMIUM (optional) overrides the browser binary (default: /usr/bin/chromium).
//
// Exits 0 only when every journey passed and axe found no violation.

import { createHmac } from 'node:crypto';
import { readFileSync, mkdirSync, readdirSync, unlinkSync } from 'node:fs';
import { createRequire } from 'node:module';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { chromium } from 'playwright-core';

const require = createRequire(import.meta.url);
const here = path.dirname(fileURLToPath(import.meta.url));
const repoRoot = path.resolve(here, '..', '..');
const AXE_PATH = require.resolve('axe-core/axe.min.js');
const AXE_TAGS = ['wcag2a', 'wcag2aa', 'wcag21a', 'wcag21aa'];

const BASE = (process.env.PORTAL_URL || '').replace(/\/+$/, '');
const LOG = process.env.PORTAL_LOG || '';
const OUT = process.env.E2E_OUT || path.join(repoRoot, 'target', 'e2e');
const CHROMIUM = process.env.CHROMIUM || '/usr/bin/chromium';

if (!BASE) {
  console.error('journeys: PORTAL_URL is not set');
  process.exit(2);
}

// ---------------------------------------------------------------- demo logins

function demoLogins() {
  if (!LOG) throw new Error('PORTAL_LOG (the server stdout file) is not set');
  const text = readFileSync(LOG, 'utf8');
  const logins = new Map();
  const re = /^demo login: (\S+) (\S+) (\S+)(?: totp=([A-Z2-7=]+))?\s*$/gm;
  for (const m of text.matchAll(re)) {
    logins.set(m[2], { role: m[1], username: m[2], password: m[3], totp: m[4] || null });
  }
  return logins;
}

// ---------------------------------------------------------------- TOTP (RFC 6238)

function base32Decode(input) {
  const alphabet = 'ABCDEFGHIJKLMNOPQRSTUVWXYZ234567';
  const clean = input.toUpperCase().replace(/[=\s]/g, '');
  let bits = 0;
  let value = 0;
  const out = [];
  for (const ch of clean) {
    const idx = alphabet.indexOf(ch);
    if (idx < 0) throw new Error(`invalid base32 character ${JSON.stringify(ch)}`);
    value = (value << 5) | idx;
    bits += 5;
    if (bits >= 8) {
      out.push((value >>> (bits - 8)) & 0xff);
      bits -= 8;
    }
  }
  return Buffer.from(out);
}

export function totp(secretBase32, timeMs = Date.now(), period = 30, digits = 6) {
  const counter = Math.floor(timeMs / 1000 / period);
  const msg = Buffer.alloc(8);
  msg.writeBigUInt64BE(BigInt(counter));
  const hmac = createHmac('sha1', base32Decode(secretBase32)).update(msg).digest();
  const offset = hmac[hmac.length - 1] & 0x0f;
  const code = (hmac.readUInt32BE(offset) & 0x7fffffff) % 10 ** digits;
  return String(code).padStart(digits, '0');
}

// A code that stays valid for the next few seconds: wait out the end of a period.
async function freshTotp(secret) {
  const intoPeriod = (Date.now() / 1000) % 30;
  if (intoPeriod > 25) await new Promise((r) => setTimeout(r, (30 - intoPeriod + 0.5) * 1000));
  return totp(secret);
}

// ---------------------------------------------------------------- bookkeeping

const results = []; // { journey, ok, steps: [{name, ok, error}] }
const violations = []; // { journey, shot, url, id, impact, help, helpUrl, targets }
const pagesVisited = [];

function slugOf(url, label) {
  if (label) return label;
  const p = new URL(url).pathname
    .replace(/[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}/gi, 'id')
    .replace(/^\/+|\/+$/g, '');
  return (p || 'root').replace(/[^A-Za-z0-9]+/g, '-').replace(/-+/g, '-').slice(0, 60).toLowerCase();
}

class Journey {
  constructor(name) {
    this.name = name;
    this.n = 0;
    this.steps = [];
    this.failed = false;
  }

  async step(name, fn) {
    if (this.failed) {
      this.steps.push({ name, ok: false, error: 'skipped (an earlier step failed)' });
      return undefined;
    }
    try {
      const value = await fn();
      this.steps.push({ name, ok: true });
      console.log(`  ok   ${this.name}: ${name}`);
      return value;
    } catch (err) {
      this.failed = true;
      const msg = (err && err.stack) || String(err);
      this.steps.push({ name, ok: false, error: msg });
      console.log(`  FAIL ${this.name}: ${name}\n       ${String(err && err.message ? err.message : err).split('\n').join('\n       ')}`);
      return undefined;
    }
  }

  // Called after every navigation: full-page screenshot and axe scan.
  async visited(page, label) {
    await page.waitForLoadState('load');
    this.n += 1;
    const url = page.url();
    const file = `${this.name}-${String(this.n).padStart(2, '0')}-${slugOf(url, label)}.png`;
    await page.screenshot({ path: path.join(OUT, file), fullPage: true });
    const found = await axeScan(page);
    pagesVisited.push({ journey: this.name, file, url, violations: found.length });
    for (const v of found) violations.push({ journey: this.name, shot: file, url, ...v });
    console.log(`       page ${file} ${new URL(url).pathname} — axe: ${found.length ? found.map((v) => v.id).join(', ') : 'clean'}`);
  }
}

async function axeScan(page) {
  const present = await page.evaluate(() => typeof window.axe !== 'undefined');
  if (!present) await page.addScriptTag({ path: AXE_PATH });
  const loaded = await page.evaluate(() => typeof window.axe !== 'undefined');
  if (!loaded) throw new Error('axe-core could not be injected (Content-Security-Policy?)');
  return page.evaluate(async (tags) => {
    const r = await window.axe.run(document, { runOnly: { type: 'tag', values: tags } });
    return r.violations.map((v) => ({
      id: v.id,
      impact: v.impact,
      help: v.help,
      helpUrl: v.helpUrl,
      targets: v.nodes.map((n) => ({ target: n.target.join(' '), summary: n.failureSummary })),
    }));
  }, AXE_TAGS);
}

function expect(cond, message) {
  if (!cond) throw new Error(message);
}

async function newContext(browser) {
  // The portal's Content-Security-Policy forbids inline scripts, and
  // addScriptTag({ path }) inserts axe as an inline <script>: bypass CSP in
  // the test browser only (the portal's pages run no script of their own).
  return browser.newContext({ bypassCSP: true, viewport: { width: 1280, height: 900 } });
}

async function login(j, page, user, logins) {
  const creds = logins.get(user);
  expect(creds, `no "demo login:" line for ${user} in the server log`);
  await j.step(`open /login as ${user}`, async () => {
    const resp = await page.goto(`${BASE}/login`);
    expect(resp && resp.ok(), `GET /login answered ${resp && resp.status()}`);
    await j.visited(page);
  });
  await j.step(`submit user name and password for ${user}`, async () => {
    await page.fill('input[name="username"]', creds.username);
    await page.fill('input[name="password"]', creds.password);
    await Promise.all([page.waitForNavigation(), page.click('form[action="/login"] button[type="submit"]')]);
    await j.visited(page);
  });
  if (creds.totp) {
    await j.step(`second factor for ${user}`, async () => {
      expect(new URL(page.url()).pathname === '/login/second-factor',
        `expected /login/second-factor, got ${page.url()}`);
      await page.fill('input[name="code"]', await freshTotp(creds.totp));
      await Promise.all([page.waitForNavigation(), page.click('form button[type="submit"]')]);
      expect(new URL(page.url()).pathname !== '/login/second-factor',
        `the code was refused: ${(await page.textContent('main')) || ''}`);
      await j.visited(page);
    });
  }
  return creds;
}

// ---------------------------------------------------------------- journeys

async function journeyPatient(browser, logins) {
  const j = new Journey('a-patient');
  const ctx = await newContext(browser);
  const page = await ctx.newPage();
  try {
    await login(j, page, 'anne', logins);
    await j.step('lands on /me', async () => {
      expect(new URL(page.url()).pathname === '/me', `expected /me, got ${page.url()}`);
    });
    await j.step('open /me/labs', async () => {
      const resp = await page.goto(`${BASE}/me/labs`);
      expect(resp && resp.ok(), `GET /me/labs answered ${resp && resp.status()}`);
      await j.visited(page);
    });
    await j.step('follow the first lab history link', async () => {
      const link = page.locator('a[href^="/me/labs/"]').first();
      expect((await link.count()) > 0, 'no link starting with /me/labs/ on /me/labs');
      await Promise.all([page.waitForNavigation(), link.click()]);
      await j.visited(page);
    });
    await j.step('the page shows an svg trend chart with a reference band', async () => {
      expect((await page.locator('svg').count()) > 0, `no <svg> on ${page.url()}`);
      expect((await page.locator('svg rect.band').count()) > 0, `no svg rect.band on ${page.url()}`);
    });
    for (const [label, path] of [['Diagnoses', '/me/diagnoses'], ['Allergies', '/me/allergies'], ['Vaccinations', '/me/vaccinations'], ['Contacts', '/me/contacts'], ['Reports', '/me/reports'], ['Imaging', '/me/imaging'], ['Timeline', '/me/timeline']]) {
      await j.step(`follow "${label}" in the menu to a table of them`, async () => {
        await Promise.all([page.waitForNavigation(), page.locator(`nav a[href="${path}"]`).first().click()]);
        expect(new URL(page.url()).pathname === path, `expected ${path}, got ${page.url()}`);
        expect((await page.locator('main table tbody tr, main ol.timeline li').count()) > 0, `no rows on ${path}`);
        await j.visited(page);
      });
    }
    await j.step('ask for renewal of a prescription, with a message to the GP', async () => {
      const resp = await page.goto(`${BASE}/me/prescriptions`);
      expect(resp && resp.ok(), `GET /me/prescriptions answered ${resp && resp.status()}`);
      const ask = page.locator('details:has(form[action$="/renewal"])').first();
      expect((await ask.count()) > 0, 'no "Ask for renewal" on /me/prescriptions');
      await ask.locator('summary').click();
      await ask.locator('textarea[name="message"]').fill('Running low, same dose please');
      await Promise.all([page.waitForNavigation(), ask.locator('button[type="submit"]').click()]);
      expect((await page.content()).includes('Waiting for your GP'), 'the request is not shown as waiting');
      await j.visited(page, 'me-prescriptions-renewal-asked');
    });
  } finally {
    await ctx.close();
  }
  return j;
}

async function anneBirthDate(browser, logins, j) {
  const ctx = await newContext(browser);
  const page = await ctx.newPage();
  try {
    await login(j, page, 'anne', logins);
    return await j.step("read Anne's birth date from her record banner", async () => {
      const banner = (await page.locator('.record-banner').first().textContent({ timeout: 5000 })) || '';
      const m = banner.match(/born (\d{4}-\d{2}-\d{2})/);
      expect(m, `no "born YYYY-MM-DD" in the record banner: ${JSON.stringify(banner)}`);
      return m[1];
    });
  } finally {
    await ctx.close();
  }
}

async function journeyClinician(browser, logins) {
  const j = new Journey('b-clinician');
  const reason = `E2E ${new Date().toISOString()}: patient brought in unconscious, no GP reachable`;
  let birthDate;
  let patientId;
  const ctx = await newContext(browser);
  const page = await ctx.newPage();
  try {
    birthDate = await anneBirthDate(browser, logins, j);
    await login(j, page, 'dr.larsen', logins);
    await j.step('lands on /clinician', async () => {
      if (new URL(page.url()).pathname !== '/clinician') {
        await page.goto(`${BASE}/clinician`);
        await j.visited(page);
      }
      expect(new URL(page.url()).pathname === '/clinician', `expected /clinician, got ${page.url()}`);
    });
    await j.step('search by name and birth date', async () => {
      await page.fill('input[name="name"]', 'Anne Jensen');
      await page.fill('input[name="birth_date"]', birthDate);
      await Promise.all([page.waitForNavigation(), page.getByRole('button', { name: 'Search', exact: true }).click()]);
      await j.visited(page);
    });
    await j.step('the hit for Anne offers "Emergency access"', async () => {
      const hit = page.locator('ul.hits li', { hasText: 'Anne Jensen' }).first();
      expect((await hit.count()) > 0, `no result for Anne Jensen: ${(await page.textContent('main')) || ''}`);
      const link = hit.locator('a', { hasText: 'Emergency access' });
      expect((await link.count()) > 0, 'the result for Anne has no "Emergency access" link');
      const href = await link.first().getAttribute('href');
      const m = href && href.match(/^\/clinician\/patients\/([^/]+)\/override$/);
      expect(m, `unexpected override link ${href}`);
      patientId = m[1];
    });
    await j.step('opening the record directly is refused with 403 and offers emergency access', async () => {
      const resp = await page.goto(`${BASE}/clinician/patients/${patientId}`);
      expect(resp && resp.status() === 403, `expected 403, got ${resp && resp.status()}`);
      await j.visited(page, `clinician-patients-record-403`);
      expect((await page.locator('a', { hasText: 'Emergency access' }).count()) > 0, 'the 403 page offers no "Emergency access"');
    });
    await j.step('follow "Emergency access"', async () => {
      await Promise.all([page.waitForNavigation(), page.locator('a', { hasText: 'Emergency access' }).first().click()]);
      expect(new URL(page.url()).pathname === `/clinician/patients/${patientId}/override`, `expected the override form, got ${page.url()}`);
      await j.visited(page);
    });
    await j.step('give a reason and open the record', async () => {
      await page.fill('textarea[name="reason"]', reason);
      await Promise.all([page.waitForNavigation(), page.locator('form[action$="/override"] button[type="submit"]').click()]);
      await j.visited(page, 'clinician-patients-record-override');
    });
    await j.step('the record shows the "Emergency override" banner', async () => {
      expect(new URL(page.url()).pathname === `/clinician/patients/${patientId}`, `expected the record, got ${page.url()}`);
      const banner = (await page.locator('.record-banner').first().textContent({ timeout: 5000 })) || '';
      expect(/Emergency override/i.test(banner), `banner does not say "Emergency override": ${JSON.stringify(banner)}`);
    });
    for (const kind of ['diagnoses', 'allergies', 'vaccinations', 'contacts', 'procedures', 'reports', 'imaging']) {
      await j.step(`open the record's ${kind} tab`, async () => {
        const path = `/clinician/patients/${patientId}/${kind}`;
        await Promise.all([page.waitForNavigation(), page.locator(`nav.record-tabs a[href="${path}"]`).click()]);
        expect(new URL(page.url()).pathname === path, `expected ${path}, got ${page.url()}`);
        await j.visited(page, `clinician-patients-record-${kind}`);
      });
    }
    await j.step('the medicine card shows the patient\'s renewal request with renew and decline', async () => {
      const resp = await page.goto(`${BASE}/clinician/patients/${patientId}/prescriptions`);
      expect(resp && resp.ok(), `prescriptions answered ${resp && resp.status()}`);
      expect((await page.locator('form[action$="/renew"]').count()) > 0, 'no renew form');
      await j.visited(page, 'clinician-patients-record-renewals');
    });
    await j.step('open the renewal queue from the menu', async () => {
      await Promise.all([page.waitForNavigation(), page.locator('nav a[href="/clinician/renewals"]').first().click()]);
      await j.visited(page, 'clinician-renewals');
    });
  } finally {
    await ctx.close();
  }
  return { j, reason: j.failed ? null : reason };
}

async function journeyAuditor(browser, logins, reason) {
  const j = new Journey('c-auditor');
  const note = `E2E check ${Date.now()}: confirmed with the emergency ward, override justified.`;
  const ctx = await newContext(browser);
  const page = await ctx.newPage();
  try {
    await j.step('the override reason from journey b is known', async () => {
      expect(reason, 'journey b did not complete, so there is no review to close');
    });
    await login(j, page, 'auditor', logins);
    await j.step('open /audit/reviews', async () => {
      const resp = await page.goto(`${BASE}/audit/reviews`);
      expect(resp && resp.ok(), `GET /audit/reviews answered ${resp && resp.status()}`);
      await j.visited(page);
    });
    const review = () => page.locator('article.review', { hasText: reason }).first();
    await j.step('close the review of the override with a note', async () => {
      expect((await review().count()) > 0, 'no review shows the reason given in journey b');
      await review().locator('textarea[name="note"]').fill(note);
      await Promise.all([page.waitForNavigation(), review().getByRole('button', { name: 'Mark reviewed' }).click()]);
      await j.visited(page, 'audit-reviews-after-close');
    });
    await j.step('the review shows as closed with the note', async () => {
      expect((await review().count()) > 0, 'the review is gone after closing');
      const text = (await review().textContent()) || '';
      expect(/closed/i.test(await review().locator('h2').textContent()), `review heading is not closed: ${text}`);
      expect(text.includes(note), `the closed review does not show the note: ${text}`);
      expect((await review().locator('textarea[name="note"]').count()) === 0, 'the closed review still has a note form');
    });
    await j.step('open the transparency log\'s checkpoints from the menu', async () => {
      await Promise.all([page.waitForNavigation(), page.getByRole('link', { name: 'Checkpoints' }).click()]);
      await j.visited(page);
      const key = (await page.locator('code.key').textContent()) || '';
      expect(key.startsWith('portal.localhost/audit+'), `the log's key is not shown: ${key}`);
    });
  } finally {
    await ctx.close();
  }
  return j;
}

// ---------------------------------------------------------------- main

async function main() {
  const started = Date.now();
  mkdirSync(OUT, { recursive: true });
  for (const f of readdirSync(OUT)) if (/^[abc]-[a-z]+-\d+-.*\.png$/.test(f)) unlinkSync(path.join(OUT, f));

  const logins = demoLogins();
  for (const u of ['anne', 'dr.larsen', 'auditor']) {
    if (!logins.has(u)) throw new Error(`no "demo login:" line for ${u} in ${LOG}`);
  }

  const browser = await chromium.launch({
    executablePath: CHROMIUM,
    args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-background-networking'],
  });
  let journeys = [];
  try {
    console.log(`journeys against ${BASE} (screenshots in ${path.relative(process.cwd(), OUT) || OUT})`);
    const a = await journeyPatient(browser, logins);
    const { j: b, reason } = await journeyClinician(browser, logins);
    const c = await journeyAuditor(browser, logins, reason);
    journeys = [a, b, c];
  } finally {
    await browser.close();
  }

  console.log('\n==== summary ====');
  for (const j of journeys) {
    const okSteps = j.steps.filter((s) => s.ok).length;
    console.log(`${j.failed ? 'FAIL' : 'ok  '} ${j.name}: ${okSteps}/${j.steps.length} steps`);
    for (const s of j.steps.filter((s) => !s.ok)) console.log(`       - ${s.name}: ${s.error.split('\n')[0]}`);
  }
  console.log(`pages visited: ${pagesVisited.length} (screenshots in ${OUT})`);

  if (violations.length) {
    // Group by rule and page so each distinct problem is printed once per page.
    console.log(`\n==== axe violations (${violations.length} rule/page pairs) ====`);
    for (const v of violations) {
      console.log(`[${v.impact}] ${v.id} on ${new URL(v.url).pathname} (${v.shot}): ${v.help}`);
      console.log(`       ${v.helpUrl}`);
      for (const t of v.targets) console.log(`       - ${t.target}${t.summary ? `\n         ${t.summary.split('\n').join(' | ')}` : ''}`);
    }
  } else {
    console.log('axe: no violations (wcag2a, wcag2aa, wcag21a, wcag21aa)');
  }

  const passed = journeys.filter((j) => !j.failed).length;
  const failed = journeys.length - passed;
  console.log(`axe: ${violations.length} violations on ${new Set(violations.map((v) => v.url)).size} pages`);
  console.log(`time: ${((Date.now() - started) / 1000).toFixed(1)} s`);
  console.log(`journeys: ${passed} passed, ${failed} failed`);
  return failed === 0 && violations.length === 0 ? 0 : 1;
}

main().then(
  (code) => process.exit(code),
  (err) => {
    console.error('journeys: crashed:', (err && err.stack) || err);
    process.exit(1);
  },
);
