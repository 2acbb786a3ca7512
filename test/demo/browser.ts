// Renders an HTML file in a real headless Chromium (puppeteer-core over the system browser) and
// reports what a reader would see: the panels, the figures (inline SVG with drawn curves), the
// tables' rows, and every console error or page error. No browser: null with the reason, or a
// failure when PATENTGPT_REQUIRE_PEERS=1 (CI installs Chromium with scripts/install-peers.sh).
import { existsSync } from 'node:fs';
import { pathToFileURL } from 'node:url';
import { missingPeer } from '../../scripts/bench/_peers.js';

const CANDIDATES = [process.env.PATENTGPT_CHROMIUM, '/usr/bin/chromium', '/usr/bin/chromium-browser', '/usr/bin/google-chrome', '/usr/bin/google-chrome-stable'];

/** The browser's path, or the reason there is none (a throw when peers are required). */
export function findChromium(candidates: readonly (string | undefined)[] = CANDIDATES): { path: string | null; why: string } {
  const found = candidates.find((p): p is string => typeof p === 'string' && existsSync(p));
  if (found) return { path: found, why: '' };
  return { path: null, why: missingPeer('no Chromium found (apt-get install chromium, or set PATENTGPT_CHROMIUM): the report is not rendered in a browser') };
}

export interface RenderedPage {
  errors: string[];
  panels: string[];
  /** Per figure (data-figure): the SVG's rendered width and height, its curves and its panel titles. */
  figures: Record<string, { width: number; height: number; curves: number; titles: string[] }>;
  /** Per table (data-table): its rows' cell texts. */
  tables: Record<string, string[][]>;
  chatTurns: number;
}

export async function renderInBrowser(file: string, executablePath: string): Promise<RenderedPage> {
  const puppeteer = (await import('puppeteer-core')).default;
  const browser = await puppeteer.launch({ executablePath, headless: true, args: ['--no-sandbox', '--disable-gpu', '--disable-dev-shm-usage'] });
  try {
    const page = await browser.newPage();
    const errors: string[] = [];
    page.on('console', (m) => {
      if (m.type() === 'error' || m.type() === 'warn') errors.push(`console.${m.type()}: ${m.text()}`);
    });
    page.on('pageerror', (e) => errors.push(`pageerror: ${(e as Error).message}`));
    page.on('requestfailed', (r) => errors.push(`request failed: ${r.url()}`));
    await page.goto(pathToFileURL(file).href, { waitUntil: 'load' });
    // Runs in the page (a string: this project's TypeScript has no DOM types).
    const seen = (await page.evaluate(`(() => {
      const panels = [...document.querySelectorAll('[data-panel]')].map((e) => e.getAttribute('data-panel'));
      const figures = {};
      for (const f of document.querySelectorAll('[data-figure]')) {
        const svg = f.querySelector('svg');
        const box = svg ? svg.getBoundingClientRect() : null;
        figures[f.getAttribute('data-figure')] = {
          width: box ? box.width : 0, height: box ? box.height : 0,
          curves: svg ? svg.querySelectorAll('polyline, path, circle').length : 0,
          titles: svg ? [...svg.querySelectorAll('text')].map((t) => t.textContent || '') : [],
        };
      }
      const tables = {};
      for (const t of document.querySelectorAll('table[data-table]'))
        tables[t.getAttribute('data-table')] = [...t.querySelectorAll('tr')].map((r) => [...r.querySelectorAll('td, th')].map((c) => (c.textContent || '').trim()));
      return { panels, figures, tables, chatTurns: document.querySelectorAll('[data-panel="chat"] .turn').length };
    })()`)) as Omit<RenderedPage, 'errors'>;
    return { errors, ...seen };
  } finally {
    await browser.close();
  }
}
