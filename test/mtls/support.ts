// Mutual TLS test support: certificates made with the openssl command at test time, and HTTPS
// form posts that present (or not) a client certificate.
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { createHash, X509Certificate } from 'node:crypto';
import { readFileSync, writeFileSync } from 'node:fs';
import { request as httpsRequest } from 'node:https';
import { request as httpRequest } from 'node:http';
import { join } from 'node:path';
import { freePort, startTestServer, tempDir, type TestServer } from '../support/server.ts';

export interface Pki {
  dir: string;
  /** The CA that config clientCaFile trusts. */
  caFile: string;
  caPem: string;
  /** A CA nobody trusts. */
  rogueCaPem: string;
}

export interface Issued {
  certFile: string;
  keyFile: string;
  cert: string;
  key: string;
  /** RFC 8705 x5t#S256 of the certificate. */
  thumbprint: string;
}

function openssl(args: string[], cwd: string, input?: string): string {
  return execFileSync('openssl', args, { cwd, input, stdio: [input === undefined ? 'ignore' : 'pipe', 'pipe', 'pipe'] }).toString('utf8');
}

export function thumbprintOf(pem: string): string {
  return createHash('sha256').update(new X509Certificate(pem).raw).digest('base64url');
}

let serial = 1;

function read(dir: string, name: string): Issued {
  const certFile = join(dir, `${name}.crt`);
  const keyFile = join(dir, `${name}.key`);
  const cert = readFileSync(certFile, 'utf8');
  return { certFile, keyFile, cert, key: readFileSync(keyFile, 'utf8'), thumbprint: thumbprintOf(cert) };
}

function makeCa(dir: string, name: string, subject: string): void {
  openssl(['req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes', '-keyout', `${name}.key`, '-out', `${name}.crt`,
    '-subj', subject, '-days', '30', '-addext', 'basicConstraints=critical,CA:TRUE', '-addext', 'keyUsage=critical,keyCertSign,cRLSign'], dir);
}

export function createPki(): Pki {
  const dir = tempDir('km-mtls-');
  makeCa(dir, 'ca', '/CN=Test Client CA/O=Example');
  makeCa(dir, 'rogue-ca', '/CN=Rogue CA/O=Elsewhere');
  const caFile = join(dir, 'ca.crt');
  return { dir, caFile, caPem: readFileSync(caFile, 'utf8'), rogueCaPem: readFileSync(join(dir, 'rogue-ca.crt'), 'utf8') };
}

export interface IssueOptions {
  /** openssl -subj form, e.g. /CN=gateway/O=Example. */
  subject: string;
  /** e.g. DNS:gw.example.com */
  san?: string;
  /** 'ca' (trusted), 'rogue-ca' (untrusted) or 'self' (self-signed). */
  issuer?: 'ca' | 'rogue-ca' | 'self';
  /** openssl ca date forms (YYYYMMDDHHMMSSZ), for a certificate valid in the past. */
  startDate?: string;
  endDate?: string;
  /** More openssl extension lines for a CA-signed certificate, e.g. extendedKeyUsage=serverAuth. */
  extensions?: string[];
}

/** A key and a certificate for it, named `name` in the PKI directory. */
export function issue(pki: Pki, name: string, opts: IssueOptions): Issued {
  const { dir } = pki;
  const issuer = opts.issuer ?? 'ca';
  const ext = opts.san ? ['-addext', `subjectAltName=${opts.san}`] : [];
  if (issuer === 'self' && !opts.startDate) {
    openssl(['req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes', '-keyout', `${name}.key`, '-out', `${name}.crt`,
      '-subj', opts.subject, '-days', '30', ...ext], dir);
    return read(dir, name);
  }
  openssl(['req', '-new', '-utf8', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes', '-keyout', `${name}.key`, '-out', `${name}.csr`,
    '-subj', opts.subject, ...ext], dir);
  if (opts.startDate || opts.endDate) {
    // openssl 3.0's x509 has no -not_before: `openssl ca` sets arbitrary dates.
    const caName = issuer === 'self' ? name : issuer;
    const db = join(dir, `${name}.index`);
    writeFileSync(db, '');
    const conf = join(dir, `${name}.cnf`);
    writeFileSync(conf, [
      '[ca]', 'default_ca = ca_section',
      '[ca_section]',
      `database = ${db}`, `new_certs_dir = ${dir}`, `serial = ${join(dir, `${name}.serial`)}`,
      'default_md = sha256', 'policy = policy_any', 'copy_extensions = copy', 'unique_subject = no',
      '[policy_any]', 'commonName = supplied', 'organizationName = optional',
      '',
    ].join('\n'));
    writeFileSync(join(dir, `${name}.serial`), `${(serial++).toString(16).padStart(4, '0')}\n`);
    const signer = issuer === 'self' ? ['-selfsign', '-keyfile', `${name}.key`] : ['-cert', `${caName}.crt`, '-keyfile', `${caName}.key`];
    openssl(['ca', '-batch', '-config', conf, ...signer, '-in', `${name}.csr`, '-out', `${name}.crt`, '-notext',
      ...(opts.startDate ? ['-startdate', opts.startDate] : []), ...(opts.endDate ? ['-enddate', opts.endDate] : [])], dir);
    return read(dir, name);
  }
  const extFile = join(dir, `${name}.ext`);
  const lines = [opts.san ? `subjectAltName=${opts.san}` : 'basicConstraints=CA:FALSE', ...(opts.extensions ?? [])];
  writeFileSync(extFile, `${lines.join('\n')}\n`);
  openssl(['x509', '-req', '-in', `${name}.csr`, '-CA', `${issuer}.crt`, '-CAkey', `${issuer}.key`, '-set_serial', String(1000 + serial++),
    '-days', '30', '-sha256', '-extfile', extFile, '-out', `${name}.crt`], dir);
  return read(dir, name);
}

/** The subject as `openssl x509 -noout -subject -nameopt RFC2253` prints it. */
export function rfc2253Subject(pki: Pki, certFile: string): string {
  return openssl(['x509', '-in', certFile, '-noout', '-subject', '-nameopt', 'RFC2253'], pki.dir).trim().replace(/^subject=/, '');
}

/**
 * A keymanager instance on HTTPS (a free port, issuer https://localhost:<port>) that trusts the
 * PKI's CA for tls_client_auth, and its development certificate for callers to trust.
 */
export async function startTlsServer(databaseUrl: string, pki: Pki): Promise<{ server: TestServer; serverCa: string }> {
  const port = await freePort();
  const server = await startTestServer(databaseUrl, { tls: true, port, issuer: `https://localhost:${port}`, clientCaFile: pki.caFile });
  return { server, serverCa: readFileSync(join(server.keysDir, 'tls', 'server.crt'), 'utf8') };
}

export interface TlsReply {
  status: number;
  headers: Record<string, string | string[] | undefined>;
  text: string;
  json: any;
}

/** README "Errors": a refused client authentication is `401 invalid_client`, with a description. */
export function assertInvalidClient(res: Pick<TlsReply, 'status' | 'json' | 'text'>, what: string): void {
  assert.equal(res.status, 401, `${what}: ${res.text}`);
  assert.equal(res.json?.error, 'invalid_client', `${what}: ${res.text}`);
  assert.equal(typeof res.json?.error_description, 'string', `${what}: ${res.text}`);
}

export interface CallOptions {
  /** The server's TLS certificate, trusted by the caller. */
  ca?: string;
  /** The client certificate to present. */
  client?: { cert: string; key: string };
  headers?: Record<string, string>;
  /** The caller's address as the server sees it (any of 127/8 on loopback). */
  localAddress?: string;
}

function reply(status: number, headers: TlsReply['headers'], text: string): TlsReply {
  let json: unknown;
  try {
    json = text ? JSON.parse(text) : undefined;
  } catch {
    json = undefined;
  }
  return { status, headers, text, json };
}

/** POSTs a form over HTTPS (servername localhost) or plain HTTP, with a certificate when given. */
export function post(url: string, form: Record<string, string>, opts: CallOptions = {}): Promise<TlsReply> {
  const u = new URL(url);
  const body = new URLSearchParams(form).toString();
  const headers = { 'content-type': 'application/x-www-form-urlencoded', 'content-length': String(Buffer.byteLength(body)), ...opts.headers };
  return new Promise((resolve, reject) => {
    const done = (res: import('node:http').IncomingMessage) => {
      let text = '';
      res.setEncoding('utf8');
      res.on('data', (c: string) => (text += c)).on('end', () => resolve(reply(res.statusCode ?? 0, res.headers, text))).on('error', reject);
    };
    const req = u.protocol === 'https:'
      ? httpsRequest({
        host: '127.0.0.1',
        port: u.port,
        path: u.pathname,
        method: 'POST',
        headers,
        servername: 'localhost',
        ca: opts.ca,
        cert: opts.client?.cert,
        key: opts.client?.key,
        // A fresh connection per request: no session reuse across client certificates.
        agent: false,
        localAddress: opts.localAddress,
      }, done)
      : httpRequest({ host: u.hostname, port: u.port, path: u.pathname, method: 'POST', headers, agent: false, localAddress: opts.localAddress }, done);
    req.on('error', reject);
    req.end(body);
  });
}

export function get(url: string, opts: CallOptions = {}): Promise<TlsReply> {
  const u = new URL(url);
  return new Promise((resolve, reject) => {
    const req = httpsRequest({ host: '127.0.0.1', port: u.port, path: u.pathname, method: 'GET', servername: 'localhost', ca: opts.ca, agent: false }, (res) => {
      let text = '';
      res.setEncoding('utf8');
      res.on('data', (c: string) => (text += c)).on('end', () => resolve(reply(res.statusCode ?? 0, res.headers, text))).on('error', reject);
    });
    req.on('error', reject);
    req.end();
  });
}
