package ingest

import (
	"fmt"
	"runtime"
	"testing"
	"time"

	"github.com/floodgate/floodgate"
	"github.com/floodgate/floodgate/internal/clocktest"
)

// BenchmarkGuardMillionDonors runs a million distinct donors (each with
// their own address and email, each gift succeeded) through one guard
// with the limits on, at the default capacity. It reports what an attempt
// costs on the accept path (Allow) and what learning the gift's outcome
// costs the dispatcher (Learn), for the first 10,000 donors and for the
// last 10,000, when a million are tracked, and the heap the tables hold
// per donor.
func BenchmarkGuardMillionDonors(b *testing.B) {
	const donors, sample = 1_000_000, 10_000
	addrs, emails := make([]string, donors), make([]string, donors)
	for i := range donors {
		addrs[i], emails[i] = donorAddr(i), fmt.Sprintf("donor%d@example.org", i)
	}
	var allowFirst, allowLast, learnFirst, learnLast time.Duration
	var perDonor float64
	for range b.N {
		g := NewGuard(GuardOptions{SuspectAttempts: 20, DeclineLimit: 10, PerEmail: 10, Tracked: donors, Clock: clocktest.New(t0)})
		d := &floodgate.PaymentOrder{Status: floodgate.StatusSucceeded}
		var ms0, ms1 runtime.MemStats
		runtime.GC()
		runtime.ReadMemStats(&ms0)
		// run passes donors [from, to) through the guard and returns the
		// time Allow took and the time Learn took.
		run := func(from, to int) (allow, learn time.Duration) {
			start := time.Now()
			for i := from; i < to; i++ {
				if _, err := g.Allow(addrs[i], emails[i]); err != nil {
					b.Fatal(err)
				}
			}
			allow = time.Since(start)
			start = time.Now()
			for i := from; i < to; i++ {
				d.ClientAddr = addrs[i]
				g.Learn(d)
			}
			return allow, time.Since(start)
		}
		a, l := run(0, sample)
		allowFirst, learnFirst = allowFirst+a, learnFirst+l
		for i := sample; i < donors-sample; i += sample {
			run(i, i+sample)
		}
		a, l = run(donors-sample, donors)
		allowLast, learnLast = allowLast+a, learnLast+l
		runtime.GC()
		runtime.ReadMemStats(&ms1)
		perDonor = float64(ms1.HeapAlloc-ms0.HeapAlloc) / donors
		runtime.KeepAlive(g)
	}
	per := func(d time.Duration) float64 { return float64(d.Nanoseconds()) / float64(b.N*sample) }
	b.ReportMetric(per(allowFirst), "ns/allow-first-10k")
	b.ReportMetric(per(allowLast), "ns/allow-at-1M")
	b.ReportMetric(per(learnFirst), "ns/learn-first-10k")
	b.ReportMetric(per(learnLast), "ns/learn-at-1M")
	b.ReportMetric(perDonor, "heap-bytes/donor")
	b.ReportMetric(0, "ns/op")
}
