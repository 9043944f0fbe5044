package sandbox

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
)

// Journal bounds: a line longer than maxRecord is corrupt; the journal is
// rewritten as a snapshot once it holds more than twice the records the
// live state needs (and at least minCompact), so its size stays
// proportional to the state. A damaged journal is repaired with a warning
// for each damaged stretch, the first maxDamageWarnings of them.
const (
	maxRecord         = 8 << 20
	minCompact        = 10_000
	maxDamageWarnings = 10
)

// record is one line of the journal: the full new state of one object.
// Replaying the lines in order, last write wins, rebuilds the state.
//
// The records of one append form a group. When there is more than one, each
// carries its place I (from 1) in the group of N, and a replay applies the
// group only once its last record is read. One request's change (say a
// PaymentIntent and the idempotency key that answered it) thus survives a
// crash or a failed write whole or not at all: the PaymentIntent without
// its key would let a retry of that key charge a second time. A single
// record carries neither field, so journals written before groups existed
// read as they always did.
//
// Events are journaled with the change that emitted them ("evt"), and the
// webhook deliveries that succeeded ("dlv", the event's id) with the next
// change after them, so that a restarted sandbox lists the events it
// emitted, each as delivered as the journal knew.
type record struct {
	Kind string         `json:"k"` // pi, pm, idem, evt or dlv
	I    int            `json:"i,omitempty"`
	N    int            `json:"n,omitempty"`
	PI   *paymentIntent `json:"pi,omitempty"`
	PM   *paymentMethod `json:"pm,omitempty"`
	Idem *idemEntry     `json:"idem,omitempty"`
	Evt  *loggedEvent   `json:"evt,omitempty"`
	Dlv  string         `json:"dlv,omitempty"`
}

// recordStart begins every record: encoding/json writes the kind first.
// The replay looks for it to find whole records behind damaged bytes.
var recordStart = []byte(`{"k":`)

// valid reports whether rec can be applied and later served: a known kind
// carrying its object, a sane place in its group, and the references that
// rendering the object follows. Anything else is damage.
func (rec *record) valid() bool {
	if (rec.I != 0 || rec.N != 0) && (rec.N < 2 || rec.I < 1 || rec.I > rec.N) {
		return false
	}
	switch rec.Kind {
	case "pi":
		return rec.PI != nil && rec.PI.valid()
	case "pm":
		return rec.PM != nil && rec.PM.ID != "" && rec.PM.card() != nil
	case "idem":
		// A stored answer is replayed as it is: its status must be one
		// net/http can write.
		e := rec.Idem
		return e != nil && e.Key != "" && e.Status >= 100 && e.Status <= 999
	case "evt":
		return rec.Evt != nil && rec.Evt.valid()
	case "dlv":
		return rec.Dlv != ""
	}
	return false
}

func (pi *paymentIntent) valid() bool {
	if pi.ID == "" {
		return false
	}
	if pi.Charge == nil {
		return len(pi.Refunds) == 0 && pi.Dispute == nil
	}
	if cardsByName[pi.Charge.Card] == nil {
		return false
	}
	for _, rf := range pi.Refunds {
		if rf == nil {
			return false
		}
	}
	return true
}

// journalFile is the journal's open file; tests put a file that fails on
// command in its place.
type journalFile interface {
	io.ReadWriteSeeker
	Truncate(size int64) error
	Sync() error
	Close() error
}

// journal is an append-only JSON-lines file, fsynced on every append.
type journal struct {
	path    string
	log     *slog.Logger
	f       journalFile
	size    int64 // where the whole appends end and the next one starts
	records int
	// dirty is set when a failed append could not be cut off: the file
	// may hold its bytes past size. No append is made until they are cut.
	dirty bool
}

// openJournal replays path into s (creating it if missing) and opens it for
// appending. Damage never stops the start: what cannot be read is dropped
// with a warning (see replay), and a journal damaged anywhere but at its
// end is rewritten clean, its damaged form kept beside it as
// path.damaged.
func openJournal(path string, s *Server) (*journal, error) {
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, fmt.Errorf("opening journal: %w", err)
	}
	// The journal holds client secrets: it is the owner's alone, also
	// when an older version or a person created it more open.
	if fi, err := f.Stat(); err == nil && fi.Mode().Perm()&0o077 != 0 {
		s.log.Warn("sandbox journal is readable by others; restricting it to its owner", "path", path, "mode", fi.Mode().Perm().String())
		if err := f.Chmod(0o600); err != nil {
			f.Close()
			return nil, fmt.Errorf("restricting journal: %w", err)
		}
	}
	// The file may have just been created: its name must be durable
	// before the first acknowledged append relies on it.
	syncDir(path)
	j := &journal{path: path, log: s.log, f: f}
	rep, err := j.replay(s)
	if err != nil {
		f.Close()
		return nil, err
	}
	s.sortOrder()
	if rep.damaged > 0 {
		s.log.Warn("sandbox journal was damaged; kept every whole record found", "path", path,
			"damaged_stretches", rep.damaged, "dropped_bytes", rep.droppedBytes,
			"all_listed", rep.damaged <= maxDamageWarnings, "rewritten", rep.rewrite)
	}
	rewritten := false
	if rep.rewrite {
		// The damaged file is linked, not copied: it must not be cut
		// before the rewrite replaces it.
		keepDamaged(path, s.log)
		if err := j.compact(s.snapshot()); err != nil {
			// Cut as below, every append still starts on a line of
			// its own, so the journal stays readable and the next
			// start repairs it again.
			s.log.Error("sandbox journal could not be rewritten clean; it stays as repaired in memory", "path", path, "err", err)
		} else {
			rewritten = true
		}
	}
	if !rewritten {
		j.size = rep.end
		if err := j.cut(); err != nil {
			// As after a failed append: the start goes on, reads are
			// served, and writes are refused until the cut succeeds.
			j.dirty = true
			s.log.Error("SANDBOX JOURNAL DAMAGED: its damaged end could not be cut off; every write is refused until it can be",
				"path", path, "offset", rep.end, "err", err)
		}
	}
	s.log.Info("sandbox journal replayed", "path", path, "records", j.records,
		"payment_intents", len(s.pis), "payment_methods", len(s.pms), "idempotency_keys", len(s.idem.m), "events", s.events.len())
	return j, nil
}

// keepDamaged links the damaged journal as path.damaged before it is
// rewritten, so that nothing the repair dropped is gone for good: a
// person can still read it. A hard link costs no space on a full disk.
func keepDamaged(path string, log *slog.Logger) {
	kept := path + ".damaged"
	if err := os.Remove(kept); err != nil && !errors.Is(err, fs.ErrNotExist) {
		log.Warn("sandbox journal: could not replace the earlier damaged copy", "path", kept, "err", err)
		return
	}
	if err := os.Link(path, kept); err != nil {
		log.Warn("sandbox journal: could not keep the damaged journal", "path", kept, "err", err)
		return
	}
	syncDir(path)
	log.Warn("sandbox journal: the damaged journal is kept for inspection", "path", kept)
}

// replayed is what a replay found.
type replayed struct {
	// end is where the whole records end: the file is cut there and
	// appends continue from there.
	end int64
	// rewrite is set when damage lies before end, where cutting the file
	// cannot remove it.
	rewrite      bool
	damaged      int
	droppedBytes int64
}

// replay applies every whole record and drops the rest, each dropped
// stretch with a warning naming its offset and size.
//
// What is dropped, and why no acknowledged change is lost by it: an append
// is acknowledged only once all its bytes, the final newline included, are
// written and fsynced. So
//   - a last line without its newline is an append that never finished:
//     dropped (a crash mid-write);
//   - a line that does not parse but holds a later record start whose rest
//     of the line is one valid record is torn bytes followed by a later,
//     whole append (a write cut short by a full disk, then appends that
//     succeeded): the torn bytes are dropped and the record kept, since
//     dropping it would lose an acknowledged change. A record start inside
//     the torn bytes never qualifies, because torn bytes never close the
//     objects they open; nor does a nested object (metadata with a key
//     "k"), which its enclosing record's closing brace follows;
//   - a group cut short (some of its records, then anything but the next
//     one) is an append that never finished: all of it is dropped, since
//     half a change is worse than none (see record);
//   - a line with no valid record at all is dropped.
//
// The one case that does lose an acknowledged change is damage to bytes
// that were once whole (a disk's bit rot, a hand edit): their record, and
// the rest of its group, are unreadable whatever is done. Refusing to
// start would not bring them back, only stop floodgate; the damaged
// journal is kept as path.damaged for a person to read.
func (j *journal) replay(s *Server) (replayed, error) {
	r := bufio.NewReaderSize(j.f, 64<<10)
	var (
		rep replayed
		off int64
		// group is an unfinished group of records, from the line at
		// groupLine, groupBytes long.
		group      []record
		groupLine  int64
		groupAt    int64
		groupBytes int64
	)
	drop := func(at, n int64, why string) {
		rep.damaged++
		rep.droppedBytes += n
		if rep.damaged <= maxDamageWarnings {
			s.log.Warn("sandbox journal: dropping damaged bytes", "path", j.path, "offset", at, "bytes", n, "why", why)
		}
	}
	dropGroup := func(why string) {
		if len(group) > 0 {
			drop(groupAt, groupBytes, fmt.Sprintf("%d of the %d records of one change, %s", len(group), group[0].N, why))
			group = group[:0]
		}
	}
	for {
		line, size, err := readLine(r)
		switch {
		case errors.Is(err, io.EOF):
			rep.end = off
			if len(group) > 0 {
				dropGroup("the rest never written")
				rep.end = groupLine
			}
			if size > 0 {
				drop(off, size, "the last record is torn (a write that never finished)")
			}
			return rep, nil
		case errors.Is(err, errLineTooLong):
			dropGroup("cut off by an overlong line")
			drop(off, size, fmt.Sprintf("a line longer than %d bytes", maxRecord))
			rep.rewrite = true
			off += size
			continue
		case err != nil:
			return rep, fmt.Errorf("reading journal: %w", err)
		}
		rec, skip, ok := parseLine(line)
		if !ok {
			drop(off, size, "no record in the line")
			rep.rewrite = true
			off += size
			continue
		}
		if skip > 0 {
			drop(off, int64(skip), "a torn record followed by a whole one")
			rep.rewrite = true
		}
		switch {
		case rec.N == 0:
			if len(group) > 0 {
				dropGroup("cut off by a later change")
				rep.rewrite = true
			}
			s.apply(rec)
			j.records++
		case rec.I == 1:
			if len(group) > 0 {
				dropGroup("cut off by a later change")
				rep.rewrite = true
			}
			group = append(group, rec)
			groupLine, groupAt, groupBytes = off, off+int64(skip), size-int64(skip)
		case len(group) > 0 && rec.N == group[0].N && rec.I == len(group)+1:
			group = append(group, rec)
			groupBytes += size - int64(skip)
		default:
			dropGroup("cut off by a later change")
			drop(off+int64(skip), size-int64(skip), "a record of a change whose beginning is missing")
			rep.rewrite = true
		}
		if len(group) > 0 && len(group) == group[0].N {
			for _, rec := range group {
				s.apply(rec)
			}
			j.records += len(group)
			group = group[:0]
		}
		off += size
	}
}

var errLineTooLong = errors.New("journal line too long")

// readLine reads one line, newline included, and the bytes it took. At the
// end of the file it returns what is left (a line without its newline, or
// nothing) with io.EOF. A line longer than maxRecord is read past and
// returned as nil with errLineTooLong.
func readLine(r *bufio.Reader) ([]byte, int64, error) {
	line, err := r.ReadSlice('\n')
	size := int64(len(line))
	if !errors.Is(err, bufio.ErrBufferFull) {
		return line, size, err
	}
	buf := append([]byte(nil), line...)
	for errors.Is(err, bufio.ErrBufferFull) {
		line, err = r.ReadSlice('\n')
		size += int64(len(line))
		if buf != nil && len(buf)+len(line) <= maxRecord+1 {
			buf = append(buf, line...)
		} else {
			buf = nil
		}
	}
	if buf == nil && err == nil {
		err = errLineTooLong
	}
	return buf, size, err
}

// parseLine finds the record of one line: the whole line, or else the
// first later record start from which the rest of the line is one valid
// record. skip is how many bytes before it were dropped.
func parseLine(line []byte) (rec record, skip int, ok bool) {
	for at := 0; ; {
		if rec, ok := decodeRecord(line[at:]); ok {
			return rec, at, true
		}
		i := bytes.Index(line[at+1:], recordStart)
		if i < 0 {
			return record{}, len(line), false
		}
		at += 1 + i
	}
}

func decodeRecord(b []byte) (record, bool) {
	var rec record
	if len(b) == 0 || json.Unmarshal(b, &rec) != nil {
		return record{}, false
	}
	return rec, rec.valid()
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
	case "evt":
		if rec.Evt != nil {
			s.events.add(rec.Evt)
			s.eventSeq = max(s.eventSeq, rec.Evt.Seq)
		}
	case "dlv":
		if ev := s.events.byID[rec.Dlv]; ev != nil {
			ev.Delivered = true
		}
	}
}

// sortOrder restores the list order after a replay.
func (s *Server) sortOrder() {
	slices.SortFunc(s.order, comparePI)
}

// append writes recs as one write and fsyncs. When the write fails, stores
// only part of the bytes (a full disk), or the fsync fails, the file is cut
// back to where the append began, so the journal holds nothing of recs and
// the next append starts on a clean line; the error is returned, and the
// caller must neither answer recs' change as done nor keep it in memory.
//
// If even that cut fails, the journal is marked dirty and says so loudly:
// every later append first retries the cut and is refused while it fails.
// The file may then end in part or all of the failed group. Part of a group
// is dropped by the next start (see replay); a whole group may survive and
// bring back a change that was answered with a 500, which Stripe's clients,
// floodgate's among them, treat as an unknown outcome and settle by
// retrying the same key (which then replays the change) or by a lookup.
func (j *journal) append(recs []record) error {
	if j.dirty {
		if err := j.cut(); err != nil {
			return fmt.Errorf("journal %s still ends in a failed write that cannot be cut off: %w", j.path, err)
		}
		j.dirty = false
		j.log.Warn("sandbox journal: the failed write is cut off at last; writes go on", "path", j.path, "offset", j.size)
	}
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	for i, r := range recs {
		if len(recs) > 1 {
			r.I, r.N = i+1, len(recs)
		}
		if err := enc.Encode(r); err != nil {
			return fmt.Errorf("encoding journal record: %w", err)
		}
	}
	n, err := j.f.Write(buf.Bytes())
	switch {
	case err != nil:
		err = fmt.Errorf("writing journal (%d of %d bytes written): %w", n, buf.Len(), err)
	case n < buf.Len():
		err = fmt.Errorf("writing journal (%d of %d bytes written): %w", n, buf.Len(), io.ErrShortWrite)
	default:
		if err = j.f.Sync(); err != nil {
			err = fmt.Errorf("syncing journal: %w", err)
		}
	}
	if err != nil {
		if cerr := j.cut(); cerr != nil {
			j.dirty = true
			j.log.Error("SANDBOX JOURNAL DAMAGED: a failed write could not be cut off; every write is refused until it can be, and the next start drops what remains of it",
				"path", j.path, "offset", j.size, "write_err", err, "cut_err", cerr)
		}
		return err
	}
	j.size += int64(buf.Len())
	j.records += len(recs)
	return nil
}

// cut makes the file end where the last whole append ended, durably.
func (j *journal) cut() error {
	if err := j.f.Truncate(j.size); err != nil {
		return fmt.Errorf("truncating journal: %w", err)
	}
	if _, err := j.f.Seek(j.size, io.SeekStart); err != nil {
		return fmt.Errorf("seeking journal: %w", err)
	}
	if err := j.f.Sync(); err != nil {
		return fmt.Errorf("syncing journal: %w", err)
	}
	return nil
}

func (j *journal) needsCompaction(live int) bool {
	return j.records > minCompact && j.records > 2*live
}

// compact replaces the journal with recs (the live state): written to a
// temporary file, fsynced, renamed over the journal, directory fsynced. On
// failure the journal is left as it was and the temporary file removed.
func (j *journal) compact(recs []record) error {
	tmp := j.path + ".tmp"
	// A leftover of an interrupted compaction is removed first, so that
	// the file is created here, the owner's alone, whatever the
	// leftover's mode.
	if err := os.Remove(tmp); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("compacting journal: %w", err)
	}
	f, err := os.OpenFile(tmp, os.O_RDWR|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return fmt.Errorf("compacting journal: %w", err)
	}
	fail := func(err error) error {
		f.Close()
		os.Remove(tmp)
		return fmt.Errorf("compacting journal: %w", err)
	}
	w := bufio.NewWriter(f)
	enc := json.NewEncoder(w)
	for _, r := range recs {
		if err := enc.Encode(r); err != nil {
			return fail(err)
		}
	}
	if err := w.Flush(); err != nil {
		return fail(err)
	}
	if err := f.Sync(); err != nil {
		return fail(err)
	}
	size, err := f.Seek(0, io.SeekCurrent)
	if err != nil {
		return fail(err)
	}
	if err := os.Rename(tmp, j.path); err != nil {
		return fail(err)
	}
	syncDir(j.path)
	old := j.f
	j.f, j.size, j.records, j.dirty = f, size, len(recs), false
	return old.Close()
}

// syncDir fsyncs the directory of path, making a file's creation or
// renaming durable. It is best effort: not every system can.
func syncDir(path string) {
	if d, err := os.Open(filepath.Dir(path)); err == nil {
		_ = d.Sync()
		d.Close()
	}
}

func (j *journal) close() error {
	return j.f.Close()
}

// live counts the records that describe the live state.
func (s *Server) live() int {
	return len(s.pis) + len(s.pms) + len(s.idem.m) + s.events.len()
}

// snapshot lists the live state as journal records.
func (s *Server) snapshot() []record {
	recs := make([]record, 0, s.live())
	for _, pi := range s.order {
		recs = append(recs, record{Kind: "pi", PI: pi})
	}
	ids := make([]string, 0, len(s.pms))
	for id := range s.pms {
		ids = append(ids, id)
	}
	slices.Sort(ids)
	for _, id := range ids {
		recs = append(recs, record{Kind: "pm", PM: s.pms[id]})
	}
	for _, e := range s.idem.live() {
		recs = append(recs, record{Kind: "idem", Idem: e})
	}
	for _, ev := range s.events.live() {
		recs = append(recs, record{Kind: "evt", Evt: ev})
	}
	return recs
}
