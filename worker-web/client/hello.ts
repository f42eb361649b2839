// What the worker tells the coordinator about itself when it connects: the device, the memory it
// offers, who it is (name, agent, the id to resume), the join token. Absent fields are left out,
// not sent as undefined.

import { PROTOCOL_VERSION, type HelloMsg } from '../../shared/protocol/messages.ts';
import type { BackendName } from '../../shared/backend.ts';
import type { DeviceDescription } from './engine-host.ts';

export interface HelloFields {
  backend: BackendName;
  device: DeviceDescription;
  userCapBytes?: number;
  /** The id of the previous welcome, to keep our identity across reconnects. */
  resumeId?: string;
  name?: string;
  agent?: string;
  joinToken?: string;
}

export function helloMessage(f: HelloFields): HelloMsg {
  const hello: HelloMsg = {
    protocol: PROTOCOL_VERSION,
    backend: f.backend,
    adapter: f.device.adapter,
    limits: f.device.limits,
    probedBytes: f.device.probedBytes,
    userCapBytes: f.userCapBytes,
    resumeId: f.resumeId,
    name: f.name,
    agent: f.agent ?? 'worker-client/0.1',
    joinToken: f.joinToken,
  };
  return dropUndefined(hello);
}

function dropUndefined<T extends object>(o: T): T {
  const c = { ...o } as Record<string, unknown>;
  for (const k of Object.keys(c)) if (c[k] === undefined) delete c[k];
  return c as T;
}
