package replica

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"time"
)

// A health path the application does not serve is answered 404 (or 405,
// when the path exists for other methods) from the first check on, and
// forever: the replica is up and will never be ready. A model that loads
// answers 503, or nothing, meanwhile; 404 for WrongPath on end is the
// path, not the model.

// CandidatePaths are the health paths tried on a replica whose health path
// answered 404 or 405, to suggest one, in the order they are suggested.
var CandidatePaths = []string{"/health", "/healthz", "/"}

// WrongPathError is returned by WaitReady when the health path answered 404
// or 405, and nothing else, for Wait.WrongPath.
type WrongPathError struct {
	// Path is the health path; Code its last answer.
	Path string
	Code int
	// For is how long it answered so.
	For time.Duration
	// Tried is what the replica answered on CandidatePaths other than Path.
	Tried []PathAnswer
}

func (e *WrongPathError) Error() string {
	return fmt.Sprintf("GET %s answered %d for %s", e.Path, e.Code, e.For)
}

// PathAnswer is what a replica answered on a path: a status, or, when
// it did not answer, why.
type PathAnswer struct {
	Path string
	Code int
	Err  error
}

// wrongPath tells, check after check, whether the health path has
// answered 404 or 405 for after. Its zero value, and any with after 0,
// never does.
type wrongPath struct {
	after time.Duration
	since time.Time // the first of the current run of 404 and 405; zero: none
}

// observe records a check's failure err at now and returns a
// *WrongPathError once the run of 404 and 405 has lasted after.
func (w *wrongPath) observe(ctx context.Context, p Probe, now time.Time, err error) error {
	if w.after <= 0 {
		return nil
	}
	var st *StatusError
	if !errors.As(err, &st) || (st.Code != http.StatusNotFound && st.Code != http.StatusMethodNotAllowed) {
		w.since = time.Time{}
		return nil
	}
	if w.since.IsZero() {
		w.since = now
	}
	if now.Sub(w.since) < w.after {
		return nil
	}
	return &WrongPathError{Path: p.Path, Code: st.Code, For: w.after, Tried: p.tryPaths(ctx)}
}

// due shortens d, the wait before the next check, so that the check that
// may end a run of 404 comes when the run has lasted after, not up to a
// backoff later.
func (w *wrongPath) due(now time.Time, d time.Duration) time.Duration {
	if w.after <= 0 || w.since.IsZero() {
		return d
	}
	return max(0, min(d, w.since.Add(w.after).Sub(now)))
}

// tryPaths asks the replica for each of CandidatePaths but p's own.
func (p Probe) tryPaths(ctx context.Context) []PathAnswer {
	timeout := p.Timeout
	if timeout <= 0 {
		timeout = 2 * time.Second
	}
	var out []PathAnswer
	for _, path := range CandidatePaths {
		if path == p.Path {
			continue
		}
		c := p
		c.Path = path
		cctx, cancel := context.WithTimeout(ctx, timeout)
		code, err := c.get(cctx, path)
		if err != nil {
			err = c.failed(err, timeout, ended(ctx))
		}
		cancel()
		out = append(out, PathAnswer{Path: path, Code: code, Err: err})
	}
	return out
}
