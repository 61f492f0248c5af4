#!/usr/bin/env node
// Body generator for bench/webhook.
//
//   node genbodies.js --secret S --events E --count N --parts T --out PREFIX
//
// Writes N signed LINE webhook bodies, each with E `message` events, dealt
// round-robin into T files PREFIX.0 … PREFIX.(T-1) (one per wrk thread:
// body i goes to file i mod T). Each line is
//
//   <base64 HMAC-SHA256(secret, body)> TAB <body>
//
// Bodies are compact JSON on one line (raw UTF-8 Japanese, one emoji escaped
// as LINE sends it), so neither TAB nor newline occurs inside them. Every
// event has its own `webhookEventId`: a ULID-like 26-character Crockford
// base32 id, time-ordered (48-bit millisecond time, then 40 random bits
// fixed for the run and a 40-bit counter), so no id repeats within a run and
// ids of different runs differ in their random part.
'use strict';

const crypto = require('node:crypto');
const fs = require('node:fs');

function usage(msg) {
  if (msg) console.error(`genbodies: ${msg}`);
  console.error('usage: node genbodies.js --secret S --events E --count N --parts T --out PREFIX');
  process.exit(2);
}

const opt = { events: 1, count: 1000, parts: 1 };
for (let i = 2; i < process.argv.length; i += 2) {
  const k = process.argv[i];
  const v = process.argv[i + 1];
  if (v === undefined) usage(`${k} needs a value`);
  switch (k) {
    case '--secret': opt.secret = v; break;
    case '--events': opt.events = Number(v); break;
    case '--count': opt.count = Number(v); break;
    case '--parts': opt.parts = Number(v); break;
    case '--out': opt.out = v; break;
    default: usage(`unknown option ${k}`);
  }
}
if (!opt.secret) usage('--secret is required');
if (!opt.out) usage('--out is required');
for (const k of ['events', 'count', 'parts']) {
  if (!Number.isInteger(opt[k]) || opt[k] < 1) usage(`--${k} must be a positive integer`);
}

// Random filler (reply tokens, quote tokens, user ids) comes from a pool of
// OS random bytes refilled a megabyte at a time: the values only have to look
// like LINE's, and one system call per value would dominate the run.
let pool = Buffer.alloc(0);
let poolAt = 0;
function rand(n) {
  if (poolAt + n > pool.length) {
    pool = crypto.randomBytes(1 << 20);
    poolAt = 0;
  }
  const b = pool.subarray(poolAt, poolAt + n);
  poolAt += n;
  return b;
}
function hex(n) { // n even
  return rand(n / 2).toString('hex');
}
function b64url(n) { // n multiple of 4
  return rand(n / 4 * 3).toString('base64url');
}
function rnd32() {
  return rand(4).readUInt32LE(0);
}

// ULID-like ids: Crockford base32, 10 chars of time, 16 chars of randomness
// (here: 8 chars fixed per run, then an 8-char counter: 40 bits each).
const CROCKFORD = '0123456789ABCDEFGHJKMNPQRSTVWXYZ';
function b32(value, chars) { // value: non-negative integer < 2^53
  let s = '';
  for (let i = 0; i < chars; i++) {
    s = CROCKFORD[value % 32] + s;
    value = Math.floor(value / 32);
  }
  return s;
}
const runRandom = b32(crypto.randomBytes(5).readUIntBE(0, 5), 8);

const destination = 'U' + hex(32);
const users = Array.from({ length: 1000 }, () => 'U' + hex(32));
const texts = [
  '明日の14時に予約できますか？',
  'こんにちは！新作のリップはいつ発売ですか',
  'ポイントカードの残高を教えてください',
  '注文した商品がまだ届いていません。確認をお願いします',
  'ありがとうございました\\uD83D\\uDE0A また来ます',   // emoji JSON-escaped, as LINE sends it
  '営業時間は何時までですか？',
  'キャンセルしたいです',
  'クーポンを使えますか',
];

const start = Date.now();
let messageId = 500000000000000000n + BigInt(rnd32());
let eventNo = 0;

function event() {
  // ~100 events per millisecond of id time: ids stay time-ordered and the
  // timestamps look like a busy account.
  const ms = start + Math.floor(eventNo / 100);
  const id = b32(ms, 10) + runRandom + b32(eventNo, 8);
  eventNo++;
  messageId += 1n + BigInt(rnd32() & 1023);
  const user = users[rnd32() % users.length];
  const text = texts[rnd32() % texts.length];
  return '{"type":"message","message":{"type":"text","id":"' + messageId +
    '","quoteToken":"' + b64url(88) + '","text":"' + text +
    '"},"webhookEventId":"' + id +
    '","deliveryContext":{"isRedelivery":false},"timestamp":' + ms +
    ',"source":{"type":"user","userId":"' + user +
    '"},"replyToken":"' + hex(32) + '","mode":"active"}';
}

// One output buffer per file, written out whenever it fills.
const BUF = 4 << 20;
const outs = [];
for (let p = 0; p < opt.parts; p++) {
  outs.push({ fd: fs.openSync(`${opt.out}.${p}`, 'w'), buf: Buffer.allocUnsafe(BUF), at: 0 });
}
function put(o, b) {
  if (o.at + b.length > BUF) {
    fs.writeSync(o.fd, o.buf, 0, o.at);
    o.at = 0;
  }
  if (b.length > BUF) fs.writeSync(o.fd, b);
  else o.at += b.copy(o.buf, o.at);
}

const TAB = Buffer.from('\t');
const NL = Buffer.from('\n');
let total = 0;
for (let i = 0; i < opt.count; i++) {
  const evs = [];
  for (let e = 0; e < opt.events; e++) evs.push(event());
  const body = Buffer.from('{"destination":"' + destination + '","events":[' + evs.join(',') + ']}', 'utf8');
  const sig = crypto.createHmac('sha256', opt.secret).update(body).digest('base64');
  const o = outs[i % opt.parts];
  put(o, Buffer.from(sig, 'latin1'));
  put(o, TAB);
  put(o, body);
  put(o, NL);
  total += body.length;
}
for (const o of outs) {
  if (o.at) fs.writeSync(o.fd, o.buf, 0, o.at);
  fs.closeSync(o.fd);
}

// Last line, read by run.sh: the id prefix (characters 11-18 of every
// webhookEventId of this run) lets the store's rows be matched to this set.
console.log(`GEN bodies=${opt.count} events=${opt.events} ` +
  `avg_bytes=${Math.round(total / opt.count)} files=${opt.parts} id_prefix=${runRandom}`);
