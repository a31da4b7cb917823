import type { BuildResult, MatrixRun } from '../types.js';
import { escapeAttribute as attr, escapeText as text } from './text.js';

/*
 * JUnit XML, as CI servers read it: a testsuite per box, a testcase per build (classname box.arch);
 * a failed or timed-out build is a <failure>, boxbuild's own failure an <error>, a cancelled build
 * <skipped>, each with the log's tail; <system-out> names the whole log.
 */

const seconds = (value: number) => value.toFixed(3);

function counts(builds: BuildResult[]): string {
  const count = (...statuses: string[]) => builds.filter((build) => statuses.includes(build.status)).length;
  const time = builds.reduce((sum, build) => sum + build.durationSeconds, 0);
  return `tests="${builds.length}" failures="${count('failed', 'timeout')}" errors="${count('error')}" skipped="${count('cancelled')}" time="${seconds(time)}"`;
}

function outcome(build: BuildResult): string {
  const tail = text(build.logTail.join('\n'));
  const exit = build.exitCode === undefined ? '' : ` (exit status ${build.exitCode})`;
  switch (build.status) {
    case 'passed':
      return '';
    case 'failed':
      return `      <failure type="failed" message="${attr(`the build failed${exit}`)}">${tail}</failure>\n`;
    case 'timeout':
      return `      <failure type="timeout" message="${attr(build.error ?? `timed out${exit}`)}">${tail}</failure>\n`;
    case 'error':
      return `      <error type="error" message="${attr(build.error ?? `boxbuild failed${exit}`)}">${tail}</error>\n`;
    case 'cancelled':
      return `      <skipped message="cancelled"/>\n`;
  }
}

function testcase(build: BuildResult): string {
  const out = build.log ? `      <system-out>${text(`log: ${build.log}`)}</system-out>\n` : '';
  return `    <testcase name="${attr(build.name)}" classname="${attr(`${build.box}.${build.arch}`)}" time="${seconds(build.durationSeconds)}">\n${outcome(build)}${out}    </testcase>\n`;
}

/** The run as a JUnit XML document. */
export function junitXml(run: MatrixRun): string {
  const boxes = [...new Set(run.builds.map((build) => build.box))];
  const suites = boxes.map((box) => {
    const builds = run.builds.filter((build) => build.box === box);
    return `  <testsuite name="${attr(box)}" ${counts(builds)} timestamp="${attr(run.startedAt)}">\n${builds.map(testcase).join('')}  </testsuite>\n`;
  });
  return `<?xml version="1.0" encoding="UTF-8"?>\n<testsuites name="${attr(`boxbuild matrix ${run.matrix}`)}" ${counts(run.builds)}>\n${suites.join('')}</testsuites>\n`;
}
