import { formatSeconds } from './report/text.js';
import type { BuildResult, BuildStatus, MatrixBuild, MatrixEvents } from './types.js';

/*
 * What a matrix run shows while it runs, on stderr. On a terminal: a line per finished build, and
 * below them a block redrawn every second (cursor up, clear line): one line per running build and
 * a summary. Otherwise (a log file, cron's mail): plain lines as builds start and end.
 */

const REDRAW_MS = 1000;
const WORDS: Record<BuildStatus, string> = { passed: 'passed', failed: 'FAILED', error: 'ERROR', timeout: 'TIMED OUT', cancelled: 'cancelled' };

/** The line a finished build gets. */
export function endLine(result: BuildResult): string {
  const took = `in ${formatSeconds(result.durationSeconds)}`;
  if (result.status === 'passed') return `passed ${result.name} ${took}`;
  const exit = result.exitCode === undefined ? '' : ` (exit ${result.exitCode})`;
  const log = result.log ? `, log: ${result.log}` : '';
  const why = result.status === 'error' && result.error ? `: ${result.error}` : '';
  return `${WORDS[result.status]} ${result.name}${exit} ${took}${log}${why}`;
}

/** The counts of a run so far: "2 passed, 1 FAILED". */
export function countLine(results: BuildResult[]): string {
  const counts = (Object.keys(WORDS) as BuildStatus[]).map((status) => [status, results.filter((result) => result.status === status).length] as const);
  return counts.filter(([, count]) => count > 0).map(([status, count]) => `${count} ${WORDS[status]}`).join(', ');
}

export class Progress implements MatrixEvents {
  private readonly running = new Map<string, { build: MatrixBuild; since: number; where?: string }>();
  private readonly done: BuildResult[] = [];
  /** Lines of the live block on the terminal now. */
  private drawn = 0;
  private readonly timer?: NodeJS.Timeout;

  constructor(
    private readonly out: NodeJS.WritableStream & { isTTY?: boolean; columns?: number },
    private readonly total: number,
    private readonly live = out.isTTY === true,
  ) {
    if (live) this.timer = setInterval(() => this.redraw(), REDRAW_MS).unref();
  }

  readonly started = (build: MatrixBuild, where?: string): void => {
    this.running.set(build.id, { build, since: Date.now(), where });
    if (this.live) this.redraw();
    else this.out.write(`started ${build.name}${where ? ` on ${where}` : ''}\n`);
  };

  readonly ended = (result: BuildResult): void => {
    this.running.delete(result.id);
    this.done.push(result);
    if (this.live) this.redraw([endLine(result)]);
    else this.out.write(`${endLine(result)}\n`);
  };

  readonly note = (line: string): void => {
    if (this.live) this.redraw([line]);
    else this.out.write(`${line}\n`);
  };

  /** Stops redrawing and clears the live block. */
  close(): void {
    clearInterval(this.timer);
    if (this.live) {
      this.out.write(`${this.drawn ? `\x1b[${this.drawn}A` : ''}\r\x1b[J`);
      this.drawn = 0;
    }
  }

  private block(): string[] {
    const now = Date.now();
    const lines = [...this.running.values()].map(({ build, since, where }) => `  running ${build.name}${where ? ` on ${where}` : ''}  ${formatSeconds((now - since) / 1000)}`);
    const counts = countLine(this.done);
    return [...lines, `[${this.done.length}/${this.total}] ${this.running.size} running${counts ? `, ${counts}` : ''}`];
  }

  /** Writes `above` for good, then the live block over the previous one; lines cut to the terminal's width, so that none wraps. */
  private redraw(above: string[] = []): void {
    const width = Math.max(20, (this.out.columns ?? 80) - 1);
    const block = this.block();
    const fit = (line: string) => (line.length > width ? `${line.slice(0, width - 1)}…` : line);
    const lines = [...above, ...block.map(fit)].map((line) => `\x1b[2K${line}\n`).join('');
    this.out.write(`${this.drawn ? `\x1b[${this.drawn}A` : ''}\r${lines}\x1b[J`);
    this.drawn = block.length;
  }
}
