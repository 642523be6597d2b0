// The fenced blocks of the project's Markdown files, with the walk-through each belongs to:
// a block is part of walk-through NAME when an HTML comment `<!-- walkthrough: NAME -->`
// stands on the line before its fence (more blocks of the same NAME continue the same
// terminal session). `<!-- walkthrough: NAME, after-restart -->` marks a block the reader
// runs after restarting the server.
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { REPO_ROOT } from './cli.ts';

export interface FencedBlock {
  /** The file, relative to the repository root. */
  file: string;
  /** Line of the opening fence, 1-based. */
  line: number;
  /** The info string: `sh`, `json`, `sql`, '' … */
  lang: string;
  text: string;
  /** The nearest heading above the block. */
  heading: string;
  walkthrough?: string;
  afterRestart: boolean;
  /** The block of output shown right after this one (not a command block; nothing but blank lines between). */
  output?: FencedBlock;
}

const MARKER = /^<!--\s*walkthrough:\s*([\w-]+)\s*(,\s*after-restart\s*)?-->$/;

export function fencedBlocks(file: string): FencedBlock[] {
  const lines = readFileSync(join(REPO_ROOT, file), 'utf8').split('\n');
  const blocks: FencedBlock[] = [];
  let heading = '';
  let lastBlockEnd = -2;
  for (let i = 0; i < lines.length; i++) {
    const line = lines[i]!;
    if (/^#{1,6} /.test(line)) heading = line.replace(/^#+ /, '');
    const fence = /^(\s*)```(\S*)\s*$/.exec(line);
    if (!fence) continue;
    const indent = fence[1]!.length;
    const body: string[] = [];
    let j = i + 1;
    for (; j < lines.length && !/^\s*```\s*$/.test(lines[j]!); j++) body.push(lines[j]!.slice(indent));
    const marker = MARKER.exec(lines[i - 1]?.trim() ?? '');
    const block: FencedBlock = {
      file, line: i + 1, lang: fence[2]!, text: body.join('\n') + '\n', heading,
      walkthrough: marker?.[1], afterRestart: Boolean(marker?.[2]),
    };
    const previous = blocks.at(-1);
    const adjacent = lines.slice(lastBlockEnd + 1, i).every((l) => !l.trim());
    if (previous && adjacent && block.lang !== 'sh' && !block.walkthrough) previous.output = block;
    blocks.push(block);
    lastBlockEnd = j;
    i = j;
  }
  return blocks;
}

/** The blocks of one walk-through, in the order of the file. */
export function walkthroughBlocks(file: string, name: string): FencedBlock[] {
  return fencedBlocks(file).filter((b) => b.walkthrough === name);
}
