package balancer

import (
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"time"
)

// idleTimeoutReader bounds each pause in the client's upload rather than
// the whole upload, so that a large body on a slow link still gets
// through; and, with a rate, the upload's pace: past grace after start,
// the client must have sent rate bytes a second on average (Apache's
// RequestReadTimeout body=GRACE,MinRate=RATE), so that a client sending a
// byte now and then cannot hold a body buffer for ever.
type idleTimeoutReader struct {
	r       io.Reader
	rc      *http.ResponseController
	timeout time.Duration

	start    time.Time
	grace    time.Duration
	rate     int64 // bytes a second; 0: none
	received int64

	extended time.Time // when the deadline was last moved
	deadline time.Time
	byRate   bool // the deadline is the rate's, not the pause's
}

// errSlowUpload is a read cut because the client sent its body slower
// than the minimum rate.
var errSlowUpload = errors.New("client sent its body too slowly")

func (t *idleTimeoutReader) Read(p []byte) (int, error) {
	// Moving the deadline costs a timer update; once a second is enough,
	// or every quarter of a shorter timeout, so that a pause of at least
	// three quarters of the timeout is always allowed; more often only for
	// a client so slow that the rate's deadline is near.
	now := time.Now()
	if now.Sub(t.extended) > min(time.Second, t.timeout/4) || (t.byRate && t.deadline.Sub(now) < time.Second) {
		t.deadline, t.byRate = now.Add(t.timeout), false
		if t.rate > 0 {
			// The time the bytes so far have bought, past the grace.
			bought := time.Duration(float64(t.received) / float64(t.rate) * float64(time.Second))
			if d := t.start.Add(t.grace + bought); d.Before(t.deadline) {
				t.deadline, t.byRate = d, true
			}
		}
		_ = t.rc.SetReadDeadline(t.deadline)
		t.extended = now
	}
	n, err := t.r.Read(p)
	t.received += int64(n)
	if err != nil && t.byRate && errors.Is(err, os.ErrDeadlineExceeded) {
		err = fmt.Errorf("%w: %w", errSlowUpload, err)
	}
	return n, err
}
