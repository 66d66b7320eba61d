/**
 * `npm run test:kong`: spec/kong only, against a real Kong built by the kong-lab scripts
 * (KONG_LAB, default /work/kong-lab-out; see docs/kong-compat.md). Same transform, global
 * setup (redis-server) and summary line as jest.config.js. Run with --runInBand: the lab
 * runs one Kong at a time.
 */
const base = require('./jest.config.js');

/** @type {import('jest').Config} */
module.exports = {
  testEnvironment: 'node',
  roots: ['<rootDir>/spec/kong'],
  testMatch: ['**/*.test.ts'],
  transform: base.transform,
  globalSetup: base.globalSetup,
  globalTeardown: base.globalTeardown,
  reporters: base.reporters,
  testTimeout: 60000,
};
