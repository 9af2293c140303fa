// The promotion console: seed 000's click path on the JSON API of the same origin. The
// token lives in this script's memory only (no cookie, no storage, never in a URL); every
// rule is the server's, and its refusals are shown as it words them.
'use strict';

const API = '/environment-promotion/v1';
let token = null;
let me = null;
let environments = [];
let currentEnvironment = null;
let promoting = null;

const $ = (id) => document.getElementById(id);

/// One call of the JSON API: its `data`, or an Error saying the reason and message.
async function api(method, path, body) {
  const headers = { Accept: 'application/json' };
  if (token) headers.Authorization = 'Bearer ' + token;
  if (body !== undefined) headers['Content-Type'] = 'application/json';
  const response = await fetch(API + path, {
    method, headers, credentials: 'omit', cache: 'no-store',
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  const answer = await response.json().catch(() => ({}));
  if (!response.ok) {
    const error = answer.error || {};
    throw new Error((error.reason || response.status) + ': ' + (error.message || response.statusText));
  }
  return answer.data;
}

/// An element with attributes and children (text is always text, never HTML).
function el(tag, attributes, ...children) {
  const node = document.createElement(tag);
  for (const [name, value] of Object.entries(attributes || {})) {
    if (value === false || value === null || value === undefined) continue;
    if (name.startsWith('on')) node.addEventListener(name.slice(2), value);
    else node.setAttribute(name, value === true ? '' : value);
  }
  for (const child of children.flat()) {
    if (child !== null && child !== undefined) node.append(child instanceof Node ? child : String(child));
  }
  return node;
}

function say(text) {
  $('error').textContent = '';
  $('status').textContent = text;
}

function fail(error) {
  $('status').textContent = '';
  $('error').textContent = error.message || String(error);
}

/// Runs an action, reporting its failure instead of throwing.
async function attempt(action) {
  try {
    await action();
  } catch (error) {
    fail(error);
  }
}

function fillRows(table, rows, empty) {
  const body = $(table).querySelector('tbody');
  body.replaceChildren(...(rows.length ? rows : [el('tr', {}, el('td', { colspan: 6 }, empty))]));
}

const shortTime = (t) => (t ? t.replace('T', ' ').replace(/\.\d+Z$/, 'Z') : '');
const isAdmin = () => (me.bindings || []).some((b) => b.role === 'admin');

// Signing in and out.

async function signIn(event) {
  event.preventDefault();
  await attempt(async () => {
    const issued = await api('POST', '/token', { clientId: $('client-id').value, clientSecret: $('client-secret').value });
    token = issued.accessToken;
    me = await api('GET', '/whoami');
    $('client-secret').value = '';
    $('who').textContent = 'Signed in as ' + me.subject + ' (' + me.customerId + ')';
    $('sign-in').hidden = true;
    $('app').hidden = false;
    $('sign-out').hidden = false;
    $('audit-tab').hidden = !isAdmin();
    environments = await api('GET', '/environments');
    say('Signed in as ' + me.subject);
    await show('environments');
    await refreshTaskCount();
  });
}

function signOut() {
  token = null;
  me = null;
  environments = [];
  currentEnvironment = null;
  $('app').hidden = true;
  $('sign-out').hidden = true;
  $('sign-in').hidden = false;
  $('who').textContent = '';
  say('Signed out');
  $('client-id').focus();
}

// Sections.

async function show(section) {
  for (const tab of document.querySelectorAll('.tab')) {
    tab.setAttribute('aria-pressed', String(tab.dataset.section === section));
  }
  for (const panel of document.querySelectorAll('.panel')) panel.hidden = panel.id !== section;
  await attempt(() => ({ environments: showEnvironments, tasks: showTasks, history: showHistory, audit: showAudit })[section]());
}

async function showEnvironments() {
  $('environment-list').replaceChildren(...environments.map((e) => el('li', {}, el('button', {
    type: 'button', 'aria-pressed': String(e.id === currentEnvironment),
    onclick: () => attempt(() => choose(e.id)),
  }, e.displayName || e.id, ' ', el('span', { class: 'badge' }, e.kind)))));
  if (!currentEnvironment && environments.length) await choose(environments[0].id);
  else if (currentEnvironment) await choose(currentEnvironment);
}

async function choose(environment) {
  currentEnvironment = environment;
  for (const button of $('environment-list').querySelectorAll('button')) {
    button.setAttribute('aria-pressed', String(button.textContent.startsWith(label(environment))));
  }
  $('packages-title').textContent = 'Packages from ' + label(environment);
  const packages = await api('GET', '/packages?sourceEnvironment=' + encodeURIComponent(environment));
  fillRows('packages', packages.map((p) => el('tr', {},
    el('td', {}, p.name),
    el('td', {}, p.status),
    el('td', {}, p.version),
    el('td', {}, Object.entries(p.installationCounts || {}).map(([env, n]) => env + ' ×' + n).join(', ')),
    el('td', {}, el('button', { type: 'button', class: 'primary', 'aria-label': 'Promote ' + p.name, onclick: () => attempt(() => openPromote(p)) }, 'Promote')),
  )), 'No packages from this environment.');
}

const label = (id) => {
  const e = environments.find((x) => x.id === id);
  return e ? e.displayName || e.id : id;
};

// The Promote dialog: every other environment, a target already pending shown disabled.

async function openPromote(pkg) {
  promoting = pkg;
  const pending = await api('GET', '/promotion-requests?status=TO_BE_VALIDATED&packageId=' + encodeURIComponent(pkg.id));
  const pendingBy = new Map(pending.map((r) => [r.targetEnvironment, r]));
  const targets = environments.filter((e) => e.id !== pkg.sourceEnvironment);
  $('promote-package').textContent = pkg.name + ' (version ' + pkg.version + ', ' + pkg.status + ') from ' + label(pkg.sourceEnvironment);
  $('targets').replaceChildren(...targets.map((e) => {
    const request = pendingBy.get(e.id);
    const why = request ? 'a promotion request is pending (requested by ' + request.requestedBy + '); it must be accepted, rejected or cancelled first' : null;
    const id = 'target-' + e.id;
    return el('label', { class: 'target', for: id },
      el('input', { type: 'radio', name: 'target', id, value: e.id, disabled: Boolean(request), 'aria-describedby': why ? id + '-why' : null }),
      ' ', e.displayName || e.id, ' ', el('span', { class: 'badge' }, e.kind),
      why ? el('span', { class: 'why', id: id + '-why' }, why) : null);
  }));
  $('promote-error').textContent = '';
  $('promote-comment').value = '';
  $('promote-dialog').showModal();
  const first = $('targets').querySelector('input:not([disabled])');
  if (first) first.focus();
}

async function promote(event) {
  event.preventDefault();
  const chosen = $('targets').querySelector('input[name="target"]:checked');
  if (!chosen) {
    $('promote-error').textContent = 'Choose a target environment.';
    return;
  }
  try {
    const request = await api('POST', '/promotion-requests', {
      packageId: promoting.id, targetEnvironment: chosen.value, comment: $('promote-comment').value,
    });
    $('promote-dialog').close();
    say('Promotion of ' + request.packageName + ' to ' + label(request.targetEnvironment) + ' requested: ' + request.status);
    await refreshTaskCount();
  } catch (error) {
    $('promote-error').textContent = error.message;
  }
}

// Tasks: each pending request with its plan, accepted or rejected with a comment.

async function refreshTaskCount() {
  const tasks = await api('GET', '/tasks');
  $('task-count').textContent = tasks.length ? '(' + tasks.length + ')' : '';
  return tasks;
}

async function showTasks() {
  const tasks = await refreshTaskCount();
  const articles = await Promise.all(tasks.map(task));
  $('task-list').replaceChildren(...(articles.length ? articles : [el('p', {}, 'No tasks.')]));
}

async function task(request) {
  const comment = 'comment-' + request.id;
  const what = request.packageName + ' to ' + label(request.targetEnvironment);
  const decide = (verb) => attempt(async () => {
    const decided = await api('POST', '/promotion-requests/' + request.id + '/' + verb, { comment: $(comment).value });
    say(what + ': ' + decided.status);
    await showTasks();
  });
  return el('article', { class: 'task', 'aria-labelledby': 'task-' + request.id },
    el('h3', { id: 'task-' + request.id }, request.packageName, ' v', request.packageVersion, ': ', label(request.sourceEnvironment), ' → ', label(request.targetEnvironment)),
    el('p', {}, 'Requested by ', request.requestedBy, ' at ', shortTime(request.createdAt), ' ',
      el('span', { class: 'badge' }, request.isUpdate ? 'update: installed there before' : 'first promotion there'),
      request.comment ? el('span', {}, ' — “', request.comment, '”') : null),
    request.lastError ? el('p', { class: 'why' }, 'Last attempt failed: ', request.lastError) : null,
    await plan(request),
    el('label', { for: comment }, 'Comment on ', what),
    el('textarea', { id: comment, rows: 2 }),
    el('div', { class: 'buttons' },
      el('button', { type: 'button', 'aria-label': 'Reject ' + what, onclick: () => decide('reject') }, 'Reject'),
      el('button', { type: 'button', class: 'primary', 'aria-label': 'Accept ' + what, onclick: () => decide('accept') }, 'Accept')));
}

/// The plan a request carries: per object, the action, why (collision), and field changes.
async function plan(request) {
  if (!request.preRunId) return el('p', {}, 'No plan attached yet.');
  let preRun;
  try {
    preRun = await api('GET', '/prerun/' + request.preRunId);
  } catch (error) {
    return el('p', { class: 'why' }, 'The plan cannot be read: ', error.message);
  }
  const rows = [];
  for (const [type, entries] of Object.entries(preRun.translationMap || {})) {
    for (const entry of Object.values(entries)) {
      const changes = (entry.changes || []).map((c) => c.path + ': ' + JSON.stringify(c.before) + ' → ' + JSON.stringify(c.after)).join('; ');
      rows.push(el('tr', {}, el('td', {}, type), el('td', {}, entry.name), el('td', {}, entry.action),
        el('td', {}, entry.collision === 'UNSPECIFIED' ? '' : entry.collision), el('td', {}, changes)));
    }
  }
  const summary = Object.entries(preRun.summary || {}).map(([action, n]) => action + ' ' + n).join(', ');
  return el('details', {},
    el('summary', {}, 'Plan: ', summary || 'nothing to do'),
    el('table', { 'aria-label': 'Plan of ' + request.packageName },
      el('thead', {}, el('tr', {}, ['Type', 'Name', 'Action', 'Collision', 'Changes'].map((h) => el('th', { scope: 'col' }, h)))),
      el('tbody', {}, rows)));
}

// History: requests (cancel your own pending ones) and installations (roll back).

async function showHistory() {
  const requests = await api('GET', '/promotion-requests');
  fillRows('requests', requests.map((r) => el('tr', {},
    el('td', {}, r.packageName, ' v', r.packageVersion),
    el('td', {}, label(r.sourceEnvironment), ' → ', label(r.targetEnvironment)),
    el('td', {}, r.status),
    el('td', {}, r.requestedBy),
    el('td', {}, r.decidedBy ? r.decidedBy + (r.decisionComment ? ': “' + r.decisionComment + '”' : '') : ''),
    el('td', {}, r.status === 'TO_BE_VALIDATED' && r.requestedBy === me.subject
      ? el('button', { type: 'button', 'aria-label': 'Cancel the request of ' + r.packageName + ' to ' + label(r.targetEnvironment),
        onclick: () => attempt(async () => {
          const cancelled = await api('POST', '/promotion-requests/' + r.id + '/cancel', { comment: 'withdrawn in the console' });
          say(r.packageName + ': ' + cancelled.status);
          await showHistory();
        }) }, 'Cancel request')
      : null),
  )), 'No promotion requests.');
  const installations = await api('GET', '/installations');
  fillRows('installations', installations.map((i) => el('tr', {},
    el('td', {}, shortTime(i.createdAt)),
    el('td', {}, label(i.destinationEnvironment)),
    el('td', {}, i.status),
    el('td', {}, i.createdById),
    el('td', {}, Object.entries(i.summary || {}).map(([a, n]) => a + ' ' + n).join(', ')),
    el('td', {}, i.status === 'INSTALLED'
      ? el('button', { type: 'button', 'aria-label': 'Roll back the installation of ' + shortTime(i.createdAt) + ' into ' + label(i.destinationEnvironment),
        onclick: () => attempt(async () => {
          const rolledBack = await api('POST', '/installations/' + i.id + '/rollback', {});
          say('Installation into ' + label(i.destinationEnvironment) + ': ' + rolledBack.status);
          await showHistory();
        }) }, 'Roll back')
      : null),
  )), 'No installations.');
}

async function showAudit() {
  const events = await api('GET', '/audit-events?pageSize=200');
  fillRows('audit-events', events.reverse().map((e) => el('tr', {},
    el('td', {}, shortTime(e.time)), el('td', {}, e.actor), el('td', {}, e.environment),
    el('td', {}, e.action), el('td', {}, e.resourceType, ' ', e.resourceId), el('td', {}, e.outcome))), 'No events.');
}

document.addEventListener('DOMContentLoaded', () => {
  $('sign-in-form').addEventListener('submit', signIn);
  $('sign-out').addEventListener('click', signOut);
  $('promote-form').addEventListener('submit', promote);
  $('promote-cancel').addEventListener('click', () => $('promote-dialog').close());
  for (const tab of document.querySelectorAll('.tab')) tab.addEventListener('click', () => show(tab.dataset.section));
  $('client-id').focus();
});
