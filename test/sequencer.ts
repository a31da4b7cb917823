import { relative } from 'node:path';
import { BaseSequencer, type TestSpecification } from 'vitest/node';
import { REPO } from './helpers/env.js';
import { SLOW_BOXES } from './slow-boxes.js';

/** Files that need a slow box run last, in SLOW_BOXES's order, so that the background makes have time. */
export default class SlowBoxesLast extends BaseSequencer {
  override async sort(files: TestSpecification[]): Promise<TestSpecification[]> {
    const sorted = await super.sort(files);
    const order = Object.keys(SLOW_BOXES);
    const rank = (file: TestSpecification) => order.indexOf(relative(REPO, file.moduleId));
    return [...sorted.filter((file) => rank(file) < 0), ...sorted.filter((file) => rank(file) >= 0).sort((a, b) => rank(a) - rank(b))];
  }
}
