// Open Parley's bundled page in Debian's headless chromium with a fake microphone (a WAV file),
// press Call, and report what the page saw as one JSON line on stdout.
//   node call_page.mjs <page-url> <wav> <timeout-ms> [screenshot.png] [answer|barge-in]
import { chromium } from "playwright-core";

const [url, wav, timeoutArg, screenshot, expect = "answer"] = process.argv.slice(2);
const timeout = Number(timeoutArg || 60000);
const result = { ok: false, console: [] };

const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM || "/usr/bin/chromium",
  headless: true,
  ignoreDefaultArgs: ["--mute-audio"],
  args: [
    "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
    "--use-fake-ui-for-media-stream", "--use-fake-device-for-media-stream",
    `--use-file-for-fake-audio-capture=${wav}`, "--autoplay-policy=no-user-gesture-required",
    "--allow-loopback-in-peer-connection", "--disable-features=WebRtcHideLocalIpsWithMdns",
  ],
});
try {
  const page = await browser.newPage();
  page.on("console", (msg) => result.console.push(`${msg.type()}: ${msg.text()}`));
  page.on("pageerror", (err) => result.console.push(`pageerror: ${err.message}`));
  await page.goto(url, { timeout: 15000 });
  await page.click("#call");
  const started = Date.now();
  await page.waitForSelector("#transcript li.user:not(.partial)", { timeout });
  result.user_transcript = await page.textContent("#transcript li.user:not(.partial) span");
  // Wait until the agent's audio has reached the page with a non-zero level.
  let stats = null;
  while (Date.now() - started < timeout) {
    stats = await page.evaluate(() => window.parley.inboundAudioStats());
    if (stats && stats.bytesReceived > 0 && (stats.audioLevel > 0 || stats.totalAudioEnergy > 0)) break;
    await page.waitForTimeout(200);
  }
  result.inbound_audio = stats;
  if (expect === "barge-in") {
    // The fake mic asks a second question while the agent is still answering the first.
    await page.waitForSelector("#transcript li.agent.interrupted", { timeout });
    result.interrupted_text = await page.textContent("#transcript li.agent.interrupted span");
    await page.waitForFunction(() => document.querySelectorAll("#transcript li.agent:not(.partial)").length >= 2, null, { timeout });
    const users = await page.$$eval("#transcript li.user:not(.partial) span", (els) => els.map((e) => e.textContent));
    const agents = await page.$$eval("#transcript li.agent span", (els) => els.map((e) => e.textContent));
    result.user_lines = users;
    result.agent_lines = agents;
  }
  await page.waitForSelector("#transcript li.agent", { timeout: 15000 }).catch(() => {});
  result.agent_text = await page.textContent("#transcript li.agent span").catch(() => null);
  result.agent_state = await page.getAttribute("#agent-state", "data-state");
  result.metrics_rows = await page.$$eval("#metrics tbody tr", (rows) => rows.map((r) => [...r.cells].map((c) => c.textContent)));
  result.status = await page.textContent("#status");
  if (screenshot) await page.screenshot({ path: screenshot, fullPage: true });
  await page.click("#hangup");
  result.ok = true;
} catch (err) {
  result.error = String(err && err.message || err);
} finally {
  await browser.close();
  console.log(JSON.stringify(result));
}
