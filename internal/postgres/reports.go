package postgres

import (
	"context"
	"time"

	"github.com/floodgate/floodgate"
)

var _ floodgate.Reports = (*Store)(nil)

// GiftAidDonations implements floodgate.Reports. The campaign is looked up
// first so that an unknown id is ENOTFOUND rather than an empty claim.
// Campaigns are never deleted, so the two reads need no transaction. The
// donations are found through the (campaign_id, idempotency_key) index.
func (s *Store) GiftAidDonations(ctx context.Context, campaignID string) ([]*floodgate.Donation, error) {
	if _, err := s.Campaign(ctx, campaignID); err != nil {
		return nil, err
	}
	return collectDonations(s.pool.Query(ctx, `SELECT `+donationCols+donationFrom+`
		WHERE d.campaign_id = $1 AND o.status = 'succeeded' AND o.refunded = 0 AND o.disputed = 0
			AND d.declaration->>'scheme' = $2
		ORDER BY d.created_at, d.seq`, campaignID, floodgate.SchemeUKGiftAid))
}

// DonorTotals implements floodgate.Reports in one scan of the period's
// succeeded gifts, grouped by floodgate.DonorSums. Rows are read one at a
// time into one reused variable.
func (s *Store) DonorTotals(ctx context.Context, currency string, from, to time.Time) ([]floodgate.DonorTotal, error) {
	rows, err := s.pool.Query(ctx, `SELECT d.seq, d.email, d.name, d.amount, o.refunded, o.disputed, d.created_at, d.declaration
		`+donationFrom+` WHERE o.status = 'succeeded' AND d.currency = $1 AND d.created_at >= $2 AND d.created_at < $3`,
		currency, from, to)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var (
		sums floodgate.DonorSums
		g    floodgate.DonorGift
	)
	for rows.Next() {
		// pgx scans each row's JSON into a fresh slice (nil for NULL), so
		// DonorSums may keep it.
		g.Declaration = nil
		if err := rows.Scan(&g.Seq, &g.Email, &g.Name, &g.Amount, &g.Refunded, &g.Disputed, &g.Created, &g.Declaration); err != nil {
			return nil, err
		}
		sums.Add(&g)
	}
	if err := rows.Err(); err != nil {
		return nil, err
	}
	return sums.Totals()
}
