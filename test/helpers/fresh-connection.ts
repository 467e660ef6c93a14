import { request } from 'node:http';
import { ADMIN_KEY } from './env.ts';

/**
 * POSTs JSON on a connection of its own (`Connection: close`), so that under
 * API_PROCESSES > 1 the primary hands each request to the next process in turn. Resolves
 * with the status once the response has been read.
 */
export function postOnNewConnection(
  url: string,
  body: unknown,
  headers: Record<string, string> = {},
): Promise<number> {
  return new Promise((resolve, reject) => {
    const payload = JSON.stringify(body);
    const req = request(
      url,
      {
        method: 'POST',
        agent: false,
        headers: {
          'content-type': 'application/json',
          'x-api-key': ADMIN_KEY,
          connection: 'close',
          ...headers,
        },
      },
      (res) => {
        res.resume();
        res.on('end', () => resolve(res.statusCode ?? 0));
      },
    );
    req.on('error', reject);
    req.end(payload);
  });
}
