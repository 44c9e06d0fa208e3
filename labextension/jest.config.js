// Unit tests of the pure modules (protocol, keyshape): no JupyterLab, no DOM needed.
module.exports = {
  testEnvironment: 'node',
  testRegex: 'src/__tests__/.*\\.spec\\.ts$',
  transform: {
    '^.+\\.ts$': ['ts-jest', { tsconfig: { module: 'commonjs', target: 'ES2018', strict: true, esModuleInterop: true, types: ['jest'] } }]
  }
};
