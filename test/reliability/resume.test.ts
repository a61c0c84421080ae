/**
 * Resumable training: N steps, save, load in a fresh Node process, M more
 * steps, equals N + M uninterrupted steps bit for bit on the cpu backend,
 * including BatchRenorm's warm-up step (a weight saved with the model).
 */
import {spawnSync} from 'child_process';
import * as fs from 'fs';
import * as os from 'os';
import * as nodePath from 'path';
import * as tfl from '@tensorflow/tfjs-layers';
import {BatchRenormLayer} from '../../src';
import {fileSystem} from '../../src/io/file_system';
import {buildResumeModel, compileForResume, trainSteps} from './resume';

const N = 6;
const M = 8;
let scratch: string;
const dir = (name: string) => nodePath.join(scratch, name);

beforeAll(() => { scratch = fs.mkdtempSync(nodePath.join(os.tmpdir(), 'resume-')); });
afterAll(() => fs.rmSync(scratch, {recursive: true, force: true}));

/** Every weight's float32 bytes, by name. */
function bytesOf(model: tfl.LayersModel): Record<string, string> {
  const out: Record<string, string> = {};
  for (const w of model.weights) out[w.originalName] = Buffer.from(w.read().dataSync().buffer).toString('hex');
  return out;
}

function resumeInChild(from: string, to: string, ...extra: string[]): void {
  const child = spawnSync(process.execPath,
      ['-r', 'esbuild-register', nodePath.join(__dirname, 'resume_child.ts'), from, to, String(N), String(N + M), ...extra],
      {cwd: nodePath.join(__dirname, '../..'), encoding: 'utf8'});
  if (child.status !== 0) throw new Error(`resume_child failed (${child.status}):\n${child.stderr}`);
}

const loadFrom = (name: string) => tfl.loadLayersModel(fileSystem(dir(name)));

it(`${N} steps + save + ${M} steps in a fresh process equal ${N + M} uninterrupted steps, bit for bit`, async () => {
  const initial = buildResumeModel();
  await initial.save(fileSystem(dir('start')));
  initial.dispose();

  const uninterrupted = await loadFrom('start');
  compileForResume(uninterrupted);
  await trainSteps(uninterrupted, 0, N + M);

  const first = await loadFrom('start');
  compileForResume(first);
  await trainSteps(first, 0, N);
  await first.save(fileSystem(dir('after-n')));
  expect((first.getLayer('brn') as BatchRenormLayer).renormStep!.read().dataSync()[0]).toBe(N);
  first.dispose();

  resumeInChild(dir('after-n'), dir('resumed'));
  const resumed = await loadFrom('resumed');
  expect((resumed.getLayer('brn') as BatchRenormLayer).renormStep!.read().dataSync()[0]).toBe(N + M);
  const expected = bytesOf(uninterrupted);
  expect(Object.keys(expected)).toContain('brn/renorm_step');
  expect(bytesOf(resumed)).toEqual(expected);

  // Negative control: restarting the warm-up schedule in the fresh process changes the result.
  resumeInChild(dir('after-n'), dir('restarted'), 'reset-step');
  const restarted = await loadFrom('restarted');
  expect(bytesOf(restarted)).not.toEqual(expected);
  for (const model of [uninterrupted, resumed, restarted]) model.dispose();
}, 120000);
