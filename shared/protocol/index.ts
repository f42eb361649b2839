// The wire protocol: message types, the msgpack socket.io parser, runtime validators.
export * from './messages.ts';
export * from './parser.ts';
export * from './validate.ts';
export * from './dashboard.ts';
