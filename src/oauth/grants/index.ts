// The one registration table of extension grants (RFC 6749 §4.5). Each grant lives in its
// own file and exports { grantType, parameters, handler }; adding one is one line below.
import type Provider from 'oidc-provider';
import type { KoaContextWithOIDC } from 'oidc-provider';
import type { Config } from '../../config/index.ts';
import type { Db } from '../../db/database.ts';
import type { Logger } from 'pino';
import { passwordGrant } from './password.ts';
import { saml2BearerGrant } from './saml2-bearer.ts';
import type { ScopeLookup } from '../scope-registry.ts';
import type { CertificateCheck } from '../client-auth.ts';
import type { Metrics } from '../../http/metrics.ts';
import { guardStorage } from '../errors.ts';

export interface GrantDeps {
  config: Config;
  db: Db;
  scopes: ScopeLookup;
  /** Client-certificate checks, for binding tokens to the certificate (RFC 8705 §3). */
  certificates: CertificateCheck;
  logger: Logger;
  /** Sign-in outcomes of the password grant. */
  metrics: Pick<Metrics, 'logins' | 'lockouts' | 'passwordVerifications'>;
}

export interface ExtensionGrant {
  grantType: string;
  parameters: string[];
  handler: (deps: GrantDeps) => (ctx: KoaContextWithOIDC) => Promise<void>;
}

const GRANTS: ExtensionGrant[] = [
  passwordGrant,
  saml2BearerGrant,
];

export function registerGrants(provider: Provider, deps: GrantDeps): void {
  for (const grant of GRANTS) {
    const handle = grant.handler(deps);
    // The engine answers any error that is not one of its own with a 500: a storage failure
    // anywhere in a grant (a sign-in's lockout count, a role lookup, an assertion's replay
    // record) becomes its typed error here, a 503 when the database is unreachable.
    provider.registerGrantType(grant.grantType, (ctx) => guardStorage(() => handle(ctx)), grant.parameters);
  }
}
