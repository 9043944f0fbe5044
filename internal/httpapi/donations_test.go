package httpapi

import (
	"encoding/json"
	"testing"
	"time"

	"github.com/floodgate/floodgate"
)

// TestAcceptedJSON holds the hand-written 202 body to what encoding/json
// writes for the same fields.
func TestAcceptedJSON(t *testing.T) {
	for _, d := range []*floodgate.Donation{
		{ID: floodgate.NewID(floodgate.DonationIDPrefix), Status: floodgate.StatusAccepted, CampaignID: "demo", Amount: 2500,
			Currency: "eur", CreatedAt: time.Date(2026, 12, 4, 20, 15, 3, 123456789, time.UTC)},
		{ID: "don_x", Status: floodgate.StatusSucceeded, CampaignID: "a-b-c-123", Amount: 99999999,
			Currency: "jpy", CreatedAt: time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)},
		{ID: `don_"quoted"\<>&`, Status: "accepted", CampaignID: "c", Amount: -1, Currency: "eur", CreatedAt: time.Unix(0, 1).UTC()},
	} {
		token := "dt_abc-_XYZ"
		want, err := json.Marshal(acceptedJSON{ID: d.ID, Status: string(d.Status), Campaign: d.CampaignID, Amount: d.Amount,
			Currency: d.Currency, CreatedAt: d.CreatedAt, DonorToken: token})
		if err != nil {
			t.Fatal(err)
		}
		got := appendAccepted(nil, d, token)
		var a, b map[string]any
		if err := json.Unmarshal(got, &a); err != nil {
			t.Fatalf("hand-written body is not JSON: %v: %s", err, got)
		}
		_ = json.Unmarshal(want, &b)
		ja, _ := json.Marshal(a)
		jb, _ := json.Marshal(b)
		if string(ja) != string(jb) {
			t.Fatalf("body\n%s\nwant\n%s", got, want)
		}
	}
}

func TestPollAfterGrowsWithTheWait(t *testing.T) {
	prev := time.Duration(0)
	for _, eta := range []time.Duration{0, time.Second, 10 * time.Second, time.Minute, 10 * time.Minute, time.Hour} {
		p := pollAfter(eta)
		if p < time.Second || p > 30*time.Second || p < prev {
			t.Fatalf("pollAfter(%v) = %v after %v", eta, p, prev)
		}
		prev = p
	}
	if pollAfter(time.Hour) != 30*time.Second || pollAfter(0) != time.Second {
		t.Fatal("bounds wrong")
	}
}
