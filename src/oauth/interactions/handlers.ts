// The sign-in and consent steps of the authorization code flow. oidc-provider sends the
// browser to /interaction/:uid with a cookie that binds the step to that browser; each form
// also carries a token derived from the step's uid, so a form posted from anywhere else —
// or edited — is refused.
import { createHmac, timingSafeEqual } from 'node:crypto';
import type { Context } from 'koa';
import type Provider from 'oidc-provider';
import { errors, type Client } from 'oidc-provider';
import type { Logger } from 'pino';
import { rememberConsent } from '../../store/consents.ts';
import { findUserById, MAX_USERNAME_LENGTH } from '../../store/users.ts';
import { credentialProblem, signIn } from '../sign-in.ts';
import { decideScopes, saveGrant, type ConsentDeps } from './consent.ts';
import { consentPage, errorPage, loginPage, START_AGAIN } from './pages.ts';
import type { Metrics } from '../../http/metrics.ts';

export interface InteractionDeps extends ConsentDeps {
  provider: Provider;
  logger: Logger;
  /** Sign-in outcomes of the sign-in page. */
  metrics: Pick<Metrics, 'logins' | 'lockouts' | 'passwordVerifications'>;
  /** Secret for the forms' anti-forgery token (one of the cookie-signing keys). */
  formKey: string;
}

const WRONG_CREDENTIALS = 'The username or password is incorrect, or the account cannot sign in right now.';

function formToken(deps: InteractionDeps, uid: string): string {
  return createHmac('sha256', deps.formKey).update(`interaction-form:${uid}`).digest('base64url');
}

function formTokenValid(deps: InteractionDeps, uid: string, presented: string | null): boolean {
  const expected = Buffer.from(formToken(deps, uid));
  const given = Buffer.from(presented ?? '');
  return given.length === expected.length && timingSafeEqual(given, expected);
}

function html(ctx: Context, body: string, status = 200): void {
  ctx.status = status;
  ctx.type = 'html';
  // The pages hold a form token and a user's name: never cached, never framed.
  ctx.set('Cache-Control', 'no-store');
  ctx.set('X-Frame-Options', 'DENY');
  // No form-action: browsers apply it to the redirects a form post leads to, and ours end at
  // the client's redirect URI on another origin.
  ctx.set('Content-Security-Policy', "default-src 'none'; style-src 'unsafe-inline'; frame-ancestors 'none'; base-uri 'none'");
  ctx.body = body;
}

const FORM_REFUSED = errorPage({
  title: 'Sign-in cannot continue',
  message: 'The form you sent was not the one this page gave you (it was changed, or sent from another browser).',
  next: START_AGAIN,
});

/** The step in progress for this browser, or an error page when there is none. */
async function currentStep(deps: InteractionDeps, ctx: Context) {
  try {
    const details = await deps.provider.interactionDetails(ctx.req, ctx.res);
    if (details.uid !== ctx.params.uid) throw new errors.SessionNotFound('interaction mismatch');
    return details;
  } catch (err) {
    deps.logger.debug({ error: (err as Error).message }, 'no sign-in in progress for this browser');
    if (err instanceof errors.SessionNotFound) {
      html(ctx, errorPage({ title: 'Sign-in expired', message: 'This sign-in page is no longer valid: it was used already, or it waited too long.', next: START_AGAIN }), 400);
      return undefined;
    }
    throw err;
  }
}

/** The client of the flow, with the name shown on the pages and the scopes it may have. */
async function clientOf(deps: InteractionDeps, clientId: unknown): Promise<{ name: string; allowedScope: string }> {
  const client = typeof clientId === 'string' ? await deps.provider.Client.find(clientId) : undefined;
  return {
    name: client?.clientName ?? (typeof clientId === 'string' ? clientId : 'the application'),
    allowedScope: String(client?.km_allowed_scope ?? ''),
  };
}

type Step = Awaited<ReturnType<InteractionDeps['provider']['interactionDetails']>>;

/**
 * Whether the flow's client and redirect URI are still registered; if not, answers with an
 * error page. The engine checked them at /authorize only: a client deleted, or a URI an
 * operator removed, while the page was open gets nothing, not even an error (the engine
 * rechecks the URI on resume too, src/oauth/interactions/consent.ts, but an error result skips
 * that check).
 */
async function clientStillThere(deps: InteractionDeps, ctx: Context, step: Step): Promise<Client | undefined> {
  const client = typeof step.params.client_id === 'string' ? await deps.provider.Client.find(step.params.client_id) : undefined;
  const redirectUri = step.params.redirect_uri;
  if (client && typeof redirectUri === 'string' && client.redirectUriAllowed(redirectUri)) return client;
  deps.logger.info({ event: 'interaction.redirect_uri_gone', client_id: step.params.client_id }, 'sign-in ended: its client or redirect URI is no longer registered');
  html(ctx, errorPage({
    title: 'Sign-in cannot continue',
    message: 'The application no longer accepts answers at the address this sign-in would return to.',
    next: START_AGAIN,
    details: 'invalid_redirect_uri',
  }), 400);
  return undefined;
}

/** Ends the step once client and redirect URI are found still registered (clientStillThere). */
async function finish(deps: InteractionDeps, ctx: Context, step: Step, result: Record<string, unknown>, merge: boolean): Promise<void> {
  if (await clientStillThere(deps, ctx, step)) await sendResult(deps, ctx, result, merge);
}

/** Ends the step; the engine then sends the browser on, in the end to the redirect URI with a code or an error. */
async function sendResult(deps: InteractionDeps, ctx: Context, result: Record<string, unknown>, merge: boolean): Promise<void> {
  const location = await deps.provider.interactionResult(ctx.req, ctx.res, result, { mergeWithLastSubmission: merge });
  ctx.status = 303;
  ctx.set('Cache-Control', 'no-store');
  ctx.redirect(location);
}

export async function showStep(deps: InteractionDeps, ctx: Context): Promise<void> {
  const step = await currentStep(deps, ctx);
  if (!step) return;
  const action = `/interaction/${step.uid}`;
  const client = await clientOf(deps, step.params.client_id);
  const clientName = client.name;
  if (step.prompt.name === 'login') {
    html(ctx, loginPage({ action: `${action}/login`, csrf: formToken(deps, step.uid), clientName }));
    return;
  }
  if (step.prompt.name === 'consent' && step.session?.accountId) {
    const user = await findUserById(deps.db, step.session.accountId);
    if (!user) {
      await finish(deps, ctx, step, { error: 'access_denied', error_description: 'the user no longer exists' }, false);
      return;
    }
    const decision = await decideScopes(deps, client.allowedScope, user.id, step.params.scope);
    const registered = await deps.scopes.find(decision.granted);
    html(ctx, consentPage({
      action: `${action}/consent`,
      csrf: formToken(deps, step.uid),
      clientName,
      username: user.username,
      scopes: decision.granted.map((name) => ({ name, description: registered.get(name)?.description ?? '' })),
    }));
    return;
  }
  html(ctx, errorPage({ title: 'Sign-in cannot continue', message: 'This step of the sign-in cannot be completed here.', next: START_AGAIN }), 400);
}

export async function submitLogin(deps: InteractionDeps, ctx: Context, form: URLSearchParams): Promise<void> {
  const step = await currentStep(deps, ctx);
  if (!step) return;
  if (step.prompt.name !== 'login' || !formTokenValid(deps, step.uid, form.get('csrf'))) {
    html(ctx, FORM_REFUSED, 400);
    return;
  }
  const username = form.get('username') ?? '';
  const password = form.get('password') ?? '';
  const clientName = (await clientOf(deps, step.params.client_id)).name;
  const again = (error: string) => html(ctx, loginPage({
    action: `/interaction/${step.uid}/login`, csrf: formToken(deps, step.uid), clientName, username: username.slice(0, MAX_USERNAME_LENGTH), error,
  }));
  if (!username || !password) return again('Enter your username and password.');
  if (credentialProblem(username, 'username') || credentialProblem(password, 'password')) return again(WRONG_CREDENTIALS);
  const user = await signIn(deps, { username, password, source: ctx.ip, clientId: String(step.params.client_id) });
  if (!user) return again(WRONG_CREDENTIALS);
  await finish(deps, ctx, step, { login: { accountId: user.id } }, false);
}

export async function submitConsent(deps: InteractionDeps, ctx: Context, form: URLSearchParams): Promise<void> {
  const step = await currentStep(deps, ctx);
  if (!step) return;
  const accountId = step.session?.accountId;
  if (step.prompt.name !== 'consent' || !accountId || !formTokenValid(deps, step.uid, form.get('csrf'))) {
    html(ctx, FORM_REFUSED, 400);
    return;
  }
  const decisionWord = form.get('decision');
  if (decisionWord !== 'approve') {
    deps.logger.info({ event: 'consent.denied', client_id: step.params.client_id, user_id: accountId }, 'user denied consent');
    await finish(deps, ctx, step, { error: 'access_denied', error_description: 'the user denied the request' }, true);
    return;
  }
  // Before the grant is written: a grant of a client deleted meanwhile cannot be stored. (The
  // engine checks the redirect URI again when the flow resumes with this consent.)
  const client = await clientStillThere(deps, ctx, step);
  if (!client) return;
  const clientId = client.clientId;
  // The scopes come from the request the server holds, never from the form.
  const decision = await decideScopes(deps, String(client.km_allowed_scope ?? ''), accountId, step.params.scope);
  const grantId = await saveGrant(deps, deps.provider, { accountId, clientId, existingGrantId: step.grantId, decision });
  await rememberConsent(deps.db, accountId, clientId, [...decision.granted, ...decision.oidc]);
  await sendResult(deps, ctx, { consent: { grantId } }, true);
}
