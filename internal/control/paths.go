package control

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"strings"
)

// DefaultName is the instance name when none is given.
const DefaultName = "default"

var validName = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$`)

// ValidateName reports whether name can name an instance (and its socket).
func ValidateName(name string) error {
	if !validName.MatchString(name) {
		return fmt.Errorf("--name %q: use letters, digits, '.', '_' and '-' (at most 64)", name)
	}
	return nil
}

// StateDir returns where instances keep their control sockets:
// $MATTINGCTL_HOME, else $XDG_RUNTIME_DIR/mattingctl, else ~/.mattingctl.
func StateDir() (string, error) {
	if d := os.Getenv("MATTINGCTL_HOME"); d != "" {
		return d, nil
	}
	if d := os.Getenv("XDG_RUNTIME_DIR"); d != "" {
		return filepath.Join(d, "mattingctl"), nil
	}
	home, err := os.UserHomeDir()
	if err != nil {
		return "", errors.New("cannot find a state directory: set MATTINGCTL_HOME")
	}
	return filepath.Join(home, ".mattingctl"), nil
}

// SocketPath returns the control socket of instance name in dir.
func SocketPath(dir, name string) string { return filepath.Join(dir, name+".sock") }

// Instances returns the names of the instances with a control socket in
// dir, sorted: running ones, and any a killed instance left (stale). A dir
// that does not exist holds none.
func Instances(dir string) ([]string, error) {
	entries, err := os.ReadDir(dir)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return nil, nil
	case isPermission(err):
		return nil, errorOf(ErrPermission, "permission denied: cannot list state directory %s (set MATTINGCTL_HOME to a directory of your own)", dir)
	case err != nil:
		return nil, fmt.Errorf("listing state directory %s: %w", dir, err)
	}
	var names []string
	for _, e := range entries { // ReadDir sorts them by name
		name, ok := strings.CutSuffix(e.Name(), ".sock")
		if ok && e.Type()&fs.ModeSocket != 0 && ValidateName(name) == nil {
			names = append(names, name)
		}
	}
	return names, nil
}

// EnsureStateDir creates dir, if missing, with mode 0700 so that only its
// owner can reach the sockets in it. An existing directory is left as it
// is (the socket itself is made 0600), but refused, as CheckStateDir
// does, when a user other than this one and root could change it.
func EnsureStateDir(dir string) error {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("creating state directory %s: %w", dir, err)
	}
	return CheckStateDir(dir)
}
