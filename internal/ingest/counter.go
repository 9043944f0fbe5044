package ingest

import (
	"math"
	"sync"
	"time"
)

// counter tallies events per key over a sliding window of span, the way
// Cloudflare estimates rates: each shard keeps the current window's counts
// and the previous window's, and a key's estimate is its current count
// plus the previous one weighted by the part of the previous window that
// still lies within span of now. A window ends by dropping the older map
// and starting an empty one, so no operation ever sweeps the table: every
// call costs the same with ten keys tracked or a million.
//
// Keys are 64-bit hashes (maphash, with the guard's per-process seed): the
// top bits pick the shard, the low 32 bits are the key in its map, so an
// entry is eight bytes (a key and its count) and a lookup touches little
// memory. Two keys that share both can only add to each other's counts,
// never take away: at a million keys in a table, about two such pairs are
// expected. Each shard holds at most its share of capacity
// keys per window; a key that arrives when its shard is full is counted in
// a count-min sketch allocated on the first overflow, which may over-count
// but never under-counts: a full table refuses a little early, never lets
// an attempt through uncounted.
type counter struct {
	span     time.Duration
	perShard int
	shards   [counterShards]counterShard
}

// counterShards spreads keys over independent locks so that cores do not
// queue on one mutex.
const counterShards = 64

type counterShard struct {
	mu         sync.Mutex
	start      time.Time // start of the current window
	cur, prev  map[uint32]uint32
	curSketch  *sketch
	prevSketch *sketch
	// The padding keeps two shards' locks off one cache line.
	_ [64]byte
}

// newCounter returns a counter over span that tracks capacity keys
// exactly per window. Hashing spreads keys over the shards only about
// evenly, so each shard holds its share plus six standard deviations of
// it: capacity distinct keys all fit, whatever their hashes (a million:
// 15,625 a shard and room for 16,375).
func newCounter(span time.Duration, capacity int) *counter {
	share := float64(max(capacity, 1)) / counterShards
	return &counter{span: span, perShard: int(math.Ceil(share + 6*math.Sqrt(share)))}
}

func (c *counter) shard(h uint64) *counterShard { return &c.shards[h>>(64-6)] }

// roll starts a new window when now is past the current one. After a gap
// of two spans or more the previous window is empty too.
func (c *counter) roll(s *counterShard, now time.Time) {
	if now.Before(s.start.Add(c.span)) {
		return
	}
	start := now.Truncate(c.span)
	if start.Sub(s.start) == c.span {
		s.prev, s.prevSketch = s.cur, s.curSketch
	} else {
		s.prev, s.prevSketch = nil, nil
	}
	s.cur, s.curSketch, s.start = nil, nil, start
}

// countsLocked are key h's counts in the current and previous windows.
func (c *counter) countsLocked(s *counterShard, h uint64) (cur, prev uint32) {
	cur, ok := s.cur[uint32(h)]
	if !ok && s.curSketch != nil {
		cur = s.curSketch.get(h)
	}
	prev, ok = s.prev[uint32(h)]
	if !ok && s.prevSketch != nil {
		prev = s.prevSketch.get(h)
	}
	return cur, prev
}

// estimateLocked is the key's sliding estimate.
func (c *counter) estimateLocked(s *counterShard, h uint64, now time.Time) float64 {
	cur, prev := c.countsLocked(s, h)
	w := 1 - float64(now.Sub(s.start))/float64(c.span)
	w = min(max(w, 0), 1)
	return float64(cur) + float64(prev)*w
}

// addLocked counts one event for key h.
func (c *counter) addLocked(s *counterShard, h uint64) {
	k := uint32(h)
	if v, ok := s.cur[k]; ok {
		if v < math.MaxUint32 {
			s.cur[k] = v + 1
		}
		return
	}
	if len(s.cur) < c.perShard {
		if s.cur == nil {
			s.cur = map[uint32]uint32{}
		}
		s.cur[k] = 1
		return
	}
	if s.curSketch == nil {
		s.curSketch = new(sketch)
	}
	s.curSketch.add(h)
}

// add counts one event for key h at now.
func (c *counter) add(h uint64, now time.Time) {
	s := c.shard(h)
	s.mu.Lock()
	c.roll(s, now)
	c.addLocked(s, h)
	s.mu.Unlock()
}

// estimate is key h's sliding estimate at now.
func (c *counter) estimate(h uint64, now time.Time) float64 {
	s := c.shard(h)
	s.mu.Lock()
	defer s.mu.Unlock()
	c.roll(s, now)
	return c.estimateLocked(s, h, now)
}

// take counts one event for key h if that keeps its
// estimate within limit, and otherwise returns how long until it would
// (a refused event is not counted: the limit is an allowance, and
// knocking at a closed door does not shut it for longer).
func (c *counter) take(h uint64, limit int, now time.Time) (wait time.Duration) {
	s := c.shard(h)
	s.mu.Lock()
	defer s.mu.Unlock()
	c.roll(s, now)
	if c.estimateLocked(s, h, now)+1 <= float64(limit) {
		c.addLocked(s, h)
		return 0
	}
	cur, prev := c.countsLocked(s, h)
	return c.retryAfter(float64(cur), float64(prev), float64(limit), now.Sub(s.start))
}

// retryAfter is how long until one more event fits under limit, for a key
// with cur events in the window elapsed into it and prev in the one
// before, if nothing else is counted meanwhile.
func (c *counter) retryAfter(cur, prev, limit float64, elapsed time.Duration) time.Duration {
	span := float64(c.span)
	var at float64 // time into the current window when it fits
	if room := limit - 1 - cur; room >= 0 && prev > 0 {
		// The previous window's share fades out within this one.
		at = span * (1 - room/prev)
	} else {
		// This window alone is over: wait for it to become the previous
		// one and fade enough.
		at = span + span*max(1-(limit-1)/cur, 0)
	}
	wait := time.Duration(math.Ceil(at)) - elapsed
	return max(wait, time.Second)
}

// sketch is a count-min sketch with conservative update: each
// key has one cell in each row, is read as the least of them, and an
// increment raises only the cells that are at that least value. Any
// other key sharing a cell can only raise it, so a read never falls below
// the true count.
type sketch [sketchRows][sketchWidth]uint32

const (
	sketchRows  = 4
	sketchBits  = 12
	sketchWidth = 1 << sketchBits // 4 rows x 4,096 cells x 4 bytes: 64 KiB a shard
)

// cell is key h's column in row r: h remixed per row (splitmix64), so
// that keys sharing a cell in one row rarely share one in another.
func cell(h uint64, r int) uint64 {
	z := h + uint64(r+1)*0x9e3779b97f4a7c15
	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9
	z = (z ^ (z >> 27)) * 0x94d049bb133111eb
	z ^= z >> 31
	return z >> (64 - sketchBits)
}

func (k *sketch) get(h uint64) uint32 {
	v := uint32(math.MaxUint32)
	for r := range sketchRows {
		v = min(v, k[r][cell(h, r)])
	}
	return v
}

func (k *sketch) add(h uint64) {
	least := k.get(h)
	if least == math.MaxUint32 {
		return
	}
	for r := range sketchRows {
		if c := &k[r][cell(h, r)]; *c == least {
			*c++
		}
	}
}
