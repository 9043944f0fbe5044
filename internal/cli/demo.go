package cli

import (
	"context"
	"time"

	"github.com/floodgate/floodgate"
)

// createDemo creates the demo campaign unless it exists.
func createDemo(ctx context.Context, store floodgate.Campaigns, now time.Time) error {
	c := &floodgate.Campaign{
		ID: "demo", Name: "Demo appeal", Currency: "eur", Goal: 1_000_000,
		MinAmount: 500, MaxAmount: 1_000_000,
		SuggestedAmounts: []int64{1000, 2500, 5000, 10000},
		TaxSchemes:       []string{floodgate.SchemeIE, floodgate.SchemeUKGiftAid},
		CreatedAt:        now, UpdatedAt: now,
	}
	c.SetDefaults(now)
	if err := c.ValidateNew(); err != nil {
		return err
	}
	err := store.CreateCampaign(ctx, c)
	if floodgate.ErrorCode(err) == floodgate.ECONFLICT {
		return nil
	}
	return err
}
