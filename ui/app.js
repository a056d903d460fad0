// depot's web page: sign-in (token mode), upload (Uppy's Dashboard over tus,
// and the dedup protocol for large files), the file list (search, paging,
// download through a signed link, share, delete) and store statistics.
// It speaks the public API only, with the token from session storage.
/* global DepotVendor, DepotDedup */
(function () {
  'use strict';

  const { Uppy, Dashboard, Tus } = DepotVendor;
  const MiB = 1024 * 1024;
  /** Files this large or larger go through the dedup protocol. */
  const DEDUP_THRESHOLD = 8 * MiB;
  const PAGE = 50;
  const TOKEN_KEY = 'depot.token';

  const $ = (sel) => document.querySelector(sel);

  // ---- formatting -------------------------------------------------------

  function bytes(n) {
    if (n == null) return '';
    const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];
    let i = 0;
    let v = n;
    while (v >= 1024 && i < units.length - 1) {
      v /= 1024;
      i++;
    }
    return i === 0 ? `${n} B` : `${v.toFixed(v < 10 ? 2 : 1)} ${units[i]}`;
  }

  const date = (s) => {
    const d = new Date(s);
    return Number.isNaN(d.getTime()) ? s : d.toLocaleString();
  };

  // ---- talking to the server -------------------------------------------

  const token = () => sessionStorage.getItem(TOKEN_KEY);
  const authHeaders = () => (token() ? { Authorization: `Bearer ${token()}` } : {});

  /** fetch() with the token; a 401 shows the sign-in form. */
  async function request(path, init = {}) {
    const res = await fetch(path, { ...init, headers: { ...authHeaders(), ...(init.headers || {}) } });
    if (res.status === 401) showSignIn(token() ? 'That token is not accepted (mistyped, revoked or expired). Sign in again.' : null);
    return res;
  }

  /** What went wrong, in words a person understands, from an error answer. */
  function explain(status, body) {
    const said = body && body.message ? body.message : '';
    const kind = body && body.error ? body.error : '';
    switch (true) {
      case status === 0:
        return 'The server cannot be reached. Check that depot is running; uploads resume when it is back.';
      case status === 401:
        return 'You need to sign in with a token.';
      case status === 403:
        return /scope/.test(said)
          ? `Your token does not allow this (${said.replace(/^this token /, 'it ')}). Ask for a token with that permission.`
          : `The server refused this: ${said || 'forbidden'}.`;
      case status === 413:
        return `Too large for this server. ${said}`.trim();
      case status === 415:
        return `This type of file is not allowed here. ${said}`.trim();
      case status === 507 || kind === 'quota_exceeded' || /quota/i.test(said):
        return `No room left: ${said || 'the storage quota is used up'}.`;
      case status === 429:
        return 'Too many requests at once; trying again shortly usually works.';
      case status >= 500:
        return 'The server had a problem. Try again; if it persists, its log says why.';
      default:
        return said || `The server answered ${status}.`;
    }
  }

  /** An Error carrying the explanation of a failed response. */
  async function failure(res) {
    let body = null;
    try {
      body = await res.json();
    } catch {
      // not JSON
    }
    const err = new Error(explain(res.status, body));
    err.status = res.status;
    return err;
  }

  async function getJson(path) {
    let res;
    try {
      res = await request(path);
    } catch {
      throw Object.assign(new Error(explain(0)), { status: 0 });
    }
    if (!res.ok) throw await failure(res);
    return res.json();
  }

  let chunkingInfo = null;
  const chunking = async () => (chunkingInfo ||= await getJson('/api/chunking'));

  // ---- status line ------------------------------------------------------

  function say(message, kind = 'info') {
    const el = $('#status');
    el.textContent = message;
    el.dataset.kind = kind;
    el.hidden = !message;
  }

  // ---- sign-in ----------------------------------------------------------

  function showSignIn(message) {
    $('#app').hidden = true;
    $('#sign-in').hidden = false;
    $('#sign-out').hidden = true;
    if (message) say(message, 'error');
    $('#token').focus();
  }

  $('#sign-in-form').addEventListener('submit', async (e) => {
    e.preventDefault();
    sessionStorage.setItem(TOKEN_KEY, $('#token').value.trim());
    $('#token').value = '';
    say('');
    await start();
  });

  $('#sign-out').addEventListener('click', () => {
    sessionStorage.removeItem(TOKEN_KEY);
    location.reload();
  });

  // ---- statistics -------------------------------------------------------

  async function refreshStats() {
    try {
      const s = await getJson('/api/stats');
      const saved = s.logical_bytes > s.stored_bytes ? `, ${bytes(s.logical_bytes - s.stored_bytes)} saved` : '';
      $('#stats').textContent = `${s.files} files · ${bytes(s.logical_bytes)} in files · ${bytes(s.stored_bytes)} stored${saved}`;
    } catch {
      $('#stats').textContent = '';
    }
  }

  // ---- file list --------------------------------------------------------

  let cursor = null;
  let query = '';

  function button(label, title, onClick, cls) {
    const b = document.createElement('button');
    b.type = 'button';
    b.textContent = label;
    b.title = title;
    b.setAttribute('aria-label', title);
    if (cls) b.className = cls;
    b.addEventListener('click', onClick);
    return b;
  }

  // What deduplication saved the file when it was stored: its bytes the
  // server already had (or that repeat within it). Unknown for files stored
  // before the server counted it.
  function saving(f) {
    const d = f.deduplicated_bytes;
    if (d === undefined || d === null) return '–';
    if (d === 0 || f.size === 0) return 'none';
    return `${bytes(d)} (${Math.round((100 * d) / f.size)}%)`;
  }

  function row(f) {
    const tr = document.createElement('tr');
    tr.dataset.id = f.id;
    tr.dataset.name = f.name;
    tr.dataset.saved = f.deduplicated_bytes ?? '';
    const cells = [
      [f.name, 'name'],
      [bytes(f.size), 'num'],
      [saving(f), 'num wide'],
      [f.content_type || '', 'wide'],
      [date(f.created), 'wide'],
    ];
    for (const [text, cls] of cells) {
      const td = document.createElement('td');
      td.textContent = text;
      td.className = cls;
      if (cls === 'name') td.title = f.name;
      tr.append(td);
    }
    const td = document.createElement('td');
    td.className = 'row-actions';
    td.append(
      button('Download', `Download ${f.name}`, () => download(f), 'quiet'),
      button('Share', `Share a link to ${f.name}`, () => share(f), 'quiet'),
      button('Delete', `Delete ${f.name}`, () => remove(f), 'quiet danger-text'),
    );
    tr.append(td);
    return tr;
  }

  async function loadFiles(append = false) {
    const params = new URLSearchParams({ limit: String(PAGE) });
    if (query) params.set('q', query);
    if (append && cursor) params.set('cursor', cursor);
    let list;
    try {
      list = await getJson(`/api/files?${params}`);
    } catch (e) {
      if (e.status !== 401) say(`The file list could not be loaded. ${e.message}`, 'error');
      return;
    }
    const tbody = $('#files tbody');
    if (!append) tbody.replaceChildren();
    list.files.forEach((f) => tbody.append(row(f)));
    cursor = list.next_cursor || null;
    $('#more').hidden = !cursor;
    const empty = tbody.children.length === 0;
    $('#files-empty').hidden = !empty;
    $('#files-empty').textContent = query ? `No file name contains “${query}”.` : 'No files yet. Drop some above.';
    $('#files').hidden = empty;
  }

  let refreshTimer = null;
  function refreshSoon() {
    clearTimeout(refreshTimer);
    refreshTimer = setTimeout(() => {
      loadFiles();
      refreshStats();
    }, 200);
  }

  let searchTimer = null;
  $('#search').addEventListener('input', (e) => {
    clearTimeout(searchTimer);
    searchTimer = setTimeout(() => {
      query = e.target.value.trim();
      loadFiles();
    }, 250);
  });
  $('#more').addEventListener('click', () => loadFiles(true));

  async function link(f, seconds) {
    const res = await request(`/api/files/${encodeURIComponent(f.id)}/link`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ expires_in: seconds }),
    });
    if (!res.ok) throw await failure(res);
    const l = await res.json();
    return { url: new URL(l.url, location.href).href, expiresAt: l.expires_at };
  }

  /** Through a short signed link: the browser streams the file to disk. */
  async function download(f) {
    try {
      const { url } = await link(f, 300);
      const a = document.createElement('a');
      a.href = url;
      a.download = f.name;
      document.body.append(a);
      a.click();
      a.remove();
    } catch (e) {
      say(`${f.name} cannot be downloaded. ${e.message}`, 'error');
    }
  }

  function share(f) {
    const dlg = $('#share-dialog');
    dlg.querySelector('.file-name').textContent = f.name;
    dlg.querySelector('.share-result').hidden = true;
    dlg.querySelector('.dialog-error').hidden = true;
    $('#share-copy').hidden = true;
    $('#share-create').onclick = async () => {
      try {
        const l = await link(f, Number($('#share-expiry').value));
        $('#share-url').value = l.url;
        dlg.querySelector('time').textContent = date(l.expiresAt);
        dlg.querySelector('time').dateTime = l.expiresAt;
        dlg.querySelector('.share-result').hidden = false;
        $('#share-copy').hidden = false;
        $('#share-url').select();
      } catch (e) {
        const p = dlg.querySelector('.dialog-error');
        p.textContent = e.message;
        p.hidden = false;
      }
    };
    $('#share-copy').onclick = async () => {
      $('#share-url').select();
      try {
        await navigator.clipboard.writeText($('#share-url').value);
        $('#share-copy').textContent = 'Copied';
      } catch {
        // Without clipboard permission the link stays selected for Ctrl+C.
        $('#share-copy').textContent = 'Press Ctrl+C to copy';
      }
      setTimeout(() => ($('#share-copy').textContent = 'Copy link'), 2000);
    };
    dlg.showModal();
  }

  function remove(f) {
    const dlg = $('#delete-dialog');
    dlg.querySelector('.file-name').textContent = f.name;
    dlg.returnValue = '';
    dlg.onclose = async () => {
      if (dlg.returnValue !== 'delete') return;
      const res = await request(`/api/files/${encodeURIComponent(f.id)}`, { method: 'DELETE' });
      if (res.ok || res.status === 404) {
        say(`${f.name} was deleted.`);
        refreshSoon();
      } else {
        say(`${f.name} was not deleted. ${(await failure(res)).message}`, 'error');
      }
    };
    dlg.showModal();
  }

  // ---- uploads ----------------------------------------------------------

  function report({ file, total, sent }) {
    const li = document.createElement('li');
    li.dataset.name = file.name;
    li.dataset.total = String(total);
    li.dataset.sent = String(sent);
    const skipped = total - sent;
    const pct = total ? Math.round((100 * skipped) / total) : 0;
    li.textContent =
      skipped === 0
        ? `${file.name}: all ${bytes(total)} sent (the server had none of it).`
        : `${file.name}: ${bytes(skipped)} of ${bytes(total)} (${pct}%) did not have to be sent — the server already had it. Sent ${bytes(sent)}.`;
    $('#reports').prepend(li);
  }

  /** The status and body of a tus-js-client error, when it has an answer. */
  function tusFailure(err) {
    const res = err && err.originalResponse;
    if (!res) return { status: 0, body: null };
    let body = null;
    try {
      body = JSON.parse(res.getBody());
    } catch {
      // not JSON
    }
    return { status: res.getStatus(), body };
  }

  let uppy = null;
  function startUploader() {
    if (uppy) return;
    uppy = new Uppy({ autoProceed: true, id: 'depot' });
    uppy.use(Dashboard, {
      inline: true,
      target: '#uploader',
      width: '100%',
      height: 340,
      theme: 'auto',
      showProgressDetails: true,
      proudlyDisplayPoweredByUppy: false,
      fileManagerSelectionType: 'both',
      note: `Files of ${DEDUP_THRESHOLD / MiB} MiB or more send only what the server does not already have.`,
    });
    // The dedup uploader runs first; tus takes the files it leaves.
    uppy.use(DepotDedup, { threshold: DEDUP_THRESHOLD, request, failure, chunking, onReport: report });
    uppy.use(Tus, {
      endpoint: '/api/tus/',
      headers: () => authHeaders(),
      // PATCHes of 4 MiB: each one acknowledged is kept, whatever happens to the next.
      chunkSize: 4 * MiB,
      limit: 3,
      retryDelays: [0, 1000, 3000, 5000, 10000],
      removeFingerprintOnSuccess: true,
      onShouldRetry(err, attempt, options, next) {
        const { status } = tusFailure(err);
        // A refusal (no token, no scope, too large, type, no space) will not change.
        if ([401, 403, 413, 415, 507].includes(status)) return false;
        return next(err);
      },
    });
    uppy.on('upload-success', refreshSoon);
    uppy.on('upload-error', (file, err) => {
      let message = err && err.message;
      if (err && 'originalRequest' in err) {
        const { status, body } = tusFailure(err);
        message = explain(status, body);
        if (status === 401) showSignIn('That token is not accepted. Sign in again.');
      }
      say(`${file ? file.name : 'A file'} was not uploaded. ${message}`, 'error');
    });
    uppy.on('upload', () => say(''));
    window.depotUppy = uppy;
  }

  // ---- start ------------------------------------------------------------

  async function start() {
    // Any API answer tells whether we may be here: 401 means sign in.
    let res;
    try {
      res = await request('/api/chunking');
    } catch {
      say(explain(0), 'error');
      return;
    }
    if (res.status === 401) return;
    $('#sign-in').hidden = true;
    $('#app').hidden = false;
    $('#sign-out').hidden = !token();
    startUploader();
    await Promise.all([loadFiles(), refreshStats()]);
    document.body.dataset.ready = 'true';
  }

  start();
})();
