// citeqa web page: a chat over POST /v1/chat/completions (stream: true), no build step.
//
// Safety: every piece of text that comes from the server (answers, titles, quotes, errors) is
// inserted with textContent or as a text node, never as HTML; links are only made from
// http(s) URLs. The conversation lives here, in the page: the API is stateless.
"use strict";

(() => {
  const MAX_MESSAGES = 48; // the API takes 50; leave room for the new question
  const KEY_STORAGE = "citeqa.apiKey";
  const $ = (id) => document.getElementById(id);
  const state = { model: "citeqa", messages: [], controller: null };

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

  function headers() {
    const result = { "Content-Type": "application/json" };
    const key = $("api-key").value.trim();
    if (key) result.Authorization = `Bearer ${key}`;
    return result;
  }

  async function errorMessage(response) {
    try {
      const body = await response.json();
      if (body && body.error && body.error.message) return body.error.message;
      if (body && body.detail) return String(body.detail);
    } catch {
      // not JSON: fall through
    }
    return `the server answered ${response.status}`;
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
      button.title = citation.title;
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
        body: JSON.stringify({ model: state.model, stream: true, messages }),
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

  async function loadModel() {
    try {
      const response = await fetch("/v1/models", { headers: headers() });
      if (!response.ok) return;
      const body = await response.json();
      if (body.data && body.data.length) state.model = body.data[0].id;
    } catch {
      // keep the default id
    }
  }

  function start() {
    const keyInput = $("api-key");
    keyInput.value = sessionStorage.getItem(KEY_STORAGE) || "";
    keyInput.addEventListener("change", () => {
      sessionStorage.setItem(KEY_STORAGE, keyInput.value.trim());
      loadModel();
    });
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
      $("question").focus();
    });
    loadModel();
    $("question").focus();
  }

  document.addEventListener("DOMContentLoaded", start);
})();
