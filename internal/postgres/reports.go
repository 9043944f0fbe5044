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
	return collectDonations(s.pool.Query(ctx, `SELECT `+donationCols+` FROM donations
		WHERE campaign_id = $1 AND status = 'succeeded' AND refunded = 0 AND disputed = 0
			AND declaration->>'scheme' = $2
		ORDER BY created_at, seq`, campaignID, floodgate.SchemeUKGiftAid))
}

// DonorTotals implements floodgate.Reports in one scan of the period's
// succeeded gifts, grouped by floodgate.DonorSums. Rows are read one at a
// time into one reused variable.
func (s *Store) DonorTotals(ctx context.Context, currency string, from, to time.Time) ([]floodgate.DonorTotal, error) {
	rows, err := s.pool.Query(ctx, `SELECT seq, email, name, amount, refunded, disputed, created_at, declaration
		FROM donations WHERE status = 'succeeded' AND currency = $1 AND created_at >= $2 AND created_at < $3`,
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
