package sandbox

import (
	"time"
)

// maxIdempotencyKey is Stripe's limit on an Idempotency-Key.
const maxIdempotencyKey = 255

// idemEntry is one idempotency key: the request it was first used with (as
// a fingerprint of endpoint and parameters) and, once that request has
// executed, its response.
type idemEntry struct {
	Scope       string    `json:"scope"`
	Key         string    `json:"key"`
	Fingerprint string    `json:"fingerprint"`
	Endpoint    string    `json:"endpoint,omitempty"` // the path first used on ("" in older journals)
	RequestID   string    `json:"request_id"`
	Created     time.Time `json:"created"`
	Status      int       `json:"status"`
	Body        []byte    `json:"body"`
	ShouldRetry string    `json:"should_retry,omitempty"`

	// pending is true while the first request still executes.
	pending bool
}

func (e *idemEntry) response() *response {
	return &response{status: e.Status, body: e.Body, shouldRetry: e.ShouldRetry}
}

// idemStore keeps keys for the retention, oldest first, and at most max of
// them: past the bound the oldest finished key is forgotten early (counted
// in evicted), which is the one way the sandbox is less patient than
// Stripe, and is documented as such.
type idemStore struct {
	retention time.Duration
	max       int
	m         map[string]*idemEntry
	queue     []*idemEntry // by creation; may hold entries already replaced
	head      int
	evicted   int64
}

func newIdemStore(retention time.Duration, max int) *idemStore {
	return &idemStore{retention: retention, max: max, m: map[string]*idemEntry{}}
}

func idemMapKey(scope, key string) string { return scope + "\x00" + key }

// get returns the live entry for key, forgetting expired keys on the way.
func (st *idemStore) get(scope, key string, now time.Time) *idemEntry {
	st.prune(now)
	e := st.m[idemMapKey(scope, key)]
	if e != nil && !e.pending && !now.Before(e.Created.Add(st.retention)) {
		delete(st.m, idemMapKey(scope, key))
		return nil
	}
	return e
}

// reserve records key as in flight. It returns nil only when the store is
// full of requests that are all still executing.
func (st *idemStore) reserve(scope, key, fingerprint, reqID string, now time.Time) *idemEntry {
	for len(st.m) >= st.max {
		if !st.evictOldest() {
			return nil
		}
	}
	e := &idemEntry{Scope: scope, Key: key, Fingerprint: fingerprint, RequestID: reqID, Created: now, pending: true}
	st.add(e)
	return e
}

// complete stores the response of the request that reserved e.
func (st *idemStore) complete(e *idemEntry, r *response) {
	e.pending = false
	e.Status, e.Body, e.ShouldRetry = r.status, r.body, r.shouldRetry
}

// release forgets e, the key of a request whose change the journal
// refused: nothing of that request happened, so the key may execute anew.
func (st *idemStore) release(e *idemEntry) {
	if st.current(e) {
		delete(st.m, idemMapKey(e.Scope, e.Key))
	}
}

// restore puts back an entry read from the journal, unless it has expired.
func (st *idemStore) restore(e *idemEntry, now time.Time) {
	if !now.Before(e.Created.Add(st.retention)) {
		return
	}
	// A key recorded twice was used again after it expired: the later
	// record wins and the earlier one stays behind in the queue as stale.
	delete(st.m, idemMapKey(e.Scope, e.Key))
	for len(st.m) >= st.max && st.evictOldest() {
	}
	st.add(e)
}

func (st *idemStore) add(e *idemEntry) {
	st.m[idemMapKey(e.Scope, e.Key)] = e
	st.queue = append(st.queue, e)
}

// current reports whether queue element e is still the live entry for its
// key (a key used again after expiry has a newer entry).
func (st *idemStore) current(e *idemEntry) bool {
	return st.m[idemMapKey(e.Scope, e.Key)] == e
}

// prune forgets the expired keys at the front of the queue.
func (st *idemStore) prune(now time.Time) {
	for st.head < len(st.queue) {
		e := st.queue[st.head]
		if st.current(e) {
			if e.pending || now.Before(e.Created.Add(st.retention)) {
				break
			}
			delete(st.m, idemMapKey(e.Scope, e.Key))
		}
		st.queue[st.head] = nil
		st.head++
	}
	st.compact()
}

// evictOldest forgets the oldest finished key before its time.
func (st *idemStore) evictOldest() bool {
	for i := st.head; i < len(st.queue); i++ {
		e := st.queue[i]
		if e == nil || !st.current(e) || e.pending {
			continue
		}
		delete(st.m, idemMapKey(e.Scope, e.Key))
		st.evicted++
		st.compact()
		return true
	}
	return false
}

// compact drops the consumed front of the queue once it dominates, so the
// queue's memory stays proportional to the live keys.
func (st *idemStore) compact() {
	if st.head > 1024 && st.head*2 > len(st.queue) {
		n := copy(st.queue, st.queue[st.head:])
		clear(st.queue[n:])
		st.queue = st.queue[:n]
		st.head = 0
	}
}

// live returns the finished entries, oldest first, for a journal snapshot.
func (st *idemStore) live() []*idemEntry {
	var out []*idemEntry
	for _, e := range st.queue[st.head:] {
		if e != nil && st.current(e) && !e.pending {
			out = append(out, e)
		}
	}
	return out
}
