// In-process fakes for the portal checks: an OpenAI-compatible upstream and the part of
// Stripe's API tokengate calls (Checkout Session creation). Both listen on 127.0.0.1 and
// record every request.

import crypto from 'node:crypto';
import http from 'node:http';
import { freePort } from './harness.mjs';

async function readBody(req) {
  const chunks = [];
  for await (const c of req) chunks.push(c);
  return Buffer.concat(chunks).toString('utf8');
}

function listen(handler) {
  return new Promise(async (resolve, reject) => {
    const port = await freePort();
    const srv = http.createServer((req, res) => {
      handler(req, res).catch((e) => {
        res.writeHead(500, { 'content-type': 'application/json' });
        res.end(JSON.stringify({ error: { message: String(e) } }));
      });
    });
    srv.on('error', reject);
    srv.listen(port, '127.0.0.1', () => resolve({ srv, port }));
  });
}

const json = (res, status, body, headers = {}) => {
  res.writeHead(status, { 'content-type': 'application/json', ...headers });
  res.end(JSON.stringify(body));
};

/** The answer every chat completion of the fake upstream carries. */
export const UPSTREAM_CONTENT = 'Hello from the portal test upstream.';
export const UPSTREAM_USAGE = { prompt_tokens: 11, completion_tokens: 7 };

/**
 * An OpenAI-compatible upstream: `GET /v1/models` and `POST /v1/chat/completions` (plain
 * and streamed, with `usage`), both requiring `Authorization: Bearer <apiKey>`.
 */
export async function startFakeUpstream(apiKey) {
  const requests = [];
  const { srv, port } = await listen(async (req, res) => {
    const body = await readBody(req);
    const path = new URL(req.url, 'http://x').pathname;
    let parsed = null;
    try {
      parsed = body ? JSON.parse(body) : null;
    } catch {}
    requests.push({ method: req.method, path, headers: req.headers, body: parsed });
    if (req.headers.authorization !== `Bearer ${apiKey}`) {
      return json(res, 401, { error: { message: 'Incorrect API key provided.', type: 'invalid_request_error', code: 'invalid_api_key' } });
    }
    if (req.method === 'GET' && path === '/v1/models') {
      return json(res, 200, { object: 'list', data: [{ id: 'echo-1', object: 'model', created: 0, owned_by: 'fake' }] });
    }
    if (req.method === 'POST' && path === '/v1/chat/completions') {
      const id = `chatcmpl-fake${crypto.randomBytes(6).toString('hex')}`;
      const created = Math.floor(Date.now() / 1000);
      const model = parsed?.model || 'echo-1';
      const usage = { ...UPSTREAM_USAGE, total_tokens: UPSTREAM_USAGE.prompt_tokens + UPSTREAM_USAGE.completion_tokens };
      if (parsed?.stream) {
        res.writeHead(200, { 'content-type': 'text/event-stream' });
        const chunk = (delta, finish, extra = {}) =>
          `data: ${JSON.stringify({ id, object: 'chat.completion.chunk', created, model, choices: [{ index: 0, delta, finish_reason: finish }], ...extra })}\n\n`;
        res.write(chunk({ role: 'assistant', content: '' }, null));
        res.write(chunk({ content: UPSTREAM_CONTENT }, null));
        res.write(chunk({}, 'stop'));
        if (parsed?.stream_options?.include_usage) {
          res.write(`data: ${JSON.stringify({ id, object: 'chat.completion.chunk', created, model, choices: [], usage })}\n\n`);
        }
        res.end('data: [DONE]\n\n');
        return;
      }
      return json(res, 200, {
        id, object: 'chat.completion', created, model,
        choices: [{ index: 0, message: { role: 'assistant', content: UPSTREAM_CONTENT }, finish_reason: 'stop' }],
        usage,
      });
    }
    return json(res, 404, { error: { message: `no route ${req.method} ${path}` } });
  });
  return { port, baseUrl: `http://127.0.0.1:${port}/v1`, requests, close: () => srv.close() };
}

/**
 * A fake Stripe: `POST /v1/checkout/sessions` answers a full Checkout Session (the fields
 * end2end/tests/fake_stripe.py documents) whose `url` is the fake's own stub checkout page
 * (`GET /c/pay/<session id>`, element `#fake-checkout`), so a browser can follow the
 * redirect on this closed network.
 */
export async function startFakeStripe(secretKey) {
  const sessions = [];
  const checkoutVisits = [];
  let port = 0;
  const started = await listen(async (req, res) => {
    const raw = await readBody(req);
    const path = new URL(req.url, 'http://x').pathname;
    if (req.method === 'GET' && path.startsWith('/c/pay/')) {
      checkoutVisits.push(path.slice('/c/pay/'.length));
      res.writeHead(200, { 'content-type': 'text/html; charset=utf-8' });
      res.end('<!doctype html><link rel="icon" href="data:,"><title>Fake checkout</title><h1 id="fake-checkout">Fake Stripe checkout</h1>');
      return;
    }
    if (req.headers.authorization !== `Bearer ${secretKey}`) {
      return json(res, 401, { error: { type: 'invalid_request_error', message: 'Invalid API Key provided.' } });
    }
    if (req.method !== 'POST' || path !== '/v1/checkout/sessions') {
      return json(res, 404, { error: { type: 'invalid_request_error', message: `Unrecognized request URL (${req.method}: ${path}).` } });
    }
    const form = Object.fromEntries(new URLSearchParams(raw));
    const created = Math.floor(Date.now() / 1000);
    const sid = `cs_test_a1${crypto.randomBytes(28).toString('hex')}`;
    const unit = Number(form['line_items[0][price_data][unit_amount]'] || '0');
    const qty = Number(form['line_items[0][quantity]'] || '1');
    const metadata = {};
    for (const [k, v] of Object.entries(form)) {
      const m = /^metadata\[(.+)\]$/.exec(k);
      if (m) metadata[m[1]] = v;
    }
    const total = unit * qty;
    const session = {
      id: sid, object: 'checkout.session', adaptive_pricing: null, after_expiration: null,
      allow_promotion_codes: null, amount_subtotal: total, amount_total: total,
      automatic_tax: { enabled: false, liability: null, provider: null, status: null },
      billing_address_collection: null, cancel_url: form.cancel_url ?? null,
      client_reference_id: form.client_reference_id ?? null, client_secret: null,
      collected_information: null, consent: null, consent_collection: null, created,
      currency: (form['line_items[0][price_data][currency]'] || 'usd').toLowerCase(),
      currency_conversion: null, custom_fields: [],
      custom_text: { after_submit: null, shipping_address: null, submit: null, terms_of_service_acceptance: null },
      customer: null, customer_creation: 'if_required', customer_details: null,
      customer_email: form.customer_email ?? null, discounts: [],
      expires_at: form.expires_at ? Number(form.expires_at) : created + 86_400,
      invoice: null, invoice_creation: null, livemode: false, locale: null, metadata,
      mode: form.mode || 'payment', payment_intent: null, payment_link: null,
      payment_method_collection: 'if_required', payment_method_configuration_details: null,
      payment_method_options: {}, payment_method_types: ['card'], payment_status: 'unpaid',
      phone_number_collection: { enabled: false }, recovered_from: null,
      saved_payment_method_options: null, setup_intent: null, shipping_address_collection: null,
      shipping_cost: null, shipping_options: [], status: 'open', submit_type: null,
      subscription: null, success_url: form.success_url ?? null,
      total_details: { amount_discount: 0, amount_shipping: 0, amount_tax: 0 },
      ui_mode: 'hosted', url: `http://127.0.0.1:${port}/c/pay/${sid}`,
    };
    sessions.push({ form, session });
    return json(res, 200, session);
  });
  port = started.port;
  return {
    port,
    apiBase: `http://127.0.0.1:${port}/`,
    checkoutPrefix: `http://127.0.0.1:${port}/c/pay/`,
    sessions,
    checkoutVisits,
    close: () => started.srv.close(),
  };
}
