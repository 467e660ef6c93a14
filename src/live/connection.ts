import type { RedisLike } from '../buffer/redis-client.ts';

/**
 * `connection` once it is ready: the clients fail fast rather than queue commands, so a
 * connection made a moment ago is waited for (at most `ms`) before its first command.
 */
export async function whenReady(connection: RedisLike, ms = 5_000): Promise<RedisLike> {
  if (connection.status === 'ready') return connection;
  await new Promise<void>((resolve, reject) => {
    const onReady = () => {
      clearTimeout(timer);
      resolve();
    };
    const timer = setTimeout(() => {
      connection.off('ready', onReady);
      reject(new Error('the live view’s Redis connection is not ready'));
    }, ms);
    connection.once('ready', onReady);
  });
  return connection;
}
