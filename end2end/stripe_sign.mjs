// Signs webhook payloads with Stripe's own helper (npm `stripe`,
// `stripe.webhooks.generateTestHeaderString`), for the billing end-to-end tests.
//
// stdin: a JSON array of {"payload": "<raw body>", "secret": "whsec_...", "timestamp": <unix
// seconds, optional>}; stdout: a JSON array of `Stripe-Signature` header values, in order.
// One process signs any number of payloads.
import Stripe from 'stripe';

const stripe = new Stripe('sk_test_unused_for_signing');

let input = '';
process.stdin.setEncoding('utf8');
for await (const chunk of process.stdin) input += chunk;

const jobs = JSON.parse(input);
if (!Array.isArray(jobs)) {
  console.error('stripe_sign.mjs: expected a JSON array on stdin');
  process.exit(2);
}
const headers = jobs.map(({ payload, secret, timestamp }) => {
  const opts = { payload, secret };
  if (timestamp !== undefined && timestamp !== null) opts.timestamp = timestamp;
  return stripe.webhooks.generateTestHeaderString(opts);
});
process.stdout.write(JSON.stringify(headers) + '\n');
