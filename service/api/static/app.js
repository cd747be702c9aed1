// citeqa web page, no build step. Two views:
// - Ask: a chat over POST /v1/chat/completions (stream: true); each citation shows where it is
//   (page and section) and the side panel opens the original file at that page.
// - Documents: upload (drag and drop or a file picker; POST /v1/documents, then the job is
//   polled), a paged list (GET /v1/documents), open and delete (DELETE /v1/documents/{id}).
// A collection is a model of GET /v1/models; the selector (shown when there are several) picks
// the corpus for both views.
//
// Safety: every piece of text that comes from the server (answers, titles, quotes, file names,
// skip reasons, errors) is inserted with textContent or as a text node, never as HTML; links are
// only made from http(s) URLs or built here from encoded document ids. The conversation lives
// here, in the page: the API is stateless.
"use strict";

(() => {
  // The API's limit on messages, rendered into the page by the server; the conversation kept
  // leaves room for the new question.
  const MAX_MESSAGES = Number(document.getElementById("ask-form").dataset.maxMessages) - 2;
  const KEY_STORAGE = "citeqa.apiKey";
  const PAGE_SIZE = 20; // documents per page of the list
  const POLL_MS = 500; // job polling interval
  const $ = (id) => document.getElementById(id);
  const state = {
    collection: "citeqa", // the model id of chat completions and ?collection= of the rest
    messages: [],
    controller: null,
    docs: { cursors: [null], index: 0, next: null, busy: false },
  };

  // ------------------------------------------------------------------ small DOM helpers

  function el(tag, className, text) {
    const node = document.createElement(tag);
    if (className) node.className = className;
    if (text !== undefined) node.textContent = text;
    return node;
  }

  function safeUrl(url) {
    try {
      const parsed = new URL(url);
      return parsed.protocol === "http:" || parsed.protocol === "https:" ? parsed.href : null;
    } catch {
      return null;
    }
  }

  function scrollToEnd() {
    const box = $("conversation");
    box.scrollTop = box.scrollHeight;
  }

  // ------------------------------------------------------------------ server-sent events

  async function* sseEvents(response) {
    const reader = response.body.getReader();
    const decoder = new TextDecoder();
    let buffer = "";
    for (;;) {
      const { value, done } = await reader.read();
      if (done) return;
      buffer += decoder.decode(value, { stream: true }).replace(/\r\n/g, "\n");
      let end;
      while ((end = buffer.indexOf("\n\n")) >= 0) {
        const frame = buffer.slice(0, end);
        buffer = buffer.slice(end + 2);
        const data = frame
          .split("\n")
          .filter((line) => line.startsWith("data:"))
          .map((line) => line.slice(5).replace(/^ /, ""))
          .join("\n");
        if (!data) continue; // a comment (": keep-alive") or an empty frame
        if (data === "[DONE]") return;
        yield JSON.parse(data);
      }
    }
  }

  function apiKey() {
    return $("api-key").value.trim();
  }

  // Request headers: the bearer key when one is set, and a JSON content type unless the body
  // is something else (a multipart upload sets its own).
  function headers(json = true) {
    const result = json ? { "Content-Type": "application/json" } : {};
    const key = apiKey();
    if (key) result.Authorization = `Bearer ${key}`;
    return result;
  }

  // What went wrong, in the server's words: problem+json `detail` (native API) or the OpenAI
  // envelope's `error.message` (chat, models).
  async function errorMessage(response) {
    try {
      const body = await response.json();
      if (body && body.error && body.error.message) return body.error.message;
      if (body && Array.isArray(body.detail)) {
        return body.detail.map((d) => (d && d.msg ? d.msg : String(d))).join("; ");
      }
      if (body && body.detail) return String(body.detail);
      if (body && body.title) return String(body.title);
    } catch {
      // not JSON: fall through
    }
    return `the server answered ${response.status} ${response.statusText}`.trim();
  }

  // fetch() that throws the server's message on an HTTP error.
  async function call(url, options = {}) {
    const response = await fetch(url, { headers: headers(), ...options });
    if (!response.ok) throw new Error(await errorMessage(response));
    return response;
  }

  function withCollection(path, params = {}) {
    const query = new URLSearchParams({ collection: state.collection, ...params });
    return `${path}?${query}`;
  }

  // ------------------------------------------------------------------ where a citation is

  // "p. 7", "pp. 7-8": the printed page label where the PDF defines one (a numeric label
  // carries a range over; "pp. vii-9" would mix two numberings, so a roman label stays alone).
  function pageText(c) {
    if (c.page == null) return "";
    const span = c.page_end != null && c.page_end > c.page ? c.page_end - c.page : 0;
    const label = c.page_label ? String(c.page_label) : "";
    if (label && label !== String(c.page)) {
      if (!span) return `p. ${label}`;
      return /^\d+$/.test(label) ? `pp. ${label}-${Number(label) + span}` : `p. ${label} ff.`;
    }
    return span ? `pp. ${c.page}-${c.page_end}` : `p. ${c.page}`;
  }

  // "p. 7 · 3.2 Model fitting"; empty when the source knows neither.
  function locationText(c) {
    return [pageText(c), c.section || ""].filter(Boolean).join(" · ");
  }

  // Ids of documents that have an original file (the contract: uploads and folder files;
  // jsonl records, listing entries and posted texts have none).
  function hasFile(docId) {
    return /^(upload|file):/.test(docId || "");
  }

  function fileUrl(docId, collection, page) {
    const query = new URLSearchParams({ collection: collection || state.collection });
    const at = page != null ? `#page=${Number(page)}` : "";
    return `/v1/documents/${encodeURIComponent(docId)}/file?${query}${at}`;
  }

  // A plain link opens the file; when a key is set the browser cannot send it with a plain
  // navigation, so the file is fetched with the key and opened from memory at the same page.
  function fileLink(link, docId, collection, page, report) {
    link.href = fileUrl(docId, collection, page);
    link.onclick = (event) => {
      if (!apiKey()) return;
      event.preventDefault();
      openWithKey(link.getAttribute("href"), report);
    };
  }

  async function openWithKey(url, report) {
    const target = window.open("", "_blank"); // now, while the click still allows a new tab
    const [path, hash] = url.split("#");
    try {
      const response = await call(path, { headers: headers(false) });
      const blobUrl = URL.createObjectURL(await response.blob());
      if (target) target.location.href = hash ? `${blobUrl}#${hash}` : blobUrl;
    } catch (error) {
      if (target) target.close();
      report(`Could not open the file: ${error.message}`);
    }
  }

  // ------------------------------------------------------------------ rendering a turn

  function addTurn(question) {
    $("empty").hidden = true;
    const user = el("div", "turn user");
    user.append(el("p", "bubble", question));
    const assistant = el("div", "turn assistant");
    assistant.dataset.state = "streaming";
    const standalone = el("p", "standalone");
    standalone.hidden = true;
    const bubble = el("div", "bubble");
    const text = el("p", "answer-text");
    const caret = el("span", "caret", "▍");
    bubble.append(text, caret);
    const footer = el("div", "sources");
    assistant.append(standalone, bubble, footer);
    $("conversation").append(user, assistant);
    scrollToEnd();
    return { assistant, standalone, bubble, text, caret, footer, sources: [] };
  }

  // The k-th [n] marker of the validated answer belongs to the k-th citation (the validator
  // emits them in that order); fall back to any citation with that number.
  function renderCited(container, answer, citations, sources) {
    container.replaceChildren();
    let next = 0;
    for (const part of answer.split(/(\[\d+\])/)) {
      const marker = /^\[(\d+)\]$/.exec(part);
      if (!marker) {
        container.append(document.createTextNode(part));
        continue;
      }
      const n = Number(marker[1]);
      let citation = citations[next] && citations[next].n === n ? citations[next] : null;
      if (citation) next += 1;
      citation = citation || citations.find((c) => c.n === n);
      if (!citation) {
        container.append(document.createTextNode(part));
        continue;
      }
      const button = el("button", "cite", `[${n}]`);
      button.type = "button";
      const where = locationText(citation);
      button.title = where ? `${citation.title}, ${where}` : citation.title;
      button.addEventListener("click", () => showCitation(citation, sources));
      container.append(button);
    }
  }

  function finishTurn(turn, final) {
    const { assistant, text, caret, footer, bubble } = turn;
    caret.remove();
    assistant.dataset.state = "done";
    const citations = final.citations || [];
    if (final.refused) {
      assistant.classList.add("refused");
      assistant.dataset.refused = "true";
      bubble.prepend(el("p", "refused-badge", "No answer in the corpus"));
      text.textContent = final.answer;
      return;
    }
    renderCited(text, final.answer, citations, turn.sources);
    if ((final.dropped || []).length) {
      footer.append(
        el("p", "note", `${final.dropped.length} unsupported sentence(s) removed after checking.`),
      );
    }
    const seen = new Set();
    const list = el("ol", "source-list");
    for (const citation of citations) {
      if (seen.has(citation.n)) continue;
      seen.add(citation.n);
      const item = el("li");
      const button = el("button", "source-link", `[${citation.n}] ${citation.title}`);
      button.type = "button";
      button.addEventListener("click", () => showCitation(citation, turn.sources));
      item.append(button);
      const where = locationText(citation);
      if (where) item.append(document.createTextNode(" "), el("span", "source-where", where));
      list.append(item);
    }
    footer.append(el("p", "label", "Sources"), list);
  }

  function failTurn(turn, message) {
    turn.caret.remove();
    turn.assistant.dataset.state = "error";
    turn.assistant.classList.add("error");
    turn.bubble.append(el("p", "error-text", `Error: ${message}`));
  }

  // The assistant turn as the page echoes it back: the answer plus the cited titles, so that a
  // later "the second paper" can be resolved by the server's follow-up rewrite.
  function assistantTurn(final) {
    const titles = new Map();
    for (const c of final.citations || []) if (!titles.has(c.n)) titles.set(c.n, c.title);
    if (!titles.size) return final.answer;
    const lines = [...titles.entries()].sort((a, b) => a[0] - b[0]);
    return `${final.answer}\n\nSources:\n${lines.map(([n, t]) => `[${n}] ${t}`).join("\n")}`;
  }

  // ------------------------------------------------------------------ the citation panel

  function showCitation(citation, sources) {
    $("citation").hidden = false;
    $("citation-n").textContent = `[${citation.n}]`;
    const url = citation.url ? safeUrl(citation.url) : null;
    const link = $("citation-link");
    const title = $("citation-title");
    if (url) {
      link.href = url;
      link.textContent = citation.title;
      link.hidden = false;
      title.textContent = "";
    } else {
      link.removeAttribute("href");
      link.hidden = true;
      title.textContent = citation.title;
    }
    $("citation-location").textContent = locationText(citation);
    $("citation-file-error").hidden = true;
    const file = $("citation-file");
    file.hidden = !hasFile(citation.doc_id);
    if (!file.hidden) {
      file.textContent = citation.page != null ? `Open the file at ${pageText(citation)}` : "Open the file";
      fileLink(file, citation.doc_id, citation.collection, citation.page, (message) => {
        $("citation-file-error").textContent = message;
        $("citation-file-error").hidden = false;
      });
    }
    $("citation-quote").textContent = citation.quote;
    const context = $("citation-context");
    context.replaceChildren();
    const source = sources.find((s) => s.n === citation.n);
    const at = source ? source.text.indexOf(citation.quote) : -1;
    if (source && at >= 0) {
      context.append(
        document.createTextNode(source.text.slice(0, at)),
        el("mark", "", citation.quote),
        document.createTextNode(source.text.slice(at + citation.quote.length)),
      );
    } else {
      context.textContent = source ? source.text : "";
    }
    $("citation-where").textContent =
      `${citation.source} (collection ${citation.collection}), ` +
      `characters ${citation.start}–${citation.end}`;
  }

  // ------------------------------------------------------------------ asking

  async function ask(question) {
    const turn = addTurn(question);
    const messages = state.messages.concat([{ role: "user", content: question }]);
    state.controller = new AbortController();
    setBusy(true);
    let final = null;
    try {
      const response = await fetch("/v1/chat/completions", {
        method: "POST",
        headers: headers(),
        body: JSON.stringify({ model: state.collection, stream: true, messages }),
        signal: state.controller.signal,
      });
      if (!response.ok) throw new Error(await errorMessage(response));
      for await (const chunk of sseEvents(response)) {
        if (chunk.error) throw new Error(chunk.error.message);
        if (chunk.sources) turn.sources = chunk.sources;
        if (chunk.standalone_question && chunk.standalone_question !== question) {
          turn.standalone.textContent = `Searched for: ${chunk.standalone_question}`;
          turn.standalone.hidden = false;
        }
        const choice = (chunk.choices || [])[0] || {};
        const delta = choice.delta && choice.delta.content;
        if (delta) {
          turn.text.append(document.createTextNode(delta));
          scrollToEnd();
        }
        if (choice.finish_reason) final = chunk;
      }
      if (!final) throw new Error("the answer stream ended early");
      finishTurn(turn, final);
      const reply = { role: "assistant", content: assistantTurn(final) };
      state.messages = messages.concat([reply]).slice(-MAX_MESSAGES);
    } catch (error) {
      failTurn(turn, error.name === "AbortError" ? "stopped" : error.message);
    } finally {
      state.controller = null;
      setBusy(false);
      scrollToEnd();
    }
  }

  function setBusy(busy) {
    $("ask").disabled = busy;
    $("stop").hidden = !busy;
  }

  // ------------------------------------------------------------------ collections

  // One model per collection; the selector appears when there is a choice. The chosen one
  // stays when it is still listed (a key change or a new collection reloads the list).
  async function loadCollections() {
    let ids = [];
    try {
      const response = await fetch("/v1/models", { headers: headers() });
      if (!response.ok) return;
      const body = await response.json();
      ids = (body.data || []).map((m) => String(m.id));
    } catch {
      return; // keep the default collection
    }
    if (!ids.length) return;
    $("collection").replaceChildren(...ids.map((id) => el("option", "", id)));
    $("collection-names").replaceChildren(...ids.map((id) => el("option", "", id)));
    $("collection-field").hidden = ids.length < 2;
    setCollection(ids.includes(state.collection) ? state.collection : ids[0]);
  }

  function setCollection(name) {
    const changed = name !== state.collection;
    state.collection = name;
    $("collection").value = name;
    $("upload-target").value = name;
    if (changed && !$("documents-view").hidden) reloadDocuments();
  }

  // ------------------------------------------------------------------ views

  function setView(name) {
    const documents = name === "documents";
    $("ask-view").hidden = documents;
    $("ask-form").hidden = documents;
    $("new-chat").hidden = documents;
    $("documents-view").hidden = !documents;
    $("tab-ask").setAttribute("aria-selected", String(!documents));
    $("tab-documents").setAttribute("aria-selected", String(documents));
    if (location.hash !== (documents ? "#documents" : "")) {
      history.replaceState(null, "", documents ? "#documents" : location.pathname);
    }
    if (documents) reloadDocuments();
    else $("question").focus();
  }

  // ------------------------------------------------------------------ documents: upload

  function showDocumentsError(message) {
    const box = $("documents-error");
    box.textContent = message;
    box.hidden = !message;
  }

  async function upload(files) {
    if (!files.length) return;
    if (state.docs.busy) {
      showDocumentsError("An upload is running: add these files once it has finished.");
      return;
    }
    state.docs.busy = true;
    $("drop-zone").classList.add("busy");
    showDocumentsError("");
    const form = new FormData();
    for (const file of files) form.append("files", file, file.name);
    const names = files.map((f) => f.name).join(", ");
    const target = $("upload-target").value.trim() || state.collection;
    showJob({ state: "uploading", files_total: files.length, files_done: 0 }, names);
    try {
      const query = new URLSearchParams({ collection: target });
      const response = await call(`/v1/documents?${query}`, {
        method: "POST",
        headers: headers(false),
        body: form,
      });
      let job = await response.json();
      showJob(job, names);
      while (job.state === "queued" || job.state === "running") {
        await new Promise((resolve) => setTimeout(resolve, POLL_MS));
        job = await (await call(`/v1/jobs/${encodeURIComponent(job.id)}`)).json();
        showJob(job, names);
      }
      if (job.state === "failed") showDocumentsError(`The upload failed: ${job.error || "no reason given"}`);
      if (target !== state.collection) {
        state.collection = target; // perhaps a new collection: list it and show it
        await loadCollections();
      }
      reloadDocuments();
    } catch (error) {
      $("upload-status").dataset.state = "error";
      $("upload-state").textContent = `Upload of ${names} failed.`;
      showDocumentsError(error.message);
    } finally {
      state.docs.busy = false;
      $("drop-zone").classList.remove("busy");
      $("files").value = "";
    }
  }

  const JOB_WORDS = {
    uploading: "Uploading",
    queued: "Waiting to start",
    running: "Reading and embedding",
    done: "Done",
    failed: "Failed",
  };

  function showJob(job, names) {
    const box = $("upload-status");
    box.hidden = false;
    box.dataset.state = job.state;
    box.dataset.job = job.id || ""; // none yet while uploading
    const total = job.files_total || 0;
    const done = job.files_done || 0;
    const parts = [`${JOB_WORDS[job.state] || job.state}: ${names}`];
    if (job.state !== "uploading") parts.push(`${done} of ${total} file(s) done`);
    if (job.texts_embedded != null) parts.push(`${job.texts_embedded} texts embedded`);
    if (job.state === "done") parts.push(`${(job.documents || []).length} document(s) in the collection`);
    $("upload-state").textContent = parts.join(" · ");
    const bar = $("upload-progress");
    bar.max = Math.max(total, 1);
    bar.value = job.state === "done" ? bar.max : done;
    const skipped = $("upload-skipped");
    skipped.replaceChildren(
      ...(job.skipped || []).map((s) => {
        const item = el("li");
        item.append(el("b", "", s.file), document.createTextNode(`: skipped, ${s.reason}`));
        return item;
      }),
    );
  }

  // ------------------------------------------------------------------ documents: the list

  function formatBytes(bytes) {
    if (bytes == null) return "–";
    if (bytes < 1024) return `${bytes} B`;
    if (bytes < 1024 * 1024) return `${(bytes / 1024).toFixed(0)} KB`;
    return `${(bytes / 1024 / 1024).toFixed(1)} MB`;
  }

  function formatTime(iso) {
    const node = el("time");
    if (!iso) return node;
    node.dateTime = iso;
    const when = new Date(iso);
    node.textContent = Number.isNaN(when.getTime()) ? iso : when.toLocaleString();
    return node;
  }

  function cell(text, className) {
    return el("td", className, text == null ? "–" : String(text));
  }

  function documentRow(doc) {
    const row = el("tr");
    row.dataset.id = doc.id;
    const title = el("td", "doc-title", doc.title || doc.id);
    const time = el("td");
    time.append(formatTime(doc.ingested_at));
    const actions = el("td", "actions");
    row.append(
      title,
      cell(doc.source, "doc-source"),
      cell(doc.format),
      cell(doc.pages, "num"),
      cell(doc.chunks, "num"),
      el("td", "num", formatBytes(doc.bytes)),
      time,
      actions,
    );
    showActions(actions, doc);
    return row;
  }

  // Open and Delete; Delete asks once more, in the row, before anything is sent.
  function showActions(actions, doc) {
    actions.replaceChildren();
    if (hasFile(doc.id) && doc.bytes != null) {
      const open = el("a", "open", "Open");
      open.target = "_blank";
      open.rel = "noopener";
      fileLink(open, doc.id, doc.collection, null, showDocumentsError);
      actions.append(open);
    }
    const remove = el("button", "delete", "Delete");
    remove.type = "button";
    remove.addEventListener("click", () => confirmDelete(actions, doc));
    actions.append(remove);
  }

  function confirmDelete(actions, doc) {
    actions.replaceChildren();
    const question = el("span", "confirm-text", "Delete this document?");
    const yes = el("button", "confirm-delete danger", "Delete");
    yes.type = "button";
    const no = el("button", "cancel-delete", "Cancel");
    no.type = "button";
    no.addEventListener("click", () => showActions(actions, doc));
    yes.addEventListener("click", async () => {
      yes.disabled = no.disabled = true;
      try {
        await call(withCollection(`/v1/documents/${encodeURIComponent(doc.id)}`), {
          method: "DELETE",
          headers: headers(false),
        });
        showDocumentsError("");
        loadDocuments();
      } catch (error) {
        showDocumentsError(`Could not delete “${doc.title || doc.id}”: ${error.message}`);
        loadDocuments(); // the list as the server has it now (gone already, perhaps)
      }
    });
    actions.append(question, yes, no);
    no.focus();
  }

  function reloadDocuments() {
    state.docs.cursors = [null];
    state.docs.index = 0;
    return loadDocuments();
  }

  // The page at state.docs.index; the server pages by an opaque cursor, kept per page so that
  // Previous goes back exactly.
  async function loadDocuments() {
    const docs = state.docs;
    const cursor = docs.cursors[docs.index];
    const params = { limit: String(PAGE_SIZE) };
    if (cursor) params.cursor = cursor;
    const table = $("documents-table");
    table.dataset.state = "loading";
    try {
      const body = await (await call(withCollection("/v1/documents", params))).json();
      const rows = body.data || [];
      if (!rows.length && docs.index > 0) {
        docs.index -= 1; // the last document of a later page was deleted
        return loadDocuments();
      }
      $("documents-body").replaceChildren(...rows.map(documentRow));
      docs.next = body.next_cursor || null;
      $("documents-empty").hidden = rows.length > 0 || docs.index > 0;
      const first = docs.index * PAGE_SIZE + 1;
      $("documents-range").textContent = rows.length
        ? `${first}–${first + rows.length - 1}`
        : "";
      $("documents-count").textContent = `collection ${state.collection}`;
      $("documents-prev").disabled = docs.index === 0;
      $("documents-next").disabled = !docs.next;
      table.dataset.state = "ready";
    } catch (error) {
      table.dataset.state = "error";
      showDocumentsError(`Could not list the documents: ${error.message}`);
    }
  }

  function startDocuments() {
    const zone = $("drop-zone");
    $("files").addEventListener("change", () => upload([...$("files").files]));
    zone.addEventListener("dragover", (event) => {
      event.preventDefault();
      zone.classList.add("over");
    });
    zone.addEventListener("dragleave", () => zone.classList.remove("over"));
    zone.addEventListener("drop", (event) => {
      event.preventDefault();
      zone.classList.remove("over");
      upload([...((event.dataTransfer && event.dataTransfer.files) || [])]);
    });
    $("documents-refresh").addEventListener("click", () => {
      showDocumentsError("");
      loadDocuments();
    });
    $("documents-prev").addEventListener("click", () => {
      state.docs.index = Math.max(0, state.docs.index - 1);
      loadDocuments();
    });
    $("documents-next").addEventListener("click", () => {
      if (!state.docs.next) return;
      state.docs.cursors[state.docs.index + 1] = state.docs.next;
      state.docs.index += 1;
      loadDocuments();
    });
  }

  // ------------------------------------------------------------------ start

  function start() {
    const keyInput = $("api-key");
    keyInput.value = sessionStorage.getItem(KEY_STORAGE) || "";
    keyInput.addEventListener("change", () => {
      sessionStorage.setItem(KEY_STORAGE, keyInput.value.trim());
      showDocumentsError("");
      loadCollections();
      if (!$("documents-view").hidden) reloadDocuments();
    });
    $("collection").addEventListener("change", () => setCollection($("collection").value));
    $("tab-ask").addEventListener("click", () => setView("ask"));
    $("tab-documents").addEventListener("click", () => setView("documents"));
    $("ask-form").addEventListener("submit", (event) => {
      event.preventDefault();
      const question = $("question").value.trim();
      if (!question || state.controller) return;
      $("question").value = "";
      ask(question);
    });
    $("question").addEventListener("keydown", (event) => {
      if (event.key === "Enter" && !event.shiftKey) {
        event.preventDefault();
        $("ask-form").requestSubmit();
      }
    });
    $("stop").addEventListener("click", () => state.controller && state.controller.abort());
    $("citation-close").addEventListener("click", () => {
      $("citation").hidden = true;
    });
    $("new-chat").addEventListener("click", () => {
      if (state.controller) state.controller.abort();
      state.messages = [];
      for (const node of [...$("conversation").querySelectorAll(".turn")]) node.remove();
      $("empty").hidden = false;
      $("citation").hidden = true;
      setView("ask");
    });
    startDocuments();
    loadCollections();
    setView(location.hash === "#documents" ? "documents" : "ask");
  }

  document.addEventListener("DOMContentLoaded", start);
})();
