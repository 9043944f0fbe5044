package loadgen

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// connectParallel bounds stream connections opened at once, so a
// thousand subscribers arrive over a moment, not in one SYN flood the
// machine's accept queue would drop.
const connectParallel = 64

// streamTail is how long subscribers stay after the background load
// ends: long enough for the last totals (coalesced by the server a few
// times a second) to reach them.
const streamTail = time.Second

// streamer holds Subscribers live-total streams open and measures how
// long each change took to reach each of them.
type streamer struct {
	o    Options
	base string
	hc   *http.Client

	open atomic.Int64
	mu   sync.Mutex
	rep  Stream
	del  Histogram
	conn Histogram
}

func newStreamer(o Options, base string) *streamer {
	tr := newTransport(o.Subscribers)
	tr.ResponseHeaderTimeout = o.Timeout
	// No client timeout: a stream lives for the whole run.
	return &streamer{o: o, base: base, hc: &http.Client{Transport: tr},
		rep: Stream{Subscribers: o.Subscribers, ConnectFailures: map[string]uint64{}}}
}

func (s *streamer) progress() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return fmt.Sprintf("subscribers %d open, %d changes, delivery p99 %s", s.open.Load(), s.rep.Changes, fmtDur(s.del.Quantile(0.99)))
}

// run connects every subscriber, then runs load (or holds for o.Hold when
// load is nil), then closes the streams.
func (s *streamer) run(ctx context.Context, load func(context.Context) arrivals) (arrivals, *Stream) {
	sctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var over atomic.Bool // set when the run ends: a stream closing after is not dropped
	var readers, connecting sync.WaitGroup
	sem := make(chan struct{}, connectParallel)
	for range s.o.Subscribers {
		readers.Add(1)
		connecting.Add(1)
		go func() {
			defer readers.Done()
			sem <- struct{}{}
			body := s.connect(sctx)
			<-sem
			connecting.Done()
			if body != nil {
				s.read(body, &over)
			}
		}()
	}
	connecting.Wait()
	var arr arrivals
	if load != nil {
		arr = load(ctx)
	} else {
		start := time.Now()
		if !sleep(ctx, s.o.Hold) {
			arr.interrupted = true
		}
		arr.window = time.Since(start)
	}
	sleep(ctx, streamTail)
	over.Store(true)
	cancel()
	readers.Wait()
	s.mu.Lock()
	defer s.mu.Unlock()
	rep := s.rep
	rep.Delivery, rep.Connect = s.del.Dist(), s.conn.Dist()
	return arr, &rep
}

// connect opens one stream; nil when it failed (and was counted).
func (s *streamer) connect(ctx context.Context) io.ReadCloser {
	path := "/v1/campaigns/" + url.PathEscape(s.o.Campaign) + "/events"
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, s.base+path, nil)
	if err != nil {
		s.fail(err.Error())
		return nil
	}
	req.Header.Set("Accept", "text/event-stream")
	t0 := time.Now()
	resp, err := s.hc.Do(req)
	if err != nil {
		if ctx.Err() == nil {
			s.fail(netKind(errText(err)))
		}
		return nil
	}
	if ct := resp.Header.Get("Content-Type"); resp.StatusCode != http.StatusOK || !strings.HasPrefix(ct, "text/event-stream") {
		b, _ := io.ReadAll(io.LimitReader(resp.Body, maxBody))
		_ = resp.Body.Close()
		why := strconv.Itoa(resp.StatusCode)
		if resp.StatusCode >= 400 {
			why += " " + problemType(b)
		} else {
			why += " " + ct
		}
		s.fail(why)
		return nil
	}
	s.mu.Lock()
	s.rep.Connected++
	s.conn.Record(time.Since(t0))
	s.mu.Unlock()
	s.open.Add(1)
	return resp.Body
}

func (s *streamer) fail(why string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.rep.FailedToConnect++
	s.rep.ConnectFailures[why]++
}

// read follows one stream (the SSE format: fields up to a blank line)
// until it ends, timing every totals event against its updated_at.
func (s *streamer) read(body io.ReadCloser, over *atomic.Bool) {
	defer body.Close()
	defer s.open.Add(-1)
	sc := bufio.NewScanner(body)
	sc.Buffer(make([]byte, 0, 4096), 1<<20)
	var event string
	var data []byte
	first, sawChange := true, false
	for sc.Scan() {
		line := sc.Bytes()
		if len(line) == 0 {
			if (event == "totals") && data != nil {
				s.event(data, time.Now(), first, &sawChange)
				first = false
			}
			event, data = "", nil
			continue
		}
		if line[0] == ':' {
			continue // a comment: the heartbeat
		}
		field, value, _ := bytes.Cut(line, []byte(":"))
		value = bytes.TrimPrefix(value, []byte(" "))
		switch string(field) {
		case "event":
			event = string(value)
		case "data":
			if data != nil {
				data = append(data, '\n')
			}
			data = append(data, value...)
		}
	}
	if !over.Load() {
		s.mu.Lock()
		s.rep.Dropped++
		s.mu.Unlock()
	}
}

// event counts one totals event. The first on a stream is the state at
// connect, not news travelling: it is counted, not timed.
func (s *streamer) event(data []byte, at time.Time, first bool, sawChange *bool) {
	var t struct {
		UpdatedAt time.Time `json:"updated_at"`
	}
	ok := json.Unmarshal(data, &t) == nil && !t.UpdatedAt.IsZero()
	s.mu.Lock()
	defer s.mu.Unlock()
	s.rep.Events++
	if first || !ok {
		return
	}
	s.rep.Changes++
	if !*sawChange {
		*sawChange = true
		s.rep.SawChange++
	}
	s.del.Record(at.Sub(t.UpdatedAt))
}
