import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import { Cluster, Redis } from 'ioredis';
import { freePort, PrivateRedis } from './private-servers.ts';
import { sleep } from './wait.ts';

const run = promisify(execFile);

export interface RedisClusterOptions {
  /** Primaries; the hash slots are split evenly between them. */
  primaries?: number;
  /** Replicas of each primary (0: none, so nothing can fail over). */
  replicasPerPrimary?: number;
  /** `cluster-node-timeout`: how long a primary may be unreachable before its replica takes over. */
  nodeTimeoutMs?: number;
}

/** Owner of a hash slot range, from CLUSTER SLOTS. */
interface SlotRange {
  from: number;
  to: number;
  port: number;
}

/**
 * A throwaway Redis Cluster on loopback: `redis-server` processes in cluster mode (the apt
 * binary, no persistence, temp directories, free ports for clients and for the cluster
 * bus), joined with `redis-cli --cluster create`. Ready once every node says
 * `cluster_state:ok`.
 */
export class PrivateRedisCluster {
  readonly nodes: PrivateRedis[];

  private constructor(nodes: PrivateRedis[]) {
    this.nodes = nodes;
  }

  static async start(opts: RedisClusterOptions = {}): Promise<PrivateRedisCluster> {
    const primaries = opts.primaries ?? 3;
    const replicas = opts.replicasPerPrimary ?? 0;
    const count = primaries * (1 + replicas);
    const ports = await distinctFreePorts(2 * count);
    const nodes: PrivateRedis[] = [];
    const cluster = new PrivateRedisCluster(nodes);
    try {
      for (let i = 0; i < count; i++) {
        const node = new PrivateRedis(ports[2 * i] as number, {
          appendonly: false,
          args: [
            '--cluster-enabled',
            'yes',
            // Relative to the node's --dir.
            '--cluster-config-file',
            'nodes.conf',
            // The bus port is port + 10000 unless set, which may not be free (or not exist).
            '--cluster-port',
            String(ports[2 * i + 1]),
            '--cluster-node-timeout',
            String(opts.nodeTimeoutMs ?? 2_000),
          ],
        });
        nodes.push(node);
        node.start();
      }
      await run('redis-cli', [
        '--cluster',
        'create',
        ...nodes.map((n) => `127.0.0.1:${n.port}`),
        '--cluster-replicas',
        String(replicas),
        '--cluster-yes',
      ]);
      await cluster.waitUntilOk(30_000, replicas);
      return cluster;
    } catch (err) {
      cluster.destroy();
      throw err;
    }
  }

  /** REDIS_CLUSTER_NODES for Tributary: every node as a seed. */
  get seeds(): string {
    return this.nodes.map((n) => `127.0.0.1:${n.port}`).join(',');
  }

  /** A cluster client for the test's own checks. */
  client(): Cluster {
    const client = new Cluster(
      this.nodes.map((n) => ({ host: '127.0.0.1', port: n.port })),
      { redisOptions: { maxRetriesPerRequest: 1 } },
    );
    client.on('error', () => {});
    return client;
  }

  /**
   * Waits until every node that answers reports `cluster_state:ok`, and every primary has
   * `replicas` replicas attached.
   */
  async waitUntilOk(timeoutMs = 20_000, replicas = 0): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const states = await Promise.all(
        this.nodes.map((n) => this.#command(n.port, 'CLUSTER', 'INFO').catch(() => undefined)),
      );
      const answered = states.filter((s) => s !== undefined).map(String);
      const ok = answered.length > 0 && answered.every((s) => s.includes('cluster_state:ok'));
      if (ok && (replicas === 0 || (await this.#replicasAttached(replicas)))) return;
      if (Date.now() > deadline) {
        throw new Error(`cluster not ok within ${timeoutMs} ms: ${answered.join(' | ')}`);
      }
      await sleep(100);
    }
  }

  async #replicasAttached(replicas: number): Promise<boolean> {
    for (const port of await this.primaryPorts()) {
      const role = (await this.#command(port, 'ROLE').catch(() => [])) as unknown[];
      if (!Array.isArray(role[2]) || role[2].length < replicas) return false;
    }
    return true;
  }

  /** Port of the primary that serves `key` now (CLUSTER KEYSLOT, then CLUSTER SLOTS). */
  async ownerOf(key: string): Promise<number> {
    const slot = Number(await this.#onAnyNode('CLUSTER', 'KEYSLOT', key));
    const range = (await this.slotRanges()).find((r) => slot >= r.from && slot <= r.to);
    if (!range) throw new Error(`no node serves slot ${slot}`);
    return range.port;
  }

  /** Slot ranges and their primaries, as the first node that answers sees them. */
  async slotRanges(): Promise<SlotRange[]> {
    const raw = (await this.#onAnyNode('CLUSTER', 'SLOTS')) as [number, number, [string, number]][];
    return raw.map(([from, to, [, owner]]) => ({ from, to, port: Number(owner) }));
  }

  /** The node on `port`. */
  node(port: number): PrivateRedis {
    const node = this.nodes.find((n) => n.port === port);
    if (!node) throw new Error(`no node on port ${port}`);
    return node;
  }

  /** `master` or `slave` (ROLE), or undefined while the node does not answer. */
  async role(port: number): Promise<string | undefined> {
    const reply = (await this.#command(port, 'ROLE').catch(() => undefined)) as unknown[] | undefined;
    return reply ? String(reply[0]) : undefined;
  }

  /** Ports of the primaries. */
  async primaryPorts(): Promise<number[]> {
    return [...new Set((await this.slotRanges()).map((r) => r.port))].sort((a, b) => a - b);
  }

  /** Runs one command on the first node that answers. */
  async #onAnyNode(...args: string[]): Promise<unknown> {
    let last: unknown;
    for (const n of this.nodes) {
      try {
        return await this.#command(n.port, ...args);
      } catch (err) {
        last = err;
      }
    }
    throw last;
  }

  /** Runs one command on one node (a plain connection: no redirection). */
  async #command(port: number, ...args: string[]): Promise<unknown> {
    const conn = new Redis({
      host: '127.0.0.1',
      port,
      lazyConnect: true,
      maxRetriesPerRequest: 0,
      retryStrategy: () => null,
    });
    conn.on('error', () => {});
    try {
      await conn.connect();
      return await conn.call(args[0] as string, ...args.slice(1));
    } finally {
      conn.disconnect();
    }
  }

  destroy(): void {
    for (const node of this.nodes) node.destroy();
  }
}

/** `n` free loopback ports, no two alike. */
async function distinctFreePorts(n: number): Promise<number[]> {
  const ports = new Set<number>();
  while (ports.size < n) ports.add(await freePort());
  return [...ports];
}
