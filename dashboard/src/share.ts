// The share box: the worker URL in large type, a copy button and a QR code, so a volunteer can
// join from another device (a phone scans it; the URL is also short enough to type).

import { byId, setText } from './dom.ts';
import { drawQr } from './qr.ts';

export function workerUrl(origin: string, advertised?: string): string {
  if (advertised && /^https?:\/\//.test(advertised)) return advertised;
  return `${origin.replace(/\/$/, '')}/worker/`;
}

export function mountShare(advertised?: string): void {
  const url = workerUrl(location.origin, advertised);
  const link = byId<HTMLAnchorElement>('share-url');
  link.href = url;
  setText(link, url);
  drawQr(byId<HTMLCanvasElement>('share-qr'), url);
  const hint = byId('share-hint');
  const local = /^(localhost|127\.|\[::1\])/.test(new URL(url).host);
  hint.hidden = !local;
  const btn = byId<HTMLButtonElement>('share-copy');
  btn.onclick = async () => {
    try {
      await navigator.clipboard.writeText(url);
      setText(btn, 'Copied');
    } catch {
      // clipboard needs a secure context: select the text so Ctrl+C works
      const r = document.createRange();
      r.selectNodeContents(link);
      getSelection()?.removeAllRanges();
      getSelection()?.addRange(r);
      setText(btn, 'Press Ctrl+C');
    }
    setTimeout(() => setText(btn, 'Copy'), 2000);
  };
}
