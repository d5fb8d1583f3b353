// Passkeys on tollgate's pages: the one script they need (WebAuthn has no form-only path).
// Buttons and forms marked data-passkey="sign-in" | "second-step" | "reauth" | "register" ask
// tollgate for options, hand them to the browser's authenticator, and send its answer back over
// the JSON API; then the page moves on (data-next) or reloads.
'use strict';

(function () {
  const supported = typeof PublicKeyCredential !== 'undefined' &&
    typeof PublicKeyCredential.parseRequestOptionsFromJSON === 'function';

  async function post(path, body) {
    const response = await fetch(path, {
      method: 'POST',
      credentials: 'same-origin',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify(body || {}),
    });
    const data = await response.json().catch(() => ({}));
    if (!response.ok) {
      const err = new Error(data.message || 'Something went wrong; try again.');
      err.code = data.error;
      throw err;
    }
    return data;
  }

  async function assertion(options) {
    const publicKey = PublicKeyCredential.parseRequestOptionsFromJSON(options.publicKey);
    const credential = await navigator.credentials.get({ publicKey });
    return { ceremony: options.ceremony, credential: credential.toJSON() };
  }

  async function creation(options) {
    const publicKey = PublicKeyCredential.parseCreationOptionsFromJSON(options.publicKey);
    const credential = await navigator.credentials.create({ publicKey });
    return { ceremony: options.ceremony, credential: credential.toJSON() };
  }

  const flows = {
    async 'sign-in'(el) {
      const answer = await assertion(await post('/api/auth/passkey/options'));
      const remember = document.querySelector('input[name="remember"]');
      await post('/api/auth/passkey', { ...answer, remember: !!(remember && remember.checked) });
    },
    async 'second-step'(el) {
      const pending = el.dataset.pending;
      const options = await post('/api/auth/2fa/passkey/options', { pending_token: pending });
      const trust = document.querySelector('input[name="trust"]');
      await post('/api/auth/2fa/verify', {
        pending_token: pending,
        passkey: await assertion(options),
        trust_device: !!(trust && trust.checked),
      });
    },
    async reauth() {
      const answer = await assertion(await post('/api/auth/reauth/passkey/options'));
      await post('/api/auth/reauth', { passkey: answer });
    },
    async register(el) {
      const name = el.querySelector('input[name="name"]');
      // With two-factor sign-in on, adding a passkey takes a current code (or a recovery code).
      const code = el.querySelector('input[name="code"]');
      const typed = code ? code.value.trim() : '';
      const factor = !code ? {} : /^\d{6}$/.test(typed) ? { code: typed } : { recovery_code: typed };
      const answer = await creation(await post('/api/account/passkeys/options', factor));
      await post('/api/account/passkeys', { ...answer, name: name ? name.value : '' });
    },
  };

  function showError(el, message) {
    const box = el.closest('section').querySelector('[data-passkey-error]');
    if (box) {
      box.textContent = message;
      box.hidden = false;
    }
  }

  function start(el, event) {
    event.preventDefault();
    if (!supported) {
      showError(el, 'This browser cannot use passkeys.');
      return;
    }
    flows[el.dataset.passkey](el)
      .then(() => { window.location.assign(el.dataset.next || window.location.pathname); })
      .catch((err) => {
        if (err.code === 'reauth_required') {
          const back = window.location.pathname;
          window.location.assign('/account/confirm?next=' + encodeURIComponent(back));
          return;
        }
        // The browser's own refusals (cancelled, timed out) are DOMExceptions.
        const message = err instanceof DOMException
          ? 'The passkey was not used (cancelled or timed out).'
          : err.message;
        showError(el, message);
      });
  }

  document.querySelectorAll('[data-passkey]').forEach((el) => {
    el.hidden = false;
    el.addEventListener(el.tagName === 'FORM' ? 'submit' : 'click', (event) => start(el, event));
  });
})();
