import { relative } from 'node:path';
import { BaseSequencer, type TestSpecification } from 'vitest/node';
import { REPO } from './helpers/env.js';
import { BACKGROUND_BUILDS, SLOW_BOXES } from './slow-boxes.js';

/**
 * Files that need a slow box run last, in SLOW_BOXES's order, so that the background makes have
 * time; files whose build runs in the background (BACKGROUND_BUILDS) run after all of them.
 */
export default class SlowBoxesLast extends BaseSequencer {
  override async sort(files: TestSpecification[]): Promise<TestSpecification[]> {
    const sorted = await super.sort(files);
    const background = Object.keys(BACKGROUND_BUILDS);
    const order = [...Object.keys(SLOW_BOXES).filter((file) => !background.includes(file)), ...background];
    const rank = (file: TestSpecification) => order.indexOf(relative(REPO, file.moduleId));
    return [...sorted.filter((file) => rank(file) < 0), ...sorted.filter((file) => rank(file) >= 0).sort((a, b) => rank(a) - rank(b))];
  }
}
