// A k6 load test of floodgate's accept path, for teams that already use
// k6: an open model (constant-arrival-rate: arrivals do not wait for
// answers), a unique Idempotency-Key per donation, and thresholds that make
// k6 exit non-zero when the night's promises are broken.
//
//   k6 run -e BASE=http://localhost:8080 -e RATE=2000 -e DURATION=30s bench/k6/donate.js
//
// Environment: BASE (server URL), CAMPAIGN (default demo), RATE (arrivals
// per second), DURATION, VUS (pre-allocated virtual users), MAX_VUS,
// P99_MS (threshold on the 99th percentile, default 25).
//
// k6 measures each request from when its virtual user sends it; when all
// virtual users are busy, arrivals are dropped and counted in
// dropped_iterations, which the threshold below also watches. floodgate's
// own `floodgate load` measures from the intended send time instead.

import http from 'k6/http';
import { check } from 'k6';

const BASE = __ENV.BASE || 'http://localhost:8080';
const CAMPAIGN = __ENV.CAMPAIGN || 'demo';
const RATE = parseInt(__ENV.RATE || '500', 10);
const P99 = parseInt(__ENV.P99_MS || '25', 10);

export const options = {
  scenarios: {
    donate: {
      executor: 'constant-arrival-rate',
      rate: RATE,
      timeUnit: '1s',
      duration: __ENV.DURATION || '30s',
      preAllocatedVUs: parseInt(__ENV.VUS || '200', 10),
      maxVUs: parseInt(__ENV.MAX_VUS || '2000', 10),
    },
  },
  thresholds: {
    http_req_failed: ['rate<0.001'],
    http_req_duration: [`p(99)<${P99}`],
    dropped_iterations: ['count<1'],
    checks: ['rate>0.999'],
  },
};

// Amounts around a campaign's suggested ones, in minor units.
const AMOUNTS = [500, 1000, 1000, 2500, 2500, 2500, 5000, 10000];
// Mostly cards that succeed, a few that are declined.
const CARDS = ['pm_card_visa', 'pm_card_visa', 'pm_card_visa', 'pm_card_visa', 'pm_card_visa',
  'pm_card_visa', 'pm_card_visa', 'pm_card_visa', 'pm_card_mastercard', 'pm_card_chargeDeclined'];

// A run-unique prefix: keys must never collide with an earlier run's, or
// the server would (rightly) answer with the earlier donation.
const RUN = `${Date.now().toString(36)}-${Math.floor(Math.random() * 1e9).toString(36)}`;

export default function () {
  const n = `${__VU}-${__ITER}`;
  const body = JSON.stringify({
    amount: AMOUNTS[__ITER % AMOUNTS.length],
    currency: 'eur',
    email: `donor-${n}@example.org`,
    name: `Donor ${n}`,
    payment_method: CARDS[(__VU + __ITER) % CARDS.length],
    message: 'Go on!',
  });
  const res = http.post(`${BASE}/v1/campaigns/${CAMPAIGN}/donations`, body, {
    headers: { 'Content-Type': 'application/json', 'Idempotency-Key': `k6-${RUN}-${n}` },
    tags: { name: 'donate' },
  });
  check(res, {
    'accepted (202)': (r) => r.status === 202,
    'has an id': (r) => r.status !== 202 || (r.json('id') || '').startsWith('don_'),
  });
}
