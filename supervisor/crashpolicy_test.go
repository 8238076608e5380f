package supervisor

import (
	"errors"
	"fmt"
	"os"
	"syscall"
	"testing"
	"time"

	"github.com/mattingctl/mattingctl/replica"
)

func TestBackoff(t *testing.T) {
	const s = time.Second
	type crash struct {
		uptime time.Duration
		delay  time.Duration
		ok     bool
	}
	tests := []struct {
		name    string
		b       CrashBackoff
		crashes []crash
	}{
		{"defaults double then fail", CrashBackoff{}, []crash{
			{0, 500 * time.Millisecond, true}, {s, s, true}, {s, 2 * s, true},
			{s, 4 * s, true}, {s, 8 * s, true}, {s, 0, false},
		}},
		{"long uptime resets the series", CrashBackoff{}, []crash{
			{0, 500 * time.Millisecond, true}, {s, s, true}, {2 * time.Minute, 500 * time.Millisecond, true},
		}},
		{"ten seconds up is long enough by default", CrashBackoff{}, []crash{
			{0, 500 * time.Millisecond, true}, {9 * s, s, true}, {10 * s, 500 * time.Millisecond, true},
		}},
		{"capped at Max", CrashBackoff{Initial: s, Max: 3 * s, MaxRestarts: 10}, []crash{
			{0, s, true}, {0, 2 * s, true}, {0, 3 * s, true}, {0, 3 * s, true},
		}},
		{"one restart allowed", CrashBackoff{MaxRestarts: 1}, []crash{
			{0, 500 * time.Millisecond, true}, {0, 0, false},
		}},
		{"reset after failure threshold", CrashBackoff{MaxRestarts: 1, ResetAfter: 10 * s}, []crash{
			{0, 500 * time.Millisecond, true}, {10 * s, 500 * time.Millisecond, true}, {0, 0, false},
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b := tt.b
			for i, c := range tt.crashes {
				delay, ok := b.Crash(c.uptime)
				if delay != c.delay || ok != c.ok {
					t.Fatalf("crash %d (uptime %v): got (%v, %v), want (%v, %v)", i+1, c.uptime, delay, ok, c.delay, c.ok)
				}
			}
		})
	}
}

// TestCrashPolicy runs the crash policy over sequences of outcomes, as the
// slot's loop would report them, and checks each verdict. It starts no
// process.
func TestCrashPolicy(t *testing.T) {
	const s = time.Second
	ms := time.Millisecond
	begun := time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)
	boom := errors.New("exited with code 1 before it was ready")
	emfile := &os.SyscallError{Syscall: "pipe2", Err: syscall.EMFILE}
	// The outcomes, at offset from begun.
	startErr := func(at time.Duration, err error) outcome {
		return outcome{kind: startFailed, err: err, at: begun.Add(at), port: 9001}
	}
	notReadyAfter := func(up time.Duration) outcome {
		return outcome{kind: notReady, err: boom, port: 9001, uptime: up, exit: "exit 1"}
	}
	servedFor := func(up time.Duration) outcome {
		return outcome{kind: exited, port: 9001, uptime: up, exit: "signal: killed"}
	}
	stopping := func(o outcome) outcome { o.stopping = true; return o }
	crashed := func(d time.Duration) verdict { return verdict{kind: startAgain, delay: d, crash: true} }
	retry := func(d time.Duration) verdict { return verdict{kind: startAgain, delay: d} }
	fail := func(msg string) verdict { return verdict{kind: giveUp, err: errors.New(msg)} }
	failCrashed := func(msg string) verdict { return verdict{kind: giveUp, err: errors.New(msg), crash: true} }
	stop := verdict{kind: stopped}

	type step struct {
		o    outcome
		want verdict
	}
	tests := []struct {
		name    string
		backoff CrashBackoff
		steps   []step
	}{
		{"never ready at boot: failed at once", CrashBackoff{}, []step{
			{notReadyAfter(s), fail("replica-1 (port 9001) exited with code 1 before it was ready")},
		}},
		{"the command cannot start: failed at once", CrashBackoff{}, []step{
			{startErr(0, os.ErrPermission), fail(os.ErrPermission.Error())},
		}},
		{"crash after serving: backoff doubles", CrashBackoff{}, []step{
			{servedFor(s), crashed(500 * ms)},
			{servedFor(s), crashed(s)},
			{servedFor(s), crashed(2 * s)},
		}},
		{"served before: brought back forever at the longest delay", CrashBackoff{MaxRestarts: 2}, []step{
			{servedFor(s), crashed(500 * ms)},
			{servedFor(s), crashed(s)},
			{servedFor(s), crashed(DefaultBackoffMax)},
			{servedFor(s), crashed(DefaultBackoffMax)},
		}},
		{"served, then never ready again: failed past MaxRestarts", CrashBackoff{MaxRestarts: 2}, []step{
			{servedFor(s), crashed(500 * ms)},
			{notReadyAfter(s), crashed(s)},
			{notReadyAfter(s), failCrashed("replica-1 crashed 3 times in a row (last: exit 1) and did not become ready again; not restarting it")},
		}},
		{"a long uptime starts the series afresh", CrashBackoff{}, []step{
			{servedFor(s), crashed(500 * ms)},
			{servedFor(s), crashed(s)},
			{servedFor(time.Minute), crashed(500 * ms)},
		}},
		{"transient start errors retry with the backoff's delays, not as crashes", CrashBackoff{}, []step{
			{startErr(0, emfile), retry(500 * ms)},
			{startErr(s, emfile), retry(s)},
			{startErr(2*s, replica.ErrPortInUse), retry(2 * s)},
		}},
		{"transient start errors before boot: failed past the ready timeout", CrashBackoff{}, []step{
			{startErr(0, emfile), retry(500 * ms)},
			{startErr(61*s, emfile), fail(emfile.Error() + " (still, after --ready-timeout 1m0s)")},
		}},
		{"transient start errors after boot: retried past the ready timeout", CrashBackoff{}, []step{
			{servedFor(s), crashed(500 * ms)},
			{startErr(time.Hour, emfile), retry(500 * ms)},
			{startErr(2*time.Hour, emfile), retry(s)},
		}},
		{"a process that started resets the transient count", CrashBackoff{}, []step{
			{startErr(0, emfile), retry(500 * ms)},
			{startErr(s, emfile), retry(s)},
			{servedFor(s), crashed(500 * ms)},
			{startErr(3*s, emfile), retry(500 * ms)},
		}},
		{"transient start errors are not crashes", CrashBackoff{MaxRestarts: 1}, []step{
			{startErr(0, emfile), retry(500 * ms)},
			{startErr(0, emfile), retry(s)},
			{servedFor(s), crashed(500 * ms)},
		}},
		{"a stop is no failure: start error", CrashBackoff{}, []step{
			{stopping(startErr(0, os.ErrPermission)), stop},
		}},
		{"a stop is no failure: not ready", CrashBackoff{}, []step{
			{stopping(notReadyAfter(s)), stop},
		}},
		{"a served process's exit during a stop is judged as a crash", CrashBackoff{}, []step{
			{stopping(servedFor(s)), crashed(500 * ms)},
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := newCrashPolicy("replica-1", tt.backoff, time.Minute, begun)
			for i, st := range tt.steps {
				got := p.decide(st.o)
				if !sameVerdict(got, st.want) {
					t.Fatalf("step %d: verdict %s, want %s", i+1, describe(got), describe(st.want))
				}
			}
		})
	}
}

// sameVerdict compares verdicts, their errors by message.
func sameVerdict(a, b verdict) bool {
	if (a.err == nil) != (b.err == nil) || a.err != nil && a.err.Error() != b.err.Error() {
		return false
	}
	a.err, b.err = nil, nil
	return a == b
}

func describe(v verdict) string {
	kinds := map[verdictKind]string{startAgain: "start again", giveUp: "give up", stopped: "stopped"}
	return fmt.Sprintf("{%s delay=%s crash=%v err=%v}", kinds[v.kind], v.delay, v.crash, v.err)
}
