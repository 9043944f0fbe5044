// Command compare measures floodgate side by side with the ceiling (a
// no-op HTTP handler) and the naive per-request architecture, in one run on
// one machine, with the same load generator and the same load: each
// server's throughput at saturation, its latency at fixed fractions of that
// throughput, and its CPU per accepted request. It writes every raw report
// as JSON and a summary table to --out.
//
//	go run ./bench/compare --out bench/results
package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/floodgate/floodgate/internal/loadgen"
)

type system struct {
	name string
	// args is the command line serving on addr; a system that serves its
	// metrics apart from its public port serves them on metricsAddr.
	args func(bin, addr, metricsAddr, dir string) []string
	bin  string
	// metricsApart is set for a system whose /metrics is on metricsAddr
	// (floodgate) rather than beside its API (the ceiling and the naive
	// design).
	metricsApart bool
}

type result struct {
	System     string                     `json:"system"`
	Saturation float64                    `json:"saturation_per_s"`
	CPUAtSat   float64                    `json:"cpu_us_per_request_at_saturation"`
	Fractions  map[string]*loadgen.Report `json:"-"`
	Sat        *loadgen.Report            `json:"-"`
}

func main() {
	out := flag.String("out", "bench/results", "directory for the JSON reports and summary.md")
	duration := flag.Duration("duration", 10*time.Second, "length of each run")
	probe := flag.Float64("probe-rate", 40000, "arrival rate (per second) well above any system's capacity, to find its saturation")
	fracs := flag.String("fractions", "0.25,0.5,0.75", "fractions of each system's saturation at which latency is measured")
	workers := flag.Int("max-workers", 512, "requests in flight at most")
	pg := flag.String("postgres", os.Getenv("FLOODGATE_TEST_POSTGRES"), "a PostgreSQL URL for the naive design on PostgreSQL (empty: skipped)")
	flag.Parse()
	if err := os.MkdirAll(*out, 0o755); err != nil {
		log.Fatal(err)
	}
	tmp, err := os.MkdirTemp("", "floodgate-compare-")
	if err != nil {
		log.Fatal(err)
	}
	defer os.RemoveAll(tmp)
	build := func(pkg string) string {
		bin := filepath.Join(tmp, "bin", filepath.Base(pkg))
		if out, err := exec.Command("go", "build", "-o", bin, pkg).CombinedOutput(); err != nil {
			log.Fatalf("build %s: %v\n%s", pkg, err, out)
		}
		return bin
	}
	systems := []system{
		{name: "ceiling", bin: build("./bench/noop"), args: func(bin, addr, _, dir string) []string { return []string{bin, "--addr", addr} }},
		{name: "naive-sqlite", bin: build("./bench/naive"), args: func(bin, addr, _, dir string) []string {
			return []string{bin, "--addr", addr, "--store", filepath.Join(dir, "naive.db")}
		}},
	}
	if *pg != "" {
		systems = append(systems, system{name: "naive-postgres", bin: build("./bench/naive"), args: func(bin, addr, _, dir string) []string {
			return []string{bin, "--addr", addr, "--store", *pg}
		}})
	}
	systems = append(systems, system{name: "floodgate", bin: build("./cmd/floodgate"), metricsApart: true, args: func(bin, addr, metricsAddr, dir string) []string {
		// The limits are off so that the figures are the accept path alone
		// (the load may reuse emails, which the per-email limit counts).
		return []string{bin, "serve", "--demo", "--addr", addr, "--metrics-addr", metricsAddr, "--data-dir", dir, "--log-level", "error",
			"--address-limit", "0", "--email-limit", "0"}
	}})

	var fractions []float64
	for _, f := range strings.Split(*fracs, ",") {
		v, err := strconv.ParseFloat(strings.TrimSpace(f), 64)
		if err != nil || v <= 0 || v >= 1 {
			log.Fatalf("bad fraction %q", f)
		}
		fractions = append(fractions, v)
	}
	var results []*result
	for _, s := range systems {
		r, err := measure(s, tmp, *out, *duration, *probe, fractions, *workers)
		if err != nil {
			log.Fatalf("%s: %v", s.name, err)
		}
		results = append(results, r)
	}
	summary := table(results, fractions, *duration, *probe, *workers)
	fmt.Print(summary)
	if err := os.WriteFile(filepath.Join(*out, "summary.md"), []byte(summary), 0o644); err != nil {
		log.Fatal(err)
	}
}

func measure(s system, tmp, out string, duration time.Duration, probe float64, fractions []float64, workers int) (*result, error) {
	dir := filepath.Join(tmp, "data", s.name)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, err
	}
	addr, metricsAddr := freeAddr(), freeAddr()
	args := s.args(s.bin, addr, metricsAddr, dir)
	cmd := exec.Command(args[0], args[1:]...)
	cmd.Stdout, cmd.Stderr = io.Discard, os.Stderr
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	defer func() {
		_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
		_ = cmd.Wait()
	}()
	base := "http://" + addr
	if err := waitReady(base + "/v1/campaigns/demo"); err != nil {
		return nil, err
	}
	metricsURL := base + "/metrics"
	if s.metricsApart {
		metricsURL = "http://" + metricsAddr + "/metrics"
	}
	run := func(label string, rate float64) (*loadgen.Report, error) {
		log.Printf("%s: %s at %.0f/s for %v", s.name, label, rate, duration)
		rep, err := loadgen.Run(context.Background(), loadgen.Options{URL: base, MetricsURL: metricsURL, Scenario: "donate",
			Shape: loadgen.Constant{PerSecond: rate, Duration: duration}, MaxWorkers: workers, Timeout: 10 * time.Second,
			Campaign: "demo", Cards: []loadgen.Card{{PaymentMethod: "pm_card_visa", Weight: 1}}, Seed: 1}, io.Discard)
		if err != nil {
			return nil, err
		}
		b, _ := json.MarshalIndent(rep, "", "  ")
		return rep, os.WriteFile(filepath.Join(out, s.name+"-"+label+".json"), append(b, '\n'), 0o644)
	}
	r := &result{System: s.name, Fractions: map[string]*loadgen.Report{}}
	// A short warm-up, then the saturation probe: offered far more than
	// it can take, a server answers as many as it can.
	if _, err := run("warmup", min(probe/10, 1000)); err != nil {
		return nil, err
	}
	sat, err := run("saturation", probe)
	if err != nil {
		return nil, err
	}
	r.Sat = sat
	r.Saturation = float64(sat.Requests.OK) / sat.DurationSeconds
	if sat.Server != nil {
		r.CPUAtSat = sat.Server.CPUMicrosPerAccepted
	}
	for _, f := range fractions {
		label := fmt.Sprintf("at-%.0f%%", f*100)
		rep, err := run(label, f*r.Saturation)
		if err != nil {
			return nil, err
		}
		r.Fractions[label] = rep
	}
	return r, nil
}

func table(rs []*result, fractions []float64, duration time.Duration, probe float64, workers int) string {
	var b strings.Builder
	host, _ := os.Hostname()
	fmt.Fprintf(&b, "Measured %s on %s (%d CPUs), %v per run, saturation probed at %.0f/s, at most %d requests in flight.\n\n",
		time.Now().UTC().Format(time.RFC3339), host, numCPU(), duration, probe, workers)
	fmt.Fprintf(&b, "| system | saturation (2xx/s) | CPU µs / request at saturation |")
	for _, f := range fractions {
		fmt.Fprintf(&b, " p50 / p99 at %.0f%% |", f*100)
	}
	b.WriteString(" errors at saturation |\n|---|---|---|")
	for range fractions {
		b.WriteString("---|")
	}
	b.WriteString("---|\n")
	byName := map[string]*result{}
	for _, r := range rs {
		byName[r.System] = r
		fmt.Fprintf(&b, "| %s | %.0f | %.1f |", r.System, r.Saturation, r.CPUAtSat)
		for _, f := range fractions {
			rep := r.Fractions[fmt.Sprintf("at-%.0f%%", f*100)]
			fmt.Fprintf(&b, " %s / %s |", ms(rep.Requests.Latency.P50), ms(rep.Requests.Latency.P99))
		}
		fmt.Fprintf(&b, " %d non-2xx, %d network |\n", r.Sat.Requests.Non2xx, r.Sat.Requests.NetworkErrors)
	}
	if fg, ok := byName["floodgate"]; ok {
		b.WriteString("\n")
		for _, other := range []string{"ceiling", "naive-sqlite", "naive-postgres"} {
			if o, ok := byName[other]; ok && o.Saturation > 0 {
				fmt.Fprintf(&b, "- floodgate / %s throughput at saturation: %.2f\n", other, fg.Saturation/o.Saturation)
			}
		}
	}
	return b.String()
}

func ms(d time.Duration) string { return fmt.Sprintf("%.1f ms", float64(d)/float64(time.Millisecond)) }

func numCPU() int {
	b, err := os.ReadFile("/proc/cpuinfo")
	if err != nil {
		return 0
	}
	return strings.Count(string(b), "processor\t:")
}

func freeAddr() string {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		log.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}

func waitReady(url string) error {
	deadline := time.Now().Add(2 * time.Minute)
	for time.Now().Before(deadline) {
		resp, err := http.Get(url)
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == 200 {
				return nil
			}
		}
		time.Sleep(50 * time.Millisecond)
	}
	return fmt.Errorf("%s never answered 200", url)
}
