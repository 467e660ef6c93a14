import { execFileSync } from 'node:child_process';
import { readFileSync } from 'node:fs';

/** Clock ticks per second of /proc/<pid>/stat times. */
const CLK_TCK = (() => {
  try {
    const n = Number(execFileSync('getconf', ['CLK_TCK'], { encoding: 'utf8' }).trim());
    return Number.isFinite(n) && n > 0 ? n : 100;
  } catch {
    return 100;
  }
})();

/** CPU seconds (user + system) a process has used so far; 0 once it is gone. */
export function cpuSeconds(pid: number): number {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    // Fields after the command name, which is in parentheses and may hold spaces.
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    // utime and stime are fields 14 and 15 of the line; here field n is at index n - 3.
    return (Number(fields[11]) + Number(fields[12])) / CLK_TCK;
  } catch {
    return 0;
  }
}

/** Resident set size of a process in bytes; 0 once it is gone. */
export function rssBytes(pid: number): number {
  try {
    const match = /^VmRSS:\s+(\d+) kB/m.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
    return match?.[1] ? Number(match[1]) * 1024 : 0;
  } catch {
    return 0;
  }
}

/** Busy and total jiffies of the whole machine, from /proc/stat. */
function hostTicks(): { busy: number; total: number } {
  const line = readFileSync('/proc/stat', 'utf8').split('\n')[0] ?? '';
  const values = line.trim().split(/\s+/).slice(1).map(Number);
  const total = values.reduce((a, b) => a + b, 0);
  // idle + iowait
  const idle = (values[3] ?? 0) + (values[4] ?? 0);
  return { busy: total - idle, total };
}

/** CPU use of some processes (and of the whole host) accumulated over measured windows. */
export class CpuMeter {
  readonly #pids: Record<string, number>;
  /** CPU seconds last sampled per process in the open window: a child that exits keeps its figure. */
  #lastCpu: Record<string, number> = {};
  #wallS = 0;
  readonly #cpuS: Record<string, number> = {};
  #hostBusy = 0;
  #hostTotal = 0;
  #open: { t: number; cpu: Record<string, number>; host: { busy: number; total: number } } | undefined;
  readonly #peakRss: Record<string, number> = {};
  readonly #startRss: Record<string, number> = {};
  #rssTimer: NodeJS.Timeout | undefined;

  /** Create it while the processes are idle: their RSS then is kept as the starting point. */
  constructor(pids: Record<string, number>) {
    this.#pids = pids;
    for (const name of Object.keys(pids)) {
      this.#cpuS[name] = 0;
      this.#peakRss[name] = 0;
      this.#startRss[name] = rssBytes(pids[name] ?? 0);
    }
  }

  /** Starts a measured window; RSS is sampled every 100 ms until {@link stop}. */
  start(): void {
    const cpu: Record<string, number> = {};
    for (const [name, pid] of Object.entries(this.#pids)) cpu[name] = cpuSeconds(pid);
    this.#open = { t: performance.now(), cpu, host: hostTicks() };
    this.#lastCpu = { ...cpu };
    this.#sampleRss();
    this.#rssTimer = setInterval(() => this.#sampleRss(), 100);
  }

  stop(): void {
    const open = this.#open;
    if (!open) return;
    clearInterval(this.#rssTimer);
    this.#sampleRss();
    this.#wallS += (performance.now() - open.t) / 1000;
    for (const [name, pid] of Object.entries(this.#pids)) {
      const now = Math.max(cpuSeconds(pid), this.#lastCpu[name] ?? 0);
      this.#cpuS[name] = (this.#cpuS[name] ?? 0) + now - (open.cpu[name] ?? 0);
    }
    const host = hostTicks();
    this.#hostBusy += host.busy - open.host.busy;
    this.#hostTotal += host.total - open.host.total;
    this.#open = undefined;
  }

  #sampleRss(): void {
    for (const [name, pid] of Object.entries(this.#pids)) {
      this.#peakRss[name] = Math.max(this.#peakRss[name] ?? 0, rssBytes(pid));
      if (this.#open) this.#lastCpu[name] = Math.max(this.#lastCpu[name] ?? 0, cpuSeconds(pid));
    }
  }

  /**
   * Points `name` at a process started inside the open window (a load generator run): its
   * CPU counts from zero, and is sampled while it runs, so it still counts once it exited.
   */
  setPid(name: string, pid: number): void {
    this.#pids[name] = pid;
    if (this.#open) {
      this.#open.cpu[name] = 0;
      this.#lastCpu[name] = 0;
    }
  }

  /** Whether the meter watches a process of that name. */
  has(name: string): boolean {
    return name in this.#pids;
  }

  /** Measured wall time, seconds. */
  get wallS(): number {
    return this.#wallS;
  }

  /** CPU seconds the named process used in the measured windows. */
  cpuS(name: string): number {
    return this.#cpuS[name] ?? 0;
  }

  /** Percent of one core the named process used in the measured windows. */
  cpuPercent(name: string): number {
    return this.#wallS > 0 ? (100 * this.cpuS(name)) / this.#wallS : 0;
  }

  /** RSS of the named process when the meter was created, MB. */
  startRssMb(name: string): number {
    return (this.#startRss[name] ?? 0) / 1_048_576;
  }

  /** Highest RSS sampled for the named process, MB. */
  peakRssMb(name: string): number {
    return (this.#peakRss[name] ?? 0) / 1_048_576;
  }

  /** Busy share of all cores of the host in the measured windows, percent of one core. */
  hostCpuPercent(cores: number): number {
    return this.#hostTotal > 0 ? (100 * cores * this.#hostBusy) / this.#hostTotal : 0;
  }
}
