/**
 * Reader for the IDX format of the MNIST files (http://yann.lecun.com/exdb/mnist/):
 * a big-endian header `0x00 0x00 <type> <rank>`, one uint32 per dimension,
 * then the values in row-major order. MNIST and Fashion-MNIST store uint8
 * (type 0x08); the files may be gzipped as distributed.
 */
import * as fs from 'fs';
import * as path from 'path';
import * as zlib from 'zlib';

export interface IdxArray {
  shape: number[];
  data: Uint8Array;
}

const UINT8 = 0x08;

export function parseIdx(buffer: Uint8Array, source = 'IDX buffer'): IdxArray {
  if (buffer.length < 4 || buffer[0] !== 0 || buffer[1] !== 0) {
    throw new Error(`${source}: not an IDX file (the first two bytes must be zero).`);
  }
  if (buffer[2] !== UINT8) {
    throw new Error(`${source}: IDX value type 0x${buffer[2].toString(16)} is not supported; only uint8 (0x08).`);
  }
  const rank = buffer[3];
  const header = 4 + 4 * rank;
  if (rank === 0 || buffer.length < header) {
    throw new Error(`${source}: IDX header declares rank ${rank} but the buffer has ${buffer.length} bytes.`);
  }
  const view = new DataView(buffer.buffer, buffer.byteOffset, buffer.byteLength);
  const shape: number[] = [];
  for (let i = 0; i < rank; i++) shape.push(view.getUint32(4 + 4 * i, false));
  const size = shape.reduce((a, b) => a * b, 1);
  if (buffer.length - header !== size) {
    throw new Error(`${source}: IDX shape [${shape.join(', ')}] needs ${size} values; the file has ` +
        `${buffer.length - header}.`);
  }
  return {shape, data: buffer.subarray(header)};
}

/** Reads `<dir>/<name>` or, failing that, `<dir>/<name>.gz`. */
export function readIdxFile(dir: string, name: string): IdxArray {
  const plain = path.join(dir, name);
  if (fs.existsSync(plain)) return parseIdx(fs.readFileSync(plain), plain);
  const gz = `${plain}.gz`;
  if (fs.existsSync(gz)) return parseIdx(zlib.gunzipSync(fs.readFileSync(gz)), gz);
  throw new Error(`IDX file not found: ${plain} (nor ${gz}).`);
}
