// api_test.js: unit tests of static/api.js under Node (go test runs it).
// It loads the file as a browser would, into a global window.
'use strict';
const fs = require('fs');
const path = require('path');
const vm = require('vm');

globalThis.window = globalThis;
vm.runInThisContext(fs.readFileSync(path.join(__dirname, '..', 'static', 'api.js'), 'utf8'));
const fg = window.fg;

let passed = 0;
let failed = 0;
function eq(name, got, want) {
  if (Object.is(got, want)) {
    passed++;
  } else {
    failed++;
    console.log('FAIL ' + name + ': got ' + JSON.stringify(got) + ', want ' + JSON.stringify(want));
  }
}

// parseAmount: decimal strings to integer minor units, exactly.
const amounts = [
  ['25', 'eur', 2500], ['25.5', 'eur', 2550], ['25.50', 'eur', 2550], ['25,50', 'eur', 2550],
  ['25.', 'eur', 2500], [' 7 ', 'eur', 700], ['€25', 'eur', 2500], ['£ 10.01', 'gbp', 1001],
  ['0.29', 'eur', 29], ['0.57', 'eur', 57], ['1.15', 'eur', 115], ['19.99', 'eur', 1999],
  ['4.35', 'usd', 435], ['1234567.89', 'eur', 123456789], ['9999999999999.99', 'eur', 999999999999999],
  ['2500', 'jpy', 2500], ['0', 'eur', 0],
  ['25.505', 'eur', null], ['1,000', 'eur', null], ['25.5', 'jpy', null], ['-5', 'eur', null],
  ['1e3', 'eur', null], ['', 'eur', null], ['abc', 'eur', null], ['.5', 'eur', null],
  ['1.2.3', 'eur', null], ['12 34', 'eur', null], ['99999999999999', 'eur', null], ['0x10', 'eur', null],
];
for (const [text, cur, want] of amounts) eq('parseAmount(' + JSON.stringify(text) + ', ' + cur + ')', fg.parseAmount(text, cur), want);

// majorString: integer minor units to a decimal string, and back.
eq('majorString 2550 eur', fg.majorString(2550, 'eur'), '25.50');
eq('majorString 5 eur', fg.majorString(5, 'eur'), '0.05');
eq('majorString 0 eur', fg.majorString(0, 'eur'), '0.00');
eq('majorString -150 eur', fg.majorString(-150, 'eur'), '-1.50');
eq('majorString 2500 jpy', fg.majorString(2500, 'jpy'), '2500');
for (let m = 0; m < 100000; m += 7) {
  if (fg.parseAmount(fg.majorString(m, 'eur'), 'eur') !== m) eq('round trip ' + m, fg.parseAmount(fg.majorString(m, 'eur'), 'eur'), m);
}
passed++;

// digits comes from the browser's currency data.
eq('digits eur', fg.digits('eur'), 2);
eq('digits jpy', fg.digits('jpy'), 0);

// money formats with the currency; the figures must be exact.
eq('money 2500 eur', /25\.00/.test(fg.money(2500, 'eur')), true);
eq('money 2500 eur short', /25(?![.,]\d)/.test(fg.money(2500, 'eur', true)), true);
eq('money 2550 eur short keeps cents', /25\.50/.test(fg.money(2550, 'eur', true)), true);
eq('money 123456789 eur', /1,234,567\.89/.test(fg.money(123456789, 'eur')), true);
eq('money 2500 jpy', /2,500/.test(fg.money(2500, 'jpy')), true);

// uuid: version 4, random.
const re = /^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/;
eq('uuid form', re.test(fg.uuid()), true);
eq('uuid random', fg.uuid() === fg.uuid(), false);

// busy: which answers mean "the same request again, later".
eq('busy 429', fg.busy({ status: 429 }), true);
eq('busy 503', fg.busy({ status: 503 }), true);
eq('busy 500', fg.busy({ status: 500 }), true);
eq('busy 400', fg.busy({ status: 400, problem: { type: 'validation_failed' } }), false);
eq('busy 409 conflict', fg.busy({ status: 409, problem: { type: 'idempotency_conflict' } }), true);
eq('busy 409 closed', fg.busy({ status: 409, problem: { type: 'campaign_closed' } }), false);
eq('busy 202', fg.busy({ status: 202 }), false);

// parseRetryAfter: seconds or an HTTP date.
eq('Retry-After 7', fg.parseRetryAfter('7'), 7);
eq('Retry-After none', fg.parseRetryAfter(null), null);
eq('Retry-After junk', fg.parseRetryAfter('soon'), null);
const later = fg.parseRetryAfter(new Date(Date.now() + 10000).toUTCString());
eq('Retry-After date', later >= 9 && later <= 11, true);

console.log(passed + ' passed, ' + failed + ' failed');
process.exit(failed ? 1 : 0);
