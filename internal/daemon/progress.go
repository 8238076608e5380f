package daemon

import (
	"fmt"
	"io"
	"time"

	"github.com/mattingctl/mattingctl/internal/control"
)

// progressEvery is how often `up -d` says why the replicas not ready yet
// are not, while it waits for them.
const progressEvery = 10 * time.Second

// startProgress writes what `up -d` sees while its instance starts: a line
// when each replica becomes ready, and every progressEvery a line for each
// that is not, with why. A nil w writes nothing.
type startProgress struct {
	w        io.Writer
	begun    time.Time
	reported time.Time       // the last round of not-ready lines
	ready    map[string]bool // replicas reported ready
}

func newStartProgress(w io.Writer, begun time.Time) *startProgress {
	return &startProgress{w: w, begun: begun, reported: begun, ready: map[string]bool{}}
}

// update writes what changed since the last status, st, seen at now.
func (p *startProgress) update(st control.Status, now time.Time) {
	if p.w == nil {
		return
	}
	waited := now.Sub(p.begun)
	for _, r := range st.Replicas {
		if r.State == control.Ready && !p.ready[r.Name] {
			p.ready[r.Name] = true
			fmt.Fprintf(p.w, "%s ready after %s: pid %d, port %d\n", r.Name, waited.Round(100*time.Millisecond), r.Pid, r.Port)
		}
	}
	if now.Sub(p.reported) < progressEvery {
		return
	}
	p.reported = now
	for _, r := range st.Replicas {
		if r.State != control.Ready {
			fmt.Fprintf(p.w, "%s not ready after %s: %s\n", r.Name, waited.Round(time.Second), notReadyReason(r))
		}
	}
}

// notReadyReason says why a replica is not ready: its last readiness
// check's failure while it starts, else its state and error.
func notReadyReason(r control.ReplicaStatus) string {
	switch {
	case r.NotReady != "":
		return r.NotReady
	case r.Error != "":
		return string(r.State) + ": " + r.Error
	default:
		return string(r.State)
	}
}
