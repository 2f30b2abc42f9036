// The Avatar Debate web page (examples/avatar-debate) in headless Chromium,
// served from its own origin and talking to the gateway across origins (CORS).
// Prints one JSON line: the page's window.debate and any console errors.
//
//   node tests/js/browser_debate.mjs <page-url>
import { chromium } from "playwright-core";

const [pageUrl] = process.argv.slice(2);
const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM || "/usr/bin/chromium",
  args: [
    "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
    "--autoplay-policy=no-user-gesture-required",
  ],
});
try {
  const page = await browser.newPage();
  const errors = [];
  page.on("console", (m) => { if (m.type() === "error") errors.push(m.text()); });
  page.on("pageerror", (e) => errors.push(String(e)));
  await page.goto(pageUrl);
  await page.waitForFunction(() => window.debate && window.debate.done, null, { timeout: 240_000 });
  const debate = await page.evaluate(() => window.debate);
  console.log(JSON.stringify({ debate, errors }));
} finally {
  await browser.close();
}
