/**
 * The fenced code blocks of README.md and docs/*.md, and how test/docs/docs.test.ts
 * runs each. The convention (a block runs unless marked, so examples cannot rot):
 *
 * - ```js, ```ts, ```mjs: a Node program, run verbatim as an ES module
 *   (TypeScript is stripped by esbuild) in a fresh temporary working folder;
 *   `tfjs-normalization` resolves to this package's build through its "exports".
 * - ```html: a page, loaded verbatim in headless Chromium from a folder whose
 *   node_modules/ holds @tensorflow/* and this package. The page must end by
 *   calling console.log; the runner waits for that and fails on any page error
 *   or console.error.
 * - `<!-- doc-test: page -->` on the line before a js/ts block: the block is an
 *   app's module: bundled with esbuild (browser conditions, as a user's bundler
 *   would) and imported in headless Chromium; it passes when the import resolves.
 * - `<!-- doc-test: skip (why) -->` on the line before a block: not run. For
 *   fragments (names defined elsewhere, placeholder URLs) and formulas.
 * - Any other language (sh, python, plain ``` blocks): not run.
 *
 * Failures name the file and the line of the block's opening fence.
 */
import * as fs from 'fs';
import * as path from 'path';

export const ROOT = path.join(__dirname, '..', '..');

export type BlockKind = 'node' | 'page-module' | 'page-html' | 'skip';

export interface DocBlock {
  /** Relative to the repo root, e.g. `docs/browser.md`. */
  file: string;
  /** 1-based line of the opening fence. */
  line: number;
  lang: string;
  kind: BlockKind;
  code: string;
}

const RUNNABLE = new Set(['js', 'ts', 'mjs', 'javascript', 'typescript']);
const MARKER = /^<!--\s*doc-test:\s*(page|skip)\b.*-->$/;

/** The markdown files whose blocks are checked: README.md and docs/*.md. */
export function docFiles(): string[] {
  const docs = fs.readdirSync(path.join(ROOT, 'docs')).filter((f) => f.endsWith('.md')).sort();
  return ['README.md', ...docs.map((f) => `docs/${f}`)];
}

/** Every fenced block of `file`, classified by the convention above. */
export function parseBlocks(file: string): DocBlock[] {
  const lines = fs.readFileSync(path.join(ROOT, file), 'utf8').split('\n');
  const blocks: DocBlock[] = [];
  for (let i = 0; i < lines.length; i++) {
    const open = lines[i].match(/^(\s*)(`{3,})\s*([\w-]*)/);
    if (open == null) continue;
    const [, indent, fence, lang] = open;
    let end = i + 1;
    while (end < lines.length && !lines[end].trim().startsWith(fence)) end++;
    if (end === lines.length) throw new Error(`${file}:${i + 1}: code block never closed`);
    const code = lines.slice(i + 1, end).map((l) => l.startsWith(indent) ? l.slice(indent.length) : l).join('\n');
    const marker = (lines[i - 1] ?? '').trim().match(MARKER)?.[1];
    let kind: BlockKind = 'skip';
    if (marker === 'skip') kind = 'skip';
    else if (marker === 'page' && RUNNABLE.has(lang)) kind = 'page-module';
    else if (marker === 'page') throw new Error(`${file}:${i + 1}: doc-test: page needs a js or ts block`);
    else if (lang === 'html') kind = 'page-html';
    else if (RUNNABLE.has(lang)) kind = 'node';
    blocks.push({file, line: i + 1, lang, kind, code});
    i = end;
  }
  return blocks;
}
