// Messages between the /worker page (rendering only) and its Web Worker (engine + worker loop).
// Structured-clone objects; both sides switch on `type`.

import type { DeviceDescription } from '../client/engine-host.ts';
import type { TraceEvent } from '../client/trace.ts';
import type { LogLevel, WorkerStats } from '../client/worker-client.ts';

export type PageToWorker =
  | { type: 'probe'; cpu: boolean }
  /** `trace`: forward the audit trace (trace.ts) to the page (`/worker/?trace=1`, for outside auditors). */
  | { type: 'start'; url: string; urls?: string[]; cpu: boolean; capBytes?: number; name?: string; joinToken?: string; trace?: boolean }
  | { type: 'pause' }
  | { type: 'resume' }
  | { type: 'stop'; reason: string };

export type WorkerToPage =
  | { type: 'device'; ok: true; backend: 'webgpu' | 'cpu'; device: DeviceDescription }
  | { type: 'device'; ok: false; backend: 'webgpu' | 'cpu'; error: string }
  | { type: 'stats'; stats: WorkerStats }
  | { type: 'log'; level: LogLevel; msg: string }
  | { type: 'trace'; event: TraceEvent }
  /** `refused`: the hello was refused with this code (UNAUTHORIZED, PROTOCOL_VERSION, BANNED). */
  | { type: 'stopped'; reason: string; refused?: string };
