// Browser scenarios for tests/browser/*.py: `node driver.mjs <scenario> '<json params>'`.
// Connects to the Chromium the Python test started (SWITCHBOARD_CDP = its DevTools
// websocket), runs one scenario in a fresh browser context, prints one JSON line with
// what it observed; the Python test asserts on it. Nothing is asserted here.
import { chromium } from "playwright-core";

const [, , scenario, rawParams = "{}"] = process.argv;
const params = JSON.parse(rawParams);
const TIMEOUT = 20000;

const shadow = (page, fn, arg) =>
  page.evaluate(([source, a]) => {
    const root = document.querySelector("switchboard-chat").shadowRoot;
    // eslint-disable-next-line no-new-func -- test code only, never shipped
    return new Function("root", "arg", source)(root, a);
  }, [fn, arg]);

async function waitShadow(page, predicate, arg) {
  await page.waitForFunction(([source, a]) => {
    const host = document.querySelector("switchboard-chat");
    if (!host || !host.shadowRoot) return false;
    return new Function("root", "arg", source)(host.shadowRoot, a);
  }, [predicate, arg], { timeout: TIMEOUT });
}

async function widgetReady(page) {
  await page.waitForFunction(() => window.Switchboard && window.Switchboard.element,
                             null, { timeout: TIMEOUT });
}

// The text of the log's messages, as a reader sees them (role prefix included).
const LOG = `return Array.from(root.querySelectorAll(".msg")).map((m) => ({
  role: m.classList.contains("user") ? "user" : m.classList.contains("notice") ? "notice" : "assistant",
  text: m.querySelector(".body").textContent,
  links: Array.from(m.querySelectorAll("a")).map((a) => ({ href: a.href, text: a.textContent })),
  buttons: Array.from(m.querySelectorAll("button")).map((b) => b.textContent),
  busy: m.getAttribute("aria-busy") === "true",
}));`;

// Watch the last assistant bubble and keep every distinct text it showed.
const WATCH = `
  window.__snapshots = [];
  const root = document.querySelector("switchboard-chat").shadowRoot;
  new MutationObserver(() => {
    const bodies = root.querySelectorAll(".msg.assistant .body");
    const last = bodies[bodies.length - 1];
    if (!last) return;
    const text = last.textContent;
    const seen = window.__snapshots;
    if (text && text !== "…" && seen[seen.length - 1] !== text) seen.push(text);
  }).observe(root, { subtree: true, childList: true, characterData: true });`;

async function askThroughUi(page, question) {
  await shadow(page, `root.querySelector(".launcher").click();`);
  await page.locator("switchboard-chat textarea").fill(question);
  await page.locator("switchboard-chat textarea").press("Enter");
}

async function answered(page, count) {
  await waitShadow(page, `return root.querySelectorAll(".msg:not(.user)").length >= arg
    && !root.querySelector('[aria-busy="true"]');`, count);
}

const scenarios = {
  // A page of another origin embeds the widget with one tag and asks through the UI.
  async embed(page) {
    const consoleErrors = [];
    page.on("console", (m) => { if (m.type() === "error") consoleErrors.push(m.text()); });
    await page.goto(params.page);
    await widgetReady(page);
    await page.evaluate(WATCH);
    await askThroughUi(page, params.question);
    await answered(page, 1);
    return {
      log: await shadow(page, LOG),
      snapshots: await page.evaluate(() => window.__snapshots),
      stored: await page.evaluate(() => ({ ...localStorage })),
      consoleErrors,
      hostStyles: await shadow(page, `return getComputedStyle(root.querySelector(".msg.user")).fontFamily;`),
      // ...and the widget's styles did not leak out onto the page.
      pageStyles: await page.evaluate(() => getComputedStyle(document.querySelector("h1")).fontFamily),
    };
  },

  // window.Switchboard from the page's own code.
  async api(page) {
    await page.goto(params.page);
    await widgetReady(page);
    const hiddenAtStart = await shadow(page, `return root.querySelector(".panel").hidden;`);
    await page.evaluate(() => window.Switchboard.open());
    const openAfterOpen = await shadow(page, `return !root.querySelector(".panel").hidden;`);
    const reply = await page.evaluate((q) => window.Switchboard.send(q), params.question);
    await page.evaluate(() => window.Switchboard.close());
    const hiddenAfterClose = await shadow(page, `return root.querySelector(".panel").hidden;`);
    let error = null;
    if (params.refusedQuestion) {
      error = await page.evaluate((q) => window.Switchboard.send(q).then(
        () => null, (e) => ({ name: e.name, code: e.code, status: e.status })), params.refusedQuestion);
    }
    const log = await shadow(page, LOG);
    await page.evaluate(() => window.Switchboard.reset());
    const afterReset = { log: await shadow(page, LOG),
                         stored: await page.evaluate(() => Object.keys(localStorage)) };
    return { hiddenAtStart, openAfterOpen, hiddenAfterClose, reply, error, log, afterReset };
  },

  // Refused origin: the send rejects with the dialect's code and the panel says why.
  async refused(page) {
    await page.goto(params.page);
    await widgetReady(page);
    const error = await page.evaluate((q) => window.Switchboard.send(q).then(
      () => null, (e) => ({ name: e.name, code: e.code, status: e.status })), params.question);
    return { error, log: await shadow(page, LOG) };
  },

  // Ask, reload, and find the conversation again; the next message continues it.
  async reload(page) {
    await page.goto(params.page);
    await widgetReady(page);
    const first = await page.evaluate((q) => window.Switchboard.send(q), params.questions[0]);
    const storedBefore = await page.evaluate(() => ({ ...localStorage }));
    // Keep only the session id, whatever else the widget stored: what the reloaded page
    // shows must come from the server.
    await page.evaluate(() => {
      for (const key of Object.keys(localStorage)) {
        const { sessionId } = JSON.parse(localStorage.getItem(key));
        localStorage.setItem(key, JSON.stringify({ sessionId }));
      }
    });
    const historyRequests = [];
    page.on("request", (request) => {
      if (request.url().includes("/api/sdk/chat/history")) historyRequests.push(request.url());
    });
    await page.reload();
    await widgetReady(page);
    await answered(page, 1);
    const afterReload = await shadow(page, LOG);
    const second = await page.evaluate((q) => window.Switchboard.send(q), params.questions[1]);
    return { first, second, afterReload, storedBefore, historyRequests,
             stored: await page.evaluate(() => ({ ...localStorage })) };
  },

  // Reload while the answer streams: the reloaded page picks the answer up again.
  async reloadMidAnswer(page) {
    await page.goto(params.page);
    await widgetReady(page);
    await page.evaluate(WATCH);
    await askThroughUi(page, params.question);
    await page.waitForFunction((n) => (window.__snapshots || []).some((t) => t.length >= n),
                               params.partial, { timeout: TIMEOUT });
    const before = await page.evaluate(() => window.__snapshots[window.__snapshots.length - 1]);
    await page.reload();
    await widgetReady(page);
    await answered(page, 1);
    return { before, log: await shadow(page, LOG),
             stored: await page.evaluate(() => ({ ...localStorage })) };
  },

  // Citations as links, the escalation offer as a button, the routing acknowledgement.
  async actions(page) {
    await page.goto(params.page);
    await widgetReady(page);
    await page.evaluate(() => window.Switchboard.open());
    await page.evaluate((q) => window.Switchboard.send(q), params.cited);
    await page.evaluate((q) => window.Switchboard.send(q), params.escalate);
    const beforeClick = await shadow(page, LOG);
    await page.locator("switchboard-chat .escalate").click();
    await answered(page, 3);
    return { beforeClick, afterClick: await shadow(page, LOG) };
  },

  // Model and user text full of HTML and script URLs must render as inert text.
  async hostile(page) {
    const dialogs = [];
    page.on("dialog", (d) => { dialogs.push(d.message()); d.dismiss(); });
    await page.goto(params.page);
    await widgetReady(page);
    await page.evaluate(() => window.Switchboard.open());
    const reply = await page.evaluate((q) => window.Switchboard.send(q), params.question);
    await page.waitForTimeout(300); // let an onerror handler fire, if one was created
    const inspect = await shadow(page, `return {
      images: root.querySelectorAll("img").length,
      scripts: root.querySelectorAll("script").length,
      iframes: root.querySelectorAll("iframe").length,
      handlers: Array.from(root.querySelectorAll("*")).flatMap((e) =>
        Array.from(e.attributes).filter((a) => a.name.startsWith("on")).map((a) => a.name)),
      links: Array.from(root.querySelectorAll(".log a")).map((a) => a.getAttribute("href")),
      strong: Array.from(root.querySelectorAll(".log strong")).map((s) => s.textContent),
      code: Array.from(root.querySelectorAll(".log code")).map((s) => s.textContent),
      lists: root.querySelectorAll(".log li").length,
    };`);
    return { reply, inspect, dialogs, pwned: await page.evaluate(() => window.__pwned ?? null),
             log: await shadow(page, LOG) };
  },

  // Keyboard only: Tab to the launcher, Enter, type, Enter, Escape; the live region;
  // labelled controls; contrast of the default theme; the layout at 320 px.
  async keyboard(page) {
    await page.goto(params.page);
    await widgetReady(page);
    const activeInShadow = () => shadow(page, `const a = root.activeElement;
      return a ? (a.className || a.tagName.toLowerCase()) : null;`);
    const focusTrail = [];
    for (let i = 0; i < 6; i += 1) {
      await page.keyboard.press("Tab");
      const where = await page.evaluate(() => document.activeElement.tagName.toLowerCase());
      focusTrail.push(where === "switchboard-chat" ? await activeInShadow() : where);
      if (focusTrail[focusTrail.length - 1] === "launcher") break;
    }
    await page.keyboard.press("Enter");
    const afterOpen = await activeInShadow();
    const expanded = await shadow(page, `return root.querySelector(".launcher").getAttribute("aria-expanded");`);
    await page.keyboard.type(params.question);
    await page.keyboard.press("Enter");
    await waitShadow(page, `return root.querySelector('[role="status"]').textContent.length > 20;`);
    const live = await shadow(page, `const s = root.querySelector('[role="status"]');
      return { text: s.textContent, live: s.getAttribute("aria-live") };`);
    const labels = await shadow(page, `return Array.from(root.querySelectorAll("button, textarea"))
      .map((c) => {
        const byFor = c.id ? root.querySelector('label[for="' + c.id + '"]') : null;
        return { control: c.className || c.tagName.toLowerCase(),
                 name: (c.getAttribute("aria-label") || (byFor && byFor.textContent)
                        || c.textContent || "").trim() };
      });`);
    const contrast = await shadow(page, `
      const rgb = (s) => s.match(/[\\d.]+/g).slice(0, 3).map(Number);
      const lum = (c) => { const [r, g, b] = c.map((v) => { v /= 255;
        return v <= 0.03928 ? v / 12.92 : ((v + 0.055) / 1.055) ** 2.4; });
        return 0.2126 * r + 0.7152 * g + 0.0722 * b; };
      const ratio = (a, b) => { const [x, y] = [lum(rgb(a)), lum(rgb(b))].sort((p, q) => q - p);
        return (x + 0.05) / (y + 0.05); };
      const bg = (e) => { for (let n = e; n; n = n.parentElement || (n.getRootNode() && n.getRootNode().host)) {
        const c = getComputedStyle(n).backgroundColor;
        if (c && !c.endsWith(", 0)") && c !== "transparent") return c; } return "rgb(255, 255, 255)"; };
      const pairs = {};
      for (const sel of [".msg.user .body", ".msg.assistant .body", "header h2", ".send",
                         ".launcher", ".sources", "textarea"]) {
        const e = root.querySelector(sel);
        if (e) pairs[sel] = Math.round(ratio(getComputedStyle(e).color, bg(e)) * 100) / 100;
      }
      return pairs;`);
    const themeBg = await page.evaluate(() => getComputedStyle(
      document.querySelector("switchboard-chat")).getPropertyValue("--sb-bg").trim());
    await page.keyboard.press("Escape");
    const afterEscape = {
      hidden: await shadow(page, `return root.querySelector(".panel").hidden;`),
      focus: await activeInShadow(),
    };
    await page.setViewportSize({ width: 320, height: 640 });
    await page.evaluate(() => window.Switchboard.open());
    const narrow = await shadow(page, `const r = root.querySelector(".panel").getBoundingClientRect();
      const t = root.querySelector("textarea").getBoundingClientRect();
      const s = root.querySelector(".send").getBoundingClientRect();
      return { left: r.left, right: r.right, top: r.top, width: r.width,
               sendRight: s.right, inputWidth: t.width,
               scrollWidth: document.documentElement.scrollWidth };`);
    return { focusTrail, afterOpen, expanded, live, labels, contrast, themeBg, afterEscape, narrow };
  },

  // A page whose CSP allows scripts only from itself and the widget's host.
  async csp(page) {
    const violations = [];
    page.on("console", (m) => {
      if (/Content Security Policy|Refused to/i.test(m.text())) violations.push(m.text());
    });
    page.on("pageerror", (e) => violations.push("pageerror: " + e.message));
    await page.goto(params.page);
    await widgetReady(page);
    await page.evaluate(() => window.Switchboard.open());
    const reply = await page.evaluate((q) => window.Switchboard.send(q), params.question);
    // No `shadow()` here: its Function constructor is eval, which this page's CSP forbids.
    const styled = await page.evaluate(() => getComputedStyle(
      document.querySelector("switchboard-chat").shadowRoot.querySelector(".launcher")).borderRadius);
    return { reply, violations, styled };
  },

  // The SDK on its own: deltas, actions, the result, typed errors, abort + stop.
  async sdk(page) {
    await page.goto(params.page);
    return page.evaluate(async (p) => {
      const sdk = await import(p.sdkUrl);
      const client = sdk.createClient({ baseUrl: p.baseUrl, key: p.key, agentId: p.agent,
                                        userId: p.userId, userToken: p.userToken });
      const out = { deltas: [], actions: [] };
      if (p.question) try {
        out.result = await client.send(p.question, {
          onText: (delta) => out.deltas.push(delta),
          onAction: (action) => out.actions.push(action),
        });
      } catch (e) {
        out.error = { name: e.name, code: e.code, message: e.message };
      }
      if (p.history) {
        out.history = await client.history();
        const stranger = sdk.createClient({ baseUrl: p.baseUrl, key: p.key });
        try {
          await stranger.history(client.sessionId);
          out.strangerHistory = { resolved: true };
        } catch (e) {
          out.strangerHistory = { name: e.name, code: e.code, status: e.status };
        }
      }
      if (p.abortAfterText) {
        const controller = new AbortController();
        const abortClient = sdk.createClient({ baseUrl: p.baseUrl, key: p.key, agentId: p.abortAgent });
        let seen = "";
        try {
          await abortClient.send("stop me", { signal: controller.signal, onText: (d, all) => {
            seen = all;
            if (all.length >= p.abortAfterText) controller.abort();
          } });
          out.abort = { resolved: true };
        } catch (e) {
          out.abort = { name: e.name, seen, sessionId: abortClient.sessionId };
        }
      }
      if (p.burst) {
        const burstClient = sdk.createClient({ baseUrl: p.baseUrl, key: p.key, agentId: p.agent });
        const results = [];
        for (let i = 0; i < p.burst; i += 1) {
          try {
            await burstClient.send("hi " + i);
            results.push("ok");
          } catch (e) {
            results.push({ name: e.name, code: e.code, status: e.status, retryAfter: e.retryAfter,
                           isSwitchboardError: e instanceof sdk.SwitchboardError,
                           isRateLimit: e instanceof sdk.RateLimitError });
          }
        }
        out.burst = results;
      }
      return out;
    }, params);
  },

  // Human handoff: the visitor's widget page and the operator console, open at once,
  // exchanging messages live.
  async handoff(page) {
    const errors = [];
    const visitor = page;
    const operator = await page.context().newPage();
    for (const p of [visitor, operator]) {
      p.on("console", (m) => { if (m.type() === "error") errors.push(m.text()); });
    }
    await visitor.goto(params.page);
    await widgetReady(visitor);
    await visitor.evaluate(() => window.Switchboard.open());
    await visitor.evaluate((q) => window.Switchboard.element.send(q, { mode: "livehelp" }),
                           params.ask);

    await operator.goto(params.console);
    await operator.fill("#token", params.token);
    await operator.click("#sign-in button[type=submit]");
    const entry = operator.locator("#queue li[data-state=waiting] button");
    await entry.first().waitFor();
    const queued = await entry.count();
    await entry.first().click();
    await operator.click("[data-testid=claim]");
    await operator.waitForFunction(() =>
      document.querySelector("[data-testid=state]").dataset.state === "human");
    await waitShadow(visitor, `return Array.from(root.querySelectorAll(".msg.notice"))
      .some((m) => m.textContent.includes("joined the conversation"));`);
    await operator.fill("[data-testid=reply-text]", params.reply);
    await operator.click("[data-testid=send]");
    await waitShadow(visitor, `return root.querySelector(".msg.operator") !== null;`);
    const shown = await shadow(visitor, `const m = root.querySelector(".msg.operator");
      return { who: m.querySelector(".who").textContent,
               text: m.querySelector(".body").textContent };`);

    const answer = await visitor.evaluate((q) => window.Switchboard.send(q), params.answer);
    await operator.waitForFunction((text) => Array.from(
      document.querySelectorAll("#messages li.user")).some((li) => li.textContent.includes(text)),
      params.answer);
    const consoleLog = await operator.evaluate(() => Array.from(
      document.querySelectorAll("#messages li")).map((li) => ({
        role: li.dataset.role, text: li.lastChild.textContent })));
    // A reload mid-handoff: the transcript (operator message included) comes back from
    // the server and the widget listens again.
    await visitor.reload();
    await widgetReady(visitor);
    await waitShadow(visitor, `return root.querySelector(".msg.operator") !== null;`);
    await operator.fill("[data-testid=reply-text]", params.second);
    await operator.click("[data-testid=send]");
    await waitShadow(visitor, `return Array.from(root.querySelectorAll(".msg.operator"))
      .some((m) => m.textContent.includes(arg));`, params.second);
    const afterReload = await shadow(visitor, `return Array.from(root.querySelectorAll(
      ".msg.operator .body")).map((b) => b.textContent);`);
    await operator.click("[data-testid=release]");
    await waitShadow(visitor, `return Array.from(root.querySelectorAll(".msg.notice"))
      .some((m) => m.textContent.includes("assistant again"));`);
    const afterRelease = await visitor.evaluate((q) => window.Switchboard.send(q), params.after);
    return { queued, shown, answer, consoleLog, afterRelease, afterReload, errors,
             visitorLog: await shadow(visitor, `return Array.from(root.querySelectorAll(".msg"))
               .map((m) => m.className + ": " + m.querySelector(".body").textContent);`) };
  },

  // The demo page with an answered question, for the README.
  async screenshot(page) {
    await page.goto(params.page);
    await widgetReady(page);
    await page.evaluate(() => window.Switchboard.open());
    await page.evaluate((q) => window.Switchboard.send(q), params.question);
    await page.waitForTimeout(200);
    await page.screenshot({ path: params.path });
    return { path: params.path };
  },
};

const browser = await chromium.connectOverCDP(process.env.SWITCHBOARD_CDP);
const context = await browser.newContext({ viewport: params.viewport || { width: 1024, height: 720 } });
const page = await context.newPage();
page.setDefaultTimeout(TIMEOUT);
let code = 0;
try {
  const result = await scenarios[scenario](page);
  process.stdout.write(JSON.stringify(result) + "\n");
} catch (err) {
  process.stderr.write(`scenario ${scenario} failed: ${err.stack || err}\n`);
  code = 1;
} finally {
  await context.close().catch(() => undefined);
}
process.exit(code);
