// Reputation: probation, adaptive (BOINC-like) verification rate, strikes and penalty bans.
import { describe, expect, it } from 'vitest';
import { DEFAULT_REPUTATION, PENALTY, Reputation } from '../../coordinator/security/reputation.ts';
import { TokenBucket } from '../../coordinator/security/rate-limit.ts';
import { originAllowed } from '../../coordinator/security/origin.ts';
import { ReplayGuard, gradientDigest } from '../../coordinator/security/replay.ts';

describe('reputation', () => {
  it('verifies every result on probation, then less often as verified results accumulate, never below the floor', () => {
    const r = new Reputation({ ...DEFAULT_REPUTATION, verifyRate: 0.2, minVerifyRate: 0.02, probation: 2 });
    expect(r.verifyProbability('a')).toBe(1);
    r.recordVerified('a', true);
    expect(r.verifyProbability('a')).toBe(1);
    r.recordVerified('a', true);
    expect(r.verifyProbability('a')).toBeCloseTo(0.2);
    for (let i = 0; i < 8; i++) r.recordVerified('a', true);
    expect(r.verifyProbability('a')).toBeCloseTo(0.1);
    for (let i = 0; i < 200; i++) r.recordVerified('a', true);
    expect(r.verifyProbability('a')).toBe(0.02);
    expect(r.trust('a')).toBeGreaterThan(0.9);
  });

  it('a mismatch puts the worker back on full verification; the second one bans it', () => {
    const r = new Reputation();
    for (let i = 0; i < 20; i++) r.recordVerified('a', true);
    expect(r.recordVerified('a', false).ban).toBe(false);
    expect(r.verifyProbability('a')).toBe(1);
    const v = r.recordVerified('a', false);
    expect(v.ban).toBe(true);
    expect(r.isBanned('a')).toBe(true);
    expect(r.trust('a')).toBe(0);
  });

  it('bad messages add penalty points and ban; LATE and UNKNOWN_TASK (honest after restarts) cost nothing', () => {
    const r = new Reputation();
    for (let i = 0; i < 100; i++) expect(r.recordRejected('honest', i % 2 ? 'LATE' : 'UNKNOWN_TASK').ban).toBe(false);
    let banned = false;
    let n = 0;
    while (!banned && n < 100) {
      banned = r.recordRejected('bad', 'NON_FINITE').ban;
      n++;
    }
    expect(banned).toBe(true);
    expect(n).toBe(Math.ceil(DEFAULT_REPUTATION.banPenalty / PENALTY.NON_FINITE));
  });
});

describe('rate limit, origin, replay', () => {
  it('token bucket: a burst passes, a flood does not, and it refills', () => {
    const b = new TokenBucket(10, 20, 0);
    let ok = 0;
    for (let i = 0; i < 100; i++) if (b.take(0)) ok++;
    expect(ok).toBe(20);
    expect(b.take(50)).toBe(false);
    expect(b.take(1000)).toBe(true);
  });

  it('origins: none (non-browser) and same-origin pass, another site does not unless listed', () => {
    expect(originAllowed(undefined, '127.0.0.1:8080', [])).toBe(true);
    expect(originAllowed('http://127.0.0.1:8080', '127.0.0.1:8080', [])).toBe(true);
    expect(originAllowed('https://evil.example', '127.0.0.1:8080', [])).toBe(false);
    expect(originAllowed('null', '127.0.0.1:8080', [])).toBe(false);
    expect(originAllowed('https://lab.example', '127.0.0.1:8080', ['https://lab.example'])).toBe(true);
  });

  it('replay guard: identical gradient bytes for other work are recognised under any task id; the same work recomputed is not a replay', () => {
    const g = new ReplayGuard(2);
    const a = gradientDigest(new Float32Array([1, 2, 3]));
    g.remember(a, 't1', '5.5.0-4');
    expect(g.seenBy(gradientDigest(new Float32Array([1, 2, 3])), '5.5.4-8')).toBe('t1');
    expect(g.seenBy(gradientDigest(new Float32Array([1, 2, 3])), '5.5.0-4')).toBeUndefined(); // reopened lease, recomputed
    expect(g.seenBy(gradientDigest(new Float32Array([1, 2, 3.0001])), '5.5.4-8')).toBeUndefined();
    g.remember(gradientDigest(new Float32Array([4])), 't2');
    g.remember(gradientDigest(new Float32Array([5])), 't3');
    expect(g.seenBy(a, 'x')).toBeUndefined(); // bounded: the oldest is forgotten
  });
});

describe('fresh identities from an address with bans (issue 17)', () => {
  it('serve their longer probation fully checked, then are sampled rateBoost times the base rate', () => {
    const r = new Reputation({ ...DEFAULT_REPUTATION, verifyRate: 0.1 });
    r.setProbation('fresh', 6, 3);
    for (let k = 0; k < 6; k++) {
      expect(r.verifyProbability('fresh')).toBe(1);
      r.recordVerified('fresh', true);
    }
    expect(r.verifyProbability('fresh')).toBeCloseTo(0.3, 10);
    expect(r.verifyProbability('plain')).toBe(1); // ordinary probation: 2 results
    r.recordVerified('plain', true);
    r.recordVerified('plain', true);
    expect(r.verifyProbability('plain')).toBeCloseTo(0.1, 10);
  });
});
