/**
 * The smoke subset of the test suite (layers, save/load, Keras loading) against
 * the oldest tfjs in the peer range, installed here (compat/package.json and its
 * lock): `npm run test:compat` (after `npm ci --prefix compat`). Every import of
 * a tfjs package, from the tests, src/ and tfjs itself, resolves to compat/node_modules.
 */
const base = require('../jest.config.js');

const TFJS = ['tfjs-core', 'tfjs-layers', 'tfjs-backend-cpu'];

/** @type {import('jest').Config} */
module.exports = {
  ...base,
  rootDir: '..',
  roots: ['<rootDir>/test', '<rootDir>/compat'],
  testMatch: [
    '<rootDir>/compat/version.test.ts',
    '<rootDir>/test/layers/*.test.ts',
    '<rootDir>/test/io/file_system.test.ts',
    '<rootDir>/test/tools/keras.test.ts',
  ],
  moduleNameMapper: {
    ...base.moduleNameMapper,
    ...Object.fromEntries(TFJS.map((name) => [`^@tensorflow/${name}$`, `<rootDir>/compat/node_modules/@tensorflow/${name}`])),
  },
};
