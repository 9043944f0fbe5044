package main

import (
	"net"
	"slices"
	"testing"
	"time"

	toxiproxy "github.com/Shopify/toxiproxy/v2/client"
)

// TestFaultMatrix is the payments promise under each fault the provider or
// the network can throw at it: every gift answered 202 is charged exactly
// once (one succeeded PaymentIntent for each gift with a succeeding card,
// none for the others, none twice, by the provider's own ledger) and none
// is lost (each id answers 200 and settles). In every case floodgate is
// SIGKILLed and restarted while gifts are being charged, and clients
// retry every request that got no answer with the same Idempotency-Key.
// Each case also proves that its fault really happened, so that it cannot
// pass by testing nothing. Nothing here is timed: deadlines only bound a
// hang.
func TestFaultMatrix(t *testing.T) {
	if testing.Short() {
		t.Skip("fault matrix: not in -short")
	}
	bin := binary(t)

	// A 429 storm: the provider's limit drops far below the rate floodgate
	// is configured for, for a while, and floodgate is killed in the
	// middle of it (the restarted process starts again at full rate, into
	// the storm). Nothing may be dropped or charged twice; 429s are
	// retried with the same key. Proof: the ledger counts the 429s, before
	// and after the restart.
	t.Run("rate_limit_storm", func(t *testing.T) {
		r := newFaultRig(t, bin, "--rate-limit", "150", "--seed", "11")
		r.startServer()
		gifts := faultGifts("storm", 400)
		done := r.send(gifts, 150)

		r.waitCounts("charging under way", func(c sandboxCounts) bool { return c.PaymentIntents >= 40 })
		base := r.counts()
		r.configure(`{"rate_limit": 10}`) // floodgate is configured for 100/s
		mid := r.waitCounts("a 429 storm", func(c sandboxCounts) bool { return c.RateLimited-base.RateLimited >= 50 })
		r.crash()
		r.waitCounts("the restarted server meeting the storm", func(c sandboxCounts) bool { return c.RateLimited-mid.RateLimited >= 30 })
		r.configure(`{"rate_limit": 150}`)

		r.await(done, gifts)
		c := r.verify(gifts)
		if c.RateLimited-base.RateLimited < 80 {
			t.Fatalf("only %d 429s in the storm", c.RateLimited-base.RateLimited)
		}
		t.Logf("fault: %d 429s answered while the provider's limit was 10/s and floodgate's rate %s/s", c.RateLimited-base.RateLimited, faultRate)
	})

	// Stored 500s: 30% of the provider's writes fail with a 500 that is
	// stored under the idempotency key (nothing charged), so resending the
	// key can never tell; floodgate must look the payment up and use a new
	// key only when two lookups agree that none exists. Proof: the ledger
	// counts the injected 500s.
	t.Run("stored_500s", func(t *testing.T) {
		r := newFaultRig(t, bin, "--rate-limit", "150", "--fail-rate", "0.3", "--seed", "12")
		r.startServer()
		gifts := faultGifts("fail", 300) // every stored 500 costs two lookups that page through the ledger
		done := r.send(gifts, 150)

		r.waitCounts("charging under way, with stored 500s", func(c sandboxCounts) bool {
			return c.PaymentIntents >= len(gifts)/4 && c.InjectedFailures >= 10
		})
		r.crash()

		r.await(done, gifts)
		c := r.verify(gifts)
		if c.InjectedFailures < int64(len(gifts))/10 {
			t.Fatalf("only %d stored 500s", c.InjectedFailures)
		}
		t.Logf("fault: %d stored 500s", c.InjectedFailures)
	})

	// Lost answers: 30% of the provider's writes take effect and then lose
	// their answer (the connection is closed without it). Floodgate must
	// resend the same key, which replays the stored answer, never a new
	// key, which would charge again. Proof: the ledger counts the lost
	// answers and the replays of their keys.
	t.Run("lost_answers", func(t *testing.T) {
		r := newFaultRig(t, bin, "--rate-limit", "150", "--lose-rate", "0.3", "--seed", "13")
		r.startServer()
		gifts := faultGifts("lose", 400)
		done := r.send(gifts, 150)

		r.waitCounts("charging under way, with lost answers", func(c sandboxCounts) bool {
			return c.PaymentIntents >= len(gifts)/4 && c.LostAnswers >= 10
		})
		r.crash()

		r.await(done, gifts)
		c := r.verify(gifts)
		if c.LostAnswers < int64(len(gifts))/10 || c.Replays < 10 {
			t.Fatalf("only %d lost answers and %d replays", c.LostAnswers, c.Replays)
		}
		t.Logf("fault: %d answers lost after the charge, %d keys replayed", c.LostAnswers, c.Replays)
	})

	// A lost answer, then an outage longer than the provider keeps keys:
	// the sandbox forgets a key 7 s after its first use, floodgate trusts
	// it for 3 s (the 4 s between are the margin a stalled machine has
	// between checking a key's age and the request reaching the provider,
	// wide enough that a busy machine never spends it; and 3 s is long
	// enough for a busy machine to send a new key before floodgate must
	// give it up unsent). Every write loses its answer, then the API
	// resets every connection for 9 s, so the same-key retries of the
	// last lost answers cannot get through (refused by the outage, or
	// held back by floodgate's circuit breaker) until the provider has
	// forgotten those keys; resending one then would charge a second
	// time. Floodgate is killed during the outage
	// and restarted after it: the new process finds keys too old to resend
	// and must look the payments up. Proof: the ledger counts lost answers
	// whose key was never replayed (lost minus replays) and requests
	// refused by the outage, and the restarted floodgate counts the
	// lookups that found a payment.
	t.Run("lost_answer_then_outage_past_key_retention", func(t *testing.T) {
		r := newFaultRig(t, bin, "--rate-limit", "150", "--idempotency-retention", "7s",
			"--latency", "50ms", "--latency-jitter", "50ms", "--seed", "14")
		r.serveArgs["--key-retention"] = "3s"
		r.serveArgs["--dispatch-queue"] = "16" // claimed gifts must not age past the retention in memory
		r.serveArgs["--dispatch-claim"] = "16"
		r.startServer()
		gifts := faultGifts("forget", 300)
		done := r.send(gifts, 150)

		r.waitCounts("charging under way", func(c sandboxCounts) bool { return c.PaymentIntents >= 60 })
		r.configure(`{"lose_rate": 1}`)
		r.waitCounts("lost answers", func(c sandboxCounts) bool { return c.LostAnswers >= 5 })
		r.configure(`{"outage": "reset"}`)
		outageFrom := time.Now()
		r.waitCounts("floodgate meeting the outage", func(c sandboxCounts) bool { return c.Outage >= 1 })
		r.kill()
		// The last write began before the outage (plus at most 100 ms of
		// latency); its key is forgotten 7 s after that. Holding the
		// outage for 9 s makes sure every lost answer's key is gone.
		time.Sleep(time.Until(outageFrom.Add(9 * time.Second)))
		r.configure(`{"outage": "", "lose_rate": 0}`)
		r.startServer()

		r.await(done, gifts)
		c := r.verify(gifts)
		// Found by a sweep over the keys' windows, or by retrieving a
		// recorded PaymentIntent.
		found := r.metric("floodgate_sweep_resolved_total", `outcome="found"`) +
			r.metric("floodgate_dispatch_retries_total", `class="reconciled_found"`)
		if c.LostAnswers-c.Replays < 1 || c.Outage < 1 || found < 1 {
			t.Fatalf("the fault did not happen: %d lost answers, %d replays, %d refused in the outage, %v lookups found a payment",
				c.LostAnswers, c.Replays, c.Outage, found)
		}
		t.Logf("fault: %d answers lost, %d never replayed before the provider forgot their key; %d requests refused in the outage; "+
			"after the restart %v lookups found the payment", c.LostAnswers, c.LostAnswers-c.Replays, c.Outage, found)
	})

	// The network between floodgate and the provider, through Toxiproxy:
	// latency spikes past floodgate's provider timeout (the charge is made,
	// its answer comes too late), connections reset after the charge, and
	// a full outage while new gifts keep arriving. Floodgate is killed
	// while answers sit delayed in the proxy. Proof: Toxiproxy lists each
	// toxic while it applies, the ledger counts the replays of keys whose
	// answer was delayed or reset, and during the outage no request reached
	// the provider while floodgate's own calls failed.
	t.Run("toxiproxy_latency_resets_outage", func(t *testing.T) {
		toxiBin := toxiproxyServer(t)
		r := newFaultRig(t, bin, "--rate-limit", "150", "--seed", "15")
		apiAddr := freePort(t)
		start(t, t.TempDir(), []string{"LOG_LEVEL=warn"}, toxiBin, "-host", "127.0.0.1", "-port", portOf(t, apiAddr))
		toxi := toxiproxy.NewClient(apiAddr)
		r.waitFor("the Toxiproxy API", func() bool { _, err := toxi.Version(); return err == nil })
		proxy, err := toxi.CreateProxy("sandbox", freePort(t), r.sandboxURL[len("http://"):])
		if err != nil {
			t.Fatal(err)
		}
		r.apiBase = "http://" + proxy.Listen
		r.serveArgs["--provider-timeout"] = "1s"
		r.startServer()
		// Three batches, so that every phase has gifts to charge.
		gifts := faultGifts("toxi", 300)
		more := faultGifts("toxi-reset", 150)
		late := faultGifts("toxi-outage", 100)
		done := r.send(gifts, 150)

		r.waitCounts("charging under way", func(c sandboxCounts) bool { return c.PaymentIntents >= 30 })

		// Latency spikes: answers delayed 100-1300 ms, floodgate gives up
		// on a call after 1 s.
		spikeBase := r.counts()
		addToxic(t, proxy, "latency_spike", "latency", 1, toxiproxy.Attributes{"latency": 700, "jitter": 600})
		spike := r.waitCounts("answers delayed past the time-out, resent with the same key", func(c sandboxCounts) bool {
			return c.Replays-spikeBase.Replays >= 3
		})
		r.crash() // answers in flight in the proxy
		if err := proxy.RemoveToxic("latency_spike"); err != nil {
			t.Fatal(err)
		}

		// Connection resets after the charge, on half the connections,
		// while more gifts arrive.
		resetBase := r.counts()
		addToxic(t, proxy, "reset_after_charge", "reset_peer", 0.5, toxiproxy.Attributes{"timeout": 0})
		moreDone := r.send(more, 150)
		reset := r.waitCounts("connections reset after the charge, resent with the same key", func(c sandboxCounts) bool {
			return c.Replays-resetBase.Replays >= 3
		})
		if err := proxy.RemoveToxic("reset_after_charge"); err != nil {
			t.Fatal(err)
		}

		// A full outage: the proxy refuses every connection while new
		// gifts keep arriving; they are accepted and wait.
		failedBefore := r.metric("floodgate_provider_requests_total", `outcome="network"`)
		if err := proxy.Disable(); err != nil {
			t.Fatal(err)
		}
		if p, err := toxi.Proxy("sandbox"); err != nil || p.Enabled {
			t.Fatalf("the proxy is still enabled (%v)", err)
		}
		// Calls that were past the proxy finish: wait for a second in which
		// the provider sees no request.
		var before sandboxCounts
		quiet := time.Now().Add(time.Minute)
		for {
			before = r.counts()
			time.Sleep(time.Second)
			if r.counts().Requests == before.Requests {
				break
			}
			if time.Now().After(quiet) {
				t.Fatal("requests kept reaching the provider through a disabled proxy")
			}
		}
		r.await(r.send(late, 150), late) // accepted while the provider is unreachable
		var failed float64
		r.waitFor("floodgate's calls failing in the outage", func() bool {
			failed = r.metric("floodgate_provider_requests_total", `outcome="network"`) - failedBefore
			return failed >= 1
		})
		if after := r.counts(); after.Requests != before.Requests {
			t.Fatalf("%d requests reached the provider through a disabled proxy", after.Requests-before.Requests)
		}
		if tot := r.totals(); tot.Pending == 0 {
			t.Fatal("nothing waited during the outage")
		}
		if err := proxy.Enable(); err != nil {
			t.Fatal(err)
		}

		r.await(done, gifts)
		r.await(moreDone, more)
		r.verify(slices.Concat(gifts, more, late))
		t.Logf("fault: %d keys replayed after latency spikes, %d after resets; an outage refused %v calls while %d gifts arrived",
			spike.Replays-spikeBase.Replays, reset.Replays-resetBase.Replays, failed, len(late))
	})
}

// addToxic adds a downstream toxic (on the answers, after the provider
// acted) and checks that Toxiproxy lists it as applied.
func addToxic(t *testing.T, proxy *toxiproxy.Proxy, name, kind string, toxicity float32, attrs toxiproxy.Attributes) {
	t.Helper()
	if _, err := proxy.AddToxic(name, kind, "downstream", toxicity, attrs); err != nil {
		t.Fatal(err)
	}
	toxics, err := proxy.Toxics()
	if err != nil {
		t.Fatal(err)
	}
	for _, tx := range toxics {
		if tx.Name == name && tx.Type == kind {
			return
		}
	}
	t.Fatalf("toxic %s is not applied: %+v", name, toxics)
}

func portOf(t *testing.T, addr string) string {
	t.Helper()
	_, port, err := net.SplitHostPort(addr)
	if err != nil {
		t.Fatal(err)
	}
	return port
}
