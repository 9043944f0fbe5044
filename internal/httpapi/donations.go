package httpapi

import (
	"encoding/json"
	"errors"
	"math"
	"net/http"
	"strconv"
	"time"

	"github.com/floodgate/floodgate"
	"github.com/floodgate/floodgate/internal/ingest"
)

// acceptedJSON is the body of a 202.
type acceptedJSON struct {
	ID         string    `json:"id"`
	Status     string    `json:"status"`
	Campaign   string    `json:"campaign"`
	Amount     int64     `json:"amount"`
	Currency   string    `json:"currency"`
	CreatedAt  time.Time `json:"created_at"`
	DonorToken string    `json:"donor_token"`
}

func (s *Server) donate(w http.ResponseWriter, r *http.Request) error {
	body, err := readBody(w, r)
	if err != nil {
		return err
	}
	acc, err := s.Ingest.Donate(r.Context(), r.PathValue("id"), r.Header.Get("Idempotency-Key"), body, s.clientAddr(r))
	if err != nil {
		if s.Metrics != nil && floodgate.ErrorCode(err) == floodgate.EOVERLOADED {
			s.Metrics.Shed.WithLabelValues("ingest_queue_full").Inc()
		}
		return err
	}
	d := acc.Item
	if s.Metrics != nil {
		if acc.Replayed {
			s.Metrics.Replayed.Inc()
		} else {
			s.Metrics.Accepted.Inc()
		}
	}
	h := w.Header()
	h.Set("Location", "/v1/donations/"+d.ID)
	h.Set("Cache-Control", "no-store")
	if acc.Replayed {
		h.Set("Idempotent-Replayed", "true")
	}
	h.Set("Content-Type", "application/json")
	w.WriteHeader(http.StatusAccepted)
	_, _ = w.Write(appendAccepted(make([]byte, 0, 320), d, acc.Token))
	return nil
}

// appendAccepted renders the 202 body by hand: it is the hottest answer
// floodgate gives, and every field is a known, already validated shape.
// TestAcceptedJSON holds it to the same bytes encoding/json would write.
func appendAccepted(b []byte, d *floodgate.Donation, token string) []byte {
	b = append(b, `{"id":`...)
	b = strconv.AppendQuote(b, d.ID)
	b = append(b, `,"status":`...)
	b = strconv.AppendQuote(b, string(d.Status))
	b = append(b, `,"campaign":`...)
	b = strconv.AppendQuote(b, d.CampaignID)
	b = append(b, `,"amount":`...)
	b = strconv.AppendInt(b, d.Amount, 10)
	b = append(b, `,"currency":`...)
	b = strconv.AppendQuote(b, d.Currency)
	b = append(b, `,"created_at":"`...)
	b = d.CreatedAt.AppendFormat(b, time.RFC3339Nano)
	b = append(b, `","donor_token":`...)
	b = strconv.AppendQuote(b, token)
	return append(b, "}\n"...)
}

// DonationJSON is the public view of a donation: no personal data, nothing
// that could finish a payment.
type DonationJSON struct {
	ID            string  `json:"id"`
	Status        string  `json:"status"`
	Amount        int64   `json:"amount"`
	Currency      string  `json:"currency"`
	QueuePosition *int64  `json:"queue_position,omitempty"`
	ETASeconds    *int64  `json:"eta_seconds,omitempty"`
	FailureCode   *string `json:"failure_code"`
	// Charging, present only while a waiting gift cannot move, says why:
	// "paused" (by an operator: no estimate can be given) or
	// "waiting_for_provider" (the estimate includes the next probe).
	Charging floodgate.ChargingState `json:"charging,omitempty"`
}

// DonationFullJSON is the donor's own view, for the holder of the donor
// token: it adds what the browser needs to finish 3-D Secure.
type DonationFullJSON struct {
	DonationJSON
	Campaign      string                 `json:"campaign"`
	Email         string                 `json:"email"`
	Name          string                 `json:"name"`
	Anonymous     bool                   `json:"anonymous"`
	Message       string                 `json:"message"`
	Declaration   *floodgate.Declaration `json:"declaration"`
	PaymentMethod string                 `json:"payment_method"`
	ClientSecret  *string                `json:"client_secret"`
	NextAction    json.RawMessage        `json:"next_action"`
	CreatedAt     time.Time              `json:"created_at"`
	UpdatedAt     time.Time              `json:"updated_at"`
	History       []historyJSON          `json:"history"`
}

type historyJSON struct {
	Status      string    `json:"status"`
	At          time.Time `json:"at"`
	FailureCode string    `json:"failure_code,omitempty"`
	Note        string    `json:"note,omitempty"`
}

// donorAuth loads a donation and checks the request's donor token: absent
// is allowed when optional (the public view), wrong never is.
func (s *Server) donorAuth(r *http.Request, optional bool) (*floodgate.Donation, bool, error) {
	id := r.PathValue("id")
	if !floodgate.ValidID(floodgate.DonationIDPrefix, id) {
		return nil, false, floodgate.Errorf(floodgate.ENOTFOUND, "Donation %q not found.", truncate(id, 64))
	}
	tok, has := bearer(r)
	if !has && !optional {
		return nil, false, floodgate.Errorf(floodgate.EUNAUTHORIZED, "This needs Authorization: Bearer <donor_token>.")
	}
	if has && !s.Ingest.Tokens().Valid(id, tok) {
		return nil, false, floodgate.Errorf(floodgate.EUNAUTHORIZED, "The donor token is not valid for this donation.")
	}
	d, err := s.Store.Donation(r.Context(), id)
	if err != nil {
		return nil, false, err
	}
	return d, has, nil
}

func (s *Server) getDonation(w http.ResponseWriter, r *http.Request) error {
	d, full, err := s.donorAuth(r, true)
	if err != nil {
		return err
	}
	return s.writeDonation(w, r, http.StatusOK, d, full)
}

// writeDonation answers d in the view the caller may see, with
// Retry-After saying when to look again.
func (s *Server) writeDonation(w http.ResponseWriter, r *http.Request, status int, d *floodgate.Donation, full bool) error {
	pub := DonationJSON{ID: d.ID, Status: string(d.Status), Amount: d.Amount, Currency: d.Currency}
	if d.FailureCode != "" && d.Status == floodgate.StatusFailed {
		fc := d.FailureCode
		pub.FailureCode = &fc
	}
	var poll time.Duration
	switch d.Status {
	case floodgate.StatusAccepted, floodgate.StatusProcessing:
		var pos int64
		var eta time.Duration
		if s.Line != nil {
			pos, eta, _ = s.Line.Place(d)
		}
		secs := int64(math.Ceil(eta.Seconds()))
		pub.QueuePosition, pub.ETASeconds = &pos, &secs
		poll = pollAfter(eta)
		if s.Line != nil {
			if state, _ := s.Line.Charging(); state != floodgate.ChargingRunning {
				pub.Charging = state
				if state == floodgate.ChargingPaused {
					pub.ETASeconds = nil // nobody can say when an operator resumes
					poll = 30 * time.Second
				}
			}
		}
	case floodgate.StatusRequiresAction:
		poll = 2 * time.Second
	}
	h := w.Header()
	h.Set("Cache-Control", "no-store")
	if poll > 0 {
		h.Set("Retry-After", retryAfter(poll))
	}
	if !full {
		writeJSON(w, status, pub)
		return nil
	}
	hist, err := s.Store.History(r.Context(), d.ID)
	if err != nil {
		return err
	}
	v := DonationFullJSON{DonationJSON: pub, Campaign: d.CampaignID, Email: d.Email, Name: d.Name,
		Anonymous: d.Anonymous, Message: d.Message, Declaration: d.Declaration, PaymentMethod: d.PaymentMethod,
		CreatedAt: d.CreatedAt, UpdatedAt: d.UpdatedAt, History: make([]historyJSON, 0, len(hist))}
	if d.Status == floodgate.StatusRequiresAction {
		if d.ClientSecret != "" {
			cs := d.ClientSecret
			v.ClientSecret = &cs
		}
		v.NextAction = d.NextAction
	}
	if v.NextAction == nil {
		v.NextAction = json.RawMessage("null")
	}
	for _, c := range hist {
		v.History = append(v.History, historyJSON{Status: string(c.Status), At: c.At, FailureCode: c.FailureCode, Note: c.Note})
	}
	writeJSON(w, status, v)
	return nil
}

// pollAfter tells a waiting browser when to ask again: a quarter of its
// expected wait, between 1 and 30 seconds, so that a hundred thousand
// waiting donors poll in proportion to how soon anything can change.
func pollAfter(eta time.Duration) time.Duration {
	return min(30*time.Second, max(time.Second, eta/4))
}

type paymentMethodRequest struct {
	PaymentMethod string `json:"payment_method"`
}

func (s *Server) newPaymentMethod(w http.ResponseWriter, r *http.Request) error {
	d, _, err := s.donorAuth(r, false)
	if err != nil {
		return err
	}
	body, err := readBody(w, r)
	if err != nil {
		return err
	}
	var req paymentMethodRequest
	if err := ingest.DecodeStrict(body, &req); err != nil {
		return err
	}
	if msg := floodgate.CheckPaymentMethod(req.PaymentMethod); msg != "" {
		return floodgate.Invalid("payment_method", "%s", msg)
	}
	// A new card is a new attempt, limited as a new gift is: card testers
	// would otherwise try card after card on one gift. It is counted before
	// the store is asked, so a try on a gift in the wrong state counts too.
	if err := s.Ingest.AllowAttempt(s.clientAddr(r), d.Email); err != nil {
		return err
	}
	d, err = s.Store.ReplacePaymentMethod(r.Context(), d.ID, req.PaymentMethod, s.Clock.Now())
	if err != nil {
		return err
	}
	return s.writeDonation(w, r, http.StatusAccepted, d, true)
}

func (s *Server) cancelDonation(w http.ResponseWriter, r *http.Request) error {
	d, _, err := s.donorAuth(r, false)
	if err != nil {
		return err
	}
	d, err = s.Store.CancelDonation(r.Context(), d.ID, s.Clock.Now())
	var fe *floodgate.Error
	if errors.As(err, &fe) && fe.Code == floodgate.ESTATE && d != nil {
		fe.Message = "Only a donation still waiting in line can be canceled; this one is " + string(d.Status) + "."
	}
	if err != nil {
		return err
	}
	return s.writeDonation(w, r, http.StatusOK, d, true)
}
