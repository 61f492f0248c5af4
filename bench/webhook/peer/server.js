// The peer for bench/webhook: a LINE webhook receiver written the way the
// README of LINE's official Node.js SDK (@line/bot-sdk) shows — express plus
// line.middleware(), which checks X-Line-Signature against the raw body and
// parses the JSON. It answers 200 {} and keeps nothing (no store, no
// deduplication): the cheapest useful receiver the SDK offers.
//
//   PORT=8081 CHANNEL_SECRET=... node server.js
'use strict';

const express = require('express');
const line = require('@line/bot-sdk');

const port = Number(process.env.PORT || 8081);
const channelSecret = process.env.CHANNEL_SECRET;
if (!channelSecret) {
  console.error('server.js: CHANNEL_SECRET is not set');
  process.exit(2);
}

const app = express();

app.post('/webhook/bench', line.middleware({ channelSecret }), (req, res) => {
  res.json({});
});

app.listen(port, '127.0.0.1', () => {
  console.log(`peer listening on http://127.0.0.1:${port} (@line/bot-sdk ${require('@line/bot-sdk/package.json').version})`);
});
