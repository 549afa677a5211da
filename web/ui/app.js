// tessera web UI: panel list, live panel cards over one WebSocket, panelAction().
// Plain browser JS, no dependencies; served as /ui/app.js.
(function () {
  'use strict';

  const STORE_KEY = 'tessera.shownPanels';
  const BACKOFF_MIN = 500;
  const BACKOFF_MAX = 5000;

  const state = {
    panels: [],          // last GET /api/panels result, id order
    ws: null,            // current socket (null while reconnecting)
    backoff: BACKOFF_MIN,
    nextRef: 1,
    pending: new Map(),  // action ref -> {resolve, reject}
  };

  const $ = (id) => document.getElementById(id);
  const grid = $('panel-grid');
  const cardOf = (panelId) => $('panel-' + panelId);

  // ---------------------------------------------------------------- DOM morph
  // Reconciles live nodes with freshly rendered HTML instead of replacing them,
  // so focus, typed input, selection and scroll positions survive re-renders.

  function morph(target, html) {
    const tpl = document.createElement('template');
    tpl.innerHTML = html;
    morphChildren(target, tpl.content);
  }

  function keyOf(node) {
    if (node.nodeType !== Node.ELEMENT_NODE) return null;
    return node.getAttribute('id') || node.getAttribute('data-id') || null;
  }

  function sameKind(a, b) {
    return a.nodeType === b.nodeType &&
      (a.nodeType !== Node.ELEMENT_NODE || a.tagName === b.tagName);
  }

  function morphChildren(oldParent, newParent) {
    const keyed = new Map();
    for (const child of oldParent.childNodes) {
      const key = keyOf(child);
      if (key) keyed.set(key, child);
    }
    // Invariant: every node before `cur` is already in its final position.
    let cur = oldParent.firstChild;
    for (const newChild of Array.from(newParent.childNodes)) {
      const key = keyOf(newChild);
      let match = null;
      if (key) {
        match = keyed.get(key) || null;
        if (match && !sameKind(match, newChild)) match = null;
        if (match) keyed.delete(key);
      } else if (cur && !keyOf(cur) && sameKind(cur, newChild)) {
        match = cur;
      }
      if (match) {
        if (match !== cur) oldParent.insertBefore(match, cur);
        morphNode(match, newChild);
        cur = match.nextSibling;
      } else {
        // importNode creates the node in this document, so inline on* handlers bind here.
        oldParent.insertBefore(document.importNode(newChild, true), cur);
      }
    }
    while (cur) {  // leftovers were not matched by anything in the new HTML
      const next = cur.nextSibling;
      oldParent.removeChild(cur);
      cur = next;
    }
  }

  function morphNode(oldNode, newNode) {
    if (oldNode.nodeType !== Node.ELEMENT_NODE) {
      if (oldNode.nodeValue !== newNode.nodeValue) oldNode.nodeValue = newNode.nodeValue;
      return;
    }
    const focused = oldNode === document.activeElement;
    syncAttributes(oldNode, newNode, focused);
    // A focused textarea's text children are its value: leave them alone.
    if (!(focused && oldNode.tagName === 'TEXTAREA')) morphChildren(oldNode, newNode);
    syncFormState(oldNode, newNode, focused);
  }

  function syncAttributes(oldEl, newEl, focused) {
    for (const { name, value } of Array.from(newEl.attributes)) {
      if (focused && name === 'value') continue;  // would clobber what the user is typing
      if (oldEl.getAttribute(name) !== value) oldEl.setAttribute(name, value);
    }
    for (const { name } of Array.from(oldEl.attributes)) {
      if (focused && name === 'value') continue;
      if (!newEl.hasAttribute(name)) oldEl.removeAttribute(name);
    }
  }

  // Attributes only set defaults; live properties must be pushed explicitly.
  function syncFormState(oldEl, newEl, focused) {
    const tag = oldEl.tagName;
    if (tag === 'INPUT') {
      const type = (newEl.getAttribute('type') || 'text').toLowerCase();
      if (type === 'checkbox' || type === 'radio') {
        oldEl.checked = newEl.hasAttribute('checked');
      } else if (!focused && type !== 'file') {
        const value = newEl.getAttribute('value') || '';
        if (oldEl.value !== value) oldEl.value = value;
      }
    } else if (tag === 'TEXTAREA' && !focused) {
      if (oldEl.value !== newEl.textContent) oldEl.value = newEl.textContent;
    } else if (tag === 'OPTION') {
      const select = oldEl.closest('select');
      if (!select || select !== document.activeElement) oldEl.selected = newEl.hasAttribute('selected');
    }
  }

  // ---------------------------------------------------------------- REST

  async function api(method, path, body) {
    // The session cookie (HttpOnly, set by /login) goes along; no token is ever in the page.
    const headers = { Accept: 'application/json' };
    if (body !== undefined) headers['Content-Type'] = 'application/json';
    const res = await fetch(path, {
      method, headers, credentials: 'same-origin',
      body: body === undefined ? undefined : JSON.stringify(body),
    });
    if (res.status === 401) location.reload();  // the session ended: the login form
    let data = null;
    try { data = await res.json(); } catch (_) { /* empty or non-JSON body */ }
    return { ok: res.ok, status: res.status, body: data };
  }

  function setStatusLine(text) {
    $('status-line').textContent = text || '';
  }

  // ---------------------------------------------------------------- shown set

  function loadShown() {
    try {
      const raw = localStorage.getItem(STORE_KEY);
      return raw === null ? null : new Set(JSON.parse(raw));
    } catch (_) {
      return null;  // corrupt entry: behave as if nothing was stored
    }
  }

  function saveShown() {
    const ids = Array.from(document.querySelectorAll('#panel-list input[type=checkbox]:checked'))
      .map((box) => box.dataset.panel);
    localStorage.setItem(STORE_KEY, JSON.stringify(ids));
  }

  // ---------------------------------------------------------------- panel list

  async function loadList() {
    let res;
    try {
      res = await api('GET', '/api/panels');
    } catch (err) {
      setStatusLine('panel list: ' + err.message);
      return;
    }
    if (!res.ok || !res.body) {
      setStatusLine('panel list: HTTP ' + res.status + ' ' + ((res.body && res.body.detail) || ''));
      return;
    }
    state.panels = res.body.panels || [];
    renderList();
    syncCards();
  }

  function renderList() {
    const stored = loadShown();
    const list = $('panel-list');
    list.textContent = '';
    for (const p of state.panels) {
      const li = document.createElement('li');
      li.dataset.panel = p.id;
      const label = document.createElement('label');
      const box = document.createElement('input');
      box.type = 'checkbox';
      box.dataset.panel = p.id;
      box.checked = stored === null || stored.has(p.id);  // default: show everything
      box.addEventListener('change', () => { saveShown(); syncCards(); });
      const title = document.createElement('span');
      title.className = 'panel-list-title';
      title.textContent = (p.icon ? p.icon + ' ' : '') + (p.title || p.id);
      const id = document.createElement('span');
      id.className = 'panel-list-id';
      id.textContent = p.id;
      label.append(box, title, id);
      li.append(label);
      list.append(li);
    }
  }

  function isShown(panelId) {
    const box = document.querySelector('#panel-list input[type=checkbox][data-panel="' + CSS.escape(panelId) + '"]');
    return !!(box && box.checked);
  }

  // Makes the grid match the list: one card per checked panel, in list order.
  function syncCards() {
    const wanted = state.panels.filter((p) => isShown(p.id));
    const wantedIds = new Set(wanted.map((p) => p.id));
    for (const card of Array.from(grid.querySelectorAll('.panel-card'))) {
      if (!wantedIds.has(card.dataset.panel)) {
        send({ type: 'unsubscribe', panel: card.dataset.panel });
        card.remove();
      }
    }
    wanted.forEach((p, i) => {
      let card = cardOf(p.id);
      if (!card) {
        card = createCard(p.id);
        send({ type: 'subscribe', panel: p.id });  // no-op while offline; onopen covers it
      }
      updateCardMeta(card, p);
      // Move only when out of place: moving a node drops focus inside it.
      if (grid.children[i] !== card) grid.insertBefore(card, grid.children[i] || null);
    });
  }

  function createCard(panelId) {
    const card = document.createElement('section');
    card.className = 'panel-card';
    card.id = 'panel-' + panelId;
    card.dataset.panel = panelId;
    card.innerHTML =
      '<header class="panel-head"><span class="panel-icon"></span><h2 class="panel-title"></h2></header>' +
      '<p class="panel-desc"></p><div class="panel-error" hidden></div><div class="panel-body"></div>';
    return card;
  }

  function updateCardMeta(card, p) {
    card.className = 'panel-card size-' + (p.size || 'medium');
    card.querySelector('.panel-icon').textContent = p.icon || '';
    card.querySelector('.panel-title').textContent = p.title || p.id;
    card.querySelector('.panel-desc').textContent = p.desc || '';
  }

  // kind: 'render' (template failure) or 'action' (failed action); a later
  // successful render clears either, a successful action clears only its own.
  function showError(panelId, text, kind) {
    const card = cardOf(panelId);
    if (!card) return;
    const bar = card.querySelector('.panel-error');
    bar.textContent = text;
    bar.dataset.kind = kind;
    bar.hidden = false;
  }

  function clearError(panelId, kind) {
    const card = cardOf(panelId);
    if (!card) return;
    const bar = card.querySelector('.panel-error');
    if (kind && bar.dataset.kind !== kind) return;
    bar.hidden = true;
    bar.textContent = '';
  }

  function applyRender(panelId, html, version) {
    const card = cardOf(panelId);
    if (!card) return;
    clearError(panelId);
    morph(card.querySelector('.panel-body'), html || '');
    if (version !== undefined) card.dataset.version = String(version);
  }

  function describeError(err) {
    if (!err) return 'unknown error';
    if (typeof err === 'string') return err;
    const text = err.message || err.detail || err.code || JSON.stringify(err);
    return (err.type ? err.type + ': ' : '') + text + (err.line ? ' (line ' + err.line + ')' : '');
  }

  // ---------------------------------------------------------------- WebSocket

  function wsUrl() {
    const proto = location.protocol === 'https:' ? 'wss:' : 'ws:';
    return proto + '//' + location.host + '/ws';
  }

  function wsOpen() {
    return !!state.ws && state.ws.readyState === WebSocket.OPEN;
  }

  function send(msg) {
    if (!wsOpen()) return false;
    state.ws.send(JSON.stringify(msg));
    return true;
  }

  function setWsStatus(s) {
    const el = $('ws-status');
    el.textContent = s;
    el.dataset.state = s;
  }

  function connect() {
    const ws = new WebSocket(wsUrl());
    state.ws = ws;
    ws.onopen = () => {
      state.backoff = BACKOFF_MIN;
      setWsStatus('connected');
      // The server answers each subscribe with the current render right away.
      for (const card of grid.querySelectorAll('.panel-card')) {
        send({ type: 'subscribe', panel: card.dataset.panel });
      }
    };
    ws.onmessage = (ev) => {
      let msg;
      try { msg = JSON.parse(ev.data); } catch (_) { return; }
      handleMessage(msg);
    };
    ws.onclose = () => {
      if (state.ws !== ws) return;
      // Refused before it opened: maybe the session ended; the panel list's request finds out
      // (a 401 there goes back to the login form).
      if (ws.readyState === WebSocket.CLOSED && state.backoff > BACKOFF_MIN) loadList();
      state.ws = null;
      for (const { reject } of state.pending.values()) reject(new Error('connection lost'));
      state.pending.clear();
      setWsStatus('reconnecting');
      setTimeout(connect, state.backoff);
      state.backoff = Math.min(state.backoff * 2, BACKOFF_MAX);
    };
    // onerror is always followed by onclose, which does the reconnecting.
  }

  function handleMessage(msg) {
    switch (msg.type) {
      case 'render':
        applyRender(msg.panel, msg.html, msg.version);
        break;
      case 'render_error':
        showError(msg.panel, 'Template error: ' + describeError(msg.error), 'render');
        break;
      case 'deleted': {
        const card = cardOf(msg.panel);
        if (card) card.remove();
        const li = document.querySelector('#panel-list li[data-panel="' + CSS.escape(msg.panel) + '"]');
        if (li) li.remove();
        state.panels = state.panels.filter((p) => p.id !== msg.panel);
        break;
      }
      case 'error':
        setStatusLine((msg.code || 'error') + (msg.panel ? ' [' + msg.panel + ']' : '') +
          (msg.detail ? ': ' + msg.detail : ''));
        if (msg.panel) showError(msg.panel, msg.detail || msg.code || 'error', 'render');
        break;
      case 'result': {
        const waiter = state.pending.get(msg.ref);
        if (!waiter) break;
        state.pending.delete(msg.ref);
        if (msg.ok) waiter.resolve(msg);
        else waiter.reject(actionError(msg.error || {}));
        break;
      }
    }
  }

  // ---------------------------------------------------------------- actions

  function actionError(problem) {
    const err = new Error(problem.detail || problem.title || problem.code || 'action failed');
    err.detail = problem.detail;
    err.code = problem.code;
    err.status = problem.status;
    err.error = problem.error;
    return err;
  }

  function actionViaWs(panelId, action, payload) {
    const ref = String(state.nextRef++);
    return new Promise((resolve, reject) => {
      state.pending.set(ref, { resolve, reject });
      send({ type: 'action', panel: panelId, action, payload, ref });
    });
  }

  async function actionViaRest(panelId, action, payload) {
    const res = await api('POST', '/api/panels/' + encodeURIComponent(panelId) + '/action',
      { action, payload });
    if (!res.ok) throw actionError(res.body || { detail: 'HTTP ' + res.status });
    if (typeof res.body.html === 'string') applyRender(panelId, res.body.html, res.body.version);
    return res.body;
  }

  window.panelAction = function panelAction(panelId, action, payload) {
    payload = payload === undefined ? {} : payload;
    const p = wsOpen() ? actionViaWs(panelId, action, payload) : actionViaRest(panelId, action, payload);
    const out = p.then(
      (result) => { clearError(panelId, 'action'); return result; },
      (err) => { showError(panelId, err.message, 'action'); throw err; });
    // Inline handlers never catch; the error is already in the card, so don't
    // also report an unhandled rejection. Callers that chain still see it.
    out.catch(() => {});
    return out;
  };

  // ---------------------------------------------------------------- data-action

  // Templates call actions without inline script: a button (or any element) with
  // data-action="name" runs that action of its panel with the JSON object in data-payload; a
  // form with data-action adds its named fields to the payload on submit, then resets (unless
  // data-keep). Data never has to be spliced into script source, where HTML escaping does not
  // protect it.
  function payloadOf(el, panelId) {
    const text = el.getAttribute('data-payload');
    if (text === null || text === '') return {};
    try {
      const value = JSON.parse(text);
      if (value && typeof value === 'object' && !Array.isArray(value)) return value;
    } catch (_) { /* reported below */ }
    showError(panelId, 'data-payload is not a JSON object: ' + text, 'action');
    return null;
  }

  grid.addEventListener('click', (ev) => {
    const el = ev.target.closest('[data-action]');
    if (!el || el.tagName === 'FORM' || !grid.contains(el)) return;
    const card = el.closest('.panel-card');
    if (!card) return;
    ev.preventDefault();
    const payload = payloadOf(el, card.dataset.panel);
    if (payload) panelAction(card.dataset.panel, el.getAttribute('data-action'), payload);
  });

  grid.addEventListener('submit', (ev) => {
    const form = ev.target.closest('form[data-action]');
    const card = form && form.closest('.panel-card');
    if (!card) return;
    ev.preventDefault();
    const payload = payloadOf(form, card.dataset.panel);
    if (!payload) return;
    for (const [name, value] of new FormData(form)) {
      if (typeof value === 'string') payload[name] = value;
    }
    panelAction(card.dataset.panel, form.getAttribute('data-action'), payload);
    if (!form.hasAttribute('data-keep')) form.reset();
  });

  // ---------------------------------------------------------------- start

  $('refresh-panels').addEventListener('click', loadList);
  setWsStatus('connecting');
  connect();
  loadList();
})();
