package floodgate

import "testing"

func TestDelta(t *testing.T) {
	tests := []struct {
		from, to DonationStatus
		want     TotalsDelta
	}{
		{"", StatusAccepted, TotalsDelta{Pending: 100, PendingCount: 1, Waiting: 1}},
		{StatusAccepted, StatusProcessing, TotalsDelta{Waiting: -1}},
		{StatusProcessing, StatusRequiresAction, TotalsDelta{}},
		{StatusProcessing, StatusSucceeded, TotalsDelta{Raised: 100, Donations: 1, Pending: -100, PendingCount: -1}},
		{StatusRequiresAction, StatusCanceled, TotalsDelta{Pending: -100, PendingCount: -1}},
		{StatusProcessing, StatusFailed, TotalsDelta{Pending: -100, PendingCount: -1}},
		{StatusFailed, StatusAccepted, TotalsDelta{Pending: 100, PendingCount: 1, Waiting: 1}},
		{StatusFailed, StatusSucceeded, TotalsDelta{Raised: 100, Donations: 1}},
		{StatusAccepted, StatusCanceled, TotalsDelta{Pending: -100, PendingCount: -1, Waiting: -1}},
	}
	for _, tt := range tests {
		if got := Delta(tt.from, tt.to, 100); got != tt.want {
			t.Errorf("Delta(%q, %q) = %+v, want %+v", tt.from, tt.to, got, tt.want)
		}
	}
}

func TestCanMove(t *testing.T) {
	allowed := map[[2]DonationStatus]bool{
		{StatusAccepted, StatusProcessing}: true, {StatusAccepted, StatusCanceled}: true,
		{StatusProcessing, StatusSucceeded}: true, {StatusProcessing, StatusFailed}: true,
		{StatusProcessing, StatusRequiresAction}: true, {StatusProcessing, StatusCanceled}: true,
		{StatusProcessing, StatusAccepted}:      true,
		{StatusRequiresAction, StatusSucceeded}: true, {StatusRequiresAction, StatusFailed}: true,
		{StatusRequiresAction, StatusCanceled}: true,
		{StatusFailed, StatusAccepted}:         true, {StatusFailed, StatusSucceeded}: true,
		{StatusCanceled, StatusSucceeded}: true,
	}
	all := []DonationStatus{StatusAccepted, StatusProcessing, StatusRequiresAction, StatusSucceeded, StatusFailed, StatusCanceled}
	for _, from := range all {
		for _, to := range all {
			if got := CanMove(from, to); got != allowed[[2]DonationStatus{from, to}] {
				t.Errorf("CanMove(%s, %s) = %v", from, to, got)
			}
		}
	}
	// Forward only: nothing leaves succeeded.
	for _, to := range all {
		if CanMove(StatusSucceeded, to) {
			t.Errorf("succeeded may move to %s", to)
		}
	}
}
