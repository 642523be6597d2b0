// Walks the authorization code flow over plain HTTP, as a browser would: follows redirects
// by hand, keeps cookies, reads the form token from the pages and posts the forms.
import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';

export class CookieJar {
  readonly cookies = new Map<string, string>();
  store(res: Response): void {
    for (const line of res.headers.getSetCookie()) {
      const [pair] = line.split(';');
      const eq = pair!.indexOf('=');
      const name = pair!.slice(0, eq).trim();
      const value = pair!.slice(eq + 1).trim();
      if (/expires=Thu, 01 Jan 1970/i.test(line) || value === '') this.cookies.delete(name);
      else this.cookies.set(name, value);
    }
  }
  header(): string {
    return [...this.cookies].map(([k, v]) => `${k}=${v}`).join('; ');
  }
}

export interface Step {
  status: number;
  location?: string;
  html?: string;
  url: string;
}

export class Browser {
  readonly jar = new CookieJar();
  readonly base: string;
  constructor(base: string) {
    this.base = base;
  }

  async get(url: string): Promise<Step> {
    const res = await fetch(new URL(url, this.base), { redirect: 'manual', headers: { cookie: this.jar.header() } });
    this.jar.store(res);
    return { status: res.status, location: res.headers.get('location') ?? undefined, html: await res.text(), url };
  }

  async post(url: string, form: Record<string, string>): Promise<Step> {
    const res = await fetch(new URL(url, this.base), {
      method: 'POST',
      redirect: 'manual',
      headers: { cookie: this.jar.header(), 'content-type': 'application/x-www-form-urlencoded' },
      body: new URLSearchParams(form).toString(),
    });
    this.jar.store(res);
    return { status: res.status, location: res.headers.get('location') ?? undefined, html: await res.text(), url };
  }

  /** Follows redirects on this server; stops at a page, or at a redirect leaving it. */
  async follow(step: Step): Promise<Step> {
    let current = step;
    for (let i = 0; i < 10 && current.location; i++) {
      const next = new URL(current.location, new URL(current.url, this.base));
      if (next.origin !== new URL(this.base).origin) return current;
      current = await this.get(next.href);
    }
    return current;
  }
}

export function formAction(html: string): string {
  const m = /<form method="post" action="([^"]+)"/.exec(html);
  assert.ok(m, 'a form on the page');
  return m[1]!.replace(/&#(\d+);/g, (_s, c) => String.fromCharCode(Number(c)));
}

export function formToken(html: string): string {
  const m = /name="csrf" value="([^"]+)"/.exec(html);
  assert.ok(m, 'a form token on the page');
  return m[1]!;
}

export function pkcePair(): { verifier: string; challenge: string } {
  const verifier = randomBytes(32).toString('base64url');
  return { verifier, challenge: createHash('sha256').update(verifier).digest('base64url') };
}

export interface CodeFlowOptions {
  clientId: string;
  redirectUri: string;
  scope: string;
  username: string;
  password: string;
  challenge?: string;
  state?: string;
  /** When false, the consent page is expected not to appear. */
  consent?: 'approve' | 'deny' | 'skip';
  /** Sees the consent page when it appears, before it is answered. */
  onConsent?: (html: string) => void;
}

/** Runs /authorize → login → consent and returns the final redirect to the client. */
export async function runCodeFlow(browser: Browser, o: CodeFlowOptions): Promise<URL> {
  const params = new URLSearchParams({ response_type: 'code', client_id: o.clientId, redirect_uri: o.redirectUri, scope: o.scope, state: o.state ?? 'st-123' });
  if (o.challenge) params.set('code_challenge', o.challenge), params.set('code_challenge_method', 'S256');
  let step = await browser.follow(await browser.get(`/authorize?${params}`));
  if (step.html?.includes('name="password"')) {
    step = await browser.post(formAction(step.html), { csrf: formToken(step.html), username: o.username, password: o.password });
    step = await browser.follow(step);
  }
  if (step.html?.includes('name="decision"')) {
    assert.notEqual(o.consent, 'skip', 'consent page shown although it should be skipped');
    o.onConsent?.(step.html);
    step = await browser.post(formAction(step.html), { csrf: formToken(step.html), decision: o.consent === 'deny' ? 'deny' : 'approve' });
    step = await browser.follow(step);
  }
  assert.ok(step.location, `expected a redirect to the client, got ${step.status}: ${step.html?.slice(0, 300)}`);
  return new URL(step.location);
}
