// The largest socket.io message the coordinator accepts and announces (welcome.maxMessageBytes):
// a full float32 gradient or parameter vector plus 1 MiB for the rest of the message. One formula
// for the socket.io server's maxHttpBufferSize (coordinator.ts) and the welcome (gateway.ts).

export function maxMessageBytes(paramCount: number): number {
  return paramCount * 4 + (1 << 20);
}
