// Package replica runs one model-server child process: it starts the command
// in its own process group, passes its output through line by line with a
// name prefix, reports how it exited, stops it with a grace period, probes it
// for readiness and samples its CPU and memory.
package replica

import (
	"errors"
	"fmt"
	"io/fs"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
)

// Spec describes one replica: what to run and where it must listen.
type Spec struct {
	// ID is the replica's 1-based number; it names the replica
	// ("replica-ID") and is passed to it as MATTINGCTL_REPLICA.
	ID int
	// Service, when not empty, is the service the replica serves, of
	// several in one instance: it names the replica "SERVICE-ID" instead.
	Service string
	// Port is the TCP port the replica must listen on (127.0.0.1:Port),
	// passed to it as PORT.
	Port int
	// Command is the program and its arguments, before template expansion:
	// {port} and {replica} in any argument are replaced by Port and ID.
	Command []string
	// Env holds extra KEY=VALUE pairs added to the supervisor's environment.
	Env []string
	// Dir is the working directory; empty means the supervisor's.
	Dir string
	// Tracker, when set, contains and records the process so that nothing
	// it starts outlives it (see Tracker); nil means process groups only.
	Tracker *Tracker
	// CPUs, when set, pins the process, and every thread and process it
	// starts, to these CPUs (Linux's sched_setaffinity; elsewhere it has
	// no effect, see PinningSupported).
	CPUs []int
}

// Name is the replica's display name, "replica-ID", or "SERVICE-ID".
func (s Spec) Name() string {
	if s.Service != "" {
		return s.Service + "-" + strconv.Itoa(s.ID)
	}
	return "replica-" + strconv.Itoa(s.ID)
}

// Args returns Command with {port} and {replica} expanded.
func (s Spec) Args() []string { return Expand(s.Command, s.ID, s.Port) }

// Environ returns the extra environment of the child: Env plus PORT and
// MATTINGCTL_REPLICA, which take precedence over inherited values.
func (s Spec) Environ() []string {
	env := make([]string, 0, len(s.Env)+2)
	env = append(env, s.Env...)
	return append(env, "PORT="+strconv.Itoa(s.Port), "MATTINGCTL_REPLICA="+strconv.Itoa(s.ID))
}

// Expand returns a copy of args in which every "{port}" is replaced by port
// and every "{replica}" by id, so that "-b 127.0.0.1:{port}" works for
// servers that take their address as a flag rather than from $PORT.
func Expand(args []string, id, port int) []string {
	r := strings.NewReplacer("{port}", strconv.Itoa(port), "{replica}", strconv.Itoa(id))
	out := make([]string, len(args))
	for i, a := range args {
		out[i] = r.Replace(a)
	}
	return out
}

// CheckCommand reports, in one line naming the program, why command cannot
// be started: it is empty, not found in $PATH, or not an executable file.
func CheckCommand(command []string) error {
	if len(command) == 0 || command[0] == "" {
		return errors.New("no command given: put the model server's command after --, e.g. mattingctl up -- python3 app.py")
	}
	_, err := exec.LookPath(command[0])
	switch {
	case err == nil:
		return nil
	case errors.Is(err, exec.ErrNotFound):
		return fmt.Errorf("command %q not found in $PATH", command[0])
	case errors.Is(err, fs.ErrNotExist):
		return fmt.Errorf("command %q: no such file", command[0])
	case errors.Is(err, fs.ErrPermission), errors.Is(err, syscall.EISDIR):
		return fmt.Errorf("command %q is not an executable file", command[0])
	default:
		return fmt.Errorf("command %q cannot be run: %v", command[0], err)
	}
}
