// Client certificates for mutual TLS (RFC 8705). Any change to the table is announced to every
// instance (trigger client_certificates_changed), which drops the client rows it cached.
import { createHash, X509Certificate } from 'node:crypto';
import { sql } from 'kysely';
import type { Db } from '../db/database.ts';
import type { ClientCertificatesTable } from '../db/types.ts';
import type { Selectable } from 'kysely';

export type CertificateRow = Selectable<ClientCertificatesTable>;

export class CertificateInputError extends Error {}
/** The certificate or alias is already registered. */
export class CertificateConflictError extends CertificateInputError {}
/** The client named does not exist. */
export class CertificateClientNotFoundError extends CertificateInputError {}

export interface ParsedCertificate {
  pem: string;
  thumbprint: string;
  subjectDn: string;
  issuerDn: string;
  sanDns: string[];
  sanUri: string[];
  sanIp: string[];
  sanEmail: string[];
  notBefore: Date;
  notAfter: Date;
}

/** RFC 8705 §3.1 x5t#S256: base64url SHA-256 of the DER certificate. */
export function certificateThumbprint(cert: X509Certificate): string {
  return createHash('sha256').update(cert.raw).digest('base64url');
}

/** Node writes DNs one attribute per line, most significant first; we keep RFC 4514 order. */
export function distinguishedName(multiline: string): string {
  return multiline.split('\n').filter(Boolean).reverse().join(',');
}

function subjectAltNames(cert: X509Certificate) {
  const out = { dns: [] as string[], uri: [] as string[], ip: [] as string[], email: [] as string[] };
  for (const part of (cert.subjectAltName ?? '').split(', ')) {
    const colon = part.indexOf(':');
    if (colon < 0) continue;
    const kind = part.slice(0, colon);
    const value = part.slice(colon + 1).replace(/^"|"$/g, '');
    if (kind === 'DNS') out.dns.push(value);
    else if (kind === 'URI') out.uri.push(value);
    else if (kind === 'IP Address') out.ip.push(value);
    else if (kind === 'email') out.email.push(value);
  }
  return out;
}

export function describeX509(cert: X509Certificate): ParsedCertificate {
  const sans = subjectAltNames(cert);
  return {
    pem: cert.toString(),
    thumbprint: certificateThumbprint(cert),
    subjectDn: distinguishedName(cert.subject),
    issuerDn: distinguishedName(cert.issuer),
    sanDns: sans.dns,
    sanUri: sans.uri,
    sanIp: sans.ip,
    sanEmail: sans.email,
    notBefore: new Date(cert.validFrom),
    notAfter: new Date(cert.validTo),
  };
}

/** The PEM certificate blocks of a file or bundle, in order. */
export function pemCertificateBlocks(text: string): string[] {
  return text.match(/-----BEGIN CERTIFICATE-----[\s\S]+?-----END CERTIFICATE-----/g) ?? [];
}

/** Exactly one certificate and nothing secret: a key, a chain or anything else is refused. */
export function singleCertificate(text: string): X509Certificate {
  if (/PRIVATE KEY-----/.test(text)) throw new CertificateInputError('this is a private key, not a certificate; give the certificate only');
  const blocks = pemCertificateBlocks(text);
  if (blocks.length === 0) throw new CertificateInputError('no PEM certificate found (expected -----BEGIN CERTIFICATE-----)');
  if (blocks.length > 1) throw new CertificateInputError(`found ${blocks.length} certificates; give the certificate alone, not a chain`);
  try {
    return new X509Certificate(blocks[0]!);
  } catch {
    throw new CertificateInputError('the PEM block is not a valid X.509 certificate');
  }
}

/** One client certificate, valid now. */
export function parseCertificatePem(text: string, now = new Date()): ParsedCertificate {
  const parsed = describeX509(singleCertificate(text));
  if (parsed.notBefore > now) throw new CertificateInputError(`the certificate is not valid before ${parsed.notBefore.toISOString()}`);
  if (parsed.notAfter <= now) throw new CertificateInputError(`the certificate expired at ${parsed.notAfter.toISOString()}`);
  return parsed;
}

function isUniqueViolation(err: unknown): boolean {
  return (err as { code?: string }).code === '23505';
}

export async function addCertificate(db: Db, clientId: string, alias: string, cert: ParsedCertificate, tier?: string): Promise<CertificateRow> {
  if (!/^[A-Za-z0-9_.:-]{1,100}$/.test(alias)) throw new CertificateInputError('alias must be 1-100 of A-Z a-z 0-9 _ . : -');
  const client = await db.selectFrom('clients').select('client_id').where('client_id', '=', clientId).executeTakeFirst();
  if (!client) throw new CertificateClientNotFoundError(`no client ${clientId}`);
  try {
    return await db.insertInto('client_certificates').values({
      client_id: clientId,
      alias,
      pem: cert.pem,
      thumbprint_sha256: cert.thumbprint,
      subject_dn: cert.subjectDn,
      issuer_dn: cert.issuerDn,
      san_dns: cert.sanDns,
      san_uri: cert.sanUri,
      san_ip: cert.sanIp,
      san_email: cert.sanEmail,
      not_before: cert.notBefore,
      not_after: cert.notAfter,
      tier: tier ?? null,
    }).returningAll().executeTakeFirstOrThrow();
  } catch (err) {
    if (isUniqueViolation(err)) {
      throw new CertificateConflictError((err as { constraint?: string }).constraint?.includes('thumbprint')
        ? 'this certificate is already registered (a certificate belongs to one client only)'
        : `client ${clientId} already has a certificate with alias "${alias}"`);
    }
    throw err;
  }
}

export async function listCertificates(db: Db, { clientId, expiringWithinDays }: { clientId?: string; expiringWithinDays?: number } = {}): Promise<CertificateRow[]> {
  let q = db.selectFrom('client_certificates').selectAll().where('removed_at', 'is', null);
  if (clientId) q = q.where('client_id', '=', clientId);
  if (expiringWithinDays !== undefined) q = q.where('not_after', '<', sql<Date>`now() + make_interval(days => ${expiringWithinDays})`);
  return q.orderBy('client_id').orderBy('alias').execute();
}

export async function findCertificate(db: Db, clientId: string, alias: string): Promise<CertificateRow | undefined> {
  return db.selectFrom('client_certificates').selectAll()
    .where('client_id', '=', clientId).where('alias', '=', alias).where('removed_at', 'is', null).executeTakeFirst();
}

/** Marks the certificate removed (kept for audit); it stops authenticating at once. */
export async function removeCertificate(db: Db, clientId: string, alias: string): Promise<boolean> {
  const r = await db.updateTable('client_certificates').set({ removed_at: sql`now()` })
    .where('client_id', '=', clientId).where('alias', '=', alias).where('removed_at', 'is', null).executeTakeFirst();
  return r.numUpdatedRows > 0n;
}

/**
 * A client's certificates that are not removed and not expired, each with whether it is valid
 * now (by the database's clock): one not valid yet becomes usable at its not_before, which is
 * how long a cache of the usable ones may be kept (src/oauth/client-directory.ts).
 */
export async function unexpiredCertificatesOfClient(db: Db, clientId: string): Promise<(CertificateRow & { valid_now: boolean })[]> {
  return db.selectFrom('client_certificates').selectAll()
    .select(sql<boolean>`not_before <= now()`.as('valid_now'))
    .where('client_id', '=', clientId).where('removed_at', 'is', null)
    .where('not_after', '>', sql<Date>`now()`)
    .orderBy('alias').execute();
}

export async function findActiveCertificateByThumbprint(db: Db, thumbprint: string): Promise<CertificateRow | undefined> {
  return db.selectFrom('client_certificates').selectAll()
    .where('thumbprint_sha256', '=', thumbprint).where('removed_at', 'is', null).executeTakeFirst();
}

export function describeCertificate(row: CertificateRow) {
  return {
    client_id: row.client_id,
    alias: row.alias,
    thumbprint_sha256: row.thumbprint_sha256,
    subject_dn: row.subject_dn,
    issuer_dn: row.issuer_dn,
    san_dns: row.san_dns,
    san_uri: row.san_uri,
    san_ip: row.san_ip,
    san_email: row.san_email,
    not_before: row.not_before.toISOString(),
    not_after: row.not_after.toISOString(),
    tier: row.tier,
    created_at: row.created_at.toISOString(),
  };
}

/**
 * One page of the certificates `listCertificates` selects, in (client_id, alias) order, starting
 * after the given pair; with the total of the selection.
 */
export async function listCertificatesPage(
  db: Db,
  { clientId, expiringWithinDays, limit, after }: { clientId?: string; expiringWithinDays?: number; limit: number; after?: [string, string] },
): Promise<{ rows: CertificateRow[]; total: number; more: boolean }> {
  let selection = db.selectFrom('client_certificates').where('removed_at', 'is', null);
  if (clientId !== undefined) selection = selection.where('client_id', '=', clientId);
  if (expiringWithinDays !== undefined) selection = selection.where('not_after', '<', sql<Date>`now() + make_interval(days => ${expiringWithinDays})`);
  let page = selection.selectAll().orderBy('client_id').orderBy('alias').limit(limit + 1);
  if (after) page = page.where(sql<boolean>`(client_id, alias) > (${after[0]}, ${after[1]})`);
  const [rows, count] = await Promise.all([
    page.execute(),
    selection.select((e) => e.fn.countAll<string>().as('n')).executeTakeFirstOrThrow(),
  ]);
  return { rows: rows.slice(0, limit), total: Number(count.n), more: rows.length > limit };
}

/** When each registered (not removed) certificate expires: for the expiry gauge of the metrics. */
export async function listCertificateExpiries(db: Db): Promise<{ client_id: string; thumbprint_sha256: string; not_after: Date }[]> {
  return db.selectFrom('client_certificates').select(['client_id', 'thumbprint_sha256', 'not_after'])
    .where('removed_at', 'is', null).orderBy('client_id').orderBy('alias').execute();
}
