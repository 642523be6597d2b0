// The documents name what exists: README's layout lists every file of src/ and nothing that
// is not there; every repository path the READMEs write in backquotes or link to exists
// (generated files — keys, bench results — excepted, as the READMEs say they are made at run
// time); bench/README.md cites only bench files the project has.
import { it } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, readdirSync, readFileSync, statSync } from 'node:fs';
import { dirname, join, relative } from 'node:path';
import { REPO_ROOT } from '../support/cli.ts';
import { fencedBlocks } from '../support/readme.ts';

const DOCUMENTS = ['README.md', 'db/README.md', 'keys/README.md', 'bench/README.md'];

/** Made at run time, and described as such where they are named. */
const GENERATED = [/^keys\/(?!README\.md$)/, /^bench\/results\//, /^bench\/\.data/, /^\.data/, /^test-output\//];

function filesUnder(dir: string): string[] {
  return readdirSync(join(REPO_ROOT, dir)).flatMap((name) => {
    const path = `${dir}/${name}`;
    return statSync(join(REPO_ROOT, path)).isDirectory() ? filesUnder(path) : [path];
  });
}

/** The paths of README's layout block: indentation nests entries under the directory above them. */
function layoutEntries(): { files: Set<string>; dirs: Set<string> } {
  const block = fencedBlocks('README.md').find((b) => b.heading === 'Layout' && b.lang === '');
  assert.ok(block, 'README.md has a Layout block');
  const files = new Set<string>();
  const dirs = new Set<string>();
  const stack: { indent: number; path: string }[] = [];
  for (const line of block.text.split('\n')) {
    const m = /^( *)(\S.*?)(?: {2,}.*)?$/.exec(line);
    if (!m) continue;
    const indent = m[1]!.length;
    const names = m[2]!.split(/,\s*/).map((n) => n.trim()).filter((n) => /^[\w./-]+(\.ts|\/)$/.test(n));
    if (names.length === 0) continue; // a description continued on its own line
    while (stack.length && stack.at(-1)!.indent >= indent) stack.pop();
    const parent = stack.at(-1)?.path ?? '';
    for (const name of names) {
      const path = indent === 0 ? name : parent + name;
      if (path.endsWith('/')) {
        dirs.add(path);
        stack.push({ indent, path });
      } else files.add(path);
    }
  }
  return { files, dirs };
}

it('README\'s layout lists every file of src/, and only files that exist', () => {
  const { files, dirs } = layoutEntries();
  const actual = filesUnder('src').filter((f) => f.endsWith('.ts'));
  const listedSrc = [...files].filter((f) => f.startsWith('src/'));
  assert.deepEqual(actual.filter((f) => !files.has(f)).sort(), [], 'files of src/ missing from the layout');
  assert.deepEqual(listedSrc.filter((f) => !existsSync(join(REPO_ROOT, f))).sort(), [], 'files in the layout that do not exist');
  for (const dir of dirs) assert.ok(existsSync(join(REPO_ROOT, dir)), `${dir} in the layout does not exist`);
});

it('every repository path the READMEs name exists', () => {
  const missing: string[] = [];
  for (const doc of DOCUMENTS) {
    const text = readFileSync(join(REPO_ROOT, doc), 'utf8');
    // `src/…`, `test/…`, `db/…`, `keys/…`, `bench/…`, `.ci/…` in backquotes (patterns — *, <>, NNNN — are not paths).
    for (const [, path] of text.matchAll(/`((?:src|test|db|keys|bench|\.ci)\/[\w./-]*[\w/])`/g)) {
      if (GENERATED.some((g) => g.test(path!)) || /NNNN/.test(path!)) continue;
      if (!existsSync(join(REPO_ROOT, path!))) missing.push(`${doc}: \`${path}\``);
    }
    // Relative links: [text](path) and [text](path#anchor).
    for (const [, target] of text.matchAll(/\]\(((?!https?:|#|mailto:)[^)#\s]+)(?:#[^)]*)?\)/g)) {
      const path = relative(REPO_ROOT, join(REPO_ROOT, dirname(doc), target!));
      if (!existsSync(join(REPO_ROOT, path))) missing.push(`${doc}: link ${target}`);
    }
  }
  assert.deepEqual(missing, []);
});

it('bench/README.md cites only bench files the project has, and describes each of them', () => {
  const text = readFileSync(join(REPO_ROOT, 'bench/README.md'), 'utf8');
  const cited = new Set([...text.matchAll(/`([\w-]+\.(?:ts|d\.ts))`/g)].map((m) => m[1]!));
  const present = readdirSync(join(REPO_ROOT, 'bench')).filter((f) => f.endsWith('.ts'));
  assert.deepEqual([...cited].filter((f) => !present.includes(f)).sort(), [], 'cited but absent');
  assert.deepEqual(present.filter((f) => !cited.has(f)).sort(), [], 'present but not described');
});
