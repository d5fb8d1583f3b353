// End-to-end scenarios of tollgate in headless Chromium, against a running tollgate with the
// built-in Stripe simulator and the development mailbox.
//
//   node scenarios.mjs http://127.0.0.1:<port>/
//
// Screenshots of the key pages go to $E2E_SCREENSHOTS (default ./screenshots). The last line is
// "N passed, N failed"; the exit code is non-zero when a scenario failed.

import assert from 'node:assert/strict';
import { createHmac } from 'node:crypto';
import { mkdirSync } from 'node:fs';
import { createServer } from 'node:http';
import { join } from 'node:path';
import { chromium } from 'playwright-core';

const base = (process.argv[2] || 'http://127.0.0.1:3000/').replace(/\/?$/, '/');
const shots = process.env.E2E_SCREENSHOTS || join(import.meta.dirname, 'screenshots');
mkdirSync(shots, { recursive: true });
const url = (path) => new URL(path.replace(/^\//, ''), base).toString();
const password = 'correct horse battery staple';

const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
  args: [
    '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
    '--disable-background-networking', '--disable-component-update', '--disable-sync',
  ],
});

async function newPage() {
  const context = await browser.newContext({ viewport: { width: 1024, height: 800 } });
  const page = await context.newPage();
  page.setDefaultTimeout(10_000);
  return page;
}

async function shot(page, name) {
  await page.screenshot({ path: join(shots, `${name}.png`), fullPage: true });
}

/** Reloads `path` until its text contains `text` (webhooks arrive asynchronously). */
async function waitForText(page, path, text, tries = 100) {
  for (let i = 0; i < tries; i++) {
    await page.goto(url(path));
    if ((await page.textContent('body')).includes(text)) return;
    await page.waitForTimeout(100);
  }
  assert.fail(`${path} never showed "${text}"`);
}

/** The newest link to `path` in the development mailbox. */
async function mailboxLink(page, path) {
  for (let i = 0; i < 100; i++) {
    await page.goto(url('dev/mailbox'));
    const href = await page.evaluate(
      (p) => [...document.querySelectorAll('a')].map((a) => a.href).find((h) => h.includes(p)),
      `/${path}?token=`,
    );
    if (href) return href;
    await page.waitForTimeout(100);
  }
  assert.fail(`no ${path} link in the mailbox`);
}

async function signUpForPlan(page, email, plan) {
  await page.goto(url('pricing'));
  await page.click(`a:has-text("Choose ${plan}")`);
  await page.fill('#email', email);
  await page.fill('#password', password);
  await page.click('button:has-text("Create account")');
  await page.waitForURL(/\/checkout\//);
}

/** RFC 6238's code of `step` for a base32 `secret` (node's own HMAC-SHA-1, not tollgate's code). */
function totp(secret, step) {
  const alphabet = 'ABCDEFGHIJKLMNOPQRSTUVWXYZ234567';
  let bits = '';
  for (const c of secret) bits += alphabet.indexOf(c).toString(2).padStart(5, '0');
  const key = Buffer.from(bits.match(/.{8}/g).map((b) => parseInt(b, 2)));
  const counter = Buffer.alloc(8);
  counter.writeBigUInt64BE(BigInt(step));
  const mac = createHmac('sha1', key).update(counter).digest();
  const offset = mac[mac.length - 1] & 0x0f;
  return String((mac.readUInt32BE(offset) & 0x7fffffff) % 1_000_000).padStart(6, '0');
}

const state = {};

const scenarios = {
  async 'pricing → Pro → sign up → Checkout → success shows Pro → the pro page opens'() {
    const page = await newPage();
    await page.goto(url('pricing'));
    assert.match(await page.textContent('main'), /\$19\.00/);
    await shot(page, 'pricing');
    state.email = `pro-${Date.now()}@example.com`;
    await signUpForPlan(page, state.email, 'Pro');
    await shot(page, 'checkout');
    await page.click('button:has-text("Subscribe")');
    await page.waitForURL(/\/billing\/success/);
    assert.match(await page.textContent('main'), /Welcome to Pro/);
    await shot(page, 'success');
    await page.goto(url('demo/pro'));
    assert.match(await page.textContent('main'), /The pro area/);
    await page.goto(url('account'));
    await shot(page, 'account');
    state.proPage = page;
  },

  async 'log out, then log in with a magic link from the mailbox'() {
    const page = state.proPage;
    await page.click('button:has-text("Sign out")');
    await page.goto(url('login'));
    await page.fill('#magic-email', state.email);
    await page.click('button:has-text("Email me a sign-in link")');
    assert.match(await page.textContent('main'), /Check your email/);
    const link = await mailboxLink(page, 'magic');
    await shot(page, 'mailbox');
    await page.goto(link);
    await page.click('button:has-text("Sign me in")');
    await page.waitForURL(/\/account/);
    assert.match(await page.textContent('main'), new RegExp(state.email.replace('.', '\\.')));
  },

  async 'pricing → switch plan with a preview → billing → cancel in-app → advance the clock → the pro page asks to upgrade'() {
    const page = state.proPage;
    await page.goto(url('pricing'));
    await page.click('a:has-text("Switch to Team")');
    await page.waitForURL(/\/billing\/change\?plan=team/);
    assert.match(await page.textContent('main'), /Change to Team, billed monthly/);
    // Team has no trial: the switch ends Pro's trial and charges Team's first month.
    assert.match(await page.textContent('main'), /your trial ends now and the first month is charged today: \$49\.00/);
    await shot(page, 'change-plan');
    await page.click('button:has-text("Pay $49.00 and change plan")');
    await page.waitForURL(/\/billing\?notice=changed/);
    assert.match(await page.textContent('main'), /Team · \$49\.00 per month/);
    assert.match(await page.textContent('main'), /Visa ending in 4242/);
    await page.click('button:has-text("Update payment method")');
    await page.waitForURL(/\/portal\//);
    await shot(page, 'portal');
    await page.goto(url('billing'));
    await page.click('a:has-text("Cancel subscription")');
    await page.waitForURL(/\/billing\/cancel/);
    assert.match(await page.textContent('main'), /Cancel your Team subscription\?/);
    await page.click('button:has-text("Cancel subscription")');
    await page.waitForURL(/\/billing\?notice=cancelling/);
    assert.match(await page.textContent('main'), /Cancels on/);
    await shot(page, 'billing');
    const simulator = await page.getAttribute('a:has-text("Open the simulator")', 'href');
    await page.goto(simulator);
    await page.click('button:has-text("Advance 31 days")');
    await page.goto(url('demo/pro'));
    await page.waitForURL(/\/pricing\?required=pro/);
    assert.match(await page.textContent('main'), /needs the Pro plan/);
    await shot(page, 'upgrade-prompt');
  },

  async 'a declined card leaves the user on free with a clear message'() {
    const page = await newPage();
    await signUpForPlan(page, `declined-${Date.now()}@example.com`, 'Team');
    await page.click('button:has-text("declined")');
    assert.match(await page.textContent('body'), /Your card was declined/);
    await shot(page, 'declined');
    await page.click('a:has-text("Cancel and go back")');
    await page.waitForURL(/\/pricing\?canceled=1/);
    assert.match(await page.textContent('main'), /Checkout was canceled/);
    await page.goto(url('billing'));
    assert.match(await page.textContent('main'), /No subscription/);
  },

  async 'forgot password → link from the mailbox → new password → old sessions are gone'() {
    const old = state.proPage;
    await old.goto(url('account'));
    assert.match(old.url(), /\/account/);
    const page = await newPage();
    await page.goto(url('login'));
    await page.click('a:has-text("Forgot your password?")');
    await page.fill('#email', state.email);
    await page.click('button:has-text("Send the link")');
    const link = await mailboxLink(page, 'reset-password');
    await page.goto(link);
    await page.fill('#password', 'a brand new passphrase here');
    await shot(page, 'reset');
    await page.click('button:has-text("Set the new password")');
    await page.waitForURL(/\/login\?notice=password_reset/);
    await old.goto(url('account'));
    await old.waitForURL(/\/login/);
    await page.fill('#email', state.email);
    await page.fill('#password', 'a brand new passphrase here');
    await page.click('form[action="/login"] button:has-text("Sign in")');
    await page.waitForURL(/\/account/);
  },
};

Object.assign(scenarios, {
  async 'two-factor: set up with the QR page → recovery codes → sign in with a code, trusting the device → devices'() {
    const page = await newPage();
    const email = `otp-${Date.now()}@example.com`;
    await page.goto(url('signup'));
    await page.fill('#email', email);
    await page.fill('#password', password);
    await page.click('button:has-text("Create account")');
    await page.goto(url('account'));
    await page.click('a:has-text("Set up or manage")');
    await page.click('button:has-text("Set up two-factor sign-in")');
    assert.ok(await page.isVisible('.qr svg'), 'the QR code is drawn');
    await shot(page, 'two-factor-setup');
    const secret = (await page.textContent('code.secret')).trim();
    const step = Math.floor(Date.now() / 30_000);
    await page.fill('#code', totp(secret, step));
    await page.click('button:has-text("Turn on two-factor sign-in")');
    assert.equal(await page.locator('ul.codes li').count(), 10);
    await shot(page, 'recovery-codes');
    await page.click('button:has-text("Sign out")');
    await page.goto(url('login'));
    await page.fill('#email', email);
    await page.fill('#password', password);
    await page.click('form[action="/login"] button:has-text("Sign in")');
    assert.match(await page.textContent('main'), /Enter your code/);
    await shot(page, 'two-factor-code');
    await page.fill('#code', totp(secret, step + 1));
    await page.check('input[name="trust"]');
    await page.click('button:has-text("Sign in")');
    await page.waitForURL(/\/account/);
    await page.goto(url('account/devices'));
    assert.match(await page.textContent('main'), /this device/);
    await shot(page, 'devices');
    // Trusted: the next sign-in on this browser skips the code.
    await page.click('button:has-text("Sign out")');
    await page.goto(url('login'));
    await page.fill('#email', email);
    await page.fill('#password', password);
    await page.click('form[action="/login"] button:has-text("Sign in")');
    await page.waitForURL(/\/account/);
  },
});

// Browsers make passkeys only for a host name: the passkey scenario uses tollgate as
// http://localhost:PORT (its relying party in development), not 127.0.0.1.
const local = (path) => url(path).replace('://127.0.0.1:', '://localhost:');

/** POSTs JSON to tollgate from outside the browser: the status and the JSON answer. */
async function api(path, body) {
  const r = await fetch(local(path), {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify(body),
  });
  return [r.status, await r.json().catch(() => null)];
}

/** A page with Chromium's virtual authenticator (CTAP2, platform, resident keys, user verified). */
async function pageWithAuthenticator() {
  const page = await newPage();
  const cdp = await page.context().newCDPSession(page);
  await cdp.send('WebAuthn.enable');
  const { authenticatorId } = await cdp.send('WebAuthn.addVirtualAuthenticator', {
    options: {
      protocol: 'ctap2', transport: 'internal', hasResidentKey: true,
      hasUserVerification: true, isUserVerified: true, automaticPresenceSimulation: true,
    },
  });
  return { page, cdp, authenticatorId };
}

Object.assign(scenarios, {
  async 'passkeys: add one → sign in with it alone → refusals (replay, counter back, another origin) → second step'() {
    const { page, cdp, authenticatorId } = await pageWithAuthenticator();
    const email = `passkey-${Date.now()}@example.com`;
    await page.goto(local('signup'));
    await page.fill('#email', email);
    await page.fill('#password', password);
    await page.click('button:has-text("Create account")');
    const verify = (await mailboxLink(page, 'verify-email')).replace('://127.0.0.1:', '://localhost:');
    await page.goto(verify);
    await page.click('button:has-text("Confirm my address")');

    // Add a passkey from the account page.
    await page.goto(local('account'));
    await page.click('a:has-text("Add or remove passkeys")');
    await page.fill('#name', 'This laptop');
    await page.click('button:has-text("Add a passkey")');
    await page.waitForURL(/\/account\/passkeys\?notice=added/);
    assert.match(await page.textContent('main'), /Passkey added/);
    assert.equal(await page.inputValue('input[name="name"][value="This laptop"]'), 'This laptop');
    await shot(page, 'passkeys');
    const [stored] = (await cdp.send('WebAuthn.getCredentials', { authenticatorId })).credentials;
    assert.ok(stored.isResidentCredential, 'a discoverable credential');

    // Sign out; sign in with the passkey alone, keeping its answer.
    await page.click('button:has-text("Sign out")');
    await page.goto(local('login'));
    await shot(page, 'login-passkey');
    const sent = page.waitForRequest((r) => r.url().endsWith('/api/auth/passkey') && r.method() === 'POST');
    await page.click('button:has-text("Sign in with a passkey")');
    const captured = (await sent).postData();
    await page.waitForURL(/\/account/);
    assert.match(await page.textContent('main'), new RegExp(email.replace('.', '\\.')));

    // The same answer again is refused: its ceremony was taken.
    let [status, body] = await api('api/auth/passkey', JSON.parse(captured));
    assert.deepEqual([status, body.error], [400, 'passkey_invalid']);

    // A clone behind the counter: the authenticator's credential with its counter set back.
    const { credentials } = await cdp.send('WebAuthn.getCredentials', { authenticatorId });
    const now = credentials[0];
    assert.ok(now.signCount > 0, `Chromium's authenticator keeps a counter (${now.signCount})`);
    await cdp.send('WebAuthn.removeCredential', { authenticatorId, credentialId: now.credentialId });
    await cdp.send('WebAuthn.addCredential', { authenticatorId, credential: { ...now, signCount: 0 } });
    await page.click('button:has-text("Sign out")');
    await page.goto(local('login'));
    await page.click('button:has-text("Sign in with a passkey")');
    await page.waitForSelector('[data-passkey-error]:not([hidden])');
    assert.match(await page.textContent('[data-passkey-error]'), /could not be verified/);
    assert.match(page.url(), /\/login/);
    await cdp.send('WebAuthn.removeCredential', { authenticatorId, credentialId: now.credentialId });
    await cdp.send('WebAuthn.addCredential', {
      authenticatorId, credential: { ...now, signCount: now.signCount + 10 },
    });

    // A phishing page on another origin relays tollgate's challenge to the same authenticator.
    const phish = createServer((_, res) => {
      res.writeHead(200, { 'content-type': 'text/html' });
      res.end('<!doctype html><title>Totally tollgate</title><p>Sign in</p>');
    });
    await new Promise((done) => phish.listen(0, '127.0.0.1', done));
    try {
      await page.goto(`http://localhost:${phish.address().port}/`);
      const [, options] = await api('api/auth/passkey/options', {});
      const credential = await page.evaluate(async (json) => {
        const publicKey = PublicKeyCredential.parseRequestOptionsFromJSON(json);
        return (await navigator.credentials.get({ publicKey })).toJSON();
      }, options.publicKey);
      [status, body] = await api('api/auth/passkey', { ceremony: options.ceremony, credential });
      assert.deepEqual([status, body.error], [400, 'passkey_invalid']);
    } finally {
      phish.close();
    }

    // With an authenticator app on, the passkey finishes a password sign-in's second step.
    await page.goto(local('login'));
    await page.click('button:has-text("Sign in with a passkey")');
    await page.waitForURL(/\/account/);
    await page.goto(local('account/2fa'));
    await page.click('button:has-text("Set up two-factor sign-in")');
    const secret = (await page.textContent('code.secret')).trim();
    await page.fill('#code', totp(secret, Math.floor(Date.now() / 30_000)));
    await page.click('button:has-text("Turn on two-factor sign-in")');
    await page.click('button:has-text("Sign out")');
    await page.goto(local('login'));
    await page.fill('#email', email);
    await page.fill('#password', password);
    await page.click('form[action="/login"] button:has-text("Sign in")');
    assert.match(await page.textContent('main'), /Enter your code/);
    await shot(page, 'two-factor-passkey');
    await page.click('button:has-text("Use a passkey instead")');
    await page.waitForURL(/\/account/);
    assert.match(await page.textContent('main'), new RegExp(email.replace('.', '\\.')));
  },
});

Object.assign(scenarios, {
  async 'social sign-in: choose Pro → continue with the OpenID Connect provider → Checkout → the providers page'() {
    if (!process.env.E2E_PROVIDER) {
      console.log('# no sign-in provider (tests/oidc not installed): skipped');
      return;
    }
    const email = `social-${Date.now()}@example.com`;
    const r = await fetch(`${process.env.E2E_PROVIDER}/_control/next`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ claims: { sub: email, email, email_verified: true } }),
    });
    assert.equal(r.status, 200);
    const page = await newPage();
    await page.goto(url('pricing'));
    await page.click('a:has-text("Choose Pro")');
    await shot(page, 'signup-social');
    await page.click('button:has-text("Continue with Acme ID")');
    await page.waitForURL(/\/checkout\//);
    await page.click('button:has-text("Subscribe")');
    await page.waitForURL(/\/billing\/success/);
    await page.goto(url('account/social'));
    assert.match(await page.textContent('main'), new RegExp(`as ${email.replace('.', '\\.')}`));
    await shot(page, 'providers');
  },
});

/** Text on `page` whose contrast with its background is below WCAG AA (4.5:1, 3:1 for large text). */
function lowContrast(page) {
  return page.evaluate(() => {
    const parse = (c) => {
      const m = c.match(/rgba?\(([^)]+)\)/);
      if (!m) return null;
      const p = m[1].split(',').map((x) => parseFloat(x));
      return { r: p[0], g: p[1], b: p[2], a: p.length > 3 ? p[3] : 1 };
    };
    const lum = ({ r, g, b }) => {
      const f = (v) => ((v /= 255) <= 0.03928 ? v / 12.92 : ((v + 0.055) / 1.055) ** 2.4);
      return 0.2126 * f(r) + 0.7152 * f(g) + 0.0722 * f(b);
    };
    const background = (el) => {
      for (let e = el; e; e = e.parentElement) {
        const c = parse(getComputedStyle(e).backgroundColor);
        if (c && c.a > 0.5) return c;
      }
      return { r: 255, g: 255, b: 255, a: 1 };
    };
    const low = [];
    const walker = document.createTreeWalker(document.body, NodeFilter.SHOW_TEXT);
    for (let n = walker.nextNode(); n; n = walker.nextNode()) {
      const el = n.parentElement;
      if (!n.textContent.trim() || el.closest('[hidden], .visually-hidden')) continue;
      const style = getComputedStyle(el);
      const box = el.getBoundingClientRect();
      if (style.visibility === 'hidden' || box.width === 0 || box.height === 0) continue;
      const [a, b] = [lum(parse(style.color)), lum(background(el))].sort((x, y) => y - x);
      const ratio = (a + 0.05) / (b + 0.05);
      const size = parseFloat(style.fontSize);
      const large = size >= 24 || (parseInt(style.fontWeight, 10) >= 700 && size >= 18.66);
      if (ratio < (large ? 3 : 4.5)) low.push(`"${n.textContent.trim().slice(0, 40)}" ${ratio.toFixed(2)}:1`);
    }
    return low;
  });
}

Object.assign(scenarios, {
  async 'every page fits a 360 px screen and its text meets WCAG AA contrast'() {
    const check = async (page, path) => {
      await page.goto(url(path));
      const width = await page.evaluate(() => document.documentElement.scrollWidth);
      assert.ok(width <= 360, `${path} is ${width} px wide at 360 px`);
      assert.deepEqual(await lowContrast(page), [], `${path} has text below AA contrast`);
    };
    const narrow = async () => {
      const context = await browser.newContext({ viewport: { width: 360, height: 740 } });
      const page = await context.newPage();
      page.setDefaultTimeout(10_000);
      return page;
    };
    const visitor = await narrow();
    for (const path of ['', 'pricing', 'pricing?interval=year', 'pricing?required=pro', 'login', 'signup',
      'forgot-password']) {
      await check(visitor, path);
    }
    // The checks can fail: faint text and an overflowing block are caught.
    await visitor.evaluate(() => {
      const faint = document.createElement('p');
      faint.textContent = 'faint words';
      faint.style.color = '#bbbbbb';
      const wide = document.createElement('div');
      wide.style.width = '500px';
      wide.textContent = 'wide';
      document.querySelector('main').append(faint, wide);
    });
    assert.match((await lowContrast(visitor)).join(), /faint words/);
    assert.ok(await visitor.evaluate(() => document.documentElement.scrollWidth) > 360);
    // A subscriber's pages: billing with its invoices, a plan change's preview, cancelling.
    const page = await narrow();
    await signUpForPlan(page, `narrow-${Date.now()}@example.com`, 'Team');
    await page.click('button:has-text("Subscribe")');
    await page.waitForURL(/\/billing\/success/);
    await waitForText(page, 'billing', 'Next charge');
    for (const path of ['billing', 'billing?notice=card_declined', 'billing/change?plan=pro&interval=month',
      'billing/cancel', 'account', 'account/devices', 'account/keys', 'pricing']) {
      await check(page, path);
    }
    await shot(page, 'billing-narrow');
  },
});

let passed = 0;
let failed = 0;
for (const [name, run] of Object.entries(scenarios)) {
  try {
    await run();
    passed++;
    console.log(`ok - ${name}`);
  } catch (e) {
    failed++;
    console.log(`not ok - ${name}\n  ${String(e && e.stack || e).split('\n').join('\n  ')}`);
  }
}
await browser.close();
console.log(`${passed} passed, ${failed} failed`);
process.exit(failed ? 1 : 0);
