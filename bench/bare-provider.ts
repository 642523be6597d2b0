// A bare oidc-provider — its default in-memory adapter, no keymanager code — as the baseline
// the bench compares keymanager against. Run as its own process so that its CPU is measured
// apart from the load generator's. Settings come from the environment (see bench/run.ts).
import { createServer } from 'node:http';
import { randomBytes } from 'node:crypto';
import Provider from 'oidc-provider';
import { exportJWK, generateKeyPair } from 'jose';

const port = Number(process.env.BARE_PORT);
const clientId = process.env.BARE_CLIENT_ID;
const clientSecret = process.env.BARE_CLIENT_SECRET;
if (!port || !clientId || !clientSecret) {
  process.stderr.write('bare-provider: BARE_PORT, BARE_CLIENT_ID and BARE_CLIENT_SECRET are required\n');
  process.exit(2);
}
const issuer = `http://127.0.0.1:${port}`;

// Our own signing key and cookie key only keep oidc-provider from printing development
// notices; client-credentials tokens here are opaque, so nothing is signed on the hot path.
const { privateKey } = await generateKeyPair('RS256', { extractable: true });
const jwk = { ...(await exportJWK(privateKey)), alg: 'RS256', use: 'sig' };

const provider = new Provider(issuer, {
  clients: [{
    client_id: clientId,
    client_secret: clientSecret,
    grant_types: ['client_credentials'],
    redirect_uris: [],
    response_types: [],
    scope: 'read write',
  }],
  scopes: ['read', 'write'],
  // keymanager's defaults: an hour-long token, introspectable by the client it was issued to.
  ttl: { ClientCredentials: 3600 },
  jwks: { keys: [jwk as never] },
  cookies: { keys: [randomBytes(32).toString('base64url')] },
  // The same paths keymanager serves, so that scenarios differ only in the host they target.
  routes: { token: '/token', introspection: '/introspect' },
  features: {
    devInteractions: { enabled: false },
    clientCredentials: { enabled: true },
    introspection: { enabled: true, allowedPolicy: async (_ctx, client, token) => token.clientId === client.clientId },
  },
});

const server = createServer(provider.callback());
server.listen(port, '127.0.0.1', () => process.stdout.write(`bare oidc-provider listening on ${issuer}\n`));

const stop = () => server.close(() => process.exit(0));
process.on('SIGTERM', stop);
process.on('SIGINT', stop);
