package httpapi

import (
	"testing"
	"time"

	"github.com/floodgate/floodgate"
	"github.com/floodgate/floodgate/internal/ingest"
)

// FuzzCampaignRequests: whatever the body of a campaign create or patch,
// decoding and validation return a client error or a valid campaign,
// never a panic.
func FuzzCampaignRequests(f *testing.F) {
	f.Add([]byte(`{"id": "spring", "name": "Spring", "currency": "eur", "goal": 100000, "suggested_amounts": [500, 1000], "tax_schemes": ["ie"]}`))
	f.Add([]byte(`{"name": "x", "closes_at": "now", "suggested_amounts": [1]}`))
	f.Add([]byte(`{"opens_at": "2026-12-04T20:00:00Z", "closes_at": "2026-12-04T19:00:00Z"}`))
	now := time.Date(2026, 12, 4, 20, 0, 0, 0, time.UTC)
	f.Fuzz(func(t *testing.T, body []byte) {
		var req createCampaignRequest
		if err := ingest.DecodeStrict(body, &req); err == nil {
			c := &floodgate.Campaign{ID: req.ID, Name: req.Name, Currency: req.Currency, Goal: req.Goal, MinAmount: req.MinAmount,
				MaxAmount: req.MaxAmount, ClosesAt: utc(req.ClosesAt), SuggestedAmounts: req.SuggestedAmounts, TaxSchemes: req.TaxSchemes}
			if req.OpensAt != nil {
				c.OpensAt = req.OpensAt.UTC()
			}
			c.SetDefaults(now)
			if err := c.ValidateNew(); err == nil {
				if !floodgate.ValidCampaignID(c.ID) || c.MinAmount > c.MaxAmount || c.Name == "" {
					t.Fatalf("accepted an invalid campaign: %+v", c)
				}
			} else if floodgate.ErrorCode(err) != floodgate.EINVALID {
				t.Fatalf("validation error %v", err)
			}
		} else if code := floodgate.ErrorCode(err); code != floodgate.EINVALID && code != floodgate.ETOOLARGE {
			t.Fatalf("decode error %v", err)
		}
		var patch patchCampaignRequest
		if err := ingest.DecodeStrict(body, &patch); err != nil {
			if code := floodgate.ErrorCode(err); code != floodgate.EINVALID && code != floodgate.ETOOLARGE {
				t.Fatalf("patch decode error %v", err)
			}
		}
	})
}
