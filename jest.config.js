/** @type {import('jest').Config} */
module.exports = {
  testEnvironment: 'node',
  roots: ['<rootDir>/test'],
  testMatch: ['**/*.test.ts'],
  transform: {'^.+\\.ts$': ['ts-jest', {tsconfig: 'tsconfig.json', diagnostics: {warnOnly: false}}]},
  moduleNameMapper: {
    '^tfjs-normalization$': '<rootDir>/src/index.ts',
    '^tfjs-normalization/node$': '<rootDir>/src/io/index.ts',
  },
  setupFiles: ['<rootDir>/test/setup.ts'],
  testTimeout: 120000,
};
