package httpapi

import (
	"context"
	"encoding/json"
	"path/filepath"
	"testing"
	"time"

	"github.com/floodgate/floodgate"
	"github.com/floodgate/floodgate/internal/clocktest"
	"github.com/floodgate/floodgate/internal/sqlite"
)

// TestHubReadsOnItsClock: the hub reads a watched campaign's totals when
// its clock has moved an interval, pushes them to the subscriber, and
// reads nothing once stopped; started again, it reads again.
func TestHubReadsOnItsClock(t *testing.T) {
	ctx := context.Background()
	store, err := sqlite.Open(ctx, sqlite.Options{Path: filepath.Join(t.TempDir(), "f.db")})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = store.Close() })
	now := time.Now().UTC()
	c := &floodgate.Campaign{ID: "c", Name: "C", Currency: "eur", CreatedAt: now, UpdatedAt: now}
	c.SetDefaults(now)
	if err := store.CreateCampaign(ctx, c); err != nil {
		t.Fatal(err)
	}
	clock := clocktest.New(now)
	h := NewHub(store, HubOptions{Interval: time.Second, Clock: clock})
	sub, err := h.subscribe("c")
	if err != nil {
		t.Fatal(err)
	}
	defer h.unsubscribe(sub)
	pushed := func(when string) {
		t.Helper()
		select {
		case p := <-sub.ch:
			var got TotalsJSON
			if err := json.Unmarshal(p, &got); err != nil || got.Campaign != "c" {
				t.Fatalf("%s: pushed %s (%v)", when, p, err)
			}
		case <-time.After(time.Minute):
			t.Fatalf("%s: nothing pushed", when)
		}
	}

	stopped := h.Stopped()
	if err := h.Start(ctx); err != nil {
		t.Fatal(err)
	}
	clock.WaitTimers(1)
	select {
	case p := <-sub.ch:
		t.Fatalf("pushed %s before an interval passed", p)
	default:
	}
	clock.Advance(time.Second)
	pushed("after an interval")

	h.Stop()
	h.Stop()
	select {
	case <-stopped:
	default:
		t.Fatal("Stop returned and the hub's streams are not told to end")
	}
	if clock.Timers() != 0 {
		t.Fatalf("%d timers armed after Stop", clock.Timers())
	}

	// The hub pushes only changes, and the totals have not changed: the
	// last payload is forgotten so that a read in the second run shows.
	h.mu.Lock()
	delete(h.last, "c")
	h.mu.Unlock()
	if err := h.Start(ctx); err != nil {
		t.Fatal(err)
	}
	defer h.Stop()
	clock.WaitTimers(1)
	clock.Advance(time.Second)
	pushed("in the second run")
}
