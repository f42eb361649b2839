// DOM helpers that only ever create text nodes from data. Everything a worker sends (names,
// adapter strings) reaches the page through these, so markup in it is shown, never parsed.
// There is deliberately no helper that sets innerHTML.

export type Child = Node | string | number | null | undefined | false;

export interface ElOptions {
  id?: string;
  className?: string;
  testid?: string;
  title?: string;
  attrs?: Record<string, string>;
}

export function el<K extends keyof HTMLElementTagNameMap>(
  tag: K,
  opts: ElOptions = {},
  ...children: Child[]
): HTMLElementTagNameMap[K] {
  const node = document.createElement(tag);
  if (opts.id) node.id = opts.id;
  if (opts.className) node.className = opts.className;
  if (opts.testid) node.dataset.testid = opts.testid;
  if (opts.title) node.title = opts.title;
  for (const [k, v] of Object.entries(opts.attrs ?? {})) node.setAttribute(k, v);
  append(node, ...children);
  return node;
}

export function append(parent: Node, ...children: Child[]): void {
  for (const c of children) {
    if (c === null || c === undefined || c === false) continue;
    parent.appendChild(typeof c === 'string' || typeof c === 'number' ? document.createTextNode(String(c)) : c);
  }
}

/** Replace an element's content with plain text. */
export function setText(node: Element, text: string | number): void {
  if (node.textContent !== String(text)) node.textContent = String(text);
}

export function clear(node: Element): void {
  while (node.firstChild) node.removeChild(node.firstChild);
}

/** The element with this id, or a clear error naming it (a page/markup mismatch is a bug). */
export function byId<T extends HTMLElement = HTMLElement>(id: string): T {
  const node = document.getElementById(id);
  if (!node) throw new Error(`dashboard: element #${id} is missing from the page`);
  return node as T;
}
