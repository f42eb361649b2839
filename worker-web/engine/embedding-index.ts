// CSR index of token positions per vocabulary row, built on the CPU from the token ids the
// worker already holds. It lets the embedding backward give each (row, channel) one owner thread
// that sums its positions in ascending order: deterministic, no float atomics.

export interface EmbeddingIndex {
  /** rowStart[v]..rowStart[v+1] are v's entries in `positions`. Length V+1. */
  rowStart: Uint32Array;
  /** Positions (b*T+t) sorted by token, ascending within a token. Length N. */
  positions: Uint32Array;
}

export function buildEmbeddingIndex(inp: Int32Array, V: number): EmbeddingIndex {
  const rowStart = new Uint32Array(V + 1);
  for (let i = 0; i < inp.length; i++) rowStart[inp[i] + 1]++;
  for (let v = 0; v < V; v++) rowStart[v + 1] += rowStart[v];
  const fill = rowStart.slice(0, V);
  const positions = new Uint32Array(inp.length);
  for (let i = 0; i < inp.length; i++) positions[fill[inp[i]]++] = i;
  return { rowStart, positions };
}
