// A real, certified OpenID provider (npm `oidc-provider`) for Tollgate's end-to-end tests.
//
// Configuration: one JSON document in the TOLLGATE_IDP_CONFIG environment variable:
//   {
//     "port": 0,                                   // 0 = any free port on 127.0.0.1
//     "client": { "client_id": "...", "client_secret": "...", "redirect_uris": ["..."] },
//     "users": [ { "id": "u1", "email": "...", "name": "...", "groups": ["..."] } ]
//   }
// Once listening it prints one line on stdout: {"issuer":"http://127.0.0.1:PORT"}.
//
// Logins use oidc-provider's devInteractions: a login form (`login` = the user's id, any
// password) and a consent form, both plain HTML forms a headless client can post. An unknown,
// removed or disabled user's login ends the authorization with an error.
// PKCE is required; every authorization-code grant also yields a refresh token; ID tokens carry
// `email`, `name` and `groups`.
//
// Test-only admin endpoint (the tests "change the user at the IdP" through it):
//   GET    /test/users                -> the current users
//   PUT    /test/users/:id            -> add or replace a user (JSON body: email, name, groups)
//   DELETE /test/users/:id            -> remove a user (refresh and userinfo then fail)
//   POST   /test/users/:id/disable    -> disable a user (same effect as removal, kept listed)
//   POST   /test/users/:id/enable     -> enable again
import http from 'node:http';
import { randomBytes } from 'node:crypto';

// oidc-provider warns about its development defaults (in-memory adapter, generated keys,
// devInteractions) on every start: exactly what a test IdP wants, so keep them out of test logs.
for (const level of ['warn', 'info']) {
  const original = console[level].bind(console);
  console[level] = (...args) => {
    if (String(args[0] ?? '').startsWith('oidc-provider WARNING')) return;
    original(...args);
  };
}
const { default: Provider } = await import('oidc-provider');

const config = JSON.parse(process.env.TOLLGATE_IDP_CONFIG ?? '{}');
const users = new Map();
for (const u of config.users ?? []) users.set(u.id, { disabled: false, groups: [], ...u });

async function findAccount(ctx, id) {
  const user = users.get(id);
  if (!user || user.disabled) return undefined;
  return {
    accountId: id,
    async claims() {
      return {
        sub: id,
        email: user.email,
        email_verified: true,
        name: user.name ?? user.email,
        groups: [...(user.groups ?? [])],
      };
    },
  };
}

const server = http.createServer();
await new Promise((resolve) => server.listen(config.port ?? 0, '127.0.0.1', resolve));
const issuer = `http://127.0.0.1:${server.address().port}`;

const client = config.client ?? {};
const provider = new Provider(issuer, {
  clients: [
    {
      client_id: client.client_id ?? 'tollgate',
      client_secret: client.client_secret ?? 'tollgate-secret',
      redirect_uris: client.redirect_uris ?? [],
      grant_types: ['authorization_code', 'refresh_token'],
      response_types: ['code'],
      token_endpoint_auth_method: client.token_endpoint_auth_method ?? 'client_secret_basic',
    },
  ],
  pkce: { required: () => true },
  scopes: ['openid', 'offline_access', 'email', 'profile', 'groups'],
  claims: {
    // `groups` with every token, as Keycloak's default mapper does; also under its own scope.
    openid: ['sub', 'groups'],
    email: ['email', 'email_verified'],
    profile: ['name'],
    groups: ['groups'],
  },
  // Put the scope's claims in the ID token too, as Okta/Entra/Keycloak can be set up to.
  conformIdTokenClaims: false,
  // A refresh token for every code grant, with or without `offline_access`.
  issueRefreshToken: async (ctx, c) => c.grantTypeAllowed('refresh_token'),
  rotateRefreshToken: true,
  findAccount,
  features: { devInteractions: { enabled: true } },
  cookies: { keys: [randomBytes(32).toString('hex')] },
  ttl: {
    AccessToken: 3600,
    AuthorizationCode: 600,
    IdToken: 3600,
    RefreshToken: 86400,
    Interaction: 600,
    Session: 86400,
    Grant: 86400,
  },
});
provider.on('server_error', (ctx, err) => console.error('idp server_error', err));

function readBody(req) {
  return new Promise((resolve, reject) => {
    let data = '';
    req.setEncoding('utf8');
    req.on('data', (c) => { data += c; });
    req.on('end', () => resolve(data));
    req.on('error', reject);
  });
}

async function testAdmin(req, res) {
  const url = new URL(req.url, issuer);
  const send = (status, value) => {
    res.writeHead(status, { 'content-type': 'application/json' });
    res.end(JSON.stringify(value));
  };
  if (req.method === 'GET' && url.pathname === '/test/users') {
    return send(200, [...users.values()]);
  }
  const m = url.pathname.match(/^\/test\/users\/([^/]+)(\/(disable|enable))?$/);
  if (!m) return send(404, { error: 'not_found' });
  const id = decodeURIComponent(m[1]);
  if (req.method === 'PUT' && !m[2]) {
    const body = JSON.parse((await readBody(req)) || '{}');
    users.set(id, { disabled: false, groups: [], ...body, id });
    return send(200, users.get(id));
  }
  if (req.method === 'DELETE' && !m[2]) {
    const existed = users.delete(id);
    return send(existed ? 200 : 404, { removed: existed });
  }
  if (req.method === 'POST' && m[3]) {
    const user = users.get(id);
    if (!user) return send(404, { error: 'not_found' });
    user.disabled = m[3] === 'disable';
    return send(200, user);
  }
  return send(405, { error: 'method_not_allowed' });
}

const callback = provider.callback();
server.on('request', (req, res) => {
  if (req.url.startsWith('/test/')) {
    testAdmin(req, res).catch((e) => {
      res.writeHead(400, { 'content-type': 'application/json' });
      res.end(JSON.stringify({ error: String(e) }));
    });
    return;
  }
  callback(req, res);
});

process.stdout.write(`${JSON.stringify({ issuer })}\n`);
for (const sig of ['SIGTERM', 'SIGINT']) process.on(sig, () => server.close(() => process.exit(0)));
// Exit with the test process that started us (stdin closes when it dies).
process.stdin.on('end', () => process.exit(0));
process.stdin.resume();
