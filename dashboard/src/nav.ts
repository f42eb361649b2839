// Marks the current page in the shared header navigation.
export function markNav(): void {
  const here = location.pathname.replace(/\/index\.html$/, '/');
  for (const a of document.querySelectorAll<HTMLAnchorElement>('nav.top a')) {
    const target = new URL(a.href, location.href).pathname.replace(/\/index\.html$/, '/');
    if (target === here) a.setAttribute('aria-current', 'page');
  }
}
