import type { MiddlewareHandler } from 'hono';
import { secureHeaders } from 'hono/secure-headers';

/**
 * Hono's secure headers with an API's defaults (after OWASP's REST cheat sheet): no
 * sniffing, no framing, no referrer, nothing loaded from a response (`default-src 'none'`
 * costs nothing when no response is a page), not readable cross-origin without CORS, and
 * HSTS only when this process itself serves TLS (behind a terminating proxy, the proxy
 * sends it). The headers that only matter to HTML documents are left out: every
 * response pays for each header, ingest included.
 */
export function apiSecureHeaders(tls: boolean): MiddlewareHandler {
  return secureHeaders({
    strictTransportSecurity: tls,
    xContentTypeOptions: true,
    xFrameOptions: 'DENY',
    referrerPolicy: 'no-referrer',
    contentSecurityPolicy: { defaultSrc: ["'none'"], frameAncestors: ["'none'"] },
    crossOriginResourcePolicy: true,
    crossOriginOpenerPolicy: false,
    originAgentCluster: false,
    xDnsPrefetchControl: false,
    xDownloadOptions: false,
    xPermittedCrossDomainPolicies: false,
    xXssProtection: false,
    overwrite: false,
  });
}

/**
 * The headers {@link apiSecureHeaders} puts on every response, as a list, for the ingest
 * fast path (`fast-ingest.ts`), which answers without Hono; a test holds the two equal.
 */
export function apiSecurityHeaderList(tls: boolean): [string, string][] {
  return [
    ['Content-Security-Policy', "default-src 'none'; frame-ancestors 'none'"],
    ['Cross-Origin-Resource-Policy', 'same-origin'],
    ['Referrer-Policy', 'no-referrer'],
    ...(tls
      ? ([['Strict-Transport-Security', 'max-age=15552000; includeSubDomains']] as [string, string][])
      : []),
    ['X-Content-Type-Options', 'nosniff'],
    ['X-Frame-Options', 'DENY'],
  ];
}
