package sqlite

import (
	"context"
	"database/sql"
	"time"

	"github.com/floodgate/floodgate"
)

var _ floodgate.Reports = (*Store)(nil)

// GiftAidDonations implements floodgate.Reports. The campaign is looked up
// first so that an unknown id is ENOTFOUND rather than an empty claim.
// Campaigns are never deleted, so the two reads need no transaction.
//
// There is no index on campaign_id (the accept path keeps its key index in
// memory), so this reads the whole donations table once: seconds for a
// million rows, which an export run once per claim can afford.
func (s *Store) GiftAidDonations(ctx context.Context, campaignID string) ([]*floodgate.Donation, error) {
	if _, err := s.Campaign(ctx, campaignID); err != nil {
		return nil, err
	}
	return queryAll(ctx, s.r, scanDonation, `SELECT `+donationCols+donationFrom+`
		WHERE d.campaign_id = ? AND o.status = 'succeeded' AND o.refunded = 0 AND o.disputed = 0
			AND d.declaration IS NOT NULL AND json_extract(d.declaration, '$.scheme') = ?
		ORDER BY d.created_at, d.seq`, campaignID, floodgate.SchemeUKGiftAid)
}

// DonorTotals implements floodgate.Reports in one scan of the period's
// succeeded gifts, grouped by floodgate.DonorSums.
func (s *Store) DonorTotals(ctx context.Context, currency string, from, to time.Time) ([]floodgate.DonorTotal, error) {
	rows, err := s.r.QueryContext(ctx, `SELECT d.seq, d.email, d.name, d.amount, o.refunded, o.disputed, d.created_at, d.declaration
		`+donationFrom+` WHERE o.status = 'succeeded' AND d.currency = ? AND d.created_at >= ? AND d.created_at < ?`,
		currency, nanos(from), nanos(to))
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var (
		sums    floodgate.DonorSums
		g       floodgate.DonorGift
		created int64
		decl    sql.NullString
	)
	for rows.Next() {
		if err := rows.Scan(&g.Seq, &g.Email, &g.Name, &g.Amount, &g.Refunded, &g.Disputed, &created, &decl); err != nil {
			return nil, err
		}
		g.Created, g.Declaration = fromNanos(created), nil
		if decl.Valid {
			g.Declaration = []byte(decl.String)
		}
		sums.Add(&g)
	}
	if err := rows.Err(); err != nil {
		return nil, err
	}
	return sums.Totals()
}
