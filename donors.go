package floodgate

import (
	"cmp"
	"encoding/json"
	"fmt"
	"slices"
	"time"
)

// DonorGift is one succeeded gift as a store reads it for DonorTotals.
type DonorGift struct {
	// Seq is the store's arrival order: gifts of one accept batch share a
	// creation time, and Seq orders them.
	Seq                        int64
	Created                    time.Time
	Email, Name                string
	Amount, Refunded, Disputed int64
	// Declaration is the declaration's JSON, nil when the gift had none.
	// DonorSums may keep it, so the caller must not reuse the slice.
	Declaration []byte
}

// after reports whether g was created after the gift at (created, seq).
func (g *DonorGift) after(created time.Time, seq int64) bool {
	return g.Created.After(created) || g.Created.Equal(created) && g.Seq > seq
}

// DonorSums groups succeeded gifts into DonorTotals, one per donor. Every
// store groups in Go rather than in SQL so that there is one definition of
// a donor, NormalizeEmail: SQL's lower() folds ASCII only on SQLite and
// depends on the database's locale on PostgreSQL, and trim() strips spaces
// only, so two spellings of one address could count as two donors, each
// under a claim's threshold. Memory grows with the number of donors, as
// the result does anyway. The zero value is ready to use.
type DonorSums struct {
	donors map[string]*donorSum
}

// Add counts one gift towards its donor.
func (s *DonorSums) Add(g *DonorGift) {
	if s.donors == nil {
		s.donors = map[string]*donorSum{}
	}
	key := NormalizeEmail(g.Email)
	d := s.donors[key]
	if d == nil {
		d = &donorSum{email: key}
		s.donors[key] = d
	}
	d.add(g)
}

// Totals returns every donor's total in order of email, decoding only the
// one declaration each total carries.
func (s *DonorSums) Totals() ([]DonorTotal, error) {
	out := make([]DonorTotal, 0, len(s.donors))
	for _, d := range s.donors {
		t, err := d.total()
		if err != nil {
			return nil, err
		}
		out = append(out, t)
	}
	slices.SortFunc(out, func(a, b DonorTotal) int { return cmp.Compare(a.Email, b.Email) })
	return out, nil
}

// donorSum accumulates one donor's gifts. It keeps the latest name and the
// latest declaration's JSON, each with the position of its gift.
type donorSum struct {
	email                  string
	count, amount          int64
	first, last            time.Time
	name                   string
	decl                   []byte
	nameAt, declAt         time.Time
	nameSeq, declSeq       int64
	hasName, hasDecl, some bool
}

func (d *donorSum) add(g *DonorGift) {
	d.count++
	// A gift brings in its amount less what was refunded and disputed,
	// never less than nothing (Reverse's rule).
	d.amount += g.Amount - min(g.Amount, g.Refunded+g.Disputed)
	if !d.some || g.Created.Before(d.first) {
		d.first = g.Created
	}
	if !d.some || g.Created.After(d.last) {
		d.last = g.Created
	}
	d.some = true
	if g.Name != "" && (!d.hasName || g.after(d.nameAt, d.nameSeq)) {
		d.name, d.nameAt, d.nameSeq, d.hasName = g.Name, g.Created, g.Seq, true
	}
	if g.Declaration != nil && (!d.hasDecl || g.after(d.declAt, d.declSeq)) {
		d.decl, d.declAt, d.declSeq, d.hasDecl = g.Declaration, g.Created, g.Seq, true
	}
}

func (d *donorSum) total() (DonorTotal, error) {
	t := DonorTotal{Email: d.email, Name: d.name, Count: d.count, Amount: d.amount, First: d.first, Last: d.last}
	if d.hasDecl {
		t.Declaration = new(Declaration)
		if err := json.Unmarshal(d.decl, t.Declaration); err != nil {
			return t, fmt.Errorf("declaration of %s: %w", d.email, err)
		}
	}
	return t, nil
}
