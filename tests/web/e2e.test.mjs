// The cairn web panel end to end, in Debian's headless chromium driven by playwright-core,
// against a running `cairnd demo` (started by tests/system/test_web_e2e.py, which passes the
// setup code cairnd printed and everything else in the environment).
//
// First-boot setup, login, the overview, a disk failed in the emulated array (banner, Silence
// stops the recorded buzzer), a study stored with /usr/bin/storescu found by search (its
// markup-laden patient name shown as text), a legal hold placed on it and released from the
// Lifecycle page, the rebuild after a new disk, a tape ejected and
// its location set, audit in local time with pages and CSV, settings, a restart from the panel,
// logout. Screenshots of every page at 1024x600 and on a phone go to SCREENSHOTS.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { readFileSync, existsSync, mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { chromium } from 'playwright-core';

const env = (k) => {
  const v = process.env[k];
  assert.ok(v, `environment variable ${k} is required (tests/system/test_web_e2e.py sets it)`);
  return v;
};
const URL_ = env('CAIRN_URL').replace(/\/$/, '');
const CODE = env('CAIRN_SETUP_CODE');
const DATA = env('CAIRN_DATA');
const CAIRNCTL = env('CAIRNCTL');
const STORESCU = env('STORESCU');
const DICOM_PORT = env('CAIRN_DICOM_PORT');
const AE = env('CAIRN_AE');
const DICOM_FILE = env('CAIRN_DICOM_FILE');
const PATIENT_ID = env('CAIRN_PATIENT_ID');
const ACCESSION = env('CAIRN_ACCESSION');
const SHOTS = env('SCREENSHOTS');
const CHROMIUM = process.env.CHROMIUM || '/usr/bin/chromium';
const PASSWORD = 'a long admin passphrase';
mkdirSync(SHOTS, { recursive: true });

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

async function waitFor(pred, timeoutMs, what) {
  const end = Date.now() + timeoutMs;
  let last;
  while (Date.now() < end) {
    last = await pred();
    if (last) return last;
    await sleep(200);
  }
  throw new Error(`timed out after ${timeoutMs} ms waiting for ${what} (last: ${JSON.stringify(last)})`);
}

function tones() {
  const p = join(DATA, 'hw', 'buzzer.jsonl');
  if (!existsSync(p)) return [];
  return readFileSync(p, 'utf8').split('\n').filter((l) => l.trim()).map((l) => JSON.parse(l));
}
const soundsAfter = (t) => tones().some((x) => x.hz > 0 && x.at_ms >= t);

function ctl(...args) {
  return execFileSync(CAIRNCTL, ['--data', DATA, ...args], { encoding: 'utf8', timeout: 30000 });
}

async function shot(page, name) {
  await page.screenshot({ path: join(SHOTS, `${name}.png`), fullPage: false });
}

test('the web panel, end to end', { timeout: 420000 }, async (t) => {
  const browser = await chromium.launch({
    executablePath: CHROMIUM,
    headless: true,
    args: ['--no-sandbox', '--disable-gpu', '--disable-dev-shm-usage'],
  });
  const desk = await browser.newContext({ viewport: { width: 1024, height: 600 }, hasTouch: true, acceptDownloads: true });
  const page = await desk.newPage();
  try {
    await t.test('first boot asks for the setup code, then the admin password', async () => {
      await page.goto(`${URL_}/`);
      assert.match(page.url(), /\/setup$/, 'a box without accounts sends people to setup');
      await shot(page, 'desktop-setup');
      // The whole form, its button included, fits the 1024x600 screen without scrolling.
      const button = await page.locator('button[type=submit]').boundingBox();
      assert.ok(button.y + button.height <= 600, `the setup button ends at ${button.y + button.height}px, below the 600px screen`);
      // No default account: the usual guesses do not log in.
      const r = await page.request.post(`${URL_}/api/v1/session`, { data: { username: 'admin', password: 'admin' } });
      assert.equal(r.status(), 401);
      // A wrong code is refused.
      await page.fill('input[name=code]', '0000-0000-0000');
      await page.fill('input[name=password]', PASSWORD);
      await page.fill('input[name=password2]', PASSWORD);
      await page.click('button[type=submit]');
      assert.match(await page.textContent('#setup-error'), /not the setup code/);
      // The code cairnd printed works.
      await page.fill('input[name=code]', CODE);
      await page.fill('input[name=username]', 'admin');
      await page.fill('input[name=password]', PASSWORD);
      await page.fill('input[name=password2]', PASSWORD);
      await page.click('button[type=submit]');
      await page.waitForURL(`${URL_}/`);
      assert.equal((await page.textContent('#verdict h1')).trim(), 'All good');
    });

    await t.test('logout, a wrong password, then login', async () => {
      await page.click('form.logout button');
      await page.waitForURL(/\/login$/);
      await page.goto(`${URL_}/disks`);
      assert.match(page.url(), /\/login$/, 'after logout the pages need a login');
      await page.fill('input[name=username]', 'admin');
      await page.fill('input[name=password]', 'not the password');
      await page.click('button[type=submit]');
      assert.match(await page.textContent('#login-error'), /wrong user name or password/);
      await shot(page, 'desktop-login');
      await page.fill('input[name=password]', PASSWORD);
      await page.click('button[type=submit]');
      await page.waitForURL(`${URL_}/`);
    });

    await t.test('overview: one status, storage, images today', async () => {
      assert.equal((await page.textContent('#verdict h1')).trim(), 'All good');
      assert.ok(await page.isVisible('text=Storage'));
      assert.ok(await page.isVisible('text=Last verified archive copy'));
      // Each number says what it counts.
      assert.match(await page.locator('.tile', { hasText: 'Storage' }).locator('.progress span').textContent(), /^\d+\.\d % used$/);
      assert.ok(await page.isVisible('text=Images received today'));
      assert.match(await page.textContent('#images-stored'), /^\d+ images? stored in all, in \d+ stud(y|ies)$/);
      await shot(page, 'desktop-overview');
    });

    let studyName;
    await t.test('a study stored with storescu is found by search', async () => {
      const before = Number(await page.textContent('#images-today'));
      execFileSync(STORESCU, ['-aec', AE, '127.0.0.1', DICOM_PORT, DICOM_FILE], { timeout: 30000 });
      await page.reload();
      assert.equal(Number(await page.textContent('#images-today')), before + 1);
      await page.click('nav >> text=Studies');
      await page.fill('input[name=name]', 'web<b>');
      await page.click('form.search button[type=submit]');
      await page.waitForSelector('#studies tbody tr');
      const rows = await page.locator('#studies tbody tr').count();
      assert.equal(rows, 1);
      studyName = (await page.textContent('#studies td.patient')).trim();
      // The markup in the patient's name is shown as text, never as an element.
      assert.equal(studyName, 'E2E, Web<b>Test</b>');
      assert.equal(await page.locator('#studies td.patient b').count(), 0);
      await shot(page, 'desktop-studies');
      // By patient ID and by accession number too; a non-matching ID finds nothing.
      for (const [field, value, n] of [['id', PATIENT_ID, 1], ['accession', ACCESSION, 1], ['id', 'NO-SUCH-ID', 0]]) {
        await page.goto(`${URL_}/studies?${field}=${encodeURIComponent(value)}`);
        assert.equal(await page.locator('#studies tbody tr').count(), n, `${field}=${value}`);
      }
      await page.goto(`${URL_}/studies?id=${encodeURIComponent(PATIENT_ID)}`);
      await page.click('#studies td.patient a');
      await page.waitForSelector('h1.patient');
      assert.equal((await page.textContent('h1.patient')).trim(), studyName);
      assert.ok(await page.isVisible('text=RAID (hot copy)'));
      await shot(page, 'desktop-study');
    });

    await t.test('a legal hold placed on the study; the Lifecycle page lists it and releases it', async () => {
      await page.goto(`${URL_}/studies?id=${encodeURIComponent(PATIENT_ID)}`);
      await page.click('#studies td.patient a');
      await page.waitForSelector('#retention');
      // The tier, the last day kept and why, in words.
      assert.match(await page.textContent('#tier'), /^storage/);
      assert.ok((await page.textContent('#retention-reason')).trim().length > 10);
      assert.ok(await page.isVisible('#no-holds'));
      await page.locator('#hold-form select[name=on]').selectOption('study');
      await page.fill('#hold-form input[name=reason]', 'E2E court case');
      await page.click('#place-hold');
      assert.match(await page.textContent('#lifecycle-message'), /^hold \d+ placed on study /);
      assert.equal(await page.locator('#retention #holds tbody tr').count(), 1);
      assert.match(await page.textContent('#retention #holds'), /E2E court case/);
      assert.equal((await page.textContent('#kept-until')).trim(), 'no automatic end');
      assert.match(await page.textContent('#retention-reason'), /legal hold/);
      await shot(page, 'desktop-study-hold');
      // cairnctl sees the same hold, placed by the panel's user.
      const holds = JSON.parse(ctl('hold', 'list', '--json'));
      assert.equal(holds.length, 1);
      assert.equal(holds[0].placed_by, 'user:admin');
      assert.equal(holds[0].reason, 'E2E court case');
      await page.click('nav >> text=Lifecycle');
      await page.waitForSelector('#holds-card');
      assert.equal(await page.locator('#holds-card #holds tbody tr').count(), 1);
      assert.match(await page.textContent('#tiers .big'), /^\d+ in storage, \d+ in the archive tier$/);
      assert.equal(await page.locator('#clock-banner').count(), 0, 'the demo clock is trusted');
      await shot(page, 'desktop-lifecycle');
      // Released from the Lifecycle page, with a reason.
      await page.fill('#holds-card input[name=reason]', 'E2E case closed');
      await page.click('#holds-card button[id^=release-]');
      assert.match(await page.textContent('#lifecycle-message'), /^hold \d+ released$/);
      assert.equal(await page.locator('#holds-card #holds').count(), 0);
      assert.equal(JSON.parse(ctl('hold', 'list', '--json')).length, 0);
    });

    await t.test('a failed disk shows the banner; Silence stops the buzzer', async () => {
      const t0 = Date.now();
      ctl('demo', 'fail-disk', '3');
      await waitFor(() => soundsAfter(t0), 5000, 'the buzzer to sound');
      await waitFor(async () => {
        await page.goto(`${URL_}/`);
        return (await page.textContent('#verdict h1')).includes('Disk in bay 3 failed');
      }, 10000, 'the overview to name bay 3');
      assert.ok(await page.isVisible('#alarm-banner.alarm'), 'the alarm banner');
      await shot(page, 'desktop-overview-alarm');
      await page.click('nav >> text=Disks');
      assert.ok(await page.isVisible('#alarm-banner.alarm'), 'the banner is on every page');
      assert.match(await page.textContent('.bay.failed'), /Bay 3/);
      assert.match(await page.textContent('#swap li.now'), /Silence the alarm/);
      await shot(page, 'desktop-disks');
      // Silence from the Disks page: back on the same page, banner quiet, buzzer off.
      await page.click('#silence');
      const t1 = Date.now();
      await page.waitForURL(`${URL_}/disks`);
      assert.ok(await page.isVisible('#alarm-banner.quiet'), 'the banner says silenced');
      assert.match(await page.textContent('#alarm-banner'), /by user:admin/);
      await sleep(1500);
      assert.ok(!soundsAfter(t1 + 300), `buzzer still sounding: ${JSON.stringify(tones().slice(-4))}`);
      assert.equal(tones().at(-1).hz, 0);
      // The swap wizard moves on to the next step.
      assert.match(await page.textContent('#swap li.now'), /Pull the failed disk in bay 3/);
      // The CLI sees the same state.
      const al = JSON.parse(ctl('alarm', 'status', '--json'));
      assert.equal(al.sounding, false);
      assert.ok(al.events.every((e) => e.silenced && e.silenced_by === 'user:admin'));
    });

    await t.test('during the rebuild the overview shows a bar with the time left, in plain words', async () => {
      ctl('demo', 'insert-disk', '3');
      // The demo's rebuild takes about 7 s.
      await waitFor(async () => {
        await page.goto(`${URL_}/`);
        return (await page.isVisible('#rebuild')) && /about .* left/.test(await page.textContent('#rebuild'));
      }, 6000, 'the rebuild bar with the time left on the overview');
      assert.match(await page.textContent('#verdict h1'), /^Rebuilding the disks: \d+ % done$/);
      assert.ok(!(await page.textContent('body')).includes('md0'), 'the overview or its banner names the array');
      await shot(page, 'desktop-overview-rebuild');
      await waitFor(async () => {
        await page.goto(`${URL_}/`);
        return !(await page.isVisible('#rebuild'));
      }, 30000, 'the rebuild to end');
    });

    await t.test('a tape is ejected and its location set', async () => {
      // The stored image goes into a bundle on the demo tape, read back and verified.
      const tape = await waitFor(async () => {
        const r = await page.request.get(`${URL_}/api/v1/archive`);
        const a = await r.json();
        const t = (a.targets || []).find((x) => x.kind === 'tape');
        return t && t.last_verified && t.volume ? t : null;
      }, 90000, 'a verified bundle on the demo tape');
      const vol = tape.volume.volume_id;
      await page.click('nav >> text=Archive');
      // Words staff use: no engine terms.
      const words = (await page.textContent('main')).toLowerCase();
      for (const jargon of ['append', 'bundle', 'cold cop', 'objects', 'queued']) {
        assert.ok(!words.includes(jargon), `the Archive page says "${jargon}"`);
      }
      await shot(page, 'desktop-archive');
      const card = page.locator(`section.target[data-target="${tape.name}"]`);
      await card.locator('select[name=location]').selectOption('onsite_shelf');
      await card.locator('button[value=eject]').click();
      await page.waitForSelector('#archive-message', { timeout: 120000 });
      const row = page.locator(`#volumes tr[data-volume="${vol}"]`);
      assert.equal((await row.locator('td.location').textContent()).trim(), 'onsite shelf');
      assert.equal((await row.locator('td.state').textContent()).trim(), 'taken out');
      await row.locator('select[name=location]').selectOption('offsite_vault');
      await row.locator('button[value=location]').click();
      await page.waitForSelector('#archive-message');
      assert.equal((await page.locator(`#volumes tr[data-volume="${vol}"] td.location`).textContent()).trim(), 'offsite vault');
      const a = await (await page.request.get(`${URL_}/api/v1/archive`)).json();
      const v = a.volumes.find((x) => x.volume_id === vol);
      assert.equal(v.location, 'offsite_vault');
      assert.equal(v.updated_by, 'user:admin');
      await shot(page, 'desktop-archive-ejected');
      await page.goto(`${URL_}/`);
      assert.notEqual((await page.locator('.tile', { hasText: 'Last verified archive copy' }).locator('.big').textContent()).trim(), 'none yet');
    });

    await t.test('audit: local time, details in words, pages, filters in the URL, CSV export', async () => {
      // The box's time zone is a setting that applies at once.
      await page.click('nav >> text=Settings');
      await page.fill('input[name=time_zone]', 'Asia/Kolkata');
      await page.locator('form', { has: page.locator('input[name=op][value=dicom]') }).locator('button[type=submit]').click();
      assert.match(await page.textContent('#settings-message'), /in use now/);
      await page.click('nav >> text=Audit');
      await page.selectOption('select[name=action]', 'login');
      await page.click('form.search button[type=submit]');
      assert.match(page.url(), /[?&]action=login(&|$)/, 'the filter is in the URL');
      assert.match(await page.getAttribute('#csv', 'href'), /action=login/);
      const actions = await page.locator('#audit tbody tr td:nth-child(4)').allTextContents();
      assert.ok(actions.length >= 2, 'two logins and a failed one');
      assert.ok(actions.every((a) => a === 'login'));
      // Times in Asia/Kolkata (UTC+05:30), the same instants as the API's UTC ones.
      assert.match(await page.textContent('#audit thead'), /When \(Asia\/Kolkata\)/);
      const api = await (await page.request.get(`${URL_}/api/v1/audit?action=login`)).json();
      const local = (at) => new Date(at).toLocaleString('sv-SE', { timeZone: 'Asia/Kolkata' });
      assert.equal((await page.locator('#audit tbody tr td.when').first().textContent()).trim(), local(api.rows[0].at));
      assert.match(await page.locator('#audit tbody tr td.detail').first().textContent(), /^(logged in|wrong password) from /);
      // Every action on every page, none with raw JSON for details.
      await page.goto(`${URL_}/audit`);
      const all = [];
      for (;;) {
        all.push(...await page.locator('#audit tbody tr td:nth-child(4)').allTextContents());
        for (const d of await page.locator('#audit tbody tr td.detail').allTextContents()) {
          assert.ok(!d.trim().startsWith('{'), `raw JSON in the audit details: ${d}`);
        }
        if (all.length <= 50) await shot(page, 'desktop-audit');
        if (!(await page.isVisible('#older'))) break;
        await page.click('#older');
        assert.match(page.url(), /[?&]page=\d+/);
      }
      for (const want of ['user-create', 'login', 'logout', 'alarm-silence', 'volume-location', 'setting-change', 'hold-add', 'hold-release']) {
        assert.ok(all.includes(want), `audit lacks ${want}: ${[...new Set(all)]}`);
      }
      const [dl] = await Promise.all([page.waitForEvent('download'), page.click('#csv')]);
      const csv = readFileSync(await dl.path(), 'utf8');
      assert.equal(csv.split('\r\n')[0], 'seq,at,actor,action,object,detail');
      assert.ok(csv.includes(',user:admin,'));
      // The patient's name never reaches the audit trail.
      assert.ok(!csv.toUpperCase().includes('WEB<B>TEST'), 'patient name in the audit CSV');
    });

    await t.test('settings: users and roles', async () => {
      await page.click('nav >> text=Settings');
      assert.equal(await page.inputValue('input[name=ae_title]'), AE);
      const form = page.locator('form', { has: page.locator('input[name=op][value=add-user]') });
      await form.locator('input[name=username]').fill('tech1');
      await form.locator('select[name=role]').selectOption('technician');
      await form.locator('input[name=password]').fill('technician pass 1');
      await form.locator('button[type=submit]').click();
      assert.match(await page.textContent('#settings-message'), /User tech1 added/);
      assert.ok((await page.locator('#users').textContent()).includes('tech1'));
      await shot(page, 'desktop-settings');
    });

    await t.test('a setting that needs a restart: the admin restarts the box from the panel', async () => {
      await page.click('nav >> text=Settings');
      assert.equal(await page.locator('#restart').count(), 0, 'no restart offered before a change needs one');
      await page.fill('input[name=session_idle_secs]', '1800');
      await page.locator('form', { has: page.locator('input[name=op][value=dicom]') }).locator('button[type=submit]').click();
      assert.match(await page.textContent('#settings-message'), /after its next start/);
      await shot(page, 'desktop-settings-restart');
      await page.click('#restart');
      assert.match(await page.textContent('#restarting h1'), /Restarting the box/);
      assert.equal(await page.getAttribute('meta[http-equiv=refresh]', 'content'), '15; url=/settings');
      // Back once cairnd started again: the new process has no restart waiting.
      await waitFor(async () => {
        try {
          const r = await page.goto(`${URL_}/settings`);
          return r.status() === 200 && (await page.locator('#restart').count()) === 0;
        } catch { return false; }
      }, 60000, 'the panel after the restart');
      assert.equal(await page.inputValue('input[name=session_idle_secs]'), '1800');
      const r = await page.request.get(`${URL_}/api/v1/audit?action=restart`);
      assert.equal((await r.json()).rows[0].actor, 'user:admin');
    });

    await t.test('a technician sees disks but no patient data', async () => {
      const ctx = await browser.newContext({ viewport: { width: 1024, height: 600 } });
      const p = await ctx.newPage();
      await p.goto(`${URL_}/login`);
      await p.fill('input[name=username]', 'tech1');
      await p.fill('input[name=password]', 'technician pass 1');
      await p.click('button[type=submit]');
      await p.waitForURL(`${URL_}/`);
      assert.equal(await p.locator('nav >> text=Studies').count(), 0);
      const r = await p.goto(`${URL_}/studies?name=web`);
      assert.equal(r.status(), 403);
      assert.ok(!(await p.content()).toUpperCase().includes('WEB&LT;B&GT;TEST'));
      await ctx.close();
    });

    await t.test('phone screenshots of every page', async () => {
      const phone = await browser.newContext({
        viewport: { width: 390, height: 844 }, deviceScaleFactor: 2, isMobile: true, hasTouch: true,
        storageState: await desk.storageState(),
      });
      const p = await phone.newPage();
      for (const [path, name] of [['/', 'overview'], ['/disks', 'disks'], ['/archive', 'archive'],
        [`/studies?id=${encodeURIComponent(PATIENT_ID)}`, 'studies'], ['/lifecycle', 'lifecycle'],
        ['/audit', 'audit'], ['/settings', 'settings']]) {
        const r = await p.goto(`${URL_}${path}`);
        assert.equal(r.status(), 200, path);
        // Nothing wider than the phone.
        const overflow = await p.evaluate(() => document.documentElement.scrollWidth - window.innerWidth);
        assert.ok(overflow <= 1, `${path} is ${overflow}px wider than the phone`);
        await shot(p, `phone-${name}`);
      }
      await phone.close();
    });

    await t.test('logout ends the session', async () => {
      await page.goto(`${URL_}/`);
      await page.click('form.logout button');
      await page.waitForURL(/\/login$/);
      const r = await page.request.get(`${URL_}/api/v1/status`);
      assert.equal(r.status(), 401);
    });
  } finally {
    await browser.close();
  }
});
