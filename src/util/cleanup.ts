/*
 * Undo steps, registered as each resource is acquired and run last-in-first-out on every path:
 * every step runs even when an earlier one throws, and the failures are reported together.
 */

/** Several undo steps failed; `cause` is the first (the one the others may follow from). */
export class CleanupFailed extends AggregateError {
  constructor(errors: unknown[]) {
    super(errors, `${errors.length} cleanup steps failed; the first: ${(errors[0] as Error)?.message ?? String(errors[0])}`, { cause: errors[0] });
  }
}

export class CleanupStack {
  private steps: Array<() => unknown> = [];

  /** Registers the undo of a resource just acquired. */
  defer(undo: () => unknown): void {
    this.steps.push(undo);
  }

  /** Takes over another stack's steps (a stage whose resources now belong to the run), to run before this one's. */
  adopt(other: CleanupStack): void {
    this.steps.push(...other.steps.splice(0));
  }

  /** Runs every step, last first; throws the one failure, or CleanupFailed for several. Leaves the stack empty. */
  async unwind(): Promise<void> {
    const errors: unknown[] = [];
    for (const step of this.steps.splice(0).reverse()) {
      try {
        await step();
      } catch (error) {
        errors.push(error);
      }
    }
    if (errors.length === 1) throw errors[0];
    if (errors.length > 1) throw new CleanupFailed(errors);
  }

  async [Symbol.asyncDispose](): Promise<void> {
    await this.unwind();
  }
}
