package cli

import (
	"context"
	"crypto/sha256"
	"fmt"
	"os"
	"runtime"
	"strconv"
	"strings"
	"testing"

	"github.com/floodgate/floodgate"
)

// fillBacklog stores n waiting donations for campaign demo straight
// through the store, as the batcher would, in batches of 5,000.
func fillBacklog(tb testing.TB, m *Main, n int) {
	tb.Helper()
	ctx := context.Background()
	batch := make([]floodgate.Intake, 0, 5000)
	for i := 0; i < n; i++ {
		key := "backlog-" + strconv.Itoa(i)
		h := sha256.Sum256([]byte(key))
		batch = append(batch, &floodgate.Donation{CampaignID: "demo", IdempotencyKey: key, RequestHash: h[:], Amount: 2500,
			Currency: "eur", Email: fmt.Sprintf("donor%d@example.org", i), Name: "Donor", PaymentMethod: "pm_card_visa",
			Message: "Go on!", ClientAddr: "127.0.0.1"})
		if len(batch) == cap(batch) || i == n-1 {
			if _, err := m.Store.Accept(ctx, batch); err != nil {
				tb.Fatal(err)
			}
			batch = batch[:0]
		}
	}
}

func runtimeGC() { runtime.GC() }

// peakRSS is the process's peak resident set (VmHWM), in bytes.
func peakRSS() int64 {
	b, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return 0
	}
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "VmHWM:"); ok {
			kb, _ := strconv.ParseInt(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")), 10, 64)
			return kb << 10
		}
	}
	return 0
}
