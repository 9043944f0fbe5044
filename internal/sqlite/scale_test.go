package sqlite_test

import (
	"bufio"
	"context"
	"crypto/sha256"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"runtime/debug"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/floodgate/floodgate"
	"github.com/floodgate/floodgate/internal/sqlite"
)

// The scale measurement writes a database of several GB, so it runs only
// when asked:
//
//	FLOODGATE_BENCH_10M=1 go test -run '^TestTenMillionDonations$' -count=1 -timeout 60m -v ./internal/sqlite/
//
// FLOODGATE_BENCH_10M_DIR puts the file elsewhere than a temporary
// directory (it must have room for about 5 GB); FLOODGATE_BENCH_10M_KEEP=1
// keeps it, and a later run with the same directory measures the re-open
// again without filling it anew. FLOODGATE_BENCH_10M_COUNT changes the
// number of donations (for a quick trial of the measurement itself).
const (
	scaleEnv      = "FLOODGATE_BENCH_10M"
	scaleDirEnv   = "FLOODGATE_BENCH_10M_DIR"
	scaleKeepEnv  = "FLOODGATE_BENCH_10M_KEEP"
	scaleCountEnv = "FLOODGATE_BENCH_10M_COUNT"
	// scaleOpenEnv tells the child process which file to re-open.
	scaleOpenEnv = "FLOODGATE_BENCH_10M_OPEN"
	scaleBatch   = 2048
)

// scaleDonation is donation i of the measurement: a donor's own key (a
// UUID, as clients send), the request's hash and fields of a usual size.
// It is a function of i alone, so the child process that re-opens the
// file can replay any of them.
func scaleDonation(i int) *floodgate.Donation {
	h := sha256.Sum256([]byte(strconv.Itoa(i)))
	key := fmt.Sprintf("%x-%x-%x-%x-%x", h[0:4], h[4:6], h[6:8], h[8:10], h[10:16])
	d := &floodgate.Donation{CampaignID: "night", IdempotencyKey: key, Amount: int64(500 + i%5000), Currency: "eur",
		Email: fmt.Sprintf("donor%d@example.org", i), Name: fmt.Sprintf("Donor %d", i), PaymentMethod: "pm_card_visa",
		ClientAddr: "127.0.0.1"}
	rh := sha256.Sum256([]byte(key + "/" + strconv.FormatInt(d.Amount, 10) + "/" + d.Email))
	d.RequestHash = rh[:]
	return d
}

// scaleFigures is what the child process measured.
type scaleFigures struct {
	Donations      int64   `json:"donations"`
	OpenSeconds    float64 `json:"open_seconds"`
	RSSBeforeBytes int64   `json:"rss_before_bytes"`
	RSSAfterBytes  int64   `json:"rss_after_bytes"`
	RSSPeakBytes   int64   `json:"rss_peak_bytes"`
	RSSSettled     int64   `json:"rss_settled_bytes"`
	HeapAfterBytes uint64  `json:"heap_after_bytes"`
	HeapLiveBytes  uint64  `json:"heap_live_bytes"`
	ReplaySeconds  float64 `json:"replay_seconds"`
}

// TestTenMillionDonations fills an embedded store with ten million
// donations through its own accept path, closes it, and re-opens it in a
// fresh process (so that nothing of the fill is in the heap it measures):
// how long Open takes, what it leaves resident, and that a replay of the
// first and the last key still answers its donation. The figures go to
// BENCHMARKS.md; the test fails on a wrong answer, never on a figure.
func TestTenMillionDonations(t *testing.T) {
	if os.Getenv(scaleEnv) != "1" {
		t.Skipf("%s=1 runs the ten-million-donation measurement (it writes about 5 GB)", scaleEnv)
	}
	n := 10_000_000
	if v := os.Getenv(scaleCountEnv); v != "" {
		var err error
		if n, err = strconv.Atoi(v); err != nil || n < 2 {
			t.Fatalf("%s=%q: want a count of at least 2", scaleCountEnv, v)
		}
	}
	dir := os.Getenv(scaleDirEnv)
	if dir == "" {
		dir = t.TempDir()
	} else if os.Getenv(scaleKeepEnv) != "1" {
		t.Cleanup(func() {
			for _, suffix := range []string{"", "-wal", "-shm", ".lock"} {
				_ = os.Remove(filepath.Join(dir, "scale.db"+suffix))
			}
		})
	}
	path := filepath.Join(dir, "scale.db")
	if _, err := os.Stat(path); err != nil {
		fillScale(t, path, n)
	} else {
		t.Logf("re-using %s", path)
	}
	if fi, err := os.Stat(path); err == nil {
		t.Logf("file: %.2f GB", float64(fi.Size())/1e9)
	}

	// The re-open runs in a child process: this one holds the fill's
	// garbage and the index it built while filling.
	cmd := exec.Command(os.Args[0], "-test.run=^TestTenMillionReopen$", "-test.count=1", "-test.v")
	cmd.Env = append(os.Environ(), scaleOpenEnv+"="+path, scaleCountEnv+"="+strconv.Itoa(n))
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("re-open: %v\n%s", err, out)
	}
	var f scaleFigures
	found := false
	sc := bufio.NewScanner(strings.NewReader(string(out)))
	for sc.Scan() {
		if rest, ok := strings.CutPrefix(sc.Text(), "scale figures: "); ok {
			found = json.Unmarshal([]byte(rest), &f) == nil
		}
	}
	if !found {
		t.Fatalf("re-open printed no figures:\n%s", out)
	}
	mib := func(b int64) float64 { return float64(b) / (1 << 20) }
	t.Logf("re-open of %d donations: Open %.1f s; RSS %.0f MiB before, %.0f MiB after Open (peak %.0f MiB, %.0f MiB once the GC returned its garbage); heap %.0f MiB after Open, %.0f MiB live (%.1f bytes per donation); replay of the first and last key %.1f ms",
		f.Donations, f.OpenSeconds, mib(f.RSSBeforeBytes), mib(f.RSSAfterBytes), mib(f.RSSPeakBytes), mib(f.RSSSettled),
		mib(int64(f.HeapAfterBytes)), mib(int64(f.HeapLiveBytes)), float64(f.HeapLiveBytes)/float64(f.Donations), f.ReplaySeconds*1e3)
}

// fillScale writes n donations in batches through Accept, as the
// batcher does, and closes the store.
func fillScale(t *testing.T, path string, n int) {
	ctx := context.Background()
	s, err := sqlite.Open(ctx, sqlite.Options{Path: path})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	now := time.Now().UTC()
	c := &floodgate.Campaign{ID: "night", Name: "Night", Currency: "eur", CreatedAt: now, UpdatedAt: now}
	c.SetDefaults(now)
	if err := s.CreateCampaign(ctx, c); err != nil {
		t.Fatal(err)
	}
	start, mark := time.Now(), time.Now()
	batch := make([]floodgate.Intake, 0, scaleBatch)
	for i := 0; i < n; {
		batch = batch[:0]
		for ; i < n && len(batch) < scaleBatch; i++ {
			batch = append(batch, scaleDonation(i))
		}
		res, err := s.Accept(ctx, batch)
		if err != nil {
			t.Fatalf("batch ending at %d: %v", i, err)
		}
		for j, r := range res {
			if r.Err != nil || r.Replayed {
				t.Fatalf("donation %d: %+v", i-len(batch)+j, r)
			}
		}
		if i%1_000_000 < scaleBatch {
			t.Logf("filled %d donations (%.0f per second lately)", i, float64(1_000_000)/time.Since(mark).Seconds())
			mark = time.Now()
		}
	}
	t.Logf("filled %d donations in %s (%.0f per second)", n, time.Since(start).Round(time.Second), float64(n)/time.Since(start).Seconds())
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
}

// TestTenMillionReopen is the child half of TestTenMillionDonations; on
// its own it does nothing.
func TestTenMillionReopen(t *testing.T) {
	path := os.Getenv(scaleOpenEnv)
	if path == "" {
		t.Skip("the child process of TestTenMillionDonations")
	}
	n, err := strconv.Atoi(os.Getenv(scaleCountEnv))
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	var f scaleFigures
	f.RSSBeforeBytes = procStatus(t, "VmRSS")
	start := time.Now()
	s, err := sqlite.Open(ctx, sqlite.Options{Path: path})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	f.OpenSeconds = time.Since(start).Seconds()
	f.RSSAfterBytes = procStatus(t, "VmRSS")
	f.RSSPeakBytes = procStatus(t, "VmHWM")
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	f.HeapAfterBytes = ms.HeapAlloc
	debug.FreeOSMemory()
	runtime.ReadMemStats(&ms)
	f.HeapLiveBytes = ms.HeapAlloc
	f.RSSSettled = procStatus(t, "VmRSS")

	// A donor who retries at any later time gets the donation they made:
	// the first and the last one ever stored. A different request under
	// the first key is refused, and a new key is a new donation.
	first, last := scaleDonation(0), scaleDonation(n-1)
	other := scaleDonation(0)
	other.Amount++
	other.RequestHash = scaleDonation(1).RequestHash
	fresh := scaleDonation(0)
	fresh.IdempotencyKey = fmt.Sprintf("after-reopen-%d", time.Now().UnixNano())
	start = time.Now()
	res, err := s.Accept(ctx, []floodgate.Intake{first, last, other, fresh})
	f.ReplaySeconds = time.Since(start).Seconds()
	if err != nil {
		t.Fatal(err)
	}
	for i, want := range []struct {
		d   *floodgate.Donation
		seq int64
	}{{first, 1}, {last, int64(n)}} {
		r := res[i]
		if r.Err != nil || !r.Replayed || r.Donation().Seq != want.seq || r.Donation().Email != want.d.Email || r.Donation().Amount != want.d.Amount {
			t.Errorf("replay of donation seq %d: %+v", want.seq, r)
		}
	}
	if floodgate.ErrorCode(res[2].Err) != floodgate.EIDEMMISMATCH {
		t.Errorf("another request under the first key: %+v, want %s", res[2], floodgate.EIDEMMISMATCH)
	}
	if res[3].Err != nil || res[3].Replayed || res[3].Donation().Seq <= int64(n) {
		t.Errorf("a new key after the re-open: %+v", res[3])
	}
	f.Donations = int64(n)
	b, _ := json.Marshal(f)
	// On standard output, where the parent reads it whatever the test
	// log's layout.
	fmt.Printf("scale figures: %s\n", b)
}

// procStatus reads one of this process's /proc/self/status sizes, in
// bytes.
func procStatus(tb testing.TB, field string) int64 {
	tb.Helper()
	b, err := os.ReadFile("/proc/self/status")
	if err != nil {
		tb.Skipf("no /proc/self/status: %v", err)
	}
	for line := range strings.SplitSeq(string(b), "\n") {
		if rest, ok := strings.CutPrefix(line, field+":"); ok {
			kb, err := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(rest), " kB"), 10, 64)
			if err != nil {
				tb.Fatalf("%s: %q", field, line)
			}
			return kb << 10
		}
	}
	tb.Fatalf("no %s in /proc/self/status", field)
	return 0
}
