// What the chaos figures must show (shared by `npm run chaos` and the reduced suite test).

import { lossDelta, type ChaosFigures } from './harness.ts';

/** Faults that are stragglers, not attacks: tolerated (the hub measures them and stretches their leases, or re-leases), never banned. */
export const NOT_BANNED = (fault: string) => fault.startsWith('slow');
/** A sleeper must be banned within this many lies after it turns (issue 17's goal). */
export const SLEEPER_MAX_LIES = 50;
/** A Sybil's lying samples may be at most this share of everything trained (issue 17's goal). */
export const SYBIL_MAX_SHARE = 0.01;

export function verdicts(f: ChaosFigures, clean: ChaosFigures, maxLossDelta = 0.05): string[] {
  const out: string[] = [];
  const p = (s: string) => out.push(`${f.scenario}: ${s}`);
  if (f.samplesLost !== 0) p(`${f.samplesLost} samples lost`);
  if (f.samplesDoubled !== 0) p(`${f.samplesDoubled} samples doubled`);
  if (f.samplesTrained !== f.samplesExpected) p(`trained ${f.samplesTrained} samples, expected ${f.samplesExpected}`);
  if (f.samplesUndecodable !== 0) p(`${f.samplesUndecodable} acknowledged rows did not decode to a sample id`);
  if (f.badSteps.length) p(`steps without exactly one global batch of samples (independent count): ${f.badSteps.slice(0, 5).join(', ')}`);
  // The coordinator's books must agree with the count made from the workers' acknowledgements.
  if (!f.countsAgree) p(`coordinator counts disagree with the independent count: samplesTrained ${f.coordinator.samplesTrained}, ledger ${f.coordinator.ledger}, doubled ${f.coordinator.doubled} vs ${f.samplesTrained} trained, ${f.samplesDoubled} doubled`);
  if (f.coordinatorCrashes !== 0) p(`${f.coordinatorCrashes} coordinator crashes`);
  if (f.checkpointsCorrupt !== 0) p(`${f.checkpointsCorrupt} corrupt checkpoints`);
  if (f.tornSkipped !== f.tornPlanted) p(`torn checkpoints skipped on restart: ${f.tornSkipped}`);
  if (f.malformedAnswered !== f.malformedSent) p(`${f.malformedSent - f.malformedAnswered} malformed messages unanswered`);
  for (const a of f.attackers) {
    // Without re-computation nothing identifies a sign-flipper: that scenario shows what robust
    // aggregation alone bounds (the loss), not bans.
    if (!NOT_BANNED(a.fault) && !a.banned && f.verifyRate > 0 && f.expectBans) p(`attacker ${a.fault} not banned (${a.detectedBy})`);
    if (a.fault.includes('sleeper') && f.verifyRate > 0 && a.outcome.liesPerIdentityMax > SLEEPER_MAX_LIES) {
      p(`sleeper ${a.name} computed ${a.outcome.liesPerIdentityMax} lies after turning under one identity (goal <= ${SLEEPER_MAX_LIES})`);
    }
    const share = f.samplesTrained > 0 ? a.outcome.lyingFoldedSamples / f.samplesTrained : 0;
    if (a.fault.startsWith('sybil') && share > SYBIL_MAX_SHARE) p(`Sybil ${a.name}: ${(100 * share).toFixed(2)}% of trained samples came from its lies (goal < ${100 * SYBIL_MAX_SHARE}%)`);
  }
  const d = lossDelta(f, clean);
  if (d === null) p('no final eval loss');
  else if (!f.judgeLoss) {
    // reported only (see Scenario.judgeLoss)
  }
  // Derailed = worse. A robust rule's result depends on how the batch was split into tasks, so a
  // run can also land a few % better than its clean twin; that is noise, not damage.
  else if (d > maxLossDelta) p(`eval loss ${f.evalLoss} is ${(100 * d).toFixed(2)}% above the clean run's ${clean.evalLoss}`);
  for (const a of f.attackers) if (NOT_BANNED(a.fault) && a.banned) p(`straggler ${a.fault} was banned`);
  return out;
}
