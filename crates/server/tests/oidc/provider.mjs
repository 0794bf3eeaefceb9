// A real OpenID provider for Vigie's single sign-on tests: panva's
// oidc-provider (OpenID Certified), on a free loopback port, with fresh RS256
// and ES256 signing keys, two confidential clients and a few test users.
//
// Environment: REDIRECT_URI (Vigie's callback), CLIENT_SECRET.
// Prints one JSON line {"issuer": "..."} on standard output once it listens.
//
// The interaction (login and consent) is a one-step form so that tests can
// drive it with plain HTTP requests: POST /interaction/<uid>/login with
// `login=<user>` logs the user in and grants every requested scope;
// POST /interaction/<uid>/abort answers the client `access_denied`.

import { generateKeyPairSync } from 'node:crypto';
import http from 'node:http';
import Provider from 'oidc-provider';

const redirectUri = process.env.REDIRECT_URI;
const clientSecret = process.env.CLIENT_SECRET;
if (!redirectUri || !clientSecret) {
  console.error('REDIRECT_URI and CLIENT_SECRET are required');
  process.exit(2);
}

// Claims per account id. `preferred_username` is mixed case on purpose
// (Vigie lowercases it); the Vigie claims come as strings or arrays.
const users = {
  'operateur.dijon': {
    preferred_username: 'Operateur.Dijon',
    name: 'Opératrice de Dijon',
    vigie_role: 'operator',
    vigie_communes: 'dijon',
    vigie_business_lines: ['lighting'],
  },
  'agent.pm': {
    preferred_username: 'agent.pm',
    name: 'Agent de police municipale',
    vigie_role: 'police-municipale',
    vigie_communes: ['dijon', 'chenove'],
    vigie_business_lines: '*',
  },
  'sans.role': {
    preferred_username: 'sans.role',
    name: 'Sans rôle',
    vigie_communes: '*',
    vigie_business_lines: '*',
  },
  'sans.perimetre': {
    preferred_username: 'sans.perimetre',
    name: 'Sans périmètre',
    vigie_role: 'operator',
  },
  chantal: {
    preferred_username: 'chantal',
    name: 'Chantal (SSO)',
    vigie_role: 'administrator',
    vigie_communes: '*',
    vigie_business_lines: '*',
  },
};

function signingKey(type, options, alg, kid) {
  const { privateKey } = generateKeyPairSync(type, options);
  return { ...privateKey.export({ format: 'jwk' }), alg, use: 'sig', kid };
}

const jwks = {
  keys: [
    signingKey('rsa', { modulusLength: 2048 }, 'RS256', 'test-rs256'),
    signingKey('ec', { namedCurve: 'P-256' }, 'ES256', 'test-es256'),
  ],
};

const client = {
  client_secret: clientSecret,
  redirect_uris: [redirectUri],
  grant_types: ['authorization_code'],
  response_types: ['code'],
};

const configuration = {
  clients: [
    { ...client, client_id: 'vigie', token_endpoint_auth_method: 'client_secret_basic' },
    {
      ...client,
      client_id: 'vigie-es256',
      token_endpoint_auth_method: 'client_secret_post',
      id_token_signed_response_alg: 'ES256',
    },
  ],
  jwks,
  scopes: ['openid', 'profile', 'vigie'],
  claims: {
    openid: ['sub'],
    profile: ['name', 'preferred_username'],
    vigie: ['vigie_role', 'vigie_communes', 'vigie_business_lines'],
  },
  async findAccount(ctx, id) {
    const claims = users[id];
    if (!claims) return undefined;
    return { accountId: id, async claims() { return { sub: id, ...claims }; } };
  },
  features: { devInteractions: { enabled: false } },
  interactions: { url: (ctx, interaction) => `/interaction/${interaction.uid}` },
  cookies: { keys: ['vigie-test-cookie-signing-key'] },
  pkce: { required: () => true },
};

function readForm(req) {
  return new Promise((resolve, reject) => {
    let body = '';
    req.setEncoding('utf8');
    req.on('data', (chunk) => {
      body += chunk;
      if (body.length > 10_000) reject(new Error('form too large'));
    });
    req.on('end', () => resolve(new URLSearchParams(body)));
    req.on('error', reject);
  });
}

async function interaction(provider, req, res, uid, action) {
  const details = await provider.interactionDetails(req, res);
  if (req.method === 'GET' && !action) {
    res.setHeader('content-type', 'text/html; charset=utf-8');
    res.end(`<!doctype html><title>Test provider</title>
<form method="post" action="/interaction/${uid}/login"><input name="login"><button>Log in</button></form>
<form method="post" action="/interaction/${uid}/abort"><button>Cancel</button></form>`);
    return;
  }
  if (req.method !== 'POST') {
    res.statusCode = 405;
    res.end();
    return;
  }
  if (action === 'abort') {
    await provider.interactionFinished(
      req,
      res,
      { error: 'access_denied', error_description: 'End-User aborted interaction' },
      { mergeWithLastSubmission: false },
    );
    return;
  }
  const login = (await readForm(req)).get('login') ?? '';
  if (!users[login]) {
    res.statusCode = 401;
    res.end('unknown user');
    return;
  }
  const grant = new provider.Grant({ accountId: login, clientId: details.params.client_id });
  grant.addOIDCScope(details.params.scope);
  const grantId = await grant.save();
  await provider.interactionFinished(
    req,
    res,
    { login: { accountId: login }, consent: { grantId } },
    { mergeWithLastSubmission: false },
  );
}

const server = http.createServer();
server.listen(0, '127.0.0.1', () => {
  const issuer = `http://127.0.0.1:${server.address().port}`;
  const provider = new Provider(issuer, configuration);
  const callback = provider.callback();
  server.on('request', (req, res) => {
    const m = /^\/interaction\/([A-Za-z0-9_-]+)(?:\/(login|abort))?$/.exec(req.url);
    if (!m) {
      callback(req, res);
      return;
    }
    interaction(provider, req, res, m[1], m[2]).catch((err) => {
      res.statusCode = 500;
      res.end(String(err));
    });
  });
  process.stdout.write(`${JSON.stringify({ issuer })}\n`);
});

// Whatever the provider prints must not kill it if nobody reads any more.
process.stdout.on('error', () => {});

// Ends with the test that started it, even if the test forgets to.
process.stdin.on('end', () => process.exit(0));
process.stdin.resume();
