/*
 * 招商政策问答 chat widget.
 *
 *   <script src="https://assistant.example.gov.cn/widget.js" defer></script>
 *
 * adds a chat bubble to the page that asks the server it came from (POST /api/ask) and
 * shows the answer with its numbered sources. Optional attributes on the script tag:
 * data-title (panel title), data-placeholder, data-k (passages per answer), data-kb
 * (knowledge bases to search, comma-separated; default all), data-token-url.
 *
 * Signed in (the server runs with RAG_AUTH other than none): data-token-url names a URL
 * of the portal itself that returns {"token": …, "expires_in": seconds} for the user
 * signed in to the portal. The portal's server gets that token from this server's
 * POST /api/embed-tokens with its API key; the key never reaches the page, and the
 * token is short-lived and good only from the portal's origin. The widget fetches it
 * when needed, keeps it in memory, and fetches a new one before it expires or when the
 * server says it has (401).
 *
 * Everything from the server is inserted with textContent, never as HTML: documents
 * are untrusted. Styles live in a shadow root, so the portal's CSS and ours never mix.
 */
(function () {
  "use strict";
  var script = document.currentScript;
  if (!script || window.__policyRagWidget) return;
  window.__policyRagWidget = true;

  var base = new URL(".", script.src).href; // the server the script was loaded from
  var title = script.getAttribute("data-title") || "招商政策问答";
  var placeholder = script.getAttribute("data-placeholder") || "请输入问题，例如：写字楼租金补贴多少？";
  var k = parseInt(script.getAttribute("data-k") || "0", 10) || null;
  var tokenUrl = script.getAttribute("data-token-url");
  var token = null; // {value, until}: in memory only, never in storage or a URL
  var kbs = (script.getAttribute("data-kb") || "").split(",").map(function (s) {
    return s.trim();
  }).filter(Boolean);

  var css = [
    ":host{all:initial}",
    ".bubble{position:fixed;right:24px;bottom:24px;width:56px;height:56px;border-radius:50%;",
    "border:none;background:#c0392b;color:#fff;cursor:pointer;display:flex;",
    "align-items:center;justify-content:center;",
    "box-shadow:0 4px 12px rgba(0,0,0,.25);z-index:2147483000}",
    ".panel{position:fixed;right:24px;bottom:92px;width:380px;max-width:calc(100vw - 48px);",
    "height:560px;max-height:calc(100vh - 120px);display:none;flex-direction:column;",
    "background:#fff;border-radius:10px;box-shadow:0 8px 28px rgba(0,0,0,.25);",
    "z-index:2147483000;overflow:hidden;font:14px/1.6 'Noto Sans CJK SC','PingFang SC',",
    "'Microsoft YaHei',sans-serif;color:#1f2328}",
    ".panel.open{display:flex}",
    "header{background:#c0392b;color:#fff;padding:10px 14px;font-weight:600;display:flex;",
    "justify-content:space-between;align-items:center}",
    "header button{background:none;border:none;color:#fff;font-size:18px;cursor:pointer}",
    ".log{flex:1;overflow-y:auto;padding:10px 12px}",
    ".msg{margin:8px 0;padding:8px 10px;border-radius:8px;white-space:pre-wrap;word-break:break-word}",
    ".user{background:#fdecea;margin-left:40px}",
    ".bot{background:#f6f8fa;margin-right:20px}",
    ".bot.empty{background:#fff8e1;border:1px solid #f0c36d}",
    ".marker{color:#0969da;cursor:pointer;font-size:12px;vertical-align:super}",
    ".sources{margin:4px 0 10px 0;padding:0;list-style:none;font-size:12.5px}",
    ".sources li{border-left:3px solid #d0d7de;padding:4px 8px;margin:6px 0}",
    ".sources li.flash{border-color:#0969da;background:#eef6ff}",
    ".sources a.original{color:#0969da;font-size:12px}",
    ".src-title{font-weight:600}.src-meta{color:#656d76}",
    ".quote{background:#fff3b0}",
    ".notice{color:#6b4f00;font-size:12.5px;margin-bottom:4px}",
    ".unverified{color:#9a3412;font-size:12.5px;margin-top:4px}",
    ".related{margin:0 0 10px 0;font-size:12.5px}.related summary{cursor:pointer;color:#0969da}",
    ".related ol{margin:4px 0;padding-left:18px}.related li{margin:4px 0}",
    "form{display:flex;gap:6px;padding:8px;border-top:1px solid #d0d7de}",
    "input{flex:1;padding:8px;border:1px solid #d0d7de;border-radius:6px;font:inherit}",
    "form button{padding:8px 14px;border:none;border-radius:6px;background:#c0392b;",
    "color:#fff;cursor:pointer;font:inherit}",
    "form button:disabled{opacity:.6}"
  ].join("");

  var host = document.createElement("div");
  host.setAttribute("data-policy-rag-widget", "");
  var root = host.attachShadow({ mode: "open" });
  var style = document.createElement("style");
  style.textContent = css;
  root.appendChild(style);

  function el(tag, cls, text) {
    var node = document.createElement(tag);
    if (cls) node.className = cls;
    if (text !== undefined) node.textContent = text;
    return node;
  }

  var bubble = el("button", "bubble");
  // An inline icon: emoji fonts are often missing on intranet desktops.
  bubble.innerHTML = '<svg viewBox="0 0 24 24" width="28" height="28" aria-hidden="true">' +
    '<path fill="currentColor" d="M4 4h16a2 2 0 0 1 2 2v10a2 2 0 0 1-2 2H9l-5 4v-4H4a2 2 0 0 1' +
    '-2-2V6a2 2 0 0 1 2-2zm3 6a1.5 1.5 0 1 0 0 3 1.5 1.5 0 0 0 0-3zm5 0a1.5 1.5 0 1 0 0 3 1.5 1.5' +
    ' 0 0 0 0-3zm5 0a1.5 1.5 0 1 0 0 3 1.5 1.5 0 0 0 0-3z"/></svg>';
  bubble.setAttribute("aria-label", "打开" + title);
  var panel = el("section", "panel");
  panel.setAttribute("role", "dialog");
  panel.setAttribute("aria-label", title);
  var header = el("header");
  header.appendChild(el("span", "", title));
  var close = el("button", "", "×");
  close.setAttribute("aria-label", "关闭");
  header.appendChild(close);
  var log = el("div", "log");
  log.setAttribute("aria-live", "polite");
  var form = el("form");
  var input = el("input");
  input.placeholder = placeholder;
  input.maxLength = 500;
  input.setAttribute("aria-label", "问题");
  var send = el("button", "", "提问");
  send.type = "submit";
  form.appendChild(input);
  form.appendChild(send);
  panel.appendChild(header);
  panel.appendChild(log);
  panel.appendChild(form);
  root.appendChild(bubble);
  root.appendChild(panel);

  bubble.addEventListener("click", function () {
    panel.classList.toggle("open");
    if (panel.classList.contains("open")) input.focus();
  });
  close.addEventListener("click", function () { panel.classList.remove("open"); });

  var turn = 0;
  var history = [];  // this page's conversation, so follow-ups keep their subject

  function renderAnswer(answer) {
    turn += 1;
    var id = "t" + turn;
    var msg = el("div", "msg bot" + (answer.refused ? " empty" : ""));
    if (answer.notice) msg.appendChild(el("div", "notice", answer.notice));
    var known = {};
    answer.citations.forEach(function (c) { known[c.n] = true; });
    var text = answer.answer, pos = 0, re = /\[(\d+)\]/g, m;
    // The reading model's span leads the answer: shown in bold (as text, never as HTML).
    if (answer.span && text.indexOf(answer.span + "：") === 0) {
      msg.appendChild(el("strong", "span", answer.span));
      pos = answer.span.length;
    }
    while ((m = re.exec(text)) !== null) {
      if (!known[m[1]]) continue;
      msg.appendChild(document.createTextNode(text.slice(pos, m.index)));
      var marker = el("a", "marker", "[" + m[1] + "]");
      marker.setAttribute("data-target", id + "-src-" + m[1]);
      marker.addEventListener("click", function (event) {
        var target = root.getElementById(event.currentTarget.getAttribute("data-target"));
        if (!target) return;
        target.scrollIntoView({ behavior: "smooth", block: "nearest" });
        target.classList.add("flash");
        setTimeout(function () { target.classList.remove("flash"); }, 1200);
      });
      msg.appendChild(marker);
      pos = m.index + m[0].length;
    }
    msg.appendChild(document.createTextNode(text.slice(pos)));
    (answer.unverified || []).forEach(function (sentence) {
      msg.appendChild(el("div", "unverified", "⚠ 数字未能在所引资料中核实：" + sentence));
    });
    log.appendChild(msg);

    if (answer.citations.length) {
      var list = el("ol", "sources");
      list.setAttribute("aria-label", "来源");
      answer.citations.forEach(function (c) {
        var item = el("li");
        item.id = id + "-src-" + c.n;
        item.appendChild(el("div", "src-title", "[" + c.n + "] " + (c.title || c.doc_id)));
        var meta = [c.date, c.source, c.page ? "第" + c.page + "页" : "", c.article]
          .filter(Boolean).join(" · ");
        if (meta) item.appendChild(el("div", "src-meta", meta));
        var original = originalLink(c);
        if (original) item.appendChild(original);
        (c.quotes && c.quotes.length ? c.quotes : [c.text]).forEach(function (q) {
          item.appendChild(el("div", "quote", q));
        });
        list.appendChild(item);
      });
      log.appendChild(list);
    }
    // 相关条款: relevant clauses the answer left out, collapsed until opened.
    var related = answer.related || [];
    if (related.length) {
      var details = el("details", "related");
      details.appendChild(el("summary", "", "相关条款（" + related.length + "）"));
      var clauses = el("ol");
      related.forEach(function (r) {
        var item = el("li");
        item.appendChild(el("div", "rel-text", r.text));
        var where = [r.title || r.doc_id, r.article].filter(Boolean).join(" · ");
        item.appendChild(el("div", "src-meta", where));
        clauses.appendChild(item);
      });
      details.appendChild(clauses);
      log.appendChild(details);
    }
    log.scrollTop = log.scrollHeight;
  }

  // A link that opens the kept original at the cited page (PDF viewers read #page=N).
  // Not with an embed token: a new tab would go without it, and the token must not be
  // put in a URL; the page number in the source's line still says where to look.
  function originalLink(c) {
    if (!c.has_original || tokenUrl) return null;
    var link = el("a", "original", c.page ? "原文第" + c.page + "页" : "原文");
    var path = "api/documents/" + c.doc_id.split("/").map(encodeURIComponent).join("/");
    link.href = new URL(path + "/original", base).href + (c.page ? "#page=" + c.page : "");
    link.target = "_blank";
    link.rel = "noopener";
    return link;
  }

  form.addEventListener("submit", function (event) {
    event.preventDefault();
    var question = input.value.trim();
    if (!question) return;
    log.appendChild(el("div", "msg user", question));
    input.value = "";
    send.disabled = true;
    var pending = el("div", "msg bot", "正在查找…");
    log.appendChild(pending);
    log.scrollTop = log.scrollHeight;
    var body = { question: question, history: history.slice(-6) };
    if (k) body.k = k;
    if (kbs.length) body.kb = kbs;
    ask(body, true)
      .then(function (answer) {
        pending.remove();
        renderAnswer(answer);
        history.push({ role: "user", content: question }, { role: "assistant", content: answer.answer });
      })
      .catch(function (error) { pending.textContent = "出错了：" + error.message; })
      .then(function () { send.disabled = false; input.focus(); });
  });

  // The portal's token for its signed-in user (none without data-token-url), fetched
  // again 30 s before it expires or when `fresh` is asked for.
  function credentials(fresh) {
    if (!tokenUrl) return Promise.resolve({});
    if (!fresh && token && Date.now() < token.until) {
      return Promise.resolve({ Authorization: "Bearer " + token.value });
    }
    return fetch(tokenUrl, { credentials: "include" })
      .then(function (response) {
        if (!response.ok) throw new Error("门户未能提供登录凭据（" + response.status + "），请先登录门户");
        return response.json();
      })
      .then(function (data) {
        var seconds = Math.max(30, (data.expires_in || 300) - 30);
        token = { value: data.token, until: Date.now() + seconds * 1000 };
        return { Authorization: "Bearer " + token.value };
      });
  }

  // A 401 on the first try means the token expired meanwhile: once more with a new one.
  function ask(body, firstTry) {
    return credentials(!firstTry)
      .then(function (auth) {
        var headers = { "Content-Type": "application/json" };
        Object.keys(auth).forEach(function (name) { headers[name] = auth[name]; });
        return fetch(new URL("api/ask", base).href, {
          method: "POST",
          headers: headers,
          body: JSON.stringify(body)
        });
      })
      .then(function (response) {
        if (response.status === 401 && tokenUrl && firstTry) return ask(body, false);
        return response.json().then(function (data) {
          if (!response.ok) throw new Error((data.error && data.error.message) || response.statusText);
          return data;
        });
      });
  }

  function attach() { document.body.appendChild(host); }
  if (document.body) attach();
  else document.addEventListener("DOMContentLoaded", attach);
})();
