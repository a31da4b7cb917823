import type { Command, Option } from 'commander';
import { usageError } from '../errors.js';

/*
 * `boxbuild completion bash|zsh|fish`: a completion script made from the command tree itself, so it
 * knows every command and option; box names come from `boxbuild box list --names` when completed.
 */

/** Options whose value is a file or directory name. */
const PATH_OPTIONS = ['--boxes', '--result', '--share', '--image', '--virtiofsd', '--description', '--target-dir', '--kiwi-file', '--shared-path', '--ssh-key', '--results', '--artifacts'];
const ARCHES = ['x86_64', 'aarch64'];

interface Node {
  /** The words that lead to this command, e.g. "box fetch". */
  path: string;
  commands: string[];
  options: Option[];
  /** Its argument is a box name (box fetch NAME, …). */
  takesBox: boolean;
  /** Its arguments are a command and the command's own (exec CMD [ARGS...]). */
  takesCommand: boolean;
}

/** A command's subcommands but the hidden ones (remote-serve, which only a build host's sshd runs). */
export const shownCommands = (command: Command): Command[] => command.createHelp().visibleCommands(command).filter((sub) => command.commands.includes(sub));

function walk(command: Command, path: string[] = []): Node[] {
  const node = {
    path: path.join(' '),
    commands: shownCommands(command).map((sub) => sub.name()),
    options: command.options.filter((option) => option.long && !option.hidden),
    takesBox: command.registeredArguments.some((argument) => argument.name() === 'name'),
    takesCommand: command.registeredArguments.some((argument) => argument.name() === 'command'),
  };
  return [node, ...shownCommands(command).flatMap((sub) => walk(sub, [...path, sub.name()]))];
}

/** The values an option's argument can take, as a shell word list; undefined when free-form. */
function valuesOf(option: Option): string | undefined {
  if (option.argChoices) return option.argChoices.join(' ');
  if (option.long === '--arch') return ARCHES.join(' ');
  return undefined;
}

function bash(nodes: Node[]): string {
  const cases = nodes
    .map((node) => {
      const words = [...node.commands, ...node.options.map((option) => option.long!)].join(' ');
      return `    '${node.path}') offers='${words}'; takes_box=${node.takesBox ? 1 : 0} ;;`;
    })
    .join('\n');
  const valued = nodes.flatMap((node) => node.options).filter((option) => option.required || option.optional);
  const choices = [...new Map(valued.filter(valuesOf).map((option) => [option.long!, valuesOf(option)!])).entries()]
    .map(([long, values]) => `    ${long}) COMPREPLY=($(compgen -W '${values}' -- "$cur")); return ;;`)
    .join('\n');
  const commandRunners = nodes.filter((node) => node.takesCommand).map((node) => `'${node.path}'`).join('|');
  const free = [...new Set(valued.filter((option) => !valuesOf(option) && !PATH_OPTIONS.includes(option.long!) && option.long !== '--box').map((option) => option.long!))];
  return `# boxbuild completion for bash (and zsh through bashcompinit): source <(boxbuild completion bash)
_boxbuild() {
  # No variable named path or words: zsh ties path to PATH, and words is its completion's own.
  local cur=\${COMP_WORDS[COMP_CWORD]} prev=\${COMP_WORDS[COMP_CWORD-1]} at='' word i offers takes_box
  # Build arguments after -- are the build's own.
  for ((i = 1; i < COMP_CWORD; i++)); do [[ \${COMP_WORDS[i]} == -- ]] && { COMPREPLY=($(compgen -f -- "$cur")); return; }; done
  case "$prev" in
    --box) COMPREPLY=($(compgen -W "$(boxbuild box list --names 2>/dev/null)" -- "$cur")); return ;;
${choices}
    ${[...PATH_OPTIONS].join('|')}) COMPREPLY=($(compgen -f -- "$cur")); return ;;
    ${free.join('|') || '--no-such-option'}) return ;;
  esac
  # The command the words so far name: "", "exec", "box", "box fetch", …; options and their values aside.
  for ((i = 1; i < COMP_CWORD; i++)); do
    word=\${COMP_WORDS[i]}
    [[ $word == -* || ' ${[...new Set(valued.flatMap((option) => [option.long!, ...(option.short ? [option.short] : [])]))].join(' ')} ' == *" \${COMP_WORDS[i-1]} "* ]] && continue
    case "\${at:+$at }$word" in
${nodes.filter((node) => node.path).map((node) => `      '${node.path}') at='${node.path}' ;;`).join('\n')}
${commandRunners ? `      # The first other word after ${commandRunners} is the command to run: the rest is its own.\n      *) case "$at" in ${commandRunners}) COMPREPLY=($(compgen -f -- "$cur")); return ;; esac ;;\n` : ''}    esac
  done
  case "$at" in
${cases}
  esac
  if [[ $cur != -* && $takes_box == 1 ]]; then
    COMPREPLY=($(compgen -W "$(boxbuild box list --names 2>/dev/null)" -- "$cur"))
  else
    COMPREPLY=($(compgen -W "$offers" -- "$cur"))
  fi
}
complete -o default -F _boxbuild boxbuild
`;
}

function fish(nodes: Node[]): string {
  const lines = ['# boxbuild completion for fish: boxbuild completion fish > ~/.config/fish/completions/boxbuild.fish', 'complete -c boxbuild -f'];
  for (const node of nodes) {
    const words = node.path ? node.path.split(' ') : [];
    // The words before this command's own: its parent's path.
    const condition = words.length === 0 ? `__fish_use_subcommand` : `__fish_seen_subcommand_from ${words.at(-1)}`;
    for (const sub of node.commands) lines.push(`complete -c boxbuild -n '${words.length === 0 ? condition : `${condition}; and not __fish_seen_subcommand_from ${node.commands.join(' ')}`}' -a ${sub}`);
    for (const option of node.options) {
      const values = option.long === '--box' ? "'(boxbuild box list --names 2>/dev/null)'" : valuesOf(option) ? `'${valuesOf(option)}'` : undefined;
      const takes = option.required || option.optional ? (values ? ` -x -a ${values}` : PATH_OPTIONS.includes(option.long!) ? ' -r -F' : ' -x') : '';
      // The main command's options only before a command word: `exec` has options of its own.
      const scope = words.length === 0 ? ` -n 'not __fish_seen_subcommand_from ${node.commands.join(' ')}'` : ` -n '__fish_seen_subcommand_from ${words.at(-1)}'`;
      lines.push(`complete -c boxbuild${scope} -l ${option.long!.slice(2)}${option.short ? ` -s ${option.short.slice(1)}` : ''}${takes} -d '${option.description.replaceAll("'", "\\'")}'`);
    }
    if (node.takesBox) lines.push(`complete -c boxbuild -n '__fish_seen_subcommand_from ${words.at(-1)}' -a '(boxbuild box list --names 2>/dev/null)'`);
  }
  return `${lines.join('\n')}\n`;
}

export function addCompletionCommand(program: Command): void {
  program
    .command('completion')
    .argument('<shell>', 'bash, zsh or fish')
    .description('Print a shell completion script: source <(boxbuild completion bash); zsh: autoload -U +X bashcompinit && bashcompinit first')
    .exitOverride()
    .action((shell: string) => {
      const nodes = walk(program);
      if (shell === 'bash' || shell === 'zsh') process.stdout.write(shell === 'zsh' ? `autoload -U +X bashcompinit && bashcompinit\n${bash(nodes)}` : bash(nodes));
      else if (shell === 'fish') process.stdout.write(fish(nodes));
      else throw usageError(`completion: unknown shell "${shell}" (bash, zsh or fish)`);
    });
}
