// api.js: what both pages need to talk to floodgate's JSON API and to show
// money. It defines window.fg and touches no element of the page.
//
// Rule for every script here: data from the server is put on the page with
// textContent (or a property such as value or href after checking it),
// never with innerHTML, so a campaign name can never become markup.
'use strict';

window.fg = (function () {
  // request sends one request and resolves to {status, data, retryAfter,
  // problem}. It rejects only when no answer arrived at all (network down,
  // connection reset): the caller cannot know whether the server acted.
  async function request(method, path, opts) {
    opts = opts || {};
    const headers = Object.assign({ Accept: 'application/json' }, opts.headers);
    let body;
    if (opts.body !== undefined) {
      headers['Content-Type'] = 'application/json';
      body = typeof opts.body === 'string' ? opts.body : JSON.stringify(opts.body);
    }
    const res = await fetch(path, {
      method, headers, body,
      credentials: 'same-origin',
      cache: 'no-store',
    });
    let data = null;
    if (/json/.test(res.headers.get('Content-Type') || '')) {
      // A body cut short by a dying connection is treated as no body.
      try { data = await res.json(); } catch (e) { data = null; }
    }
    return {
      status: res.status,
      data,
      retryAfter: parseRetryAfter(res.headers.get('Retry-After')),
      problem: res.ok ? null : problemOf(res.status, data),
    };
  }

  // problemOf returns the RFC 9457 problem of an error answer, inventing
  // one when a proxy in between answered with something else.
  function problemOf(status, data) {
    if (data && typeof data === 'object' && typeof data.type === 'string') {
      return {
        type: data.type,
        title: String(data.title || ''),
        detail: String(data.detail || ''),
        errors: Array.isArray(data.errors) ? data.errors : [],
      };
    }
    return { type: 'http_' + status, title: 'The server answered ' + status + '.', detail: '', errors: [] };
  }

  // parseRetryAfter reads Retry-After as seconds (or an HTTP date), or
  // returns null when there is none.
  function parseRetryAfter(v) {
    if (!v) return null;
    if (/^\d+$/.test(v.trim())) return parseInt(v, 10);
    const t = Date.parse(v);
    if (isNaN(t)) return null;
    return Math.max(0, Math.ceil((t - Date.now()) / 1000));
  }

  // busy reports whether an answer means "try the same request again
  // later": the server shed load, limited the rate, or failed inside
  // (then the Idempotency-Key makes a retry safe).
  function busy(res) {
    return res.status === 429 || res.status >= 500 ||
      (res.status === 409 && res.problem && res.problem.type === 'idempotency_conflict');
  }

  // digits is the number of decimals of a currency's minor unit (2 for
  // eur, 0 for jpy), as the browser's own currency data knows it.
  function digits(currency) {
    try {
      return new Intl.NumberFormat('en', { style: 'currency', currency: currency.toUpperCase() })
        .resolvedOptions().maximumFractionDigits;
    } catch (e) {
      return 2;
    }
  }

  // majorString turns integer minor units into a decimal string in major
  // units ("2550" -> "25.50") by moving the point in the digits, so that
  // no float ever holds money.
  function majorString(minor, currency) {
    const d = digits(currency);
    const neg = minor < 0;
    let s = String(Math.abs(minor));
    if (d === 0) return (neg ? '-' : '') + s;
    s = s.padStart(d + 1, '0');
    return (neg ? '-' : '') + s.slice(0, -d) + '.' + s.slice(-d);
  }

  // money formats integer minor units for people, in the visitor's locale.
  // It passes the exact decimal string; browsers that take only numbers
  // convert it, which at display precision loses nothing.
  function money(minor, currency, short) {
    const opts = { style: 'currency', currency: currency.toUpperCase() };
    if (short && minor % Math.pow(10, digits(currency)) === 0) opts.minimumFractionDigits = 0;
    try {
      return new Intl.NumberFormat(undefined, opts).format(majorString(minor, currency));
    } catch (e) {
      return currency.toUpperCase() + ' ' + majorString(minor, currency);
    }
  }

  // parseAmount reads what a donor typed, in major units, and returns
  // integer minor units, or null if it is not a plain amount. It splits the
  // decimal string rather than multiplying a float: 0.29 * 100 is
  // 28.999999999999996 in floating point, "0.29" here is exactly 29.
  function parseAmount(text, currency) {
    const d = digits(currency);
    // A leading currency sign ("€25") is forgiven; anything else is not.
    const m = /^(\d{1,13})(?:[.,](\d*))?$/.exec(text.trim().replace(/^\p{Sc}\s*/u, ''));
    if (!m) return null;
    const frac = m[2] || '';
    if (frac.length > d) return null; // more decimals than the currency has
    const minor = Number(m[1] + frac.padEnd(d, '0'));
    return Number.isSafeInteger(minor) ? minor : null;
  }

  // uuid returns a random version 4 UUID. crypto.randomUUID exists only on
  // https and localhost; getRandomValues works everywhere.
  function uuid() {
    const b = crypto.getRandomValues(new Uint8Array(16));
    b[6] = (b[6] & 0x0f) | 0x40;
    b[8] = (b[8] & 0x3f) | 0x80;
    const h = Array.from(b, (x) => x.toString(16).padStart(2, '0')).join('');
    return h.slice(0, 8) + '-' + h.slice(8, 12) + '-' + h.slice(12, 16) + '-' + h.slice(16, 20) + '-' + h.slice(20);
  }

  // store wraps sessionStorage, which a browser may refuse (private modes,
  // disabled storage): the page then works, only without surviving reloads.
  const store = {
    get(key) {
      try { return JSON.parse(sessionStorage.getItem(key) || 'null'); } catch (e) { return null; }
    },
    set(key, value) {
      try { sessionStorage.setItem(key, JSON.stringify(value)); } catch (e) { /* see above */ }
    },
    remove(key) {
      try { sessionStorage.removeItem(key); } catch (e) { /* see above */ }
    },
  };

  // countdown waits secs seconds, calling tick(n) with the seconds left
  // once a second so the page can say how long; it resolves early when
  // cancel() is called.
  function countdown(secs, tick) {
    let cancel;
    const done = new Promise((resolve) => {
      let left = Math.max(1, Math.ceil(secs));
      let timer;
      const step = () => {
        if (left <= 0) { resolve(); return; }
        if (tick) tick(left);
        left--;
        timer = setTimeout(step, 1000);
      };
      cancel = () => { clearTimeout(timer); resolve(); };
      step();
    });
    done.cancel = cancel;
    return done;
  }

  return { request, busy, parseRetryAfter, digits, majorString, money, parseAmount, uuid, store, countdown };
})();
