// Writes the fixture's init stream (see fixture.ts) to stdout for make_fixture.py:
//   npx tsx tests/reference/write-init.ts | /usr/bin/python3 tests/reference/make_fixture.py
// With --long: the GPU-policy fixture's stream (fixture-long.ts, written to gpt2_long.bin).
// The parameters come from our own initParameters, so PyTorch starts from exactly our weights.
import { encodeInit, fixtureSetup } from './fixture.ts';
import { longFixtureSetup } from './fixture-long.ts';

if (process.stdout.isTTY) {
  process.stderr.write('write-init: binary output; pipe it into /usr/bin/python3 tests/reference/make_fixture.py\n');
  process.exit(2);
}
process.stdout.write(encodeInit(process.argv.includes('--long') ? longFixtureSetup() : fixtureSetup()));
