// The share QR code: the worker URL as a QR matrix (qrcode-generator, byte mode, error correction
// M, smallest version that fits), drawn on a canvas with fillRect, which a strict CSP allows (no
// data: image or inline SVG needed).

import qrcode from 'qrcode-generator';

/** dark[row][col] for `text`, without the quiet zone. */
export function qrMatrix(text: string): boolean[][] {
  const qr = qrcode(0, 'M');
  qr.addData(text, 'Byte');
  qr.make();
  const n = qr.getModuleCount();
  return Array.from({ length: n }, (_, r) => Array.from({ length: n }, (_, c) => qr.isDark(r, c)));
}

/** Draws the code with a 4-module quiet zone, `scale` pixels per module. */
export function drawQr(canvas: HTMLCanvasElement, text: string, scale = 5): void {
  const m = qrMatrix(text);
  const quiet = 4;
  const size = (m.length + 2 * quiet) * scale;
  canvas.width = size;
  canvas.height = size;
  const ctx = canvas.getContext('2d');
  if (!ctx) return;
  ctx.fillStyle = '#fff';
  ctx.fillRect(0, 0, size, size);
  ctx.fillStyle = '#000';
  m.forEach((row, r) => row.forEach((dark, c) => dark && ctx.fillRect((c + quiet) * scale, (r + quiet) * scale, scale, scale)));
  canvas.dataset.modules = String(m.length);
  canvas.setAttribute('aria-label', `QR code for ${text}`);
}
