// Sign-in providers for the social sign-in tests, on one loopback port:
//
// - an OpenID Connect provider: oauth2-mock-server (npm), with discovery, JWKS (an RS256 key made
//   at start), the authorization code flow with PKCE (it checks the verifier) and ID tokens that
//   carry the nonce of the authorization request;
// - a GitHub-shaped stand-in (GitHub itself cannot be reached from here): /login/oauth/authorize,
//   /login/oauth/access_token, /api/user and /api/user/emails, in GitHub's JSON.
//
// Neither asks anyone anything: /authorize redirects straight back with a code, as a user who
// consents would. What the next sign-in claims (the subject, the email and whether it is
// verified, or a broken ID token: another audience, issuer or nonce, expired; a key set with a
// key nobody can read, keys marked for encryption, or past 1 MiB) is set by the test with
// POST /_control/next {"claims": {...}, "github": {...}, "token_error": "...", "jwks": "..."}.
//
//   node provider.mjs        prints "listening http://127.0.0.1:PORT" and serves until killed
import { createHash } from 'node:crypto';
import { OAuth2Server, Events } from 'oauth2-mock-server';

const server = new OAuth2Server();
await server.issuer.keys.generate('RS256');
await server.start(0, '127.0.0.1');
const base = server.issuer.url;

let next = {};
const githubCodes = new Map();
// Access tokens this stand-in issued: GitHub's API answers no other.
const githubTokens = new Set();

server.service.on(Events.BeforeTokenSigning, (token) => {
  const claims = next.claims || {};
  // An access token is signed too: only the ID token (it has a nonce or an audience) is changed.
  if (token.payload.sub !== undefined || token.payload.nonce !== undefined) {
    Object.assign(token.payload, claims);
    for (const [k, v] of Object.entries(claims)) if (v === null) delete token.payload[k];
  }
});

server.service.on(Events.BeforeResponse, (response) => {
  if (next.token_error) {
    response.statusCode = 400;
    response.body = { error: next.token_error };
  }
});

function json(res, status, body) {
  res.writeHead(status, { 'content-type': 'application/json' });
  res.end(JSON.stringify(body));
}

/** A request's body: parsed already by the server's own middleware, or read here. */
async function body(req) {
  if (req.body !== undefined) return req.body;
  const chunks = [];
  for await (const c of req) chunks.push(c);
  return Buffer.concat(chunks).toString();
}

const asObject = (b, parse) => (typeof b === 'string' ? parse(b) : b);

// The key set as the test shapes it ("junk", "enc", "huge"), served at /_jwks when asked for.
server.service.on(Events.BeforeWellKnownOpenIdConfiguration, (response) => {
  if (next.jwks) response.body.jwks_uri = `${base}/_jwks`;
});

server.service.addRoute('GET', '/_jwks', (req, res) => {
  let keys = server.issuer.keys.toJSON();
  if (next.jwks === 'junk') keys = [{ kty: 'foo', kid: 'junk' }, ...keys];
  if (next.jwks === 'enc') keys = keys.map((k) => ({ ...k, use: 'enc' }));
  const answer = { keys };
  if (next.jwks === 'huge') answer.padding = 'x'.repeat(2 * 1024 * 1024);
  json(res, 200, answer);
});

server.service.addRoute('POST', '/_control/next', async (req, res) => {
  next = asObject(await body(req), JSON.parse);
  json(res, 200, { ok: true });
});

// GitHub's OAuth: the authorize page sends the browser back with a code and the state.
server.service.addRoute('GET', '/login/oauth/authorize', (req, res) => {
  const q = new URL(req.url, base).searchParams;
  const code = `gh_${Math.random().toString(36).slice(2)}`;
  githubCodes.set(code, { redirect: q.get('redirect_uri'), challenge: q.get('code_challenge') });
  const to = new URL(q.get('redirect_uri'));
  to.searchParams.set('code', code);
  to.searchParams.set('state', q.get('state'));
  res.writeHead(302, { location: to.toString() });
  res.end();
});

server.service.addRoute('POST', '/login/oauth/access_token', async (req, res) => {
  const form = asObject(await body(req), (t) => Object.fromEntries(new URLSearchParams(t)));
  // As GitHub: the client's id and secret, the code once, the same redirect URI, and the PKCE
  // verifier of the challenge the authorization carried; errors come as 200 with an `error`.
  if (!form.client_id || !form.client_secret) {
    return json(res, 200, { error: 'incorrect_client_credentials' });
  }
  const grant = githubCodes.get(form.code);
  githubCodes.delete(form.code);
  if (!grant || grant.redirect !== form.redirect_uri) {
    return json(res, 200, { error: 'bad_verification_code' });
  }
  const verified = (v) => v && createHash('sha256').update(v).digest('base64url') === grant.challenge;
  if (grant.challenge && !verified(form.code_verifier)) {
    return json(res, 200, { error: 'bad_verification_code' });
  }
  const token = `gho_${Math.random().toString(36).slice(2)}`;
  githubTokens.add(token);
  json(res, 200, { access_token: token, token_type: 'bearer', scope: 'read:user,user:email' });
});

server.service.addRoute('GET', '/api/user', (req, res) => {
  if (!githubTokens.has((req.headers.authorization || '').replace(/^Bearer /, ''))) {
    return json(res, 401, { message: 'Bad credentials' });
  }
  const g = next.github || {};
  json(res, 200, { id: g.id ?? 1001, login: g.login ?? 'octocat', name: g.name ?? 'The Octocat', email: null });
});

server.service.addRoute('GET', '/api/user/emails', (req, res) => {
  if (!githubTokens.has((req.headers.authorization || '').replace(/^Bearer /, ''))) {
    return json(res, 401, { message: 'Bad credentials' });
  }
  const g = next.github || {};
  json(res, 200, g.emails ?? [{ email: 'octocat@example.com', primary: true, verified: true, visibility: 'public' }]);
});

console.log(`listening ${base}`);
