// Writes the DPO fixture's init stream (dpo-fixture.ts) to stdout for make_dpo_fixture.py:
//   npx tsx tests/reference/write-dpo-init.ts | /usr/bin/python3 tests/reference/make_dpo_fixture.py
import { dpoFixtureSetup, encodeDpoInit } from './dpo-fixture.ts';

if (process.stdout.isTTY) {
  process.stderr.write('write-dpo-init: binary output; pipe it into /usr/bin/python3 tests/reference/make_dpo_fixture.py\n');
  process.exit(2);
}
process.stdout.write(encodeDpoInit(dpoFixtureSetup()));
