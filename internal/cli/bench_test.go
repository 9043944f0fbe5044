package cli

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/netip"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/floodgate/floodgate"
	"github.com/floodgate/floodgate/internal/config"
)

// cpuTime is this process's user+system CPU time.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// loadResult is what the load client reports.
type loadResult struct {
	Sent, Accepted, Failed int64
	Seconds                float64
}

// The benchmark's load comes from a child process (this test binary run
// again in client mode), so that the parent's CPU time is the server's
// alone while both share the machine, as they would in production.
func init() {
	spec := os.Getenv("FLOODGATE_BENCH_CLIENT")
	if spec == "" {
		return
	}
	// url n concurrency [first-donor]: with a first donor, donor i
	// (counted from it) comes through the trusted proxy from an address
	// of their own.
	f := strings.Fields(spec)
	n, _ := strconv.Atoi(f[1])
	conc, _ := strconv.Atoi(f[2])
	first := -1
	if len(f) > 3 {
		first, _ = strconv.Atoi(f[3])
	}
	res := runLoad(f[0], n, conc, first)
	_ = json.NewEncoder(os.Stdout).Encode(res)
	os.Exit(0)
}

// runLoad sends n donations from conc closed-loop clients over keep-alive
// connections. With first >= 0, the donations are from donors first,
// first+1, ..., each with their own address in X-Forwarded-For and email.
func runLoad(url string, n, conc, first int) loadResult {
	tr := &http.Transport{MaxIdleConnsPerHost: conc, MaxConnsPerHost: conc}
	hc := &http.Client{Transport: tr, Timeout: 30 * time.Second}
	var next, accepted, failed atomic.Int64
	prefix := strconv.FormatInt(time.Now().UnixNano(), 36)
	start := time.Now()
	var wg sync.WaitGroup
	for range conc {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				i := next.Add(1)
				if i > int64(n) {
					return
				}
				donor := i
				if first >= 0 {
					donor = int64(first) + i
				}
				body := fmt.Sprintf(`{"amount": 2500, "currency": "eur", "email": "donor%d@example.org", "name": "Donor", "payment_method": "pm_card_visa", "message": "Go on!"}`, donor)
				req, _ := http.NewRequest("POST", url, strings.NewReader(body))
				req.Header.Set("Content-Type", "application/json")
				if first >= 0 {
					req.Header.Set("X-Forwarded-For", donorIP(int(donor)))
				}
				req.Header.Set("Idempotency-Key", prefix+"-"+strconv.FormatInt(i, 10))
				resp, err := hc.Do(req)
				if err != nil {
					failed.Add(1)
					continue
				}
				_, _ = io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				if resp.StatusCode == http.StatusAccepted {
					accepted.Add(1)
				} else {
					failed.Add(1)
				}
			}
		}()
	}
	wg.Wait()
	return loadResult{Sent: int64(n), Accepted: accepted.Load(), Failed: failed.Load(), Seconds: time.Since(start).Seconds()}
}

// BenchmarkAccept measures the accept path of a real node: HTTP,
// decoding, validation, group commit with fsync, 202. Load comes from a
// separate process on the same machine with 256 closed-loop clients. It
// reports donations per second and the server's CPU per accepted donation
// (the parent process's own CPU time: the load client is not in it). The
// dispatcher is held back (provider rate near zero) so that the figures are
// the accept path alone.
func BenchmarkAccept(b *testing.B) {
	benchAccept(b, 256)
}

// BenchmarkAcceptFewClients is the same with 16 clients: small batches,
// the cost of a commit shared by few donations.
func BenchmarkAcceptFewClients(b *testing.B) {
	benchAccept(b, 16)
}

func benchAccept(b *testing.B, conc int) {
	m := startMain(b, func(c *config.Config) {
		c.ProviderRate, c.ProviderGlobalRate = 0.01, 0.01
	})
	measureAccept(b, m, conc)
}

// measureAccept drives m's accept path from a load-client process and
// reports donations per second and the server's CPU per donation.
func measureAccept(b *testing.B, m *Main, conc int) {
	n := max(b.N, 2000)
	b.ResetTimer()
	res, cpu := loadFrom(b, m, n, conc, -1)
	b.StopTimer()
	b.ReportMetric(float64(res.Accepted)/res.Seconds, "donations/s")
	b.ReportMetric(float64(cpu.Microseconds())/float64(res.Accepted), "server-cpu-µs/donation")
	b.ReportMetric(0, "ns/op")
}

// loadFrom sends n donations to m from a load-client process (see
// runLoad for first) and returns its report and the server's CPU time.
func loadFrom(b *testing.B, m *Main, n, conc, first int) (loadResult, time.Duration) {
	url := m.URL() + "/v1/campaigns/demo/donations"
	cpu0 := cpuTime()
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	spec := fmt.Sprintf("%s %d %d", url, n, conc)
	if first >= 0 {
		spec += fmt.Sprintf(" %d", first)
	}
	cmd.Env = append(os.Environ(), "FLOODGATE_BENCH_CLIENT="+spec)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, os.Stderr
	if err := cmd.Run(); err != nil {
		b.Fatalf("load client: %v: %s", err, out.String())
	}
	cpu := cpuTime() - cpu0
	var res loadResult
	if err := json.Unmarshal(out.Bytes(), &res); err != nil {
		b.Fatalf("load client said %q: %v", out.String(), err)
	}
	if res.Failed > 0 || res.Accepted != int64(n) {
		b.Fatalf("%d of %d accepted, %d failed", res.Accepted, n, res.Failed)
	}
	return res, cpu
}

// donorIP is donor i's own address.
func donorIP(i int) string {
	return netip.AddrFrom4([4]byte{byte(11 + i>>24), byte(i >> 16), byte(i >> 8), byte(i)}).String()
}

// startLimitedNode starts a node for the million-donor benchmarks: the
// card-testing limits at their defaults, a trusted proxy on loopback (each
// donor's address comes in X-Forwarded-For), charging held back so the
// figures are the accept path.
func startLimitedNode(b *testing.B) *Main {
	return startMain(b, func(c *config.Config) {
		defaults := config.Defaults()
		c.AddressLimit, c.AddressDeclineLimit, c.EmailLimit = defaults.AddressLimit, defaults.AddressDeclineLimit, defaults.EmailLimit
		c.TrustedProxies = "127.0.0.1/32"
		c.ProviderRate, c.ProviderGlobalRate = 0.01, 0.01
	})
}

// BenchmarkAcceptMillionDonors measures the accept path with the
// card-testing limits at their defaults, each donor with their own
// address (through the trusted proxy) and email: for the first 10,000
// donors of a fresh node, then for 10,000 more once a million distinct
// donors are tracked. The million are fed to the node's guard in process,
// through the same calls the accept path and the dispatcher make for each
// gift (a million HTTP requests would take minutes and leave a backlog
// of a million, a different benchmark); their gifts were all successes.
func BenchmarkAcceptMillionDonors(b *testing.B) {
	m := startLimitedNode(b)
	const sample = 10_000
	first, _ := loadFrom(b, m, sample, 256, 0)
	d := &floodgate.PaymentOrder{Status: floodgate.StatusSucceeded}
	for i := sample; i < 1_000_000+sample; i++ {
		d.ClientAddr = donorIP(i)
		if _, err := m.Guard.Allow(d.ClientAddr, fmt.Sprintf("donor%d@example.org", i)); err != nil {
			b.Fatal(err)
		}
		m.Guard.Learn(d)
	}
	runtimeGC()
	after, _ := loadFrom(b, m, sample, 256, 1_000_000+sample)
	b.ReportMetric(float64(first.Accepted)/first.Seconds, "donations/s-first-10k")
	b.ReportMetric(float64(after.Accepted)/after.Seconds, "donations/s-after-1M")
	b.ReportMetric(0, "ns/op")
}

// BenchmarkAcceptMillionDonorsHTTP is BenchmarkAcceptMillionDonors with
// every one of the million sent over HTTP, as a TV appeal's audience
// would send them: 10,000 distinct donors on a fresh node, a million
// more, then 10,000 more, each with their own address (through the
// trusted proxy) and email, the limits at their defaults. It leaves a
// million gifts waiting (charging is held back) and takes about a minute
// on a 2-core machine.
func BenchmarkAcceptMillionDonorsHTTP(b *testing.B) {
	m := startLimitedNode(b)
	const sample, million = 10_000, 1_000_000
	first, _ := loadFrom(b, m, sample, 256, 0)
	middle, _ := loadFrom(b, m, million, 256, sample)
	after, _ := loadFrom(b, m, sample, 256, sample+million)
	if got := first.Accepted + middle.Accepted + after.Accepted; got != million+2*sample {
		b.Fatalf("%d of %d distinct donors accepted: the limits refused honest donors", got, million+2*sample)
	}
	b.ReportMetric(float64(first.Accepted)/first.Seconds, "donations/s-first-10k")
	b.ReportMetric(float64(middle.Accepted)/middle.Seconds, "donations/s-the-1M")
	b.ReportMetric(float64(after.Accepted)/after.Seconds, "donations/s-after-1M")
	b.ReportMetric(float64(peakRSS())/(1<<20), "peak-rss-MiB")
	b.ReportMetric(0, "ns/op")
}

// BenchmarkAcceptBacklog1M is BenchmarkAccept with a million donations
// already waiting in line: the accept path's speed and the server's memory
// must not depend on the backlog. It fills the store directly (in batches
// of 5,000 through the same AcceptDonations), then measures as above and
// reports the process's peak resident memory.
func BenchmarkAcceptBacklog1M(b *testing.B) {
	m := startMain(b, func(c *config.Config) {
		c.ProviderRate, c.ProviderGlobalRate = 0.01, 0.01
	})
	fillBacklog(b, m, 1_000_000)
	runtimeGC()
	measureAccept(b, m, 256)
	b.ReportMetric(float64(peakRSS())/(1<<20), "peak-rss-MiB")
}
