/*
 * 招商政策问答 — 知识库管理页 (served at /admin, this script at /admin/admin.js).
 *
 * Upload files into a knowledge base, follow their indexing jobs, edit / re-index /
 * delete documents, preview their chunks, and test retrieval.
 *
 * Everything that comes from the server (titles, chunk texts, file names, error
 * messages) is inserted with textContent, never as HTML: documents are untrusted.
 * No inline scripts or handlers, nothing fetched from outside (air-gapped).
 */
(function () {
  "use strict";

  // The API lives next to the page: /admin -> /, /rag/admin -> /rag/.
  var base = new URL(".", location.href);

  var ACTIVE = { queued: true, reading: true, embedding: true };
  var RETRYABLE = { failed: true, cancelled: true, no_text: true };
  var STATUS_LABELS = {
    queued: "排队中",
    reading: "读取中",
    embedding: "向量化",
    indexed: "已索引",
    failed: "失败",
    no_text: "未找到文字（可能是扫描件，需要先OCR）",
    cancelled: "已取消"
  };
  var KIND_LABELS = {
    upload: "上传",
    "delete": "删除",
    edit: "编辑",
    reindex: "重新索引",
    ingest: "导入"
  };
  var FAST_POLL = 1000, SLOW_POLL = 5000, MAX_JOB_ROWS = 100, SNIPPET = 120;

  function $(id) { return document.getElementById(id); }

  function el(tag, cls, text) {
    var node = document.createElement(tag);
    if (cls) node.className = cls;
    if (text !== undefined && text !== null) node.textContent = String(text);
    return node;
  }

  function button(cls, text, title) {
    var b = el("button", "button small " + cls, text);
    b.type = "button";
    if (title) b.title = title;
    return b;
  }

  function clear(node) { while (node.firstChild) node.removeChild(node.firstChild); }

  function orDash(value) {
    return value === null || value === undefined || value === "" ? "—" : String(value);
  }

  function docPath(docId) {
    return "api/documents/" + String(docId).split("/").map(encodeURIComponent).join("/");
  }

  function pad(n) { return (n < 10 ? "0" : "") + n; }

  // ISO string or epoch (seconds or ms) -> "YYYY-MM-DD HH:MM"; anything else as is.
  function fmtTime(value, withSeconds) {
    if (value === null || value === undefined || value === "") return "—";
    var d;
    if (typeof value === "number") d = new Date(value < 1e12 ? value * 1000 : value);
    else d = new Date(value);
    if (isNaN(d.getTime())) return String(value);
    var s = d.getFullYear() + "-" + pad(d.getMonth() + 1) + "-" + pad(d.getDate()) + " " +
      pad(d.getHours()) + ":" + pad(d.getMinutes());
    return withSeconds ? s + ":" + pad(d.getSeconds()) : s;
  }

  // Today: "HH:MM:SS"; other days: "MM-DD HH:MM".
  function shortTime(value) {
    var full = fmtTime(value, true);
    var m = /^(\d{4})-(\d{2})-(\d{2}) (\d{2}:\d{2}):(\d{2})$/.exec(full);
    if (!m) return full;
    var today = fmtTime(Date.now()).slice(0, 10);
    return full.slice(0, 10) === today ? m[4] + ":" + m[5] : m[2] + "-" + m[3] + " " + m[4];
  }

  function fmtScore(value) {
    return typeof value === "number" && isFinite(value) ? value.toFixed(3) : "—";
  }

  function fmtSize(bytes) {
    if (bytes < 1024) return bytes + " B";
    if (bytes < 1024 * 1024) return (bytes / 1024).toFixed(1) + " KB";
    return (bytes / 1024 / 1024).toFixed(1) + " MB";
  }

  // ---------------------------------------------------------------- messages

  function banner(id, text) {
    var box = $(id);
    box.querySelector(".banner-text").textContent = text;
    box.hidden = false;
  }

  function showError(context, error) {
    var message = error && error.message !== undefined ? error.message : String(error);
    banner("error", context ? context + "：" + message : message);
  }

  var noticeTimer = null;
  function showNotice(text) {
    banner("notice", text);
    clearTimeout(noticeTimer);
    noticeTimer = setTimeout(function () { $("notice").hidden = true; }, 6000);
  }

  Array.prototype.forEach.call(document.querySelectorAll(".banner-close"), function (b) {
    b.addEventListener("click", function () { b.parentNode.hidden = true; });
  });

  // ---------------------------------------------------------------- HTTP

  function errorFromResponse(status, statusText, text) {
    var message = null;
    try {
      var data = JSON.parse(text);
      if (data && data.error && data.error.message) message = String(data.error.message);
      else if (data && typeof data.detail === "string") message = data.detail;
    } catch (e) { /* not JSON: a proxy's error page, say */ }
    if (!message) {
      if (status === 413) message = "文件太大，服务器拒绝接收（413）";
      else message = "服务器返回 " + status + (statusText ? " " + statusText : "");
    }
    var error = new Error(message);
    error.status = status;
    return error;
  }

  function api(method, path, body) {
    var options = { method: method, headers: { Accept: "application/json" } };
    if (body !== undefined) {
      options.headers["Content-Type"] = "application/json";
      options.body = JSON.stringify(body);
    }
    return fetch(new URL(path, base).href, options).then(
      function (response) {
        return response.text().then(function (text) {
          if (!response.ok) throw errorFromResponse(response.status, response.statusText, text);
          if (!text) return null;
          try { return JSON.parse(text); } catch (e) { throw new Error("服务器返回的不是 JSON"); }
        });
      },
      function (error) { throw new Error("无法连接服务器（" + error.message + "）"); }
    );
  }

  // Run `work` with the button disabled, so a double click does not do it twice.
  function busy(btn, work) {
    btn.disabled = true;
    return work().then(
      function (v) { btn.disabled = false; return v; },
      function (e) { btn.disabled = false; throw e; }
    );
  }

  // ---------------------------------------------------------------- knowledge bases

  var kbs = [];

  function fillKbSelect(select, withCounts) {
    var current = select.value;
    while (select.options.length > 1) select.remove(1);
    kbs.forEach(function (kb) {
      var label = kb.name;
      if (withCounts && typeof kb.documents === "number") label += "（" + kb.documents + "）";
      var option = el("option", "", label);
      option.value = kb.name;
      select.appendChild(option);
    });
    var stillThere = kbs.some(function (kb) { return kb.name === current; });
    select.value = stillThere ? current : "";
    return stillThere || current === "";
  }

  function loadKbs() {
    return api("GET", "api/kbs").then(function (list) {
      kbs = Array.isArray(list) ? list : [];
      var filterKept = fillKbSelect($("kb-select"), true);
      fillKbSelect($("search-kb"), false);
      var datalist = $("kb-options");
      clear(datalist);
      kbs.forEach(function (kb) {
        var option = el("option");
        option.value = kb.name;
        datalist.appendChild(option);
      });
      updateKbHint();
      // The selected knowledge base is gone (its last document deleted): show all.
      if (!filterKept) loadDocuments();
    }).catch(function (e) { showError("读取知识库列表失败", e); });
  }

  function updateKbHint() {
    var name = $("upload-kb").value.trim();
    var hint = $("upload-kb-hint");
    if (!name) hint.textContent = "留空则上传到默认知识库。";
    else if (kbs.some(function (kb) { return kb.name === name; })) {
      hint.textContent = "上传到已有知识库「" + name + "」。";
    } else hint.textContent = "将新建知识库「" + name + "」。";
  }
  $("upload-kb").addEventListener("input", updateKbHint);

  // ---------------------------------------------------------------- upload

  var pending = [];  // File objects chosen but not yet uploaded

  function fileKey(f) { return f.name + "\u0000" + f.size + "\u0000" + f.lastModified; }

  function addFiles(files) {
    var keys = {};
    pending.forEach(function (f) { keys[fileKey(f)] = true; });
    Array.prototype.forEach.call(files, function (f) {
      if (!keys[fileKey(f)]) { pending.push(f); keys[fileKey(f)] = true; }
    });
    renderPending();
  }

  function renderPending() {
    var list = $("selected-files");
    clear(list);
    pending.forEach(function (f, i) {
      var item = el("li");
      item.appendChild(el("span", "file-name", f.name));
      item.appendChild(el("span", "hint", fmtSize(f.size)));
      var remove = button("link remove-file", "移除", "从待上传列表中移除");
      remove.addEventListener("click", function () { pending.splice(i, 1); renderPending(); });
      item.appendChild(remove);
      list.appendChild(item);
    });
    $("upload-button").disabled = uploading || pending.length === 0;
    $("upload-button").textContent = pending.length > 1 ? "上传 " + pending.length + " 个文件" : "上传";
    $("clear-files").disabled = uploading || pending.length === 0;
  }

  var fileInput = $("file-input");
  fileInput.addEventListener("change", function () {
    addFiles(fileInput.files);
    fileInput.value = "";  // choosing the same file again fires "change" again
  });
  $("clear-files").addEventListener("click", function () { pending = []; renderPending(); });

  var zone = $("drop-zone");
  var dragDepth = 0;
  zone.addEventListener("dragenter", function (e) {
    e.preventDefault();
    dragDepth += 1;
    zone.classList.add("dragover");
  });
  zone.addEventListener("dragover", function (e) {
    e.preventDefault();
    if (e.dataTransfer) e.dataTransfer.dropEffect = "copy";
  });
  zone.addEventListener("dragleave", function () {
    dragDepth = Math.max(0, dragDepth - 1);
    if (!dragDepth) zone.classList.remove("dragover");
  });
  zone.addEventListener("drop", function (e) {
    e.preventDefault();
    dragDepth = 0;
    zone.classList.remove("dragover");
    var dt = e.dataTransfer;
    if (!dt) return;
    var folders = [];
    if (dt.items) {
      Array.prototype.forEach.call(dt.items, function (item) {
        var entry = item.webkitGetAsEntry && item.webkitGetAsEntry();
        if (entry && entry.isDirectory) folders.push(entry.name);
      });
    }
    var files = Array.prototype.filter.call(dt.files, function (f) {
      return folders.indexOf(f.name) < 0;
    });
    if (folders.length) {
      showError("", "不能直接拖入文件夹（" + folders.join("、") + "），请先压缩为 .zip 再上传");
    }
    if (files.length) addFiles(files);
  });
  zone.addEventListener("keydown", function (e) {
    if (e.target === zone && (e.key === "Enter" || e.key === " ")) {
      e.preventDefault();
      fileInput.click();
    }
  });
  // A file dropped next to the zone must not make the browser leave the page.
  window.addEventListener("dragover", function (e) { e.preventDefault(); });
  window.addEventListener("drop", function (e) { e.preventDefault(); });

  var uploading = false;

  function upload() {
    if (uploading || !pending.length) return;
    var kb = $("upload-kb").value.trim();
    var form = new FormData();
    pending.forEach(function (f) { form.append("files", f, f.name); });
    if (kb) form.append("kb", kb);
    var sent = pending.slice();
    uploading = true;
    renderPending();
    var progress = $("upload-progress");
    progress.textContent = "正在上传…";

    var xhr = new XMLHttpRequest();  // not fetch: we want upload progress for big files
    xhr.open("POST", new URL("api/documents", base).href);
    xhr.setRequestHeader("Accept", "application/json");
    xhr.upload.addEventListener("progress", function (e) {
      if (e.lengthComputable) {
        progress.textContent = "正在上传 " + Math.floor((e.loaded / e.total) * 100) + "%";
      }
    });
    function done() {
      uploading = false;
      renderPending();
    }
    xhr.addEventListener("load", function () {
      progress.textContent = "";
      if (xhr.status >= 200 && xhr.status < 300) {
        var data = null;
        try { data = JSON.parse(xhr.responseText); } catch (e) { data = null; }
        // Only forget the files that went up (more may have been added meanwhile).
        pending = pending.filter(function (f) { return sent.indexOf(f) < 0; });
        var jobs = data && Array.isArray(data.jobs) ? data.jobs : [];
        addJobs(jobs);
        showNotice("已提交 " + sent.length + " 个文件" + (kb ? "到知识库「" + kb + "」" : "") +
          "，正在处理。");
      } else {
        showError("上传失败", errorFromResponse(xhr.status, xhr.statusText, xhr.responseText));
      }
      done();
    });
    xhr.addEventListener("error", function () {
      progress.textContent = "";
      showError("上传失败", "无法连接服务器");
      done();
    });
    xhr.addEventListener("abort", function () { progress.textContent = ""; done(); });
    xhr.send(form);
  }
  $("upload-button").addEventListener("click", upload);

  // ---------------------------------------------------------------- jobs

  var jobs = [];           // as last shown, newest first
  var titles = {};         // doc_id -> title, from documents seen, to name edit/delete jobs
  var seenStatus = {};     // job id -> last status seen, to notice jobs finishing
  var firstPoll = true;

  function isActive(job) { return !!ACTIVE[job.status]; }

  function statusText(status, kind, error, progress) {
    if (status === "embedding") {
      if (typeof progress === "number" && isFinite(progress)) {
        var pct = Math.max(0, Math.min(100, Math.floor(progress * 100)));
        return STATUS_LABELS.embedding + " " + pct + "%";
      }
      return STATUS_LABELS.embedding;
    }
    if (status === "failed") return STATUS_LABELS.failed + (error ? "：" + error : "");
    if (status === "indexed" && kind === "delete") return "已删除";
    return STATUS_LABELS[status] || orDash(status);
  }

  function statusCell(status, kind, error, progress) {
    var td = el("td", "status status-" + String(status).replace(/[^a-z_]/g, ""));
    td.setAttribute("data-status", status === null || status === undefined ? "" : String(status));
    td.appendChild(el("span", "status-label", statusText(status, kind, error, progress)));
    if (status === "embedding") {
      var bar = el("progress", "bar");
      bar.max = 1;
      bar.value = typeof progress === "number" && isFinite(progress) ? progress : 0;
      td.appendChild(bar);
    } else if (status === "reading" || status === "queued") {
      var waiting = el("progress", "bar");  // indeterminate
      if (status === "queued") waiting.className = "bar queued";
      td.appendChild(waiting);
    }
    return td;
  }

  function jobSubject(job) {
    if (job.filename) return job.filename;
    if (job.doc_id) return titles[job.doc_id] || job.doc_id;
    if (job.kind === "reindex") return job.kb ? "知识库「" + job.kb + "」全部文件" : "全部知识库";
    return "—";
  }

  function jobRow(job) {
    var tr = el("tr");
    tr.setAttribute("data-job-id", String(job.id));
    tr.setAttribute("data-kind", job.kind || "");
    var file = el("td", "file", jobSubject(job));
    file.title = jobSubject(job);
    tr.appendChild(file);
    tr.appendChild(el("td", "kb", orDash(job.kb)));
    tr.appendChild(el("td", "kind", KIND_LABELS[job.kind] || orDash(job.kind)));
    tr.appendChild(statusCell(job.status, job.kind, job.error, job.progress));
    var when = el("td", "time", shortTime(job.updated || job.created));
    when.title = "创建 " + fmtTime(job.created, true) + "\n更新 " + fmtTime(job.updated, true);
    tr.appendChild(when);
    var actions = el("td", "actions");
    if (isActive(job)) {
      var cancel = button("secondary cancel", "取消", "取消这个任务");
      cancel.addEventListener("click", function () {
        busy(cancel, function () {
          return api("POST", "api/jobs/" + encodeURIComponent(job.id) + "/cancel");
        }).then(function (updated) {
          if (updated && updated.id !== undefined) mergeJobs([updated]);
          pollSoon();
        }).catch(function (e) { showError("取消失败", e); });
      });
      actions.appendChild(cancel);
    } else if (RETRYABLE[job.status] && job.kind === "upload") {
      var retry = button("secondary retry", "重试", "用保存的原文件重新处理");
      retry.addEventListener("click", function () {
        busy(retry, function () {
          return api("POST", "api/jobs/" + encodeURIComponent(job.id) + "/retry");
        }).then(function (data) {
          addJobs(data && Array.isArray(data.jobs) ? data.jobs : []);
        }).catch(function (e) { showError("重试失败", e); });
      });
      actions.appendChild(retry);
    }
    tr.appendChild(actions);
    return tr;
  }

  // Show `items` in `tbody` in order, rebuilding a row only when its data changed, so
  // rows (and the buttons in them) stay put while polling. `after(item)` may give an
  // extra row to keep right below the item's row (the edit form).
  function reconcile(tbody, items, cache, key, build, after, signature) {
    var keep = {};
    var previous = null;
    function place(node) {
      var expected = previous ? previous.nextSibling : tbody.firstChild;
      if (expected !== node) tbody.insertBefore(node, expected);
      previous = node;
    }
    items.forEach(function (item) {
      var id = key(item);
      keep[id] = true;
      var sig = signature ? signature(item) : JSON.stringify(item);
      var entry = cache[id];
      if (!entry || entry.sig !== sig) {
        var row = build(item);
        if (entry && entry.row.parentNode === tbody) tbody.replaceChild(row, entry.row);
        entry = cache[id] = { row: row, sig: sig };
      }
      place(entry.row);
      var extra = after ? after(item) : null;
      if (extra) place(extra);
    });
    Object.keys(cache).forEach(function (id) {
      if (!keep[id]) {
        if (cache[id].row.parentNode) cache[id].row.parentNode.removeChild(cache[id].row);
        delete cache[id];
      }
    });
    // Whatever else is left after the last placed row is stale.
    while (previous ? previous.nextSibling : tbody.firstChild) {
      tbody.removeChild(previous ? previous.nextSibling : tbody.firstChild);
    }
  }

  var jobRows = {};  // id -> {row, sig}

  function renderJobs() {
    var tbody = $("jobs").querySelector("tbody");
    reconcile(tbody, jobs.slice(0, MAX_JOB_ROWS), jobRows,
      function (job) { return String(job.id); }, jobRow, null,
      function (job) { return JSON.stringify(job) + "\u0000" + jobSubject(job); });
    var active = jobs.filter(isActive).length;
    $("jobs-empty").hidden = jobs.length > 0;
    $("jobs").hidden = jobs.length === 0;
    $("jobs-summary").textContent = active ? active + " 个任务进行中" : (jobs.length ? "全部完成" : "");
  }

  // Jobs this page created or changed (upload, cancel, ...) since some poll started:
  // a poll answered with older data must not hide them. id -> {job, at}
  var local = {};
  var localClock = 0;

  // Put jobs we just created (or changed) into the list right away.
  function mergeJobs(list) {
    list.forEach(function (job) {
      if (!job || job.id === undefined) return;
      local[String(job.id)] = { job: job, at: ++localClock };
      var found = false;
      jobs = jobs.map(function (j) {
        if (String(j.id) === String(job.id)) { found = true; return job; }
        return j;
      });
      if (!found) jobs.unshift(job);
    });
    var changes = noteStatuses(list);
    renderJobs();
    refreshAfter(changes);
  }

  function addJobs(list) {
    mergeJobs(list);
    pollSoon();
  }

  // Remember statuses; say whether any job changed status (or appeared), and whether
  // one finished: the documents table shows pending jobs' statuses, so it follows both.
  function noteStatuses(list) {
    var changes = { changed: false, finished: false };
    list.forEach(function (job) {
      var id = String(job.id);
      if (seenStatus[id] !== job.status && !firstPoll) {
        changes.changed = true;
        if (!isActive(job)) changes.finished = true;
      }
      seenStatus[id] = job.status;
    });
    return changes;
  }

  function refreshAfter(changes) {
    if (changes.changed) loadDocuments();
    if (changes.finished) loadKbs();
  }

  var pollTimer = null, polling = false, pollAgain = false, offline = false, offlineText = "";

  function schedulePoll(ms) {
    clearTimeout(pollTimer);
    pollTimer = setTimeout(poll, ms);
  }

  function pollSoon() {
    if (polling) { pollAgain = true; return; }
    schedulePoll(0);
  }

  function poll() {
    if (polling) return;
    polling = true;
    var startedAt = localClock;
    api("GET", "api/jobs").then(function (list) {
      list = Array.isArray(list) ? list : [];
      // Local news the server's answer may predate wins; older local news is dropped.
      var fresh = {};
      Object.keys(local).forEach(function (id) {
        if (local[id].at > startedAt) fresh[id] = local[id];
        else delete local[id];
      });
      list = list.map(function (j) {
        var id = String(j.id);
        if (!fresh[id]) return j;
        var job = fresh[id].job;
        delete fresh[id];
        return job;
      });
      var unseen = Object.keys(fresh).map(function (id) { return fresh[id]; });
      unseen.sort(function (x, y) { return y.at - x.at; });
      list = unseen.map(function (entry) { return entry.job; }).concat(list);
      var changes = noteStatuses(list);
      firstPoll = false;
      jobs = list;
      renderJobs();
      if (offline) {
        offline = false;
        // Take down our "cannot reach the server" line, not some later message.
        if ($("error").querySelector(".banner-text").textContent === offlineText) $("error").hidden = true;
      }
      refreshAfter(changes);
    }).catch(function (e) {
      if (!offline) {
        showError("读取任务进度失败", e);
        offlineText = $("error").querySelector(".banner-text").textContent;
      }
      offline = true;
    }).then(function () {
      polling = false;
      var fast = pollAgain || jobs.some(isActive);
      pollAgain = false;
      schedulePoll(fast ? FAST_POLL : (offline ? SLOW_POLL * 2 : SLOW_POLL));
    });
  }

  document.addEventListener("visibilitychange", function () {
    if (!document.hidden) pollSoon();
  });

  // ---------------------------------------------------------------- documents

  var documents = [];
  var docSeq = 0;
  var editing = null;   // {docId, row} of the open edit form, kept across refreshes
  var previewing = null;  // doc_id in the preview drawer

  function loadDocuments() {
    var seq = ++docSeq;
    var kb = $("kb-select").value;
    var path = "api/documents" + (kb ? "?kb=" + encodeURIComponent(kb) : "");
    return api("GET", path).then(function (list) {
      if (seq !== docSeq) return;  // a newer request (another kb) is on its way
      documents = Array.isArray(list) ? list : [];
      var named = false;
      documents.forEach(function (d) {
        if (d.title && titles[d.doc_id] !== d.title) { titles[d.doc_id] = d.title; named = true; }
      });
      if (named) renderJobs();
      renderDocuments();
    }).catch(function (e) {
      if (seq === docSeq) showError("读取文件列表失败", e);
    });
  }

  function docMatches(doc, needle) {
    if (!needle) return true;
    return [doc.title, doc.source, doc.doc_id, doc.doc_type].some(function (v) {
      return v && String(v).toLowerCase().indexOf(needle) >= 0;
    });
  }

  var docRows = {};  // doc_id -> {row, sig}

  function renderDocuments() {
    var tbody = $("documents").querySelector("tbody");
    var needle = $("doc-filter").value.trim().toLowerCase();
    var shown = documents.filter(function (d) { return docMatches(d, needle); });
    if (editing && !shown.some(function (d) { return d.doc_id === editing.docId; })) {
      if (editing.row.parentNode) editing.row.parentNode.removeChild(editing.row);
      editing = null;
    }
    reconcile(tbody, shown, docRows, function (doc) { return String(doc.doc_id); }, docRow,
      function (doc) { return editing && editing.docId === doc.doc_id ? editing.row : null; });
    var types = {};
    documents.forEach(function (d) { if (d.doc_type) types[d.doc_type] = true; });
    var typeList = $("doc-type-options");
    clear(typeList);
    Object.keys(types).sort().forEach(function (t) {
      var option = el("option");
      option.value = t;
      typeList.appendChild(option);
    });
    var chunks = documents.reduce(function (n, d) { return n + (d.chunks || 0); }, 0);
    var count = "共 " + documents.length + " 个文件，" + chunks + " 个段落";
    if (needle) count += "；筛选后显示 " + shown.length + " 个";
    $("doc-count").textContent = count;
    $("documents-empty").hidden = shown.length > 0;
    $("documents-empty").textContent = documents.length ? "没有符合筛选条件的文件。" : "这个知识库还没有文件。";
  }

  function docRow(doc) {
    var tr = el("tr");
    tr.setAttribute("data-doc-id", String(doc.doc_id));
    var title = el("td", "title", doc.title || doc.doc_id);
    title.title = String(doc.doc_id);
    tr.appendChild(title);
    tr.appendChild(el("td", "date", orDash(doc.date)));
    tr.appendChild(el("td", "source", orDash(doc.source)));
    tr.appendChild(el("td", "doc-type", orDash(doc.doc_type)));
    tr.appendChild(el("td", "kb", orDash(doc.kb)));
    tr.appendChild(el("td", "chunks num", orDash(doc.chunks)));
    tr.appendChild(statusCell(doc.status, null, null, null));
    tr.appendChild(el("td", "time", fmtTime(doc.updated)));

    var actions = el("td", "actions");
    var preview = button("link preview", "预览", "查看这个文件的段落");
    preview.addEventListener("click", function () { openPreview(doc, null); });
    var edit = button("link edit", "编辑", "修改标题、日期、来源、类型");
    edit.addEventListener("click", function () { openEdit(doc); });
    var reindex = button("link reindex", "重新索引", "重新切分并向量化这个文件");
    reindex.addEventListener("click", function () {
      busy(reindex, function () { return api("POST", docPath(doc.doc_id) + "/reindex"); })
        .then(function (data) {
          addJobs(data && Array.isArray(data.jobs) ? data.jobs : []);
          showNotice("已提交重新索引：" + (doc.title || doc.doc_id));
        })
        .catch(function (e) { showError("重新索引失败", e); });
    });
    var del = button("link danger delete", "删除", "从知识库中删除这个文件");
    del.addEventListener("click", function () {
      var name = doc.title || doc.doc_id;
      if (!window.confirm("确定要删除「" + name + "」吗？\n删除后它的全部段落将不再被检索到。")) return;
      busy(del, function () { return api("DELETE", docPath(doc.doc_id)); })
        .then(function (data) {
          addJobs(data && Array.isArray(data.jobs) ? data.jobs : []);
          showNotice("已提交删除：" + name);
        })
        .catch(function (e) { showError("删除失败", e); });
    });
    [preview, edit, reindex, del].forEach(function (b) { actions.appendChild(b); });
    if (doc.has_original) {
      var original = el("a", "button small link original", "原文");
      original.href = new URL(docPath(doc.doc_id) + "/original", base).href;
      original.setAttribute("download", "");
      original.title = "下载上传的原文件";
      actions.appendChild(original);
    }
    tr.appendChild(actions);
    return tr;
  }

  var MAX_LENGTHS = { title: 200, date: 10, source: 200, doc_type: 50 };  // as the server checks

  // 2024-02-30 has the shape of a date but is none: checked here, so the clerk is told in
  // Chinese rather than by the server's English validation message.
  function realDate(text) {
    var m = /^(\d{4})-(\d{2})-(\d{2})$/.exec(text);
    if (!m) return false;
    var d = new Date(Date.UTC(+m[1], +m[2] - 1, +m[3]));
    return d.getUTCFullYear() === +m[1] && d.getUTCMonth() === +m[2] - 1 && d.getUTCDate() === +m[3];
  }

  function field(labelText, name, value, type, listId) {
    var wrap = el("label", "edit-field");
    wrap.appendChild(el("span", "edit-label", labelText));
    var input = el("input");
    input.name = name;
    input.type = type || "text";
    if (MAX_LENGTHS[name]) input.maxLength = MAX_LENGTHS[name];
    input.value = value === null || value === undefined ? "" : String(value);
    if (listId) input.setAttribute("list", listId);
    wrap.appendChild(input);
    return wrap;
  }

  function openEdit(doc) {
    if (editing && editing.row.parentNode) editing.row.parentNode.removeChild(editing.row);
    if (editing && editing.docId === doc.doc_id) { editing = null; return; }  // toggle
    var row = el("tr", "edit-row");
    row.setAttribute("data-edit-for", String(doc.doc_id));
    var td = el("td");
    td.colSpan = 9;
    var form = el("form", "edit-form");
    var original = {
      title: doc.title || "",
      date: doc.date || "",
      source: doc.source || "",
      doc_type: doc.doc_type || ""
    };
    form.appendChild(field("标题", "title", original.title));
    var date = field("日期", "date", original.date);
    date.querySelector("input").placeholder = "YYYY-MM-DD";
    form.appendChild(date);
    form.appendChild(field("来源", "source", original.source));
    form.appendChild(field("类型", "doc_type", original.doc_type, "text", "doc-type-options"));
    ["title", "date", "source", "doc_type"].forEach(function (name) {
      original[name] = form.elements[name].value.trim();
    });
    var save = button("primary save", "保存");
    save.type = "submit";
    var cancel = button("secondary cancel-edit", "取消");
    form.appendChild(save);
    form.appendChild(cancel);
    td.appendChild(form);
    row.appendChild(td);
    editing = { docId: doc.doc_id, row: row };
    renderDocuments();  // places the form right below the document's row
    form.elements.title.focus();

    function close() {
      if (row.parentNode) row.parentNode.removeChild(row);
      if (editing && editing.row === row) editing = null;
    }
    cancel.addEventListener("click", close);
    form.addEventListener("keydown", function (e) { if (e.key === "Escape") close(); });
    form.addEventListener("submit", function (e) {
      e.preventDefault();
      var changes = {}, any = false;
      ["title", "date", "source", "doc_type"].forEach(function (name) {
        var value = form.elements[name].value.trim();
        if (value !== original[name]) { changes[name] = value; any = true; }
      });
      if (changes.date && !realDate(changes.date)) {
        showError("", "日期应为 YYYY-MM-DD 格式的真实日期（如 2024-03-15）");
        return;
      }
      if (changes.title === "") {
        showError("", "标题不能为空");
        return;
      }
      if (!any) { close(); return; }
      busy(save, function () { return api("PATCH", docPath(doc.doc_id), changes); })
        .then(function (data) {
          close();
          addJobs(data && Array.isArray(data.jobs) ? data.jobs : []);
          showNotice("已提交修改：" + (changes.title || doc.title || doc.doc_id));
        })
        .catch(function (err) { showError("保存失败", err); });
    });
  }

  $("kb-select").addEventListener("change", function () {
    loadDocuments();
  });
  $("doc-filter").addEventListener("input", renderDocuments);
  $("refresh-documents").addEventListener("click", function () {
    loadKbs();
    loadDocuments();
  });
  $("reindex-all").addEventListener("click", function () {
    var kb = $("kb-select").value;
    var btn = $("reindex-all");
    busy(btn, function () { return api("POST", "api/reindex", kb ? { kb: kb } : {}); })
      .then(function (data) {
        addJobs(data && Array.isArray(data.jobs) ? data.jobs : []);
        showNotice(kb ? "已提交重新索引知识库「" + kb + "」。" : "已提交重新索引全部知识库。");
      })
      .catch(function (e) { showError("重新索引失败", e); });
  });

  // ---------------------------------------------------------------- preview

  var previewSeq = 0;

  function openPreview(doc, highlightChunk) {
    var seq = ++previewSeq;
    var drawer = $("preview");
    var list = $("preview-chunks");
    previewing = doc.doc_id;
    $("preview-title").textContent = doc.title || doc.doc_id;
    $("preview-meta").textContent = "正在读取段落…";
    drawer.setAttribute("data-doc-id", String(doc.doc_id));
    clear(list);
    drawer.hidden = false;
    $("documents-body").classList.add("previewing");
    drawer.scrollIntoView({ block: "nearest" });
    api("GET", docPath(doc.doc_id) + "/chunks").then(function (chunks) {
      if (seq !== previewSeq) return;
      chunks = Array.isArray(chunks) ? chunks : [];
      var meta = [doc.kb, doc.date, doc.source, chunks.length + " 个段落"].filter(Boolean);
      $("preview-meta").textContent = meta.join(" · ");
      var target = null;
      chunks.forEach(function (c, i) {
        var item = el("li", "chunk");
        item.setAttribute("data-chunk-id", String(c.chunk_id));
        item.appendChild(el("div", "chunk-n", "第 " + ((c.n !== undefined ? c.n : i) + 1) + " 段"));
        item.appendChild(el("div", "chunk-text", c.text));
        if (highlightChunk !== null && String(c.chunk_id) === String(highlightChunk)) {
          item.classList.add("highlight");
          target = item;
        }
        list.appendChild(item);
      });
      if (!chunks.length) list.appendChild(el("li", "empty", "没有段落。"));
      // Scroll the chunk list only, not the page.
      list.scrollTop = target ? target.offsetTop - list.offsetTop - 8 : 0;
    }).catch(function (e) {
      if (seq !== previewSeq) return;
      $("preview-meta").textContent = "";
      showError("读取段落失败", e);
    });
  }

  function closePreview() {
    $("preview").hidden = true;
    $("documents-body").classList.remove("previewing");
    previewing = null;
    previewSeq++;
  }
  $("preview-close").addEventListener("click", closePreview);
  document.addEventListener("keydown", function (e) {
    if (e.key !== "Escape" || previewing === null || $("preview").hidden) return;
    if (e.target.closest && e.target.closest("form")) return;  // Esc there closes the form
    closePreview();
  });

  // ---------------------------------------------------------------- 命中测试

  var searchSeq = 0;

  function snippetCell(text) {
    var td = el("td", "text");
    text = text === null || text === undefined ? "" : String(text);
    var span = el("span", "snippet");
    td.appendChild(span);
    if (text.length <= SNIPPET) {
      span.textContent = text;
      return td;
    }
    var expanded = false;
    var toggle = button("link expand", "展开");
    function show() {
      span.textContent = expanded ? text : text.slice(0, SNIPPET) + "…";
      toggle.textContent = expanded ? "收起" : "展开";
      td.classList.toggle("expanded", expanded);
    }
    toggle.addEventListener("click", function () { expanded = !expanded; show(); });
    show();
    td.appendChild(toggle);
    return td;
  }

  function renderHits(hits) {
    var table = $("search-results");
    var tbody = table.querySelector("tbody");
    clear(tbody);
    hits.forEach(function (hit, i) {
      var tr = el("tr");
      tr.setAttribute("data-rank", String(hit.rank !== undefined ? hit.rank : i + 1));
      tr.setAttribute("data-chunk-id", String(hit.chunk_id));
      tr.setAttribute("data-doc-id", String(hit.doc_id));
      tr.appendChild(el("td", "rank num", hit.rank !== undefined ? hit.rank : i + 1));
      var title = el("td", "title");
      var open = button("link open-doc", hit.title || hit.doc_id, "在预览中查看这段的上下文");
      open.addEventListener("click", function () {
        openPreview({ doc_id: hit.doc_id, title: hit.title, kb: hit.kb }, hit.chunk_id);
      });
      title.appendChild(open);
      if (hit.kb) title.appendChild(el("div", "hint", hit.kb));
      tr.appendChild(title);
      tr.appendChild(snippetCell(hit.text));
      tr.appendChild(el("td", "dense num", fmtScore(hit.dense)));
      tr.appendChild(el("td", "lexical num", fmtScore(hit.lexical)));
      tr.appendChild(el("td", "fused num", fmtScore(hit.fused)));
      tbody.appendChild(tr);
    });
    table.hidden = hits.length === 0;
  }

  $("search-form").addEventListener("submit", function (e) {
    e.preventDefault();
    var question = $("search-question").value.trim();
    var status = $("search-status");
    if (!question) {
      status.textContent = "请输入问题。";
      $("search-question").focus();
      return;
    }
    var body = { question: question };
    var kb = $("search-kb").value;
    if (kb) body.kb = kb;
    var k = parseInt($("search-k").value, 10);
    if (k > 0) body.k = k;
    var seq = ++searchSeq;
    status.textContent = "正在检索…";
    busy($("search-button"), function () { return api("POST", "api/search", body); })
      .then(function (data) {
        if (seq !== searchSeq) return;
        var hits = data && Array.isArray(data.hits) ? data.hits : [];
        renderHits(hits);
        status.textContent = hits.length ? "命中 " + hits.length + " 个段落。" : "没有命中任何段落。";
      })
      .catch(function (err) {
        if (seq !== searchSeq) return;
        status.textContent = "";
        renderHits([]);
        showError("检索失败", err);
      });
  });

  // ---------------------------------------------------------------- start

  renderPending();
  renderJobs();
  loadKbs();
  loadDocuments();
  poll();
})();
