// docrerank view: keyboard navigation and corrections. Shipped with the package; nothing loaded from elsewhere.
"use strict";
(function () {
  const token = document.querySelector('meta[name="docrerank-token"]').content;
  const items = () => Array.from(document.querySelectorAll("li.item"));
  const message = (text) => { document.getElementById("message").textContent = text; };

  async function post(url, body) {
    const response = await fetch(url, {
      method: "POST", headers: {"Content-Type": "application/json", "X-Docrerank-Token": token},
      body: JSON.stringify(body || {}),
    });
    if (!response.ok) {
      const detail = await response.json().catch(() => ({detail: response.statusText}));
      message(`not saved: ${detail.detail}`);
      throw new Error(detail.detail);
    }
    return response.json();
  }

  function selected() { return document.querySelector("li.item.selected") || items()[0]; }
  function select(item, scroll = true) {
    items().forEach((i) => i.classList.remove("selected"));
    if (!item) return;
    item.classList.add("selected");
    item.focus({preventScroll: !scroll});
    if (scroll) history.replaceState(null, "", `#${item.id}`);
  }

  async function correct(item, action) {
    let text = null;
    if (action === "edit") {
      text = window.prompt("The query, as it should read:", item.querySelector(".query").textContent.trim());
      if (text === null || !text.trim()) return;
    }
    await post("/api/corrections", {action, page_id: item.dataset.page, query_id: item.dataset.query, text,
                                    by: item.dataset.by || "person"});
    if (item.dataset.by === "review") {
      const next = document.getElementById("next");
      if (next) { window.location = next.href; return; }
    }
    window.location.reload();
  }

  // accept: the query is what its role says (a positive answerable, a negative not); reject: the opposite
  function reading(item, accept) {
    const positive = item.dataset.kind !== "negative";
    return accept === positive ? "answerable" : "unanswerable";
  }

  document.addEventListener("click", (event) => {
    const button = event.target.closest("button");
    if (!button) return;
    if (button.dataset.undo) { post(`/api/corrections/${button.dataset.undo}/undo`).then(() => window.location.reload()); return; }
    const item = button.closest("li.item");
    if (item && button.dataset.action) { select(item); correct(item, button.dataset.action); }
  });

  document.addEventListener("keydown", (event) => {
    if (event.target.matches("input, select, textarea") || event.ctrlKey || event.metaKey || event.altKey) return;
    const list = items(), current = selected(), at = list.indexOf(current);
    const go = (id) => { const link = document.getElementById(id); if (link) window.location = link.href; };
    const writable = document.body.dataset.writable === "yes";
    switch (event.key) {
      case "ArrowRight": case "j": go("next"); break;
      case "ArrowLeft": case "k": go("previous"); break;
      case "ArrowDown": select(list[Math.min(at + 1, list.length - 1)]); event.preventDefault(); break;
      case "ArrowUp": select(list[Math.max(at - 1, 0)]); event.preventDefault(); break;
      case "y": if (writable && current) correct(current, reading(current, true)); break;
      case "n": if (writable && current) correct(current, reading(current, false)); break;
      case "a": if (writable && current) correct(current, "answerable"); break;
      case "u": if (writable && current) correct(current, "unanswerable"); break;
      case "e": if (writable && current) correct(current, "edit"); break;
      case "d": if (writable && current) correct(current, "drop"); break;
      case "z": {
        const undo = current && current.querySelector("button.undo:last-of-type");
        if (writable && undo) undo.click();
        break;
      }
      default: return;
    }
  });

  window.addEventListener("DOMContentLoaded", () => {
    const wanted = window.location.hash && document.querySelector(window.location.hash);
    if (wanted && wanted.matches("li.item")) select(wanted); else select(items()[0], false);
  });
})();
