package replica

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"sync"
	"time"
)

// Exit describes how a replica's process ended.
type Exit struct {
	// Code is the exit code, or -1 when the process was killed by a signal
	// or could not be waited for.
	Code int
	// Signal names the signal that killed the process ("killed",
	// "terminated"), or is empty.
	Signal string
	// Requested is true when the supervisor asked for this exit with Stop,
	// so that it is never counted as a crash.
	Requested bool
	// Err is set when waiting for the process failed.
	Err error
}

// String renders the exit as users read it: "exit code 1", "signal killed".
func (e Exit) String() string {
	switch {
	case e.Signal != "":
		return "signal " + e.Signal
	case e.Err != nil && e.Code < 0:
		return e.Err.Error()
	default:
		return fmt.Sprintf("exit code %d", e.Code)
	}
}

// Process is one running replica. Its methods are safe for concurrent use.
type Process struct {
	spec    Spec
	cmd     *exec.Cmd
	tree    *tree // what the tracker knows of it; nil without one
	started time.Time
	done    chan struct{} // closed by the goroutine that called cmd.Wait
	tail    *lineTail     // its last lines of output
	outDone chan struct{} // closed once its stdout and stderr are read to their end

	mu      sync.Mutex // guards stopped and exit
	stopped bool       // Stop was called: the exit is not a crash
	exit    Exit
}

// Start starts the replica in its own process group with its stdout and
// stderr copied, line by line, to out under the replica's name. On Linux the
// child also receives SIGKILL if the supervisor dies, so a killed supervisor
// leaves no replica holding its port. With spec.Tracker set, the process is
// also born into a cgroup of its own where the tracker has cgroups, and
// recorded in its state file, so that nothing it starts outlives it.
//
// Start refuses a port that is in use: a readiness check could otherwise
// pass against a leftover that holds it, not the process just started.
func Start(spec Spec, out *Output) (*Process, error) {
	if err := CheckCommand(spec.Command); err != nil {
		return nil, err
	}
	args := spec.Args()
	newCmd := func(stdout, stderr *os.File) *exec.Cmd {
		cmd := exec.Command(args[0], args[1:]...)
		cmd.Env = append(inheritedEnv(), spec.Environ()...)
		cmd.Dir = spec.Dir
		cmd.SysProcAttr = sysProcAttr()
		cmd.Stdout, cmd.Stderr = stdout, stderr
		return cmd
	}

	// Our own pipes rather than cmd.StdoutPipe: Wait must not block on a
	// grandchild that inherited the write end, and the readers must see EOF
	// only when every holder has closed it.
	outR, outW, err := os.Pipe()
	if err != nil {
		return nil, fmt.Errorf("starting %s: %w", spec.Name(), err)
	}
	errR, errW, err := os.Pipe()
	if err != nil {
		outR.Close()
		outW.Close()
		return nil, fmt.Errorf("starting %s: %w", spec.Name(), err)
	}
	cmd := newCmd(outW, errW)
	forkMu.Lock()
	if err := checkPortFree(spec); err != nil {
		forkMu.Unlock()
		outR.Close()
		outW.Close()
		errR.Close()
		errW.Close()
		return nil, err
	}
	tr := spec.Tracker.prepare(spec.Name(), cmd.SysProcAttr)
	err = startPinned(spec.CPUs, cmd.Start)
	if err != nil && tr.inCgroup() {
		// clone3 into the cgroup may be refused (seccomp, permissions):
		// if the process starts without it, cgroups are what failed.
		if retry := newCmd(outW, errW); startPinned(spec.CPUs, retry.Start) == nil {
			tr.refused(err)
			cmd, err = retry, nil
		}
	}
	forkMu.Unlock()
	outW.Close()
	errW.Close()
	if err != nil {
		tr.abandon()
		outR.Close()
		errR.Close()
		return nil, fmt.Errorf("starting %s (%s): %w", spec.Name(), args[0], err)
	}
	tr.started(cmd.Process.Pid)
	name := spec.Name()
	p := &Process{spec: spec, cmd: cmd, tree: tr, started: time.Now(), done: make(chan struct{}),
		tail: &lineTail{}, outDone: make(chan struct{})}
	lim := newRateLimiter(out.Rate) // one budget for both streams
	var copying sync.WaitGroup
	copying.Go(func() { out.copyTail(out.Stdout, name, outR, lim, p.tail) })
	copying.Go(func() { out.copyTail(out.Stderr, name, errR, lim, p.tail) })
	go func() {
		copying.Wait()
		close(p.outDone)
	}()
	go p.wait()
	return p, nil
}

func (p *Process) wait() {
	// Without this, Wait would hold an OS thread until the process exits.
	awaitExit(p.cmd.Process.Pid)
	err := p.cmd.Wait()
	e := exitFrom(p.cmd.ProcessState, err)
	p.mu.Lock()
	e.Requested = p.stopped
	p.exit = e
	p.mu.Unlock()
	close(p.done)
}

// Spec returns the spec the process was started from.
func (p *Process) Spec() Spec { return p.spec }

// Pid returns the process id of the replica (its process group id too).
func (p *Process) Pid() int { return p.cmd.Process.Pid }

// StartedAt returns when the process was started.
func (p *Process) StartedAt() time.Time { return p.started }

// Done is closed when the process has exited.
func (p *Process) Done() <-chan struct{} { return p.done }

// Exit returns how the process ended; it is meaningful once Done is closed.
func (p *Process) Exit() Exit {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.exit
}

// Stop asks the replica's process group to terminate (SIGTERM), waits up to
// grace for the process to exit, then kills the whole group (SIGKILL) and
// waits a bounded time more. With a tracker, the signals reach every
// process of the replica's cgroup too, and Stop returns once they are all
// gone (a bounded wait). It marks the exit as requested, is safe to call
// more than once and treats an already exited process as stopped.
func (p *Process) Stop(grace time.Duration) error {
	ctx, cancel := context.WithTimeout(context.Background(), grace)
	defer cancel()
	return p.StopContext(ctx)
}

// StopContext is Stop with the grace period ending when ctx ends.
func (p *Process) StopContext(ctx context.Context) error {
	p.mu.Lock()
	p.stopped = true
	p.mu.Unlock()
	select {
	case <-p.done:
		p.kill() // stragglers the leader left behind
		return p.tree.finish()
	default:
	}
	if ctx.Err() == nil {
		terminateGroup(p.cmd.Process)
		p.tree.terminate()
		select {
		case <-p.done:
		case <-ctx.Done():
		}
	}
	p.kill()
	t := time.NewTimer(5 * time.Second)
	defer t.Stop()
	select {
	case <-p.done:
		return p.tree.finish()
	case <-t.C:
		return fmt.Errorf("%s (pid %d) did not exit after SIGKILL", p.spec.Name(), p.Pid())
	}
}

// kill kills the process group and, with a tracker, the cgroup.
func (p *Process) kill() {
	killGroup(p.cmd.Process)
	p.tree.kill()
}

// Kill kills the replica's process group at once, as Stop with no grace.
func (p *Process) Kill() error { return p.Stop(0) }

var errNoState = errors.New("process state unknown")

func exitFrom(ps *os.ProcessState, err error) Exit {
	if ps == nil {
		if err == nil {
			err = errNoState
		}
		return Exit{Code: -1, Err: err}
	}
	if sig := signalName(ps); sig != "" {
		return Exit{Code: -1, Signal: sig}
	}
	return Exit{Code: ps.ExitCode()}
}
