// index.js: lists the open campaigns with their totals, each linking to its
// donation page.
'use strict';

(function () {
  const fg = window.fg;
  const list = document.getElementById('campaigns');
  const status = document.getElementById('list-status');
  const item = document.getElementById('campaign-item');

  // load fetches the campaigns, waiting and retrying by itself while the
  // server says it is busy: on a big night the list must come, just later.
  async function load() {
    let wait = 2;
    for (;;) {
      let res;
      try {
        res = await fg.request('GET', '/v1/campaigns');
      } catch (e) {
        res = null;
      }
      if (res && res.status === 200 && res.data && Array.isArray(res.data.data)) {
        show(res.data.data);
        return;
      }
      if (res && !fg.busy(res)) {
        status.textContent = 'The campaigns could not be loaded: ' + res.problem.title + ' Please reload the page.';
        return;
      }
      const secs = (res && res.retryAfter) || wait;
      wait = Math.min(wait * 2, 60);
      await fg.countdown(secs, (n) => {
        status.textContent = (res ? 'The service is busy' : 'No connection') + '; trying again in ' + n + ' s.';
      });
    }
  }

  function show(campaigns) {
    const open = campaigns.filter((c) => c && c.state === 'open');
    list.replaceChildren();
    for (const c of open) {
      const li = item.content.firstElementChild.cloneNode(true);
      const a = li.querySelector('.name');
      a.textContent = c.name;
      a.href = '/c/' + encodeURIComponent(c.id);
      const t = c.totals || { raised: 0, donations: 0 };
      const raised = fg.money(t.raised || 0, c.currency);
      li.querySelector('.raised').textContent = c.goal > 0
        ? raised + ' raised of a ' + fg.money(c.goal, c.currency, true) + ' goal'
        : raised + ' raised';
      if (c.goal > 0) {
        const bar = li.querySelector('.bar');
        bar.max = c.goal;
        bar.value = Math.min(t.raised || 0, c.goal);
        bar.setAttribute('aria-label', 'Progress of ' + c.name + ' toward its goal');
        bar.hidden = false;
      }
      li.querySelector('.count').textContent = donationsText(t.donations || 0);
      list.appendChild(li);
    }
    status.textContent = open.length === 0
      ? 'No campaign is open right now.'
      : open.length === 1 ? 'One campaign is open.' : open.length + ' campaigns are open.';
  }

  function donationsText(n) {
    return n === 1 ? '1 donation' : n.toLocaleString() + ' donations';
  }

  load();
})();
