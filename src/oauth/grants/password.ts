// Resource owner password credentials grant (RFC 6749 §4.3), for confidential clients that
// list `password` in their grant types. Every failure — unknown user, wrong password,
// disabled or locked account — is the same invalid_grant, and takes the same argon2 time.
import { errors, type KoaContextWithOIDC } from 'oidc-provider';
import { accountOf } from '../accounts.ts';
import { credentialProblem, signIn } from '../sign-in.ts';
import { issueUserTokens } from '../user-tokens.ts';
import { checkRequestedResource } from '../resource-server.ts';
import type { ExtensionGrant } from './index.ts';

function credential(ctx: KoaContextWithOIDC, name: 'username' | 'password'): string {
  const value = ctx.oidc.params?.[name];
  if (typeof value !== 'string' || value === '') throw new errors.InvalidRequest(`missing required parameter '${name}'`);
  const problem = credentialProblem(value, name);
  if (problem) throw new errors.InvalidRequest(problem);
  return value;
}

export const passwordGrant: ExtensionGrant = {
  grantType: 'password',
  parameters: ['username', 'password', 'scope', 'resource'],
  handler: (deps) => async (ctx) => {
    const { client } = ctx.oidc;
    if (!client) throw new errors.InvalidClient();
    // §4.3.2: the client authenticates; a public client cannot keep a user's password safe.
    if (client.clientAuthMethod === 'none') throw new errors.UnauthorizedClient('the password grant requires a confidential client');
    checkRequestedResource(deps.config, ctx.oidc.params?.resource);
    const username = credential(ctx, 'username');
    const password = credential(ctx, 'password');
    const user = await signIn(deps, { username, password, source: ctx.ip, clientId: client.clientId });
    if (!user) throw new errors.InvalidGrant('invalid username or password');
    const account = accountOf(user);
    ctx.oidc.entity('Account', account);
    ctx.body = await issueUserTokens(deps, ctx, account, { gty: 'password', requestedScope: ctx.oidc.params?.scope });
  },
};
