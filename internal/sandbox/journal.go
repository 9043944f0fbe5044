package sandbox

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
)

// Journal bounds: a line longer than maxRecord is corrupt; the journal is
// rewritten as a snapshot once it holds more than twice the records the
// live state needs (and at least minCompact), so its size stays
// proportional to the state.
const (
	maxRecord  = 8 << 20
	minCompact = 10_000
)

// record is one line of the journal: the full new state of one object.
// Replaying the lines in order, last write wins, rebuilds the state.
type record struct {
	Kind string         `json:"k"` // pi, pm or idem
	PI   *paymentIntent `json:"pi,omitempty"`
	PM   *paymentMethod `json:"pm,omitempty"`
	Idem *idemEntry     `json:"idem,omitempty"`
}

// journal is an append-only JSON-lines file, fsynced on every append.
type journal struct {
	path    string
	f       *os.File
	records int
}

// openJournal replays path into s (creating it if missing) and opens it for
// appending. A torn last line, left by a crash mid-write, is cut off.
func openJournal(path string, s *Server) (*journal, error) {
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, fmt.Errorf("opening journal: %w", err)
	}
	j := &journal{path: path, f: f}
	good, err := j.replay(s)
	if err != nil {
		f.Close()
		return nil, err
	}
	s.sortOrder()
	if err := f.Truncate(good); err != nil {
		f.Close()
		return nil, fmt.Errorf("truncating journal: %w", err)
	}
	if _, err := f.Seek(good, io.SeekStart); err != nil {
		f.Close()
		return nil, fmt.Errorf("seeking journal: %w", err)
	}
	s.log.Info("sandbox journal replayed", "path", path, "records", j.records,
		"payment_intents", len(s.pis), "payment_methods", len(s.pms), "idempotency_keys", len(s.idem.m))
	return j, nil
}

// replay applies every complete line and returns the offset after the last
// one.
func (j *journal) replay(s *Server) (int64, error) {
	r := bufio.NewReaderSize(j.f, 64<<10)
	var off int64
	for {
		line, err := r.ReadSlice('\n')
		if errors.Is(err, bufio.ErrBufferFull) {
			// A long line: gather it whole, within maxRecord.
			buf := append([]byte(nil), line...)
			for errors.Is(err, bufio.ErrBufferFull) && len(buf) <= maxRecord {
				line, err = r.ReadSlice('\n')
				buf = append(buf, line...)
			}
			line = buf
		}
		if err != nil {
			if errors.Is(err, io.EOF) {
				if len(bytes.TrimSpace(line)) > 0 {
					s.log.Warn("sandbox journal ends with a torn record; dropping it", "path", j.path, "offset", off)
				}
				return off, nil
			}
			if errors.Is(err, bufio.ErrBufferFull) {
				return 0, fmt.Errorf("journal %s: record at offset %d is longer than %d bytes", j.path, off, maxRecord)
			}
			return 0, fmt.Errorf("reading journal: %w", err)
		}
		var rec record
		if err := json.Unmarshal(line, &rec); err != nil {
			return 0, fmt.Errorf("journal %s: bad record at offset %d: %w", j.path, off, err)
		}
		s.apply(rec)
		j.records++
		off += int64(len(line))
	}
}

// apply puts one journaled object into the state.
func (s *Server) apply(rec record) {
	switch rec.Kind {
	case "pi":
		pi := rec.PI
		if pi == nil {
			return
		}
		if old := s.pis[pi.ID]; old != nil {
			*old = *pi
			pi = old
		} else {
			s.pis[pi.ID] = pi
			s.order = append(s.order, pi)
		}
		s.seq = max(s.seq, pi.Seq)
		if pi.Charge != nil {
			s.charges[pi.Charge.ID] = pi
		}
		for _, rf := range pi.Refunds {
			s.refunds[rf.ID] = pi
		}
	case "pm":
		if rec.PM != nil {
			s.pms[rec.PM.ID] = rec.PM
		}
	case "idem":
		if rec.Idem != nil {
			s.idem.restore(rec.Idem, s.clock.Now())
		}
	}
}

// sortOrder restores the list order after a replay.
func (s *Server) sortOrder() {
	sort.Slice(s.order, func(i, j int) bool { return before(s.order[i], s.order[j]) })
}

// append writes recs as one write and fsyncs.
func (j *journal) append(recs []record) error {
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	for _, r := range recs {
		if err := enc.Encode(r); err != nil {
			return fmt.Errorf("encoding journal record: %w", err)
		}
	}
	if _, err := j.f.Write(buf.Bytes()); err != nil {
		return fmt.Errorf("writing journal: %w", err)
	}
	if err := j.f.Sync(); err != nil {
		return fmt.Errorf("syncing journal: %w", err)
	}
	j.records += len(recs)
	return nil
}

func (j *journal) needsCompaction(live int) bool {
	return j.records > minCompact && j.records > 2*live
}

// compact replaces the journal with recs (the live state): written to a
// temporary file, fsynced, renamed over the journal, directory fsynced.
func (j *journal) compact(recs []record) error {
	tmp := j.path + ".tmp"
	f, err := os.OpenFile(tmp, os.O_RDWR|os.O_CREATE|os.O_TRUNC, 0o600)
	if err != nil {
		return err
	}
	w := bufio.NewWriter(f)
	enc := json.NewEncoder(w)
	for _, r := range recs {
		if err := enc.Encode(r); err != nil {
			f.Close()
			return err
		}
	}
	if err := w.Flush(); err != nil {
		f.Close()
		return err
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return err
	}
	if err := os.Rename(tmp, j.path); err != nil {
		f.Close()
		return err
	}
	if d, err := os.Open(filepath.Dir(j.path)); err == nil {
		_ = d.Sync()
		d.Close()
	}
	old := j.f
	j.f = f
	j.records = len(recs)
	return old.Close()
}

func (j *journal) close() error {
	return j.f.Close()
}

// snapshot lists the live state as journal records.
func (s *Server) snapshot() []record {
	recs := make([]record, 0, len(s.pis)+len(s.pms)+len(s.idem.m))
	for _, pi := range s.order {
		recs = append(recs, record{Kind: "pi", PI: pi})
	}
	ids := make([]string, 0, len(s.pms))
	for id := range s.pms {
		ids = append(ids, id)
	}
	sort.Strings(ids)
	for _, id := range ids {
		recs = append(recs, record{Kind: "pm", PM: s.pms[id]})
	}
	for _, e := range s.idem.live() {
		recs = append(recs, record{Kind: "idem", Idem: e})
	}
	return recs
}
