package cli

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

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
	// url n concurrency
	f := strings.Fields(spec)
	n, _ := strconv.Atoi(f[1])
	conc, _ := strconv.Atoi(f[2])
	res := runLoad(f[0], n, conc)
	_ = json.NewEncoder(os.Stdout).Encode(res)
	os.Exit(0)
}

// runLoad sends n donations from conc closed-loop clients over keep-alive
// connections.
func runLoad(url string, n, conc int) loadResult {
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
				body := fmt.Sprintf(`{"amount": 2500, "currency": "eur", "email": "donor%d@example.org", "name": "Donor", "payment_method": "pm_card_visa", "message": "Go on!"}`, i)
				req, _ := http.NewRequest("POST", url, strings.NewReader(body))
				req.Header.Set("Content-Type", "application/json")
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
	url := m.URL() + "/v1/campaigns/demo/donations"
	n := max(b.N, 2000)
	b.ResetTimer()
	cpu0 := cpuTime()
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), fmt.Sprintf("FLOODGATE_BENCH_CLIENT=%s %d %d", url, n, conc))
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, os.Stderr
	if err := cmd.Run(); err != nil {
		b.Fatalf("load client: %v: %s", err, out.String())
	}
	cpu := cpuTime() - cpu0
	b.StopTimer()
	var res loadResult
	if err := json.Unmarshal(out.Bytes(), &res); err != nil {
		b.Fatalf("load client said %q: %v", out.String(), err)
	}
	if res.Failed > 0 || res.Accepted != int64(n) {
		b.Fatalf("%d of %d accepted, %d failed", res.Accepted, n, res.Failed)
	}
	b.ReportMetric(float64(res.Accepted)/res.Seconds, "donations/s")
	b.ReportMetric(float64(cpu.Microseconds())/float64(res.Accepted), "server-cpu-µs/donation")
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
