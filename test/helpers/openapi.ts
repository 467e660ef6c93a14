import { Ajv2020, type ValidateFunction } from 'ajv/dist/2020.js';
import addFormatsPlugin from 'ajv-formats';
import { buildOpenApiDocument } from './noop-deps.ts';

// Checks every response a test receives against the OpenAPI document the app builds from its
// route declarations: the status must be documented for the operation, the content type
// declared, and a JSON body must match its schema. A response that is not is a test failure.

/** A response the API gave that its OpenAPI document does not describe. */
export class UndocumentedResponse extends Error {
  override readonly name = 'UndocumentedResponse';
}

/** What a test observed: the request line and what came back. */
export interface ObservedResponse {
  method: string;
  /** Path as requested, query string allowed. */
  path: string;
  status: number;
  contentType: string | null;
  /** The body as text; undefined when the test does not read it (a stream). */
  text: string | undefined;
}

interface MediaType {
  schema?: unknown;
}
interface ResponseObject {
  content?: Record<string, MediaType>;
}
interface Operation {
  method: string;
  template: string;
  pattern: RegExp;
  params: number;
  responses: Record<string, ResponseObject>;
}

interface Compiled {
  ajv: Ajv2020;
  operations: Operation[];
}

const METHODS = ['get', 'put', 'post', 'delete', 'patch', 'head', 'options'];
const DOCUMENT_ID = 'tributary-openapi';

let compiled: Compiled | undefined;
const validators = new Map<string, ValidateFunction>();

/** `/v1/users/{userId}/events` → a pattern matching one path segment per parameter. */
function templatePattern(template: string): RegExp {
  const escaped = template
    .split(/\{[^}]+\}/)
    .map((part) => part.replace(/[.*+?^${}()|[\]\\]/g, '\\$&'))
    .join('[^/]+');
  return new RegExp(`^${escaped}$`);
}

/** Built once per test run (per worker): the document, its operations, Ajv holding it. */
function compiledDocument(): Compiled {
  if (compiled) return compiled;
  const document = buildOpenApiDocument() as unknown as {
    paths: Record<string, Record<string, { responses: Record<string, ResponseObject> }>>;
  };
  // JSON Schema 2020-12 is OpenAPI 3.1's dialect; OpenAPI's own keywords (example, …) are ignored.
  const ajv = new Ajv2020({ strict: false, allErrors: true });
  const addFormats = addFormatsPlugin as unknown as (a: Ajv2020) => void;
  addFormats(ajv);
  ajv.addSchema(document as object, DOCUMENT_ID);
  const operations: Operation[] = [];
  for (const [template, item] of Object.entries(document.paths)) {
    for (const method of METHODS) {
      const op = item[method];
      if (!op) continue;
      operations.push({
        method: method.toUpperCase(),
        template,
        pattern: templatePattern(template),
        params: (template.match(/\{/g) ?? []).length,
        responses: op.responses,
      });
    }
  }
  compiled = { ajv, operations };
  return compiled;
}

/** JSON pointer escaping (RFC 6901), then URI escaping for Ajv's `$ref`. */
const pointer = (...parts: string[]) =>
  parts.map((p) => encodeURIComponent(p.replaceAll('~', '~0').replaceAll('/', '~1'))).join('/');

function validatorFor(ref: string): ValidateFunction {
  let validate = validators.get(ref);
  if (!validate) {
    validate = compiledDocument().ajv.compile({ $ref: `${DOCUMENT_ID}#/${ref}` });
    validators.set(ref, validate);
  }
  return validate;
}

const isJson = (mediaType: string) => /^application\/(?:[\w.-]+\+)?json$/.test(mediaType);

/** The operation answering `method path`: the most specific template (fewest parameters). */
export function findOperation(method: string, path: string): Operation | undefined {
  const pathname = path.split('?')[0] ?? path;
  const wanted = method.toUpperCase() === 'HEAD' ? 'GET' : method.toUpperCase();
  return compiledDocument()
    .operations.filter((op) => op.method === wanted && op.pattern.test(pathname))
    .sort((a, b) => a.params - b.params)[0];
}

function fail(r: ObservedResponse, why: string): never {
  const excerpt = r.text === undefined ? '(not read)' : r.text.slice(0, 300);
  throw new UndocumentedResponse(`${r.method} ${r.path} → ${r.status}: ${why}\n  body: ${excerpt}`);
}

function checkJson(r: ObservedResponse, ref: string): void {
  if (r.text === undefined) return;
  let body: unknown;
  try {
    body = JSON.parse(r.text);
  } catch {
    fail(r, 'the body is not JSON although the content type says so');
  }
  const validate = validatorFor(ref);
  if (!validate(body))
    fail(r, `the body does not match ${ref}: ${compiledDocument().ajv.errorsText(validate.errors)}`);
}

/**
 * Throws {@link UndocumentedResponse} unless the document describes this response: its
 * status for the operation, its content type, and (JSON) its body. A path no operation
 * serves may only be refused, with the contract's error body.
 */
export function checkResponse(r: ObservedResponse): void {
  const op = findOperation(r.method, r.path);
  const mediaType = (r.contentType ?? '').split(';')[0]?.trim().toLowerCase() ?? '';
  if (!op) {
    if (r.status < 400) fail(r, 'no operation is documented for this method and path');
    if (isJson(mediaType)) checkJson(r, pointer('components', 'schemas', 'Error'));
    else fail(r, 'a refusal without the contract error body');
    return;
  }
  const status = String(r.status);
  const response = op.responses[status];
  if (!response) fail(r, `status ${status} is not documented for ${op.method} ${op.template}`);
  const content = response.content;
  if (!content) {
    if (r.text) fail(r, 'a body where the document says there is none');
    return;
  }
  const declared = Object.keys(content).find((t) => t === mediaType);
  if (!declared) fail(r, `content type "${mediaType}" is not one of ${Object.keys(content).join(', ')}`);
  if (isJson(declared)) {
    checkJson(
      r,
      pointer(
        'paths',
        op.template,
        op.method.toLowerCase(),
        'responses',
        status,
        'content',
        declared,
        'schema',
      ),
    );
  }
}

/**
 * `fetch` for a call to the API whose response is then checked: a JSON body is read from a
 * clone (the caller still has the body), other bodies (streams, text) are left unread.
 */
export async function documentedFetch(url: string, init: RequestInit = {}): Promise<Response> {
  const res = await fetch(url, init);
  const { pathname, search } = new URL(url);
  const contentType = res.headers.get('content-type');
  const mediaType = (contentType ?? '').split(';')[0]?.trim().toLowerCase() ?? '';
  const text = isJson(mediaType) || res.status === 204 ? await res.clone().text() : undefined;
  checkResponse({
    method: init.method ?? 'GET',
    path: `${pathname}${search}`,
    status: res.status,
    contentType,
    text,
  });
  return res;
}
