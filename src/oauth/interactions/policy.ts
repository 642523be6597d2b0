// The engine's interaction policy with one more login check: a browser session whose user no
// longer resolves (disabled or deleted since signing in) is sent back to the sign-in page. The
// engine would otherwise carry on with a session that has an account id but no account.
import { interactionPolicy } from 'oidc-provider';

const { base, Check } = interactionPolicy;

export function interactionPolicyWithLiveAccounts(): interactionPolicy.Prompt[] {
  const policy = base();
  policy.get('login')!.checks.add(new Check('account_unavailable', 'the signed-in user can no longer sign in', (ctx) =>
    ctx.oidc.session?.accountId && !ctx.oidc.account ? Check.REQUEST_PROMPT : Check.NO_NEED_TO_PROMPT), 0);
  return policy;
}
