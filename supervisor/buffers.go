package supervisor

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"

	"github.com/mattingctl/mattingctl/balancer"
)

// resolveBufferDir refuses two zero budgets, and gives BufferDir its
// default, the instance's own directory, made absolute so that a body's
// file is where it was whatever the working directory is by then.
func (o *Options) resolveBufferDir() error {
	if o.MaxBuffer == 0 && o.MaxDiskBuffer == 0 {
		return errors.New("--max-buffer 0 and --max-disk-buffer 0 leave no room for any request body; allow one of them")
	}
	if o.BufferDir == "" {
		o.BufferDir = DefaultBufferDir(o.StateDir, o.Name)
	}
	dir, err := filepath.Abs(o.BufferDir)
	if err != nil {
		return fmt.Errorf("--buffer-dir %s: %w", o.BufferDir, err)
	}
	o.BufferDir = dir
	return nil
}

// DefaultBufferDir returns the directory of the instance name, whose
// control socket is in stateDir, for request bodies that do not fit in
// memory: mattingctl-NAME-HASH under the system temp directory, where HASH
// stands for the user and the state directory, so that no two instances
// share one.
func DefaultBufferDir(stateDir, name string) string {
	sum := sha256.Sum256([]byte(strconv.Itoa(os.Getuid()) + "\x00" + stateDir))
	return filepath.Join(os.TempDir(), "mattingctl-"+name+"-"+hex.EncodeToString(sum[:4]))
}

// prepareBufferDir creates the instance's buffer directory, checks that
// bodies can be written to it and only by this user, and removes the
// bodies a killed instance of the same name left in it. The control socket
// is held by then: no live instance of the name is using them.
func (o *Options) prepareBufferDir() error {
	dir := o.BufferDir
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("--buffer-dir: %w", err)
	}
	fi, err := os.Lstat(dir)
	if err != nil {
		return fmt.Errorf("--buffer-dir: %w", err)
	}
	if !fi.IsDir() {
		return fmt.Errorf("--buffer-dir %s is not a directory", dir)
	}
	if dir == DefaultBufferDir(o.StateDir, o.Name) {
		// It is in a directory every user can write to: someone else may
		// have made it first, to read the bodies or plant a symlink.
		if err := checkPrivate(dir, fi); err != nil {
			return fmt.Errorf("buffer directory %s: %w; remove it, or choose another with --buffer-dir", dir, err)
		}
	}
	if err := balancer.RemoveBufferFiles(dir); err != nil {
		return err
	}
	probe, err := os.CreateTemp(dir, balancer.BufferFilePattern)
	if err != nil {
		return fmt.Errorf("--buffer-dir: request bodies cannot be written: %w", err)
	}
	probe.Close()
	return os.Remove(probe.Name())
}
