import { describe, expect, it } from 'vitest';
import { parseDeviceSpec, summariseDevices, DEFAULT_GFLOPS, DEFAULT_LINK_BPS } from '../../shared/memory/devices.ts';
import { AppError } from '../../shared/errors.ts';

describe('device spec', () => {
  it('expands counts, keeps ids in order, reads speed and link', () => {
    const d = parseDeviceSpec('100x8GiB,20x24GiB,1x80GB');
    expect(d).toHaveLength(121);
    expect(d.map((x) => x.id)).toEqual([...Array(121).keys()]);
    expect(d[0].memoryBytes).toBe(8 * 2 ** 30);
    expect(d[100].memoryBytes).toBe(24 * 2 ** 30);
    expect(d[120].memoryBytes).toBe(80e9);
    expect(d[0].gflops).toBe(DEFAULT_GFLOPS);
    expect(d[0].linkBps).toBe(DEFAULT_LINK_BPS);
    const f = parseDeviceSpec('4x16GiB@20000/1Gbps, 24GiB@20TFLOPS/12.5MB/s');
    expect(f[0]).toMatchObject({ memoryBytes: 16 * 2 ** 30, gflops: 20000, linkBps: 1e9, spec: '16GiB@20000/1Gbps' });
    expect(f[4]).toMatchObject({ gflops: 20000, linkBps: 100e6 });
    expect(summariseDevices(d)).toBe('100x8GiB,20x24GiB,1x80GB');
  });

  it.each([
    ['12xGB', /no number/],
    ['0x8GiB', /count/],
    ['3x8GiB@fast', /speed/],
    ['3x8XB', /unknown unit/],
    ['', /empty/],
    ['3x8GiB/1Gb', /bandwidth/],
    ['8GiB,,4GiB', /empty item/],
    ['6000x8GiB,6000x4GiB', /more than 10000 devices/],
  ])('rejects %s with a clear error', (spec, re) => {
    expect(() => parseDeviceSpec(spec)).toThrow(AppError);
    expect(() => parseDeviceSpec(spec)).toThrow(re);
  });
});
