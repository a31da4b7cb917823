import { describe, expect, test } from 'vitest';
import { CleanupFailed, CleanupStack } from '../../../src/util/cleanup.js';

describe('the cleanup stack', () => {
  test('undo steps run last first, every one of them even when some throw; several failures are kept together, the first as cause', async () => {
    const stack = new CleanupStack();
    const ran: number[] = [];
    const first = new Error('first');
    stack.defer(() => void ran.push(1));
    stack.defer(() => {
      ran.push(2);
      throw new Error('second');
    });
    stack.defer(async () => {
      ran.push(3);
      throw first;
    });
    const error = await stack.unwind().catch((caught: unknown) => caught);
    expect(ran).toEqual([3, 2, 1]);
    expect(error).toBeInstanceOf(CleanupFailed);
    expect((error as CleanupFailed).cause).toBe(first);
    expect((error as CleanupFailed).errors.map((e: Error) => e.message)).toEqual(['first', 'second']);
    await stack.unwind(); // empty now: nothing runs twice
    expect(ran).toEqual([3, 2, 1]);
  });

  test('one failure is thrown as it is; adopted steps run before the adopter\'s own', async () => {
    const stack = new CleanupStack();
    const attempt = new CleanupStack();
    const ran: string[] = [];
    stack.defer(() => void ran.push('run'));
    attempt.defer(() => {
      ran.push('attempt');
      throw new Error('alone');
    });
    stack.adopt(attempt);
    await expect(stack.unwind()).rejects.toThrow(/^alone$/);
    expect(ran).toEqual(['attempt', 'run']);
  });
});
