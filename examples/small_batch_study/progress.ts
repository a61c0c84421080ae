/**
 * A progress line per training run on stderr: a redrawn bar with ETA on a
 * terminal, a few plain lines otherwise (logs, CI, pipes).
 */
export class Progress {
  private readonly start = Date.now();
  private lastDraw = 0;
  private nextQuarter = 1;
  /** Exponential moving average of the loss (weight 0.98 on the past), debiased; one step's loss is noisy. */
  private lossAverage = 0;
  private lossWeight = 0;

  constructor(private readonly label: string, private readonly total: number,
      private readonly stream: NodeJS.WriteStream = process.stderr) {}

  update(done: number, loss: number): void {
    this.lossAverage = 0.98 * this.lossAverage + 0.02 * loss;
    this.lossWeight = 0.98 * this.lossWeight + 0.02;
    const now = Date.now();
    const elapsed = (now - this.start) / 1000;
    const eta = done > 0 ? elapsed / done * (this.total - done) : NaN;
    const stats = `${done}/${this.total} steps  loss ${(this.lossAverage / this.lossWeight).toFixed(3)}  ` +
        `${(elapsed * 1000 / Math.max(done, 1)).toFixed(1)} ms/step`;
    if (this.stream.isTTY) {
      if (done < this.total && now - this.lastDraw < 100) return;
      this.lastDraw = now;
      const width = 24;
      const filled = Math.round(width * done / this.total);
      const bar = '#'.repeat(filled) + '-'.repeat(width - filled);
      const tail = done < this.total ? `ETA ${formatSeconds(eta)}` : `took ${formatSeconds(elapsed)}`;
      this.stream.write(`\r\x1b[K${this.label} [${bar}] ${stats}  ${tail}`);
      if (done === this.total) this.stream.write('\n');
    } else if (done * 4 >= this.nextQuarter * this.total) {
      while (done * 4 >= this.nextQuarter * this.total) this.nextQuarter++;
      const tail = done < this.total ? `ETA ${formatSeconds(eta)}` : `took ${formatSeconds(elapsed)}`;
      this.stream.write(`${this.label}: ${Math.floor(100 * done / this.total)}% ${stats}  ${tail}\n`);
    }
  }
}

function formatSeconds(s: number): string {
  if (!Number.isFinite(s)) return '?';
  return s < 60 ? `${s.toFixed(0)}s` : `${Math.floor(s / 60)}m${String(Math.round(s % 60)).padStart(2, '0')}s`;
}
