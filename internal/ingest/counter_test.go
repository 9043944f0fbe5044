package ingest

import (
	"math"
	"math/rand/v2"
	"testing"
	"time"
)

var t0 = time.Date(2026, 12, 4, 20, 0, 0, 0, time.UTC)

// TestCounterSlidingEstimate: the estimate is this window's count plus the
// last window's weighted by how much of it is still within a span of now.
func TestCounterSlidingEstimate(t *testing.T) {
	c := newCounter(time.Minute, 100)
	for range 30 {
		c.add(7, t0.Add(10*time.Second))
	}
	tests := []struct {
		at   time.Duration
		want float64
	}{
		{59 * time.Second, 30},
		{60 * time.Second, 30}, // rotated: all of the last window still counts
		{90 * time.Second, 15}, // half of it
		{119 * time.Second, 0.5},
		{120 * time.Second, 0}, // two spans on: nothing
	}
	for _, tt := range tests {
		if got := c.estimate(7, t0.Add(tt.at)); math.Abs(got-tt.want) > 1e-9 {
			t.Fatalf("at +%v: estimate %v, want %v", tt.at, got, tt.want)
		}
	}
	if got := c.estimate(8, t0.Add(30*time.Second)); got != 0 {
		t.Fatalf("another key: %v", got)
	}
}

// TestCounterRotationAndGap: counts move to the previous window at the
// window's end, and are forgotten after a gap of two windows or more.
func TestCounterRotationAndGap(t *testing.T) {
	c := newCounter(time.Minute, 100)
	c.add(1, t0)
	c.add(1, t0.Add(70*time.Second)) // the next window
	if got := c.estimate(1, t0.Add(70*time.Second)); math.Abs(got-(1+1*(1-10.0/60))) > 1e-9 {
		t.Fatalf("after rotation: %v", got)
	}
	// A gap: nothing counted for more than two windows.
	if got := c.estimate(1, t0.Add(10*time.Minute)); got != 0 {
		t.Fatalf("after a gap: %v, want 0", got)
	}
	s := c.shard(1)
	if len(s.cur) != 0 || len(s.prev) != 0 {
		t.Fatalf("after a gap the shard holds %d and %d keys", len(s.cur), len(s.prev))
	}
}

// TestCounterTake: take allows up to the limit in a window, refuses past
// it without counting the refusal, and says how long until the next fits.
func TestCounterTake(t *testing.T) {
	c := newCounter(time.Minute, 100)
	for i := range 5 {
		if w := c.take(3, 5, t0.Add(time.Duration(i)*time.Second)); w != 0 {
			t.Fatalf("take %d refused: %v", i, w)
		}
	}
	// Five in this window: the sixth fits once this window has become the
	// previous one and faded to four, 12 s into the next: 52 s from now.
	if w := c.take(3, 5, t0.Add(20*time.Second)); w != 52*time.Second {
		t.Fatalf("refusal wait %v, want 52s", w)
	}
	if got := c.estimate(3, t0.Add(20*time.Second)); got != 5 {
		t.Fatalf("refusals were counted: %v", got)
	}
	// 52 s later it fits, and not a second before.
	if w := c.take(3, 5, t0.Add(71*time.Second)); w == 0 {
		t.Fatal("allowed before the wait it announced")
	}
	if w := c.take(3, 5, t0.Add(72*time.Second)); w != 0 {
		t.Fatalf("refused after the wait it announced: %v", w)
	}
}

// TestCounterOverflowNeverUnderCounts: keys past the capacity are counted
// in the sketch; whatever shares its cells, a key's estimate is never
// below its true count, and the maps never hold more than the capacity.
func TestCounterOverflowNeverUnderCounts(t *testing.T) {
	const capacity = 640
	c := newCounter(time.Hour, capacity)
	r := rand.New(rand.NewPCG(1, 2))
	truth := map[uint64]int{}
	keys := make([]uint64, 50_000)
	for i := range keys {
		keys[i] = r.Uint64()
	}
	for range 200_000 {
		k := keys[r.IntN(len(keys))]
		truth[k]++
		c.add(k, t0)
	}
	held := 0
	for i := range c.shards {
		held += len(c.shards[i].cur)
		if len(c.shards[i].cur) > c.perShard {
			t.Fatalf("shard %d holds %d keys, bound %d", i, len(c.shards[i].cur), c.perShard)
		}
	}
	if held < capacity {
		t.Fatalf("%d keys held exactly, fewer than the capacity %d", held, capacity)
	}
	over := 0.0
	for k, n := range truth {
		got := c.estimate(k, t0)
		if got < float64(n) {
			t.Fatalf("key %x: estimate %v below its true count %d", k, got, n)
		}
		over += got - float64(n)
	}
	t.Logf("%d keys, %d exact; mean over-count %.2f", len(truth), held, over/float64(len(truth)))
}

// TestCounterFullTableStillRefuses: with every exact slot taken by other
// keys, a new key is still limited (in the sketch), exactly as in an
// empty table, rather than let through uncounted.
func TestCounterFullTableStillRefuses(t *testing.T) {
	c := newCounter(time.Minute, counterShards)
	for i := range uint64(10_000) {
		c.add(i<<58|i, t0) // every shard full
	}
	const tester = 0xdead_beef_0000_0001
	allowed := 0
	for range 50 {
		if c.take(tester, 5, t0) == 0 {
			allowed++
		}
	}
	if allowed > 5 {
		t.Fatalf("a full table let %d attempts through, limit 5", allowed)
	}
	if s := c.shard(tester); s.curSketch == nil {
		t.Fatal("the tester was not counted in the sketch")
	}
}
