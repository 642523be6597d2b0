// Where the client certificate of a request comes from, and whether it is trusted (RFC 8705).
// Directly: the TLS handshake of our own listener (which asks for a certificate without
// requiring one). Behind a TLS-terminating proxy: a header, believed only when the request
// comes from a configured proxy address.
import { X509Certificate } from 'node:crypto';
import type { TLSSocket } from 'node:tls';
import type { IncomingMessage } from 'node:http';
import type { Logger } from 'pino';
import type { Config } from '../config/index.ts';
import { describeX509, pemCertificateBlocks } from '../store/certificates.ts';
import { subjectMatches } from '../store/distinguished-name.ts';
import { timesSent } from '../http/input-guard.ts';

interface Presented {
  cert: X509Certificate;
  /** The TLS layer validated the chain against our trust anchors. */
  handshakeAuthorized?: boolean;
}

const PRESENTED = 'km:clientCertificate';

/** What of a koa context these checks use: oidc-provider's and our own routes' both fit. */
export interface RequestContext {
  req: IncomingMessage;
  state: Record<string, unknown>;
  get(field: string): string;
}

function normalizeAddress(address: string | undefined): string {
  return (address ?? '').replace(/^::ffff:/, '');
}

export interface MtlsDeps {
  config: Config;
  logger: Logger;
  /** Trust anchors for tls_client_auth (PEM bundle, split into certificates). */
  anchors: X509Certificate[];
}

export function splitPemBundle(bundle: string): X509Certificate[] {
  return pemCertificateBlocks(bundle).map((pem) => new X509Certificate(pem));
}

function presented({ config, logger, anchors }: MtlsDeps, ctx: RequestContext): Presented | undefined {
  const state = ctx.state as Record<string, Presented | null | undefined>;
  if (state[PRESENTED] !== undefined) return state[PRESENTED] ?? undefined;
  let found: Presented | undefined;
  const socket = ctx.req.socket as Partial<TLSSocket>;
  const peer = typeof socket.getPeerCertificate === 'function' ? socket.getPeerCertificate(false) : undefined;
  if (peer?.raw) {
    // Without anchors of our own the handshake checks against Node's public roots: not ours.
    found = { cert: new X509Certificate(peer.raw), handshakeAuthorized: socket.authorized === true && anchors.length > 0 };
  } else if (config.clientCertHeader) {
    const header = ctx.get(config.clientCertHeader);
    const from = normalizeAddress(ctx.req.socket.remoteAddress);
    if (header && !config.trustedProxies.includes(from)) {
      logger.warn({ event: 'mtls.untrusted_header', source: from, header: config.clientCertHeader }, 'client certificate header from an address that is not a trusted proxy: ignored');
    } else if (header) {
      // A proxy that adds its header after one the caller sent makes two, which Node joins;
      // X509Certificate would read the first — the caller's, anyone's public certificate.
      // Any PEM block counts: OpenSSL reads "X509 CERTIFICATE" and "TRUSTED CERTIFICATE" too.
      const pem = decodedOrUndefined(header)?.trim();
      if (timesSent(ctx.req.rawHeaders, config.clientCertHeader) > 1 || (pem?.split('-----BEGIN ').length ?? 0) > 2) {
        logger.warn({ event: 'mtls.repeated_header', source: from }, 'client certificate header came more than once or holds more than one PEM block: ignored');
      } else {
        try {
          if (pem === undefined || !ONE_PEM_CERTIFICATE.test(pem)) throw new Error('not one URL-encoded PEM certificate');
          found = { cert: new X509Certificate(pem) };
        } catch {
          logger.warn({ event: 'mtls.bad_header', source: from }, 'client certificate header is not a URL-encoded PEM certificate: ignored');
        }
      }
    }
  }
  state[PRESENTED] = found ?? null;
  return found;
}

/** Exactly one block labelled CERTIFICATE and nothing around it. */
const ONE_PEM_CERTIFICATE = /^-----BEGIN CERTIFICATE-----[A-Za-z0-9+/=\s]+-----END CERTIFICATE-----$/;

/** The header's text URL-decoded; undefined when it is not valid percent-encoding. */
function decodedOrUndefined(value: string): string | undefined {
  try {
    return decodeURIComponent(value);
  } catch {
    return undefined;
  }
}

const CLIENT_AUTH = '1.3.6.1.5.5.7.3.2';
const ANY_EXTENDED_KEY_USAGE = '2.5.29.37.0';

/**
 * A certificate that came through the proxy header: the checks the TLS handshake makes of a
 * client certificate, since a proxy may pass on what it did not verify. Issued by an anchor,
 * valid now, not a CA (an anchor's own certificate is not a client's), and meant for client
 * authentication when it says what it is meant for (a server-only certificate of the same CA
 * is refused, as the handshake refuses it).
 */
function chainsToAnchor(cert: X509Certificate, anchors: X509Certificate[], now = Date.now()): boolean {
  const valid = (c: X509Certificate) => Date.parse(c.validFrom) <= now && now < Date.parse(c.validTo);
  // Node names the extended key usage extension keyUsage; undefined when the certificate has none.
  const purposes = cert.keyUsage;
  if (cert.ca || (purposes && !purposes.includes(CLIENT_AUTH) && !purposes.includes(ANY_EXTENDED_KEY_USAGE))) return false;
  return valid(cert) && anchors.some((ca) => valid(ca) && cert.checkIssued(ca) && cert.verify(ca.publicKey));
}

/** The features.mTLS helpers of oidc-provider. */
export function mtlsFeature(deps: MtlsDeps) {
  return {
    getCertificate: (ctx: RequestContext) => presented(deps, ctx)?.cert,
    certificateAuthorized: (ctx: RequestContext) => {
      const p = presented(deps, ctx);
      if (!p) return false;
      return p.handshakeAuthorized ?? chainsToAnchor(p.cert, deps.anchors);
    },
    certificateSubjectMatches: (ctx: RequestContext, property: string, expected: string) => {
      const p = presented(deps, ctx);
      if (!p) return false;
      // Compared as names: the registered DN may be written in either order (distinguished-name.ts).
      if (property === 'tls_client_auth_subject_dn') return subjectMatches(p.cert.subject, expected);
      if (property === 'tls_client_auth_san_dns') return describeX509(p.cert).sanDns.includes(expected);
      return false;
    },
  };
}
