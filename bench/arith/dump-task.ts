// Dumps what the PyTorch hyper-parameter mirror (train_mirror.py) needs from OUR code, so it trains
// on exactly our data and starts from exactly our weights:
//   npx tsx bench/arith/dump-task.ts [seed] [preset] [words] [tasks,comma-separated] [heldOut] > /tmp/arith-task.json
// JSON: { train: [[prompt, response]...], heldOut: [...], config, init: base64 float32 (initParameters) }
import { arithRevPairs, type ArithRevTask } from '../../shared/data/arith-rev.ts';
import { presetConfig } from '../../shared/model/config.ts';
import { initParameters } from '../../shared/model/init.ts';

const seed = Number(process.argv[2] ?? 1);
const preset = process.argv[3] ?? 'small';
const words = process.argv[4] === undefined ? undefined : Number(process.argv[4]);
const tasks = process.argv[5] ? (process.argv[5].split(',') as ArithRevTask[]) : undefined;
const heldOut = process.argv[6] ? Number(process.argv[6]) : 200;
const split = arithRevPairs(seed, heldOut, words, tasks);
const config = presetConfig(preset);
const init = initParameters(config, seed);
process.stdout.write(JSON.stringify({
  seed, preset, config,
  train: split.train.map((p) => [p.prompt, p.response]),
  heldOut: split.heldOut.map((p) => [p.prompt, p.response]),
  init: Buffer.from(init.buffer, init.byteOffset, init.byteLength).toString('base64'),
}));
