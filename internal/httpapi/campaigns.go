package httpapi

import (
	"context"
	"net/http"
	"strings"
	"time"

	"github.com/floodgate/floodgate"
	"github.com/floodgate/floodgate/internal/ingest"
)

// CampaignJSON is a campaign as the API shows it.
type CampaignJSON struct {
	ID               string      `json:"id"`
	Name             string      `json:"name"`
	Currency         string      `json:"currency"`
	Goal             int64       `json:"goal"`
	MinAmount        int64       `json:"min_amount"`
	MaxAmount        int64       `json:"max_amount"`
	OpensAt          time.Time   `json:"opens_at"`
	ClosesAt         *time.Time  `json:"closes_at"`
	SuggestedAmounts []int64     `json:"suggested_amounts"`
	TaxSchemes       []string    `json:"tax_schemes"`
	State            string      `json:"state"`
	CreatedAt        time.Time   `json:"created_at"`
	UpdatedAt        time.Time   `json:"updated_at"`
	Totals           *TotalsJSON `json:"totals,omitempty"`
}

// TotalsJSON is the contract's totals object.
type TotalsJSON struct {
	Campaign  string    `json:"campaign"`
	Currency  string    `json:"currency"`
	Raised    int64     `json:"raised"`
	Donations int64     `json:"donations"`
	Pending   int64     `json:"pending"`
	Pledged   int64     `json:"pledged"`
	UpdatedAt time.Time `json:"updated_at"`
}

func totalsJSON(t *floodgate.Totals) *TotalsJSON {
	return &TotalsJSON{Campaign: t.Campaign, Currency: t.Currency, Raised: t.Raised, Donations: t.Donations,
		Pending: t.Pending, Pledged: t.Pledged(), UpdatedAt: t.UpdatedAt}
}

func campaignJSON(c *floodgate.Campaign, t *floodgate.Totals, now time.Time) CampaignJSON {
	j := CampaignJSON{ID: c.ID, Name: c.Name, Currency: c.Currency, Goal: c.Goal, MinAmount: c.MinAmount,
		MaxAmount: c.MaxAmount, OpensAt: c.OpensAt, ClosesAt: c.ClosesAt,
		SuggestedAmounts: c.SuggestedAmounts, TaxSchemes: c.TaxSchemes, State: c.State(now),
		CreatedAt: c.CreatedAt, UpdatedAt: c.UpdatedAt}
	if j.SuggestedAmounts == nil {
		j.SuggestedAmounts = []int64{}
	}
	if j.TaxSchemes == nil {
		j.TaxSchemes = []string{}
	}
	if t != nil {
		j.Totals = totalsJSON(t)
	}
	return j
}

type createCampaignRequest struct {
	ID               string     `json:"id"`
	Name             string     `json:"name"`
	Currency         string     `json:"currency"`
	Goal             int64      `json:"goal"`
	MinAmount        int64      `json:"min_amount"`
	MaxAmount        int64      `json:"max_amount"`
	OpensAt          *time.Time `json:"opens_at"`
	ClosesAt         *time.Time `json:"closes_at"`
	SuggestedAmounts []int64    `json:"suggested_amounts"`
	TaxSchemes       []string   `json:"tax_schemes"`
}

func (s *Server) createCampaign(w http.ResponseWriter, r *http.Request) error {
	body, err := readBody(w, r)
	if err != nil {
		return err
	}
	var req createCampaignRequest
	if err := ingest.DecodeStrict(body, &req); err != nil {
		return err
	}
	now := s.Clock.Now()
	c := &floodgate.Campaign{ID: req.ID, Name: strings.TrimSpace(req.Name), Currency: strings.ToLower(req.Currency),
		Goal: req.Goal, MinAmount: req.MinAmount, MaxAmount: req.MaxAmount, ClosesAt: utc(req.ClosesAt),
		SuggestedAmounts: req.SuggestedAmounts, TaxSchemes: req.TaxSchemes, CreatedAt: now, UpdatedAt: now}
	if req.OpensAt != nil {
		c.OpensAt = req.OpensAt.UTC()
	}
	c.SetDefaults(now)
	if err := c.ValidateNew(); err != nil {
		return err
	}
	if err := s.Store.CreateCampaign(r.Context(), c); err != nil {
		return err
	}
	s.Ingest.Remember(c)
	t, err := s.Store.Totals(r.Context(), c.ID)
	if err != nil {
		return err
	}
	w.Header().Set("Location", "/v1/campaigns/"+c.ID)
	writeJSON(w, http.StatusCreated, campaignJSON(c, t, now))
	return nil
}

func utc(t *time.Time) *time.Time {
	if t == nil {
		return nil
	}
	u := t.UTC()
	return &u
}

// patchCampaignRequest takes closes_at as a string so that "now" closes
// the campaign at once without the caller knowing the server's clock.
type patchCampaignRequest struct {
	Name             *string  `json:"name"`
	Goal             *int64   `json:"goal"`
	ClosesAt         *string  `json:"closes_at"`
	SuggestedAmounts *[]int64 `json:"suggested_amounts"`
}

func (s *Server) patchCampaign(w http.ResponseWriter, r *http.Request) error {
	id := r.PathValue("id")
	body, err := readBody(w, r)
	if err != nil {
		return err
	}
	var req patchCampaignRequest
	if err := ingest.DecodeStrict(body, &req); err != nil {
		return err
	}
	now := s.Clock.Now()
	u := floodgate.CampaignUpdate{Name: req.Name, Goal: req.Goal, SuggestedAmounts: req.SuggestedAmounts}
	if req.Name != nil {
		n := strings.TrimSpace(*req.Name)
		u.Name = &n
	}
	if req.ClosesAt != nil {
		t := now
		if *req.ClosesAt != "now" {
			if t, err = time.Parse(time.RFC3339, *req.ClosesAt); err != nil {
				return floodgate.Invalid("closes_at", "must be an RFC 3339 time or \"now\"")
			}
		}
		t = t.UTC()
		u.ClosesAt = &t
	}
	c, err := s.Store.UpdateCampaign(r.Context(), id, u, now)
	if err != nil {
		return err
	}
	s.Ingest.Remember(c)
	t, err := s.Store.Totals(r.Context(), id)
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, campaignJSON(c, t, now))
	return nil
}

func (s *Server) listCampaigns(w http.ResponseWriter, r *http.Request) error {
	cs, err := s.Store.Campaigns(r.Context())
	if err != nil {
		return err
	}
	now := s.Clock.Now()
	out := make([]CampaignJSON, 0, len(cs))
	for _, c := range cs {
		t, err := s.Store.Totals(r.Context(), c.ID)
		if err != nil {
			return err
		}
		out = append(out, campaignJSON(c, t, now))
	}
	// Stripe's list shape; every campaign fits one page.
	writeJSON(w, http.StatusOK, map[string]any{"object": "list", "url": "/v1/campaigns", "has_more": false, "data": out})
	return nil
}

func (s *Server) getCampaign(w http.ResponseWriter, r *http.Request) error {
	id := r.PathValue("id")
	c, err := s.Ingest.Campaign(r.Context(), id)
	if err != nil {
		return err
	}
	t, err := s.Store.Totals(r.Context(), id)
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, campaignJSON(c, t, s.Clock.Now()))
	return nil
}

// totals reads a campaign's totals, answering 404 for an id that cannot
// be a campaign's without asking the store.
func (s *Server) totals(ctx context.Context, id string) (*floodgate.Totals, error) {
	if !floodgate.ValidCampaignID(id) {
		return nil, floodgate.Errorf(floodgate.ENOTFOUND, "Campaign %q not found.", id)
	}
	return s.Store.Totals(ctx, id)
}

func (s *Server) getTotals(w http.ResponseWriter, r *http.Request) error {
	t, err := s.totals(r.Context(), r.PathValue("id"))
	if err != nil {
		return err
	}
	w.Header().Set("Cache-Control", "no-store")
	writeJSON(w, http.StatusOK, totalsJSON(t))
	return nil
}
