// The one resource server this key manager issues for today: the configured audience. Every
// access token names it in `aud`; the client's token format decides opaque or JWT.
import type { Client, ResourceServer } from 'oidc-provider';
import { tokenAudience, type Config } from '../config/index.ts';
import { SIGNING_ALG } from '../keys/signing-keys.ts';

export function audienceOf(config: Config): string {
  return tokenAudience(config);
}

export function resourceServerFor(config: Config, client: Client, scope: string): ResourceServer {
  return {
    scope,
    audience: audienceOf(config),
    accessTokenTTL: config.accessTokenTtl,
    accessTokenFormat: client.km_access_token_format === 'jwt' ? 'jwt' : 'opaque',
    jwt: { sign: { alg: SIGNING_ALG } },
  };
}
