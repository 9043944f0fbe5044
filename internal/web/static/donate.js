// donate.js: the donation page. It shows the campaign with a live total,
// sends the donation form, and then follows the donation until it settles:
// its place in line, 3-D Secure, a declined card, a cancel.
//
// Two things survive a reload, in sessionStorage, per campaign:
//   PENDING  a submission sent without an answer yet, with its
//            Idempotency-Key, so that sending it again cannot give twice;
//   DONATION the accepted donation's id and donor token, to keep following.
'use strict';

(function () {
  const fg = window.fg;
  const $ = (id) => document.getElementById(id);
  const campaignID = document.body.dataset.campaign;
  const sandbox = document.body.dataset.payments === 'sandbox';
  const textVersion = document.body.dataset.textVersion;
  const base = '/v1/campaigns/' + encodeURIComponent(campaignID);
  const PENDING = 'floodgate.pending.' + campaignID;
  const DONATION = 'floodgate.donation.' + campaignID;
  // Statuses after which nothing changes unless the donor acts.
  const FINAL = { succeeded: true, failed: true, canceled: true };

  const form = $('donate');
  let campaign = null; // the campaign, once loaded
  let current = null; // {id, token} of the donation being followed
  let sending = null; // control of the submission under way: {stopped, wait}

  // retrying runs send until it gets an answer that is not "busy": a
  // network error, 429, 5xx or idempotency_conflict waits (Retry-After when
  // the server gives one, else a growing backoff) and sends the very same
  // request again. say(text) tells the donor about each wait. It resolves
  // to null only when ctl.stopped was set during a wait.
  async function retrying(send, say, ctl) {
    ctl = ctl || {};
    let backoff = 1;
    for (;;) {
      let res = null;
      try {
        res = await send();
      } catch (e) {
        res = null; // no answer: the request may or may not have arrived
      }
      // A real answer wins even over Stop: it may be the 202 we waited for.
      if (res && !fg.busy(res)) return res;
      if (ctl.stopped) return null;
      const secs = res && res.retryAfter != null ? res.retryAfter : backoff;
      backoff = Math.min(backoff * 2, 30);
      const why = !res ? 'The connection failed'
        : res.status === 429 || res.status === 503 ? 'The service is busy'
          : 'The server had a problem';
      ctl.wait = fg.countdown(secs, (n) => say(why + '; retrying in ' + n + ' s.'));
      await ctl.wait;
      if (ctl.stopped) return null;
    }
  }

  // ---- The campaign and its live total ----

  async function loadCampaign() {
    const res = await retrying(() => fg.request('GET', base), (m) => { $('campaign-status').textContent = m; });
    $('campaign-status').textContent = '';
    if (res.status === 200 && res.data) return res.data;
    const missing = res.status === 404;
    $('campaign-name').textContent = missing ? 'Campaign not found' : 'The campaign could not be loaded';
    document.title = $('campaign-name').textContent + ' · floodgate';
    $('campaign-status').textContent = missing ? 'There is no campaign at this address.' : res.problem.title;
    return null;
  }

  function showCampaign(c) {
    campaign = c;
    const cur = c.currency;
    document.title = c.name + ' · floodgate';
    $('campaign-name').textContent = c.name;
    $('currency-name').textContent = currencyName(cur);
    $('amount-hint').textContent = 'From ' + fg.money(c.min_amount, cur) + ' to ' + fg.money(c.max_amount, cur) + '.';
    if (c.goal > 0) {
      $('goal').textContent = fg.money(c.goal, cur, true);
      $('goal-text').hidden = false;
      $('bar').max = c.goal;
      $('bar').hidden = false;
    }
    if (c.totals) showTotals(c.totals);

    const box = $('suggested');
    box.replaceChildren();
    for (const a of c.suggested_amounts || []) {
      const b = document.createElement('button');
      b.type = 'button';
      b.textContent = fg.money(a, cur, true);
      b.dataset.amount = String(a);
      b.setAttribute('aria-pressed', 'false');
      b.addEventListener('click', () => {
        $('amount').value = plainMajor(a);
        syncPressed();
        clearError('amount');
      });
      box.appendChild(b);
    }
    box.hidden = box.children.length === 0;

    const offered = (c.tax_schemes || []).filter((s) => s === 'uk_gift_aid' || s === 'ie');
    $('declaration').hidden = offered.length === 0;
    for (const el of form.querySelectorAll('[data-scheme]')) el.hidden = !offered.includes(el.dataset.scheme);

    if (c.state === 'closed') {
      $('campaign-status').textContent = 'This campaign has closed and takes no more donations. Thank you to everyone who gave.';
    } else if (c.state === 'scheduled') {
      $('campaign-status').textContent = 'This campaign opens on ' + new Date(c.opens_at).toLocaleString() + '.';
    }
    form.hidden = current !== null || c.state !== 'open';
    lock(false);
  }

  // currencyName says "euros" rather than "EUR" where the browser knows.
  function currencyName(code) {
    try {
      return new Intl.DisplayNames(undefined, { type: 'currency' }).of(code.toUpperCase());
    } catch (e) {
      return code.toUpperCase();
    }
  }

  let lastUpdate = 0;

  // showTotals puts the latest totals on the page; an older snapshot (the
  // stream and a fallback poll may cross) is ignored.
  function showTotals(t) {
    if (!t || !campaign) return;
    const at = Date.parse(t.updated_at) || 0;
    if (at < lastUpdate) return;
    lastUpdate = at;
    const cur = campaign.currency;
    $('totals').hidden = false;
    $('raised').textContent = fg.money(t.raised || 0, cur);
    if (campaign.goal > 0) $('bar').value = Math.min(t.raised || 0, campaign.goal);
    const n = t.donations || 0;
    $('count').textContent = n === 1 ? '1 donation' : n.toLocaleString() + ' donations';
    $('pending').textContent = fg.money(t.pending || 0, cur);
    $('pledged-text').hidden = !(t.pending > 0);
  }

  // live follows the totals over server-sent events. EventSource
  // reconnects by itself after a dropped connection; only when the server
  // refuses the stream (an overloaded server answers 503) does it give up,
  // and then the page asks for the totals now and then and tries the
  // stream again later.
  function live() {
    if (!('EventSource' in window)) {
      fallback();
      return;
    }
    const es = new EventSource(base + '/events');
    es.addEventListener('totals', (e) => {
      try {
        showTotals(JSON.parse(e.data));
      } catch (err) {
        return; // a garbled event; the next one will do
      }
      $('live').textContent = 'The total updates live.';
    });
    es.onerror = () => {
      if (es.readyState === EventSource.CLOSED) {
        es.close();
        fallback();
      } else {
        $('live').textContent = 'Reconnecting to live updates…';
      }
    };
  }

  async function fallback() {
    $('live').textContent = 'Live updates are paused; the total refreshes every 30 seconds.';
    for (let i = 0; i < 4; i++) {
      let wait = 30;
      try {
        const res = await fg.request('GET', base + '/totals');
        if (res.status === 200) showTotals(res.data);
        if (res.retryAfter) wait = Math.max(wait, res.retryAfter);
      } catch (e) {
        // Offline: try again at the next turn.
      }
      await fg.countdown(wait);
    }
    if ('EventSource' in window) live();
    else fallback();
  }

  // ---- The form ----

  function scale() {
    return Math.pow(10, fg.digits(campaign.currency));
  }

  // plainMajor writes minor units the way a person types them: "25", or
  // "25.50" when there are cents.
  function plainMajor(minor) {
    return minor % scale() === 0 ? String(minor / scale()) : fg.majorString(minor, campaign.currency);
  }

  function syncPressed() {
    const v = fg.parseAmount($('amount').value, campaign.currency);
    for (const b of $('suggested').children) b.setAttribute('aria-pressed', String(Number(b.dataset.amount) === v));
  }

  function selectedScheme() {
    const r = form.querySelector('input[name=scheme]:checked');
    return r ? r.value : '';
  }

  function schemeChanged() {
    const s = selectedScheme();
    $('decl-details').hidden = !s;
    for (const el of form.querySelectorAll('[data-text]')) el.hidden = el.dataset.text !== s;
    for (const el of form.querySelectorAll('[data-only]')) el.hidden = el.dataset.only !== s;
  }

  // readForm returns the request body and the mistakes the page can see
  // itself; the server checks everything again.
  function readForm() {
    const c = campaign;
    const errors = [];
    const add = (field, message) => errors.push({ field, message });
    const text = $('amount').value;
    const amount = fg.parseAmount(text, c.currency);
    if (text.trim() === '') add('amount', 'is required: choose or type an amount');
    else if (amount === null) add('amount', 'must be a plain number such as ' + (scale() === 1 ? '2500' : '25 or 25.50'));
    else if (amount < c.min_amount) add('amount', 'must be at least ' + fg.money(c.min_amount, c.currency));
    else if (amount > c.max_amount) add('amount', 'must be at most ' + fg.money(c.max_amount, c.currency));
    const email = $('email').value.trim();
    if (email === '') add('email', 'is required, for your receipt');
    else if (!/^[^\s@]+@[^\s@]+$/.test(email)) add('email', 'does not look like an email address');

    const body = {
      amount: amount || 0,
      currency: c.currency,
      email,
      name: $('name').value.trim(),
      payment_method: sandbox ? $('card').value : '',
      anonymous: $('anonymous').checked,
      message: $('message').value,
    };
    const scheme = selectedScheme();
    if (scheme) {
      const d = {
        scheme,
        text_version: textVersion,
        first_name: $('decl-first-name').value.trim(),
        last_name: $('decl-last-name').value.trim(),
      };
      if (!d.first_name) add('declaration.first_name', 'is required for the declaration');
      if (!d.last_name) add('declaration.last_name', 'is required for the declaration');
      if (scheme === 'uk_gift_aid') {
        d.house = $('decl-house').value.trim();
        d.postcode = $('decl-postcode').value.trim().toUpperCase();
        if (!d.house) add('declaration.house', 'is required for Gift Aid');
        if (!d.postcode) add('declaration.postcode', 'is required for Gift Aid');
        else if (!/^[A-Z]{1,2}[0-9][A-Z0-9]? ?[0-9][A-Z]{2}$/.test(d.postcode)) add('declaration.postcode', 'must be a UK postcode like BT1 1AA');
      }
      body.declaration = d;
    }
    return { body, errors };
  }

  // fillForm puts a stored submission back into the form after a reload.
  function fillForm(b) {
    $('amount').value = b.amount ? plainMajor(b.amount) : '';
    $('email').value = b.email || '';
    $('name').value = b.name || '';
    $('message').value = b.message || '';
    $('anonymous').checked = !!b.anonymous;
    if (sandbox && b.payment_method) $('card').value = b.payment_method;
    const d = b.declaration;
    const radio = form.querySelector('input[name=scheme][value="' + (d && d.scheme === 'ie' ? 'ie' : d ? 'uk_gift_aid' : '') + '"]');
    if (radio) radio.checked = true;
    if (d) {
      $('decl-first-name').value = d.first_name || '';
      $('decl-last-name').value = d.last_name || '';
      $('decl-house').value = d.house || '';
      $('decl-postcode').value = d.postcode || '';
    }
    schemeChanged();
    syncPressed();
  }

  // byData finds the element of a selector whose data-* value equals v
  // without building a selector from text the server sent.
  function byData(selector, key, v) {
    for (const el of form.querySelectorAll(selector)) if (el.dataset[key] === v) return el;
    return null;
  }

  function clearError(field) {
    const p = byData('[data-error-for]', 'errorFor', field);
    if (p) { p.hidden = true; p.textContent = ''; }
    const input = byData('[data-field]', 'field', field);
    if (input) input.removeAttribute('aria-invalid');
  }

  function clearErrors() {
    for (const p of form.querySelectorAll('[data-error-for]')) { p.hidden = true; p.textContent = ''; }
    for (const el of form.querySelectorAll('[aria-invalid]')) el.removeAttribute('aria-invalid');
    $('form-errors').hidden = true;
    $('form-errors').replaceChildren();
  }

  // showErrors puts each error next to its field, and the ones without a
  // visible field, with title, in the box at the top; then it moves the
  // focus to the first thing to fix.
  function showErrors(errors, title) {
    clearErrors();
    const general = [];
    let first = null;
    for (const e of errors) {
      const field = String(e.field || '');
      let msg = String(e.message || '');
      if (!/[.!?]$/.test(msg)) msg += '.';
      const p = byData('[data-error-for]', 'errorFor', field);
      // A field the donor cannot see (say, the postcode while another
      // scheme is chosen) gets its error in the box at the top instead.
      if (!p || p.parentElement.closest('[hidden]')) {
        general.push(field ? field + ' ' + msg : msg);
        continue;
      }
      const line = p.dataset.label + ' ' + msg;
      p.textContent = p.textContent ? p.textContent + ' ' + line : line;
      p.hidden = false;
      const input = byData('[data-field]', 'field', field);
      if (input) {
        input.setAttribute('aria-invalid', 'true');
        first = first || input;
      }
    }
    const box = $('form-errors');
    if (title || general.length) {
      const h = document.createElement('p');
      h.textContent = title || 'Please check the form.';
      box.appendChild(h);
      if (general.length) {
        const ul = document.createElement('ul');
        for (const g of general) {
          const li = document.createElement('li');
          li.textContent = g;
          ul.appendChild(li);
        }
        box.appendChild(ul);
      }
      box.hidden = false;
    }
    (first || box).focus();
  }

  // showProblem explains a final refusal of the donation request.
  function showProblem(res) {
    const p = res.problem;
    switch (p.type) {
      case 'validation_failed':
        showErrors(p.errors, p.errors.length ? '' : p.detail || p.title);
        break;
      case 'campaign_closed':
        showErrors([], 'This campaign is not taking donations. ' + p.detail);
        break;
      case 'not_found':
        showErrors([], 'This campaign no longer exists.');
        break;
      case 'idempotency_mismatch':
        // Cannot happen with this page; a new key on the next press fixes it.
        showErrors([], 'Something went wrong with this attempt. Please press Donate again.');
        break;
      default:
        showErrors(p.errors, p.detail || p.title);
    }
  }

  function say(text) {
    $('send-status').textContent = text;
  }

  // lock disables the form while a submission is under way. The button is
  // enabled only with a loaded, open campaign, and never in stripe mode,
  // where the card field is still to come.
  function lock(on) {
    $('fields').disabled = on;
    $('submit').disabled = on || !sandbox || !campaign || campaign.state !== 'open';
  }

  form.addEventListener('input', (e) => {
    if (e.target.id === 'amount') syncPressed();
    if (e.target.dataset.field && e.target.getAttribute('aria-invalid')) clearError(e.target.dataset.field);
  });
  form.addEventListener('change', (e) => {
    if (e.target.name === 'scheme') schemeChanged();
  });

  form.addEventListener('submit', (e) => {
    e.preventDefault();
    if (sending || !sandbox || !campaign) return;
    const { body, errors } = readForm();
    if (errors.length) {
      showErrors(errors);
      return;
    }
    clearErrors();
    // One Idempotency-Key per submission: the same details sent again
    // after a lost answer reuse the key, so the server answers with the
    // donation it may already have accepted instead of making a second.
    const json = JSON.stringify(body);
    const prev = fg.store.get(PENDING);
    send(prev && prev.body === json ? prev : { key: fg.uuid(), body: json });
  });

  $('stop').addEventListener('click', () => {
    if (!sending) return;
    sending.stopped = true;
    if (sending.wait) sending.wait.cancel();
    say('Stopping…');
  });

  // send posts a submission until it gets a final answer. It is stored
  // before the first byte leaves, so a reload in the middle retries it with
  // the same key.
  async function send(pending) {
    fg.store.set(PENDING, pending);
    const ctl = { stopped: false };
    sending = ctl;
    lock(true);
    $('stop').hidden = false;
    say('Sending your donation…');
    const res = await retrying(
      () => fg.request('POST', base + '/donations', {
        body: pending.body,
        headers: { 'Idempotency-Key': pending.key },
      }),
      say, ctl);
    sending = null;
    $('stop').hidden = true;
    lock(false);
    if (!res) {
      say('Stopped. Press Donate to try again: without changes the same request is reused, so you cannot give twice by accident.');
      return;
    }
    say('');
    if (res.status === 202 && res.data && res.data.id) {
      fg.store.remove(PENDING);
      const d = { id: res.data.id, token: res.data.donor_token };
      fg.store.set(DONATION, d);
      follow(d, true);
      return;
    }
    // Any other answer is final for this request: nothing was accepted, so
    // the next press, maybe with corrected details, gets a new key.
    fg.store.remove(PENDING);
    showProblem(res);
  }

  // ---- Following a donation ----

  let pollGen = 0; // bumped to end the running poll loop
  let pollWait = null; // the current wait between polls

  function auth(d) {
    return { Authorization: 'Bearer ' + d.token };
  }

  function donationPath(d, rest) {
    return '/v1/donations/' + encodeURIComponent(d.id) + (rest || '');
  }

  function follow(d, focus) {
    current = d;
    form.hidden = true;
    $('donation').hidden = false;
    if (focus) $('donation').focus();
    poll();
  }

  function stopPolling() {
    pollGen++;
    if (pollWait) pollWait.cancel();
  }

  function note(text) {
    $('donation-note').textContent = text;
  }

  // poll asks for the donation's status, as often as the server's
  // Retry-After says, until it settles. Only one loop runs at a time.
  async function poll() {
    stopPolling();
    const gen = pollGen;
    const d = current;
    let backoff = 2;
    while (gen === pollGen) {
      let res = null;
      try {
        res = await fg.request('GET', donationPath(d), { headers: auth(d) });
      } catch (e) {
        res = null;
      }
      if (gen !== pollGen) return;
      let secs;
      if (res && res.status === 200 && res.data) {
        note('');
        render(res.data);
        if (FINAL[res.data.status]) return;
        secs = res.retryAfter != null ? res.retryAfter : 2;
        backoff = 2;
      } else if (res && !fg.busy(res)) {
        // The donation or its token is unknown here: nothing to follow.
        fg.store.remove(DONATION);
        status('We could not look up your donation.');
        $('donation-detail').textContent = res.problem.detail || res.problem.title;
        show({ again: true });
        return;
      } else {
        secs = res && res.retryAfter != null ? res.retryAfter : backoff;
        backoff = Math.min(backoff * 2, 60);
        const why = res ? 'The service is busy' : 'The connection failed';
        pollWait = fg.countdown(secs, (n) => note(why + '; checking again in ' + n + ' s.'));
        await pollWait;
        continue;
      }
      pollWait = fg.countdown(secs);
      await pollWait;
    }
  }

  // Coming back to the tab (say from the 3-D Secure page) checks at once.
  document.addEventListener('visibilitychange', () => {
    if (!document.hidden && pollWait) pollWait.cancel();
  });

  // status changes the live region only when the text changes, so a
  // screen reader announces news, not every poll.
  function status(text) {
    if ($('donation-status').textContent !== text) $('donation-status').textContent = text;
  }

  function show(which) {
    $('action').hidden = !which.action;
    $('retry').hidden = !which.retry;
    $('cancel').hidden = !which.cancel;
    $('again').hidden = !which.again;
  }

  const FAILURES = {
    card_declined: 'Your card was declined.',
    insufficient_funds: 'Your card was declined: there were not enough funds.',
    expired_card: 'Your card has expired.',
    incorrect_cvc: "Your card's security code was not correct.",
    incorrect_number: 'The card number was not correct.',
    processing_error: 'Your card could not be charged because of a processing error.',
    authentication_failed: 'Your bank could not confirm the payment: the 3-D Secure check failed.',
  };

  function render(v) {
    const amount = fg.money(v.amount, v.currency);
    const detail = $('donation-detail');
    switch (v.status) {
      case 'accepted':
        status('Your donation of ' + amount + ' is in line.');
        detail.textContent = lineText(v);
        show({ cancel: true });
        break;
      case 'processing':
        status('Your donation of ' + amount + ' is being processed.');
        detail.textContent = v.queue_position != null ? lineText(v) : 'This usually takes a few seconds.';
        show({});
        break;
      case 'requires_action': {
        status('Your bank wants to confirm this payment of ' + amount + '.');
        const url = actionURL(v);
        if (url) {
          $('action-link').href = url;
          detail.textContent = 'Use the button to open the check, complete it there, then come back here.';
        } else {
          detail.textContent = 'Waiting for the check from your bank; this page updates by itself.';
        }
        show({ action: !!url });
        break;
      }
      case 'succeeded':
        status('Thank you! Your donation of ' + amount + ' went through.');
        detail.textContent = 'Your support makes a difference.';
        show({ again: true });
        break;
      case 'failed':
        status(FAILURES[v.failure_code] || 'The payment did not go through.');
        detail.textContent = 'No money was taken. You can try another card and keep your place in line.';
        show({ retry: true, again: true });
        break;
      case 'canceled':
        status('Your donation of ' + amount + ' was canceled.');
        detail.textContent = 'No money was taken.';
        show({ again: true });
        break;
      default:
        status('Your donation is ' + v.status + '.');
        detail.textContent = '';
        show({});
    }
  }

  function lineText(v) {
    if (v.queue_position == null) return 'It is waiting for its turn.';
    // queue_position counts the donations ahead; the donor's own number
    // in line is one more.
    const n = v.queue_position + 1;
    const place = n === 1 ? 'You are next in line' : 'You are number ' + n.toLocaleString() + ' in line';
    return place + ', ' + eta(v.eta_seconds) + '.';
  }

  function eta(s) {
    if (s == null) return 'please wait a moment';
    if (s <= 1) return 'any moment now';
    if (s < 90) return 'about ' + s + ' seconds';
    const m = Math.round(s / 60);
    return m < 90 ? 'about ' + m + ' minutes' : 'about ' + Math.round(m / 60) + ' hours';
  }

  // actionURL returns the 3-D Secure page to open, if it is a web address:
  // a javascript: URL would run in this page.
  function actionURL(v) {
    const na = v.next_action;
    const raw = na && na.use_stripe_sdk && na.use_stripe_sdk.stripe_js;
    if (typeof raw !== 'string') return null;
    try {
      const u = new URL(raw, location.href);
      return u.protocol === 'https:' || u.protocol === 'http:' ? u.href : null;
    } catch (e) {
      return null;
    }
  }

  // act sends a donor action (cancel, another card) with retries, then
  // shows the new state and keeps following.
  async function act(button, errorEl, path, body) {
    button.disabled = true;
    if (errorEl) { errorEl.hidden = true; errorEl.textContent = ''; }
    const res = await retrying(() => fg.request('POST', donationPath(current, path), { headers: auth(current), body }), note);
    button.disabled = false;
    note('');
    const ok = (res.status === 200 || res.status === 202) && res.data;
    if (ok) {
      render(res.data);
    } else {
      const p = res.problem;
      const msg = (p.errors[0] && p.errors[0].message ? 'That card ' + p.errors[0].message + '.' : p.detail || p.title);
      if (errorEl) { errorEl.textContent = msg; errorEl.hidden = false; } else note(msg);
    }
    // A cancel that went through needs no more polling; anything else
    // (another card, a refusal) goes back to following the donation.
    if (ok && res.data.status === 'canceled') stopPolling();
    else poll();
  }

  $('cancel').addEventListener('click', () => {
    if (!window.confirm('Cancel your donation? Nothing will be charged.')) return;
    act($('cancel'), null, '/cancel');
  });

  if ($('retry-button')) {
    $('retry-button').addEventListener('click', () => {
      act($('retry-button'), $('retry-error'), '/payment_method', { payment_method: $('retry-card').value });
    });
  }

  $('again').addEventListener('click', () => {
    stopPolling();
    fg.store.remove(DONATION);
    current = null;
    $('donation').hidden = true;
    status('');
    show({});
    form.hidden = !campaign || campaign.state !== 'open';
    if (!form.hidden) $('amount').focus();
  });

  async function init() {
    const d = fg.store.get(DONATION);
    if (d && d.id && d.token) follow(d, false);
    const c = await loadCampaign();
    if (!c) return;
    showCampaign(c);
    live();
    const p = fg.store.get(PENDING);
    if (!current && !form.hidden && p && p.key && p.body) {
      // The page was reloaded while a donation was on its way. Send it
      // again with its key: if it had arrived, the answer is the same
      // donation; if not, it is made now. Either way, only one.
      try {
        fillForm(JSON.parse(p.body));
      } catch (e) {
        fg.store.remove(PENDING);
        return;
      }
      send(p);
    }
  }

  init();
})();
