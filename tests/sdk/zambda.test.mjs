// End to end with the real client: @oystehr/sdk (pinned in package-lock.json)
// pointed at zambda-guard through `services.projectApiUrl`, in front of a
// recording backend that answers like a Zambda ({status, output}), with
// RS256 tokens checked against a JWKS served here.
//
// The proxy binary comes from ZAMBDA_GUARD_BIN (default
// <repo>/target/debug/zambda-guard). Ports are chosen at run time; all
// traffic stays on 127.0.0.1.

import { test, before, after, beforeEach } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import crypto from 'node:crypto';
import fs from 'node:fs';
import http from 'node:http';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

import Oystehr from '@oystehr/sdk';

const here = path.dirname(fileURLToPath(import.meta.url));
const repo = path.resolve(here, '..', '..');
const BIN = process.env.ZAMBDA_GUARD_BIN ?? path.join(repo, 'target', 'debug', 'zambda-guard');

const ISSUER = 'https://issuer.sdk.test/';
const AUDIENCE = 'https://api.sdk.test';
const PROJECT_ID = '11111111-2222-3333-4444-555555555555';
const OTHER_PROJECT_ID = '99999999-2222-3333-4444-555555555555';
const LAB_ID = '2419a78e-4c0a-411d-b8e2-90dc081f5efa';

const privateKey = crypto.createPrivateKey(
  fs.readFileSync(path.join(repo, 'tests/fixtures/keys/rsa1-private.pem')),
);
const publicJwk = {
  ...crypto
    .createPublicKey(fs.readFileSync(path.join(repo, 'tests/fixtures/keys/rsa1-public.pem')))
    .export({ format: 'jwk' }),
  kid: 'rsa1',
  alg: 'RS256',
  use: 'sig',
};

/** An RS256 token for `sub`, signed with the fixture key rsa1. */
function token(sub, extra = {}) {
  const b64 = (v) => Buffer.from(JSON.stringify(v)).toString('base64url');
  const now = Math.floor(Date.now() / 1000);
  const signingInput = `${b64({ alg: 'RS256', typ: 'JWT', kid: 'rsa1' })}.${b64({
    iss: ISSUER,
    aud: AUDIENCE,
    sub,
    iat: now,
    exp: now + 3600,
    ...extra,
  })}`;
  const signature = crypto.sign('sha256', Buffer.from(signingInput), privateKey);
  return `${signingInput}.${signature.toString('base64url')}`;
}

/** A port free at the time of asking (the proxy binds its own). */
function freePort() {
  return new Promise((resolve, reject) => {
    const s = net.createServer();
    s.once('error', reject);
    s.listen(0, '127.0.0.1', () => {
      const { port } = s.address();
      s.close(() => resolve(port));
    });
  });
}

function listen(server) {
  return new Promise((resolve) => server.listen(0, '127.0.0.1', () => resolve(server.address().port)));
}

/** Every request the backend received. */
const received = [];

/** The function backend: records each request, answers like a Zambda. */
const backend = http.createServer((req, res) => {
  const chunks = [];
  req.on('data', (c) => chunks.push(c));
  req.on('end', () => {
    const text = Buffer.concat(chunks).toString();
    let body;
    try {
      body = JSON.parse(text);
    } catch {
      body = text;
    }
    received.push({ method: req.method, url: req.url, headers: req.headers, body });
    const out = JSON.stringify({
      status: 200,
      output: {
        echo: true,
        path: req.url,
        actor: req.headers['x-zambda-actor'] ?? null,
        zambda: req.headers['x-zambda-name'] ?? null,
        body,
      },
    });
    res.writeHead(200, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(out) });
    res.end(out);
  });
});

const jwks = http.createServer((req, res) => {
  const out = JSON.stringify({ keys: [publicJwk] });
  res.writeHead(200, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(out) });
  res.end(out);
});

let proxy;
let proxyLog = '';
let apiUrl;
let workDir;

async function get(url) {
  try {
    const r = await fetch(url);
    return r.status;
  } catch {
    return 0;
  }
}

before(async () => {
  assert.ok(fs.existsSync(BIN), `proxy binary not found at ${BIN} (build it or set ZAMBDA_GUARD_BIN)`);
  const backendPort = await listen(backend);
  const jwksPort = await listen(jwks);
  const port = await freePort();
  const adminPort = await freePort();
  workDir = fs.mkdtempSync(path.join(os.tmpdir(), 'zambda-guard-sdk-'));
  fs.cpSync(path.join(repo, 'policies'), path.join(workDir, 'policies'), { recursive: true });
  const config = [
    `listen: 127.0.0.1:${port}`,
    `admin_listen: 127.0.0.1:${adminPort}`,
    'threads: 1',
    `project_id: ${PROJECT_ID}`,
    'upstream:',
    `  address: 127.0.0.1:${backendPort}`,
    '  connect_timeout_ms: 500',
    '  read_timeout_ms: 5000',
    'auth:',
    '  issuers:',
    `    - issuer: ${ISSUER}`,
    `      audiences: [${AUDIENCE}]`,
    '      algorithms: [RS256]',
    `      jwks_url: http://127.0.0.1:${jwksPort}/.well-known/jwks.json`,
    'policies:',
    '  dir: policies',
    'shutdown:',
    '  grace_period_seconds: 0',
    '  drain_timeout_seconds: 1',
    '  upgrade_sock: upgrade.sock',
    '',
  ].join('\n');
  fs.writeFileSync(path.join(workDir, 'config.yaml'), config);
  proxy = spawn(BIN, ['run', '--config', path.join(workDir, 'config.yaml')], {
    stdio: ['ignore', 'ignore', 'pipe'],
    env: { ...process.env, RUST_LOG: 'warn' },
  });
  proxy.stderr.on('data', (d) => {
    proxyLog += d;
  });
  const deadline = Date.now() + 15_000;
  while ((await get(`http://127.0.0.1:${adminPort}/readyz`)) !== 200) {
    assert.ok(proxy.exitCode === null, `proxy exited (${proxy.exitCode}):\n${proxyLog}`);
    assert.ok(Date.now() < deadline, `proxy not ready in 15 s:\n${proxyLog}`);
    await new Promise((r) => setTimeout(r, 50));
  }
  apiUrl = `http://127.0.0.1:${port}/v1`;
});

after(async () => {
  if (proxy && proxy.exitCode === null) {
    const exited = new Promise((r) => proxy.once('exit', r));
    proxy.kill('SIGINT');
    await Promise.race([exited, new Promise((r) => setTimeout(r, 3000))]);
    if (proxy.exitCode === null) proxy.kill('SIGKILL');
  }
  backend.close();
  jwks.close();
  if (workDir) fs.rmSync(workDir, { recursive: true, force: true });
});

beforeEach(() => {
  received.length = 0;
});

/** An SDK client for the proxy; no retries, so a refusal is seen once. */
function client({ accessToken, projectId = PROJECT_ID } = {}) {
  return new Oystehr({
    accessToken,
    projectId,
    services: { projectApiUrl: apiUrl },
    retry: { retries: 0 },
  });
}

/** Runs `call`, which must reject with OystehrSdkError `code`. */
async function rejectsWith(call, code) {
  await assert.rejects(call, (err) => {
    assert.ok(err instanceof Oystehr.OystehrSdkError, `not an OystehrSdkError: ${err}`);
    assert.equal(err.code, code, `code ${err.code}, message ${err.message}`);
    assert.equal(typeof err.message, 'string');
    assert.ok(err.message.length > 0);
    return true;
  });
}

test('execute, allowed: returns the function\'s {status, output}', async () => {
  const oystehr = client({ accessToken: token('lab-bot@clients') });
  const result = await oystehr.zambda.execute({ id: 'lab-results-ingest', panel: 'cbc', n: 1 });
  assert.equal(result.status, 200);
  assert.deepEqual(result.output.body, { panel: 'cbc', n: 1 });
  assert.equal(result.output.actor, 'lab-bot@clients');
  assert.equal(result.output.path, '/v1/zambda/lab-results-ingest/execute');
  assert.equal(received.length, 1);
  const r = received[0];
  assert.equal(r.method, 'POST');
  assert.equal(r.headers['x-zambda-id'], LAB_ID);
  assert.equal(r.headers['x-zambda-roles'], 'lab-integrations');
  assert.equal(r.headers['x-oystehr-project-id'], PROJECT_ID);
  assert.match(r.headers['x-oystehr-request-id'], /^[0-9a-f-]{36}$/);
});

test('execute, allowed, by UUID and without params', async () => {
  const oystehr = client({ accessToken: token('lab-bot@clients') });
  const result = await oystehr.zambda.execute({ id: LAB_ID });
  assert.equal(result.status, 200);
  assert.deepEqual(result.output.body, {});
  assert.deepEqual(received.map((r) => r.url), [`/v1/zambda/${LAB_ID}/execute`]);
});

test('execute, forbidden: OystehrSdkError 403, nothing reaches the function', async () => {
  const oystehr = client({ accessToken: token('dr-alice') });
  await rejectsWith(oystehr.zambda.execute({ id: 'billing-export' }), 403);
  const bot = client({ accessToken: token('lab-bot@clients') });
  await rejectsWith(bot.zambda.execute({ id: 'patient-summary' }), 403);
  assert.equal(received.length, 0);
});

test('execute without a token: 401', async () => {
  await rejectsWith(client().zambda.execute({ id: 'lab-results-ingest' }), 401);
  assert.equal(received.length, 0);
});

test('execute with an expired or foreign token: 401', async () => {
  const expired = token('lab-bot@clients', { exp: Math.floor(Date.now() / 1000) - 3600 });
  await rejectsWith(client({ accessToken: expired }).zambda.execute({ id: 'lab-results-ingest' }), 401);
  const foreign = token('lab-bot@clients', { iss: 'https://evil.test/' });
  await rejectsWith(client({ accessToken: foreign }).zambda.execute({ id: 'lab-results-ingest' }), 401);
  assert.equal(received.length, 0);
});

test('executePublic: a public Zambda works without a token', async () => {
  const result = await client().zambda.executePublic({ id: 'appointment-slots', day: '2026-01-02' });
  assert.equal(result.status, 200);
  assert.deepEqual(result.output.body, { day: '2026-01-02' });
  assert.equal(result.output.actor, null);
  assert.equal(received.length, 1);
  assert.equal(received[0].url, '/v1/zambda/appointment-slots/execute-public');
  assert.equal(received[0].headers.authorization, undefined);
});

test('executePublic with a token: the token is not forwarded', async () => {
  const oystehr = client({ accessToken: token('lab-bot@clients') });
  const result = await oystehr.zambda.executePublic({ id: 'appointment-slots' });
  assert.equal(result.status, 200);
  assert.equal(received.length, 1);
  assert.equal(received[0].headers.authorization, undefined);
  assert.equal(received[0].headers['x-zambda-actor'], undefined);
});

test('executePublic on an authenticated Zambda: 404', async () => {
  await rejectsWith(client().zambda.executePublic({ id: 'lab-results-ingest' }), 404);
  const oystehr = client({ accessToken: token('lab-bot@clients') });
  await rejectsWith(oystehr.zambda.executePublic({ id: 'lab-results-ingest' }), 404);
  await rejectsWith(client().zambda.executePublic({ id: 'no-such-zambda' }), 404);
  assert.equal(received.length, 0);
});

test('project id mismatch: 401', async () => {
  const oystehr = client({ accessToken: token('lab-bot@clients'), projectId: OTHER_PROJECT_ID });
  await rejectsWith(oystehr.zambda.execute({ id: 'lab-results-ingest' }), 401);
  await rejectsWith(client({ projectId: OTHER_PROJECT_ID }).zambda.executePublic({ id: 'appointment-slots' }), 401);
  assert.equal(received.length, 0);
});

test('an id that tries to leave its segment: 400', async () => {
  // the SDK sends the id through encodeURIComponent: ../billing-export
  // becomes ..%2Fbilling-export, which the proxy refuses as malformed
  const oystehr = client({ accessToken: token('dr-alice') });
  await rejectsWith(oystehr.zambda.execute({ id: '../billing-export' }), 400);
  await rejectsWith(oystehr.zambda.execute({ id: 'billing-export/../patient-summary' }), 400);
  assert.equal(received.length, 0);
});
