package sqlite

import (
	"context"
	"crypto/sha256"
	"database/sql"
	"encoding/binary"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/floodgate/floodgate"
)

// chunk is how many rows one multi-row INSERT carries: a batch of 512
// donations is 16 statements, not 512.
const chunk = 32

// acceptState is the accept path's in-memory part: the next line number
// and the idempotency index. Both are rebuilt from the file at Open and
// changed only after a commit succeeds, so they always match what is on
// disk; the process lock guarantees no other writer.
type acceptState struct {
	mu      sync.Mutex
	nextSeq int64
	// keys maps key_hash to the seq of the donation holding it; more holds
	// further seqs for the (astronomically rare) hashes two keys share.
	keys map[int64]int64
	more map[int64][]int64

	insChunk, insOne *sql.Stmt
	insOrders        *sql.Stmt
}

const insertCols = `(seq, id, campaign_id, idempotency_key, key_hash, request_hash, amount, currency, email, name,
	payment_method, anonymous, message, declaration, client_addr, created_at)`

const insertRow = `(?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`

// insertArgs is how many arguments insertRow takes.
const insertArgs = 16

// insertOrders makes the payment orders of the donations with seqs from ?2
// to ?3, just inserted, as floodgate.NewOrder describes them, in request
// format ?1: one statement for the batch, and what the order reads from
// its donation is not written twice.
const insertOrders = `INSERT INTO payment_orders (seq, kind, status, format, updated_at)
	SELECT seq, 'donation', 'accepted', ?, created_at FROM donations WHERE seq >= ? AND seq <= ?`

func rows(row string, n int) string {
	return strings.TrimSuffix(strings.Repeat(row+", ", n), ", ")
}

// openAccept prepares the accept statements and rebuilds the index.
func (s *Store) openAccept(ctx context.Context) error {
	a := &s.accept
	a.keys, a.more = map[int64]int64{}, map[int64][]int64{}
	for _, p := range []struct {
		dst   **sql.Stmt
		query string
	}{
		{&a.insChunk, `INSERT INTO donations ` + insertCols + ` VALUES ` + rows(insertRow, chunk)},
		{&a.insOne, `INSERT INTO donations ` + insertCols + ` VALUES ` + insertRow},
		{&a.insOrders, insertOrders},
	} {
		st, err := s.w.PrepareContext(ctx, p.query)
		if err != nil {
			return fmt.Errorf("prepare accept statement: %w", err)
		}
		*p.dst = st
	}
	if err := s.w.QueryRowContext(ctx, `SELECT COALESCE(MAX(seq), 0) + 1 FROM donations`).Scan(&a.nextSeq); err != nil {
		return err
	}
	r, err := s.w.QueryContext(ctx, `SELECT key_hash, seq FROM donations`)
	if err != nil {
		return err
	}
	defer r.Close()
	for r.Next() {
		var h, seq int64
		if err := r.Scan(&h, &seq); err != nil {
			return err
		}
		a.add(h, seq)
	}
	return r.Err()
}

func (a *acceptState) add(h, seq int64) {
	if _, taken := a.keys[h]; taken {
		a.more[h] = append(a.more[h], seq)
		return
	}
	a.keys[h] = seq
}

// candidates lists the seqs whose key may be the one hashed to h.
func (a *acceptState) candidates(h int64) []int64 {
	seq, ok := a.keys[h]
	if !ok {
		return nil
	}
	return append([]int64{seq}, a.more[h]...)
}

// hashKey is keyHash; tests replace it to force collisions.
var hashKey = keyHash

// keyHash is the first 8 bytes of SHA-256(campaign NUL key): a stored,
// stable fingerprint of an idempotency key in its campaign. Equal hashes
// are always confirmed against the row's campaign and key.
func keyHash(campaign, key string) int64 {
	h := sha256.New()
	h.Write([]byte(campaign))
	h.Write([]byte{0})
	h.Write([]byte(key))
	var sum [sha256.Size]byte
	return int64(binary.BigEndian.Uint64(h.Sum(sum[:0])))
}

// Accept implements floodgate.Store: one BEGIN IMMEDIATE ... COMMIT for
// the whole batch, whatever kinds it holds, so the batch costs one fsync.
// The in-memory state of each kind learns of its new rows only once they
// are durable.
func (s *Store) Accept(ctx context.Context, items []floodgate.Intake) ([]floodgate.AcceptResult, error) {
	a := &s.accept
	a.mu.Lock()
	defer a.mu.Unlock()
	now := s.clock.Now()
	tx, err := s.w.BeginTx(ctx, nil)
	if err != nil {
		return nil, err
	}
	defer func() { _ = tx.Rollback() }()

	results := make([]floodgate.AcceptResult, len(items))
	donations := floodgate.PartOf[*floodgate.Donation](items)
	added, err := s.acceptDonations(ctx, tx, donations.Items, now)
	if err != nil {
		return nil, err
	}
	donations.Answer(results, added.results)
	floodgate.RefuseUnanswered(items, results)
	if err := tx.Commit(); err != nil {
		return nil, err
	}
	added.learn(a)
	return results, nil
}

// acceptedDonations is what a batch's donations did: one result per
// donation, and the rows the idempotency index is to learn of once they
// are durable.
type acceptedDonations struct {
	results []floodgate.AcceptResult
	fresh   []freshDonation
	next    int64
}

type freshDonation struct {
	hash int64
	d    *floodgate.Donation
}

// learn tells the accept path's in-memory part of the donations now
// durable: the next line number and the keys they hold.
func (ad acceptedDonations) learn(a *acceptState) {
	if len(ad.fresh) == 0 {
		return
	}
	a.nextSeq = ad.next
	for _, f := range ad.fresh {
		a.add(f.hash, f.d.Seq)
	}
}

// acceptDonations stores a batch's donations in tx with multi-row inserts
// of the donations, one statement that makes their payment orders, and no
// B-tree index over random keys, and returns one result per donation: a
// new donation, a replay, or a refusal of that donation alone. The first
// line of an order's history, its acceptance, is not written: History
// reads it from the donation (see historyOf).
func (s *Store) acceptDonations(ctx context.Context, tx *sql.Tx, ds []*floodgate.Donation, now time.Time) (acceptedDonations, error) {
	a := &s.accept
	out := acceptedDonations{results: make([]floodgate.AcceptResult, len(ds)), next: a.nextSeq}
	if len(ds) == 0 {
		return out, nil
	}
	// Campaigns are checked once per batch, not once per donation.
	known := map[string]bool{}
	for _, d := range ds {
		if _, seen := known[d.CampaignID]; seen {
			continue
		}
		var one int
		err := tx.QueryRowContext(ctx, `SELECT 1 FROM campaigns WHERE id = ?`, d.CampaignID).Scan(&one)
		if err != nil && !errors.Is(err, sql.ErrNoRows) {
			return out, err
		}
		known[d.CampaignID] = err == nil
	}

	results := out.results
	batch := map[int64][]*floodgate.Donation{} // this batch's new donations by key hash
	deltas := map[string]floodgate.TotalsDelta{}
	for i, d := range ds {
		if !known[d.CampaignID] {
			results[i].Err = floodgate.Errorf(floodgate.ENOTFOUND, "Campaign %q not found.", d.CampaignID)
			continue
		}
		h := hashKey(d.CampaignID, d.IdempotencyKey)
		prev, err := s.findKey(ctx, tx, h, d, batch[h])
		if err != nil {
			return out, err
		}
		if prev != nil {
			results[i] = floodgate.Replay(prev, d)
			continue
		}
		nd := *d
		if nd.ID == "" {
			nd.ID = floodgate.NewID(floodgate.DonationIDPrefix)
		}
		nd.Seq = out.next
		out.next++
		nd.Accepted(now)
		out.fresh = append(out.fresh, freshDonation{h, &nd})
		batch[h] = append(batch[h], &nd)
		results[i].Intake = &nd
		delta := deltas[d.CampaignID]
		delta.Add(floodgate.Delta("", floodgate.StatusAccepted, d.Amount))
		deltas[d.CampaignID] = delta
	}

	at := nanos(now)
	insChunk, insOne := tx.StmtContext(ctx, a.insChunk), tx.StmtContext(ctx, a.insOne)
	args := make([]any, 0, chunk*insertArgs)
	for start := 0; start < len(out.fresh); start += chunk {
		part := out.fresh[start:min(start+chunk, len(out.fresh))]
		args = args[:0]
		for _, f := range part {
			d := f.d
			args = append(args, d.Seq, d.ID, d.CampaignID, d.IdempotencyKey, f.hash, d.RequestHash, d.Amount, d.Currency,
				d.Email, d.Name, d.PaymentMethod, d.Anonymous, d.Message, declarationText(d.Declaration), d.ClientAddr, at)
		}
		if len(part) == chunk {
			if _, err := insChunk.ExecContext(ctx, args...); err != nil {
				return out, err
			}
			continue
		}
		for j := range part {
			if _, err := insOne.ExecContext(ctx, args[j*insertArgs:(j+1)*insertArgs]...); err != nil {
				return out, err
			}
		}
	}
	if len(out.fresh) > 0 {
		// The batch's seqs run without a gap: out.next counted them out.
		first, last := out.fresh[0].d.Seq, out.fresh[len(out.fresh)-1].d.Seq
		if _, err := tx.StmtContext(ctx, a.insOrders).ExecContext(ctx, int(floodgate.CurrentFormat), first, last); err != nil {
			return out, err
		}
	}
	return out, s.applyTotals(ctx, tx, deltas, now)
}

// findKey returns the donation already holding d's idempotency key in its
// campaign: one of this batch's new donations, or one in the file.
func (s *Store) findKey(ctx context.Context, tx *sql.Tx, h int64, d *floodgate.Donation, inBatch []*floodgate.Donation) (*floodgate.Donation, error) {
	for _, b := range inBatch {
		if b.CampaignID == d.CampaignID && b.IdempotencyKey == d.IdempotencyKey {
			return b, nil
		}
	}
	for _, seq := range s.accept.candidates(h) {
		prev, err := scanDonation(tx.QueryRowContext(ctx, `SELECT `+donationCols+donationFrom+` WHERE d.seq = ?`, seq))
		if err != nil {
			return nil, fmt.Errorf("idempotency index names seq %d: %w", seq, err)
		}
		if prev.CampaignID == d.CampaignID && prev.IdempotencyKey == d.IdempotencyKey {
			return prev, nil
		}
	}
	return nil, nil
}

// DonationByKey implements floodgate.Store through the in-memory index.
func (s *Store) DonationByKey(ctx context.Context, campaignID, key string) (*floodgate.Donation, error) {
	a := &s.accept
	a.mu.Lock()
	seqs := a.candidates(hashKey(campaignID, key))
	a.mu.Unlock()
	for _, seq := range seqs {
		d, err := scanDonation(s.r.QueryRowContext(ctx, `SELECT `+donationCols+donationFrom+` WHERE d.seq = ?`, seq))
		if err != nil {
			return nil, err
		}
		if d.CampaignID == campaignID && d.IdempotencyKey == key {
			return d, nil
		}
	}
	return nil, floodgate.Errorf(floodgate.ENOTFOUND, "No donation holds this Idempotency-Key.")
}
