// Issues the tokens of a grant that acts for a user (password today, SAML bearer next): a
// Grant recording what was consented, an access token, and a refresh token when the client
// has the refresh_token grant. The refresh grant of oidc-provider takes it from there.
import { errors, type KoaContextWithOIDC } from 'oidc-provider';
import type { GrantDeps } from './grants/index.ts';
import type { UserAccount } from './accounts.ts';
import { audienceOf, resourceServerFor } from './resource-server.ts';
import { grantScopes } from './scope-policy.ts';
import { rolesOfUser } from '../store/users.ts';
import { certificateThumbprint } from '../store/certificates.ts';

export interface TokenResponse {
  access_token: string;
  token_type: string;
  expires_in: number;
  scope?: string;
  refresh_token?: string;
}

export async function issueUserTokens(
  { config, db, scopes, certificates }: GrantDeps,
  ctx: KoaContextWithOIDC,
  account: UserAccount,
  { gty, requestedScope }: { gty: string; requestedScope: unknown },
): Promise<TokenResponse> {
  const { provider } = ctx.oidc;
  const client = ctx.oidc.client!;
  const audience = audienceOf(config);
  const roles = await rolesOfUser(db, account.accountId);
  const scope = (await grantScopes(scopes, String(client.km_allowed_scope ?? ''), requestedScope, roles)).join(' ');

  const grant = new provider.Grant({ clientId: client.clientId, accountId: account.accountId });
  if (scope) grant.addResourceScope(audience, scope);
  const grantId = await grant.save();

  const at = new provider.AccessToken({ accountId: account.accountId, client, grantId, gty, scope: scope || undefined });
  at.resourceServer = new provider.ResourceServer(audience, resourceServerFor(config, client, scope));
  // RFC 8705 §3: a certificate client's tokens are bound to the certificate it authenticated with.
  const cert = client.tlsClientCertificateBoundAccessTokens ? certificates.getCertificate(ctx) : undefined;
  if (client.tlsClientCertificateBoundAccessTokens && !cert) throw new errors.InvalidGrant('mutual TLS client certificate not provided');
  if (cert) at.setThumbprint('x5t', cert);
  ctx.oidc.entity('AccessToken', at);
  const accessToken = await at.save();

  let refreshToken: string | undefined;
  if (client.grantTypes?.includes('refresh_token')) {
    const rt = new provider.RefreshToken({
      accountId: account.accountId,
      client,
      grantId,
      gty,
      scope,
      resource: audience,
      rotations: 0,
    });
    // Bound as well: the refresh grant then insists on the same certificate.
    if (cert) rt['x5t#S256'] = certificateThumbprint(cert);
    ctx.oidc.entity('RefreshToken', rt);
    refreshToken = await rt.save();
  }

  return {
    access_token: accessToken,
    token_type: at.tokenType ?? 'Bearer',
    expires_in: at.expiration,
    ...(scope ? { scope } : {}),
    ...(refreshToken ? { refresh_token: refreshToken } : {}),
  };
}
