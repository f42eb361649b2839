// Dumps what the PyTorch hyper-parameter mirror (train_mirror.py) needs from OUR code, so it trains
// on exactly our data and starts from exactly our weights:
//   npx tsx bench/arith/dump-task.ts [seed] [preset] [words] [tasks,comma-separated] [heldOut] [answers] > /tmp/arith-task.json
// (answers: 'plain', 'padded' or 'padded-reversed', default the task's ARITH_REV_ANSWERS = plain; the dump holds the answers as trained.)
// JSON: { train: [[prompt, response]...], heldOut: [...], config, init: base64 float32 (initParameters) }
import { arithRevPairs, type ArithRevAnswers, type ArithRevTask } from '../../shared/data/arith-rev.ts';
import { presetConfig } from '../../shared/model/config.ts';
import { initParameters } from '../../shared/model/init.ts';

const seed = Number(process.argv[2] ?? 1);
const preset = process.argv[3] ?? 'small';
const words = process.argv[4] === undefined ? undefined : Number(process.argv[4]);
const tasks = process.argv[5] ? (process.argv[5].split(',') as ArithRevTask[]) : undefined;
const heldOut = process.argv[6] ? Number(process.argv[6]) : 200;
const answers = (process.argv[7] || undefined) as ArithRevAnswers | undefined;
const split = arithRevPairs(seed, heldOut, words, tasks, answers);
const config = presetConfig(preset);
const init = initParameters(config, seed);
process.stdout.write(JSON.stringify({
  seed, preset, config, answers: answers ?? 'default',
  train: split.train.map((p) => [p.prompt, p.response]),
  heldOut: split.heldOut.map((p) => [p.prompt, p.response]),
  init: Buffer.from(init.buffer, init.byteOffset, init.byteLength).toString('base64'),
}));
