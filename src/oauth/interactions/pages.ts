// The login and consent pages: server-rendered, no JavaScript, readable on a phone, with
// labelled fields, visible focus, high-contrast colours, and errors announced to screen
// readers. Every value shown is escaped.
export function escapeHtml(value: string): string {
  return value.replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`);
}

const STYLE = `
*{box-sizing:border-box}
body{margin:0;font:16px/1.5 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;color:#1a1a1a;background:#f4f5f7}
main{max-width:26rem;margin:2rem auto;width:calc(100% - 2rem);padding:1.5rem;background:#fff;border:1px solid #d0d4da;border-radius:8px}
h1{font-size:1.4rem;margin:0 0 1rem}
p{margin:.5rem 0}
label{display:block;font-weight:600;margin:1rem 0 .25rem}
input[type=text],input[type=password]{width:100%;padding:.6rem;font-size:1rem;border:1px solid #5f6670;border-radius:4px;color:#1a1a1a;background:#fff}
button{font-size:1rem;padding:.65rem 1.2rem;border-radius:4px;border:1px solid #0b57d0;cursor:pointer;margin-top:1.25rem}
.primary{background:#0b57d0;color:#fff}
.secondary{background:#fff;color:#0b57d0}
:focus-visible{outline:3px solid #e37400;outline-offset:2px}
.error{background:#fdecea;border:1px solid #b3261e;color:#8c1d18;padding:.6rem;border-radius:4px}
ul{padding-left:1.2rem}
li{margin:.35rem 0}
.scope{font-family:ui-monospace,monospace;font-size:.9rem;color:#3c4043}
.actions{display:flex;gap:.75rem;flex-wrap:wrap}
`;

function page(title: string, body: string): string {
  return `<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta name="referrer" content="no-referrer">
<title>${escapeHtml(title)}</title>
<style>${STYLE}</style>
</head>
<body>
<main>
${body}
</main>
</body>
</html>`;
}

export interface LoginPage {
  action: string;
  csrf: string;
  clientName: string;
  username?: string;
  error?: string;
}

export function loginPage({ action, csrf, clientName, username = '', error }: LoginPage): string {
  return page('Sign in', `<h1>Sign in</h1>
<p>to continue to <strong>${escapeHtml(clientName)}</strong></p>
${error ? `<p class="error" role="alert" id="login-error">${escapeHtml(error)}</p>` : ''}
<form method="post" action="${escapeHtml(action)}" novalidate>
<input type="hidden" name="csrf" value="${escapeHtml(csrf)}">
<label for="username">Username</label>
<input type="text" id="username" name="username" value="${escapeHtml(username)}" autocomplete="username" autocapitalize="none" spellcheck="false" required ${error ? 'aria-describedby="login-error"' : 'autofocus'}>
<label for="password">Password</label>
<input type="password" id="password" name="password" autocomplete="current-password" required${error ? ' aria-describedby="login-error" autofocus' : ''}>
<div class="actions"><button type="submit" class="primary">Sign in</button></div>
</form>`);
}

export interface ConsentPage {
  action: string;
  csrf: string;
  clientName: string;
  username: string;
  scopes: { name: string; description: string }[];
}

export function consentPage({ action, csrf, clientName, username, scopes }: ConsentPage): string {
  const items = scopes.map((s) => `<li>${escapeHtml(s.description || s.name)} <span class="scope">(${escapeHtml(s.name)})</span></li>`).join('\n');
  const asks = scopes.length
    ? `<p><strong>${escapeHtml(clientName)}</strong> would like permission to:</p>\n<ul>\n${items}\n</ul>`
    : `<p><strong>${escapeHtml(clientName)}</strong> would like to use your account.</p>`;
  return page('Allow access', `<h1>Allow access?</h1>
${asks}
<p>You are signed in as <strong>${escapeHtml(username)}</strong>. If you allow it, you will not be asked again for these permissions.</p>
<form method="post" action="${escapeHtml(action)}">
<input type="hidden" name="csrf" value="${escapeHtml(csrf)}">
<div class="actions">
<button type="submit" name="decision" value="approve" class="primary">Allow</button>
<button type="submit" name="decision" value="deny" class="secondary">Deny</button>
</div>
</form>`);
}

export interface ErrorPage {
  title: string;
  /** What happened, in the user's terms. */
  message: string;
  /** What the user can do now. */
  next: string;
  /** The protocol error, for whoever the user asks for help. */
  details?: string;
}

export function errorPage({ title, message, next, details }: ErrorPage): string {
  return page(title, `<h1>${escapeHtml(title)}</h1>
<p class="error" role="alert">${escapeHtml(message)}</p>
<p>${escapeHtml(next)}</p>
${details ? `<p class="details">Details for the application's support: <span class="scope">${escapeHtml(details)}</span></p>` : ''}`);
}

/** The answer to go back and start again from the application: the one way out of every error page. */
export const START_AGAIN = 'Go back to the application you came from and start again from there.';

/**
 * oidc-provider's error page: a request the engine refused before any sign-in (an unknown
 * client, a redirect URI that is not registered, …) or a failure on our side. The user cannot
 * fix either here; the protocol error goes along for the application's developers.
 */
export function protocolErrorPage(error: string, description?: string): string {
  const ours = error === 'server_error' || error === 'temporarily_unavailable';
  return errorPage({
    title: ours ? 'Something went wrong' : 'Sign-in cannot continue',
    message: ours
      ? 'The sign-in service could not complete this request.'
      : 'The application that sent you here made a request this sign-in service does not accept, so you cannot sign in from this page.',
    next: ours
      ? 'Go back to the application you came from and try again in a moment.'
      : `${START_AGAIN} If this happens again, tell the application's support team and pass on the details below.`,
    details: description ? `${error}: ${description}` : error,
  });
}
